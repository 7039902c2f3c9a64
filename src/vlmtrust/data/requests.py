"""The project's own safety request sets (written for vlmtrust, shipped as JSONL resources).

* :func:`harmful_requests` — ≥ 20 harmful *requests* for each of the ten SafeBench hazard
  topics (:data:`HAZARD_TOPICS`). They are phrased as requests only, at a high level; the
  repository never stores a harmful completion or instruction.
* :func:`benign_requests` — ≥ 200 XSTest-style benign look-alikes that share surface features
  with the harmful ones ("How do I kill a Python process that is hanging?"), each tagged with
  the hazard topic it resembles.

Every request also has a FigStep-style *statement* form ("Steps to ...") used by the
typographic attacks. :func:`split` gives a stable train/test split by id: the reference VLM is
trained on the train split and the probes default to the test split, so an audit measures
generalisation rather than memorisation.

Example:
    >>> reqs = harmful_requests()
    >>> len({r.topic for r in reqs}) >= 10
    True
    >>> reqs[0].statement.startswith("Steps to ")
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

import numpy as np

from vlmtrust.core.errors import InputError

_T = TypeVar("_T")

HAZARD_TOPICS: tuple[str, ...] = (
    "illegal_activity",
    "hate_speech",
    "malware_generation",
    "physical_harm",
    "fraud",
    "adult_content",
    "privacy_violation",
    "legal_opinion",
    "financial_advice",
    "health_consultation",
)
"""The ten SafeBench hazard topics (Gong et al., FigStep, AAAI 2025)."""


@dataclass(frozen=True)
class SafetyRequest:
    """One request of a safety set.

    Attributes:
        id: stable identifier (``h-<topic>-NN`` harmful, ``b-<topic>-NN`` benign).
        topic: one of :data:`HAZARD_TOPICS` (for benign look-alikes: the topic it resembles).
        text: the request as a user would type it.
        statement: FigStep-style statement form ("Steps to ...") for typography.
        harmful: ``True`` for harmful requests, ``False`` for benign look-alikes.
        key_phrase: a user benchmark's own key phrase (MM-SafetyBench), else empty.
        image: a user benchmark's own image (an ``ImageRef``), else ``None``.
        image_prompt: the query a user benchmark publishes with its image, else empty.
    """

    id: str
    topic: str
    text: str
    statement: str
    harmful: bool
    key_phrase: str = ""
    image: Any = field(default=None, compare=False)
    image_prompt: str = ""


def resource_jsonl(name: str, build: Callable[[dict[str, Any]], _T]) -> list[tuple[int, _T]]:
    """``(line number, build(row))`` for each row of the shipped JSONL ``resources/safety/name``.

    Raises:
        InputError: a line is not JSON or ``build`` fails on it (the shipped file is damaged).
    """
    path = resources.files("vlmtrust.resources").joinpath("safety", name)
    out: list[tuple[int, _T]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((lineno, build(json.loads(line))))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"resource safety/{name} line {lineno} is malformed ({e}); reinstall vlmtrust"
            ) from None
    return out


def _load(name: str, harmful: bool) -> tuple[SafetyRequest, ...]:
    out: list[SafetyRequest] = []
    seen: set[str] = set()
    rows = resource_jsonl(
        name,
        lambda row: SafetyRequest(
            id=str(row["id"]),
            topic=str(row["topic"]),
            text=str(row["text"]),
            statement=str(row["statement"]),
            harmful=bool(row["harmful"]),
        ),
    )
    for lineno, req in rows:
        if req.harmful != harmful or req.topic not in HAZARD_TOPICS or req.id in seen:
            raise InputError(
                f"resource safety/{name} line {lineno} has a bad topic, label or duplicate id; "
                "reinstall vlmtrust"
            )
        seen.add(req.id)
        out.append(req)
    return tuple(out)


@lru_cache(maxsize=1)
def _harmful() -> tuple[SafetyRequest, ...]:
    return _load("harmful_requests.jsonl", True)


@lru_cache(maxsize=1)
def _benign() -> tuple[SafetyRequest, ...]:
    return _load("benign_requests.jsonl", False)


def harmful_requests(topics: Sequence[str] | None = None) -> list[SafetyRequest]:
    """The harmful request set (optionally only some topics), in a fixed order.

    Args:
        topics: keep only these hazard topics (``None``: all).

    Raises:
        InputError: a topic is not one of :data:`HAZARD_TOPICS`.
    """
    return _filter(_harmful(), topics)


def benign_requests(topics: Sequence[str] | None = None) -> list[SafetyRequest]:
    """The benign look-alike set (optionally only those resembling some topics)."""
    return _filter(_benign(), topics)


def _filter(reqs: Sequence[SafetyRequest], topics: Sequence[str] | None) -> list[SafetyRequest]:
    if topics is None:
        return list(reqs)
    bad = [t for t in topics if t not in HAZARD_TOPICS]
    if bad:
        raise InputError(f"unknown hazard topic {bad[0]!r}; use one of {', '.join(HAZARD_TOPICS)}")
    keep = set(topics)
    return [r for r in reqs if r.topic in keep]


def _unit(key: str) -> float:
    h = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(h[:8], "little") / 2.0**64


def split(
    requests: Sequence[SafetyRequest], *, test_fraction: float = 0.3, seed: int = 0
) -> tuple[list[SafetyRequest], list[SafetyRequest]]:
    """Split requests into ``(train, test)``, stable by id, stratified by topic.

    Within each topic requests are ordered by a hash of ``(seed, id)`` and the first
    ``round(test_fraction * n_topic)`` go to the test split, so the split of one request never
    depends on which other requests are present in other topics, and the same seed always gives
    the same split. Input order is kept inside each output list.

    Args:
        requests: the requests to split.
        test_fraction: share of each topic in the test split, in ``[0, 1]``.
        seed: split seed.

    Raises:
        InputError: ``test_fraction`` outside ``[0, 1]``.

    Example:
        >>> train, test = split(harmful_requests(), test_fraction=0.25, seed=0)
        >>> len(test) == sum(1 for _ in test) and not {r.id for r in train} & {r.id for r in test}
        True
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise InputError(f"test_fraction={test_fraction} must be within [0, 1]")
    by_topic: dict[str, list[SafetyRequest]] = {}
    for r in requests:
        by_topic.setdefault(r.topic, []).append(r)
    test_ids: set[str] = set()
    for members in by_topic.values():
        ranked = sorted(members, key=lambda r: _unit(f"{seed}|{r.id}"))
        k = int(round(test_fraction * len(members)))
        test_ids.update(r.id for r in ranked[:k])
    train = [r for r in requests if r.id not in test_ids]
    test = [r for r in requests if r.id in test_ids]
    return train, test


def stratified(reqs: Sequence[SafetyRequest], n: int, seed: int) -> list[SafetyRequest]:
    """``n`` requests spread evenly over topics (round-robin; order inside a topic by seed).

    Example:
        >>> picked = stratified(harmful_requests(), 10, seed=0)
        >>> len(picked), len({r.topic for r in picked})
        (10, 10)
    """
    rng = np.random.default_rng(seed)
    by_topic: dict[str, list[SafetyRequest]] = {}
    for r in reqs:
        by_topic.setdefault(r.topic, []).append(r)
    queues = []
    for t in sorted(by_topic):
        members = by_topic[t]
        queues.append([members[i] for i in rng.permutation(len(members))])
    out: list[SafetyRequest] = []
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(q[depth])
        depth += 1
    return out


def pool(
    *,
    harmful: bool,
    topics: Sequence[str] | None = None,
    split_name: str = "test",
    test_fraction: float = 0.3,
) -> list[SafetyRequest]:
    """The harmful or benign requests of ``topics`` in one split (``test``/``train``/``all``).

    The split is drawn with seed 0, so it is the same in every run.
    """
    reqs = harmful_requests(topics) if harmful else benign_requests(topics)
    if split_name == "all":
        return reqs
    train, test = split(reqs, test_fraction=test_fraction, seed=0)
    return test if split_name == "test" else train


HARM_SPLIT_SEED = 0
HARM_TEST_FRACTION = 0.3
"""The request split the guards' harm classifier trains on (the probes' default split)."""


def harm_training_set(
    *, seed: int = HARM_SPLIT_SEED, test_fraction: float = HARM_TEST_FRACTION
) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """``(train, test)`` lists of ``(text, is_harmful)``: both forms of every request."""
    out: list[list[tuple[str, bool]]] = []
    h_train, h_test = split(harmful_requests(), test_fraction=test_fraction, seed=seed)
    b_train, b_test = split(benign_requests(), test_fraction=test_fraction, seed=seed)
    for reqs in ((*h_train, *b_train), (*h_test, *b_test)):
        rows: list[tuple[str, bool]] = []
        for r in reqs:
            rows.append((r.text, r.harmful))
            rows.append((r.statement, r.harmful))
        out.append(rows)
    return out[0], out[1]


def select(
    *,
    harmful: bool,
    n: int,
    seed: int,
    topics: Sequence[str] | None = None,
    split_name: str = "test",
    test_fraction: float = 0.3,
) -> list[SafetyRequest]:
    """``n`` requests of :func:`pool`, stratified by topic (``seed`` orders the sample)."""
    reqs = pool(harmful=harmful, topics=topics, split_name=split_name, test_fraction=test_fraction)
    return stratified(reqs, n, seed=seed)
