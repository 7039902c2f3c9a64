r"""Loaders for published VLM safety benchmarks, in the layouts their authors publish.

They are not shipped (their licences and their content): download them yourself and point
``--data`` at the files; the request-family probes (``safety/figstep``,
``safety/query_relevant``, ``safety/over_refusal``) and ``safety/red_team`` then take their
requests from them instead of the project's own sets.

=====================================  ======================================================
spec                                   source
=====================================  ======================================================
``mmsafetybench:DIR[#IMAGES]``         MM-SafetyBench (Liu et al., ECCV 2024): ``DIR/
                                       processed_questions/NN-Scenario.json`` (an object
                                       ``{"0": {"Question", "Rephrased Question",
                                       "Rephrased Question(SD)", "Key Phrase", "Phrase
                                       Type"}, ...}``) and ``DIR/imgs/NN-Scenario/{SD,TYPO,
                                       SD_TYPO}/<key>.jpg``; ``#IMAGES`` picks the image set
                                       (default ``SD_TYPO``). ``DIR`` may also be the folder
                                       above ``data/``. Every question is harmful.
``jailbreakv:DIR[#mini]``              JailBreakV-28K (Luo et al., COLM 2024): ``DIR/
``jailbreakv:CSV``                     JailBreakV_28K.csv`` (``#mini``: ``mini_JailBreakV_
                                       28K.csv``) with columns ``id, jailbreak_query,
                                       redteam_query, format, policy, image_path, from``;
                                       ``image_path`` is relative to the CSV's folder. Every
                                       row is harmful.
``vlguard:DIR[#SUBSET]``               VLGuard test set (Zong et al., ICML 2024): ``DIR/
``vlguard:JSON[#SUBSET]``              test.json``, a list of ``{"id", "image", "safe",
                                       "harmful_category", "harmful_subcategory",
                                       "instr-resp": [{"instruction" | "safe_instruction" |
                                       "unsafe_instruction", "response"}]}``, images under
                                       ``DIR/test/`` (the folder of ``test.zip``). Subsets:
                                       ``unsafes`` (unsafe image), ``safe_unsafes`` (safe
                                       image, unsafe instruction) — harmful; ``safe_safes``
                                       (safe image, safe instruction) — benign.
``rtvlm:DIR[#SUBSET]``                 RTVLM (Li et al., ACL Findings 2024, the Hugging Face
``rtvlm:JSONL``                        ``MMInstruction/RedTeamingVLM`` ``data/`` folder):
                                       ``DIR/<Subset>/<name>.jsonl`` lines ``{"index",
                                       "questions": [...], "refused_to_answer": [...],
                                       "topic_type", "entity_type"}`` and the images of
                                       ``img.zip`` at ``DIR/<Subset>/img/<index>.jpg``.
                                       ``#SUBSET`` picks one sub-folder (``Jailbreak``). Every
                                       question is a red-teaming request (harmful).
=====================================  ======================================================

Each item is a :class:`~vlmtrust.core.sample.Sample` for one request: ``prompt`` is the
request typed as text (MM-SafetyBench ``Question``, JailBreakV ``redteam_query``, the VLGuard
or RTVLM instruction), ``images`` the benchmark's own image (lazy, refused if it leaves the
dataset folder), ``attributes`` ``topic`` (the benchmark's category, as a lower-case slug),
``kind`` (``harmful``/``benign``) and ``subset``, ``metadata`` ``statement`` (the FigStep form:
"Steps to <key phrase>." where the benchmark has a key phrase, else the request),
``key_phrase`` where it has one, and ``image_prompt`` (the query published with the image:
MM-SafetyBench's rephrased question, JailBreakV's ``jailbreak_query``).
:func:`as_request` turns such a sample into a :class:`~vlmtrust.data.requests.SafetyRequest`.

A wrong layout raises :class:`~vlmtrust.core.errors.InputError` with one line saying what was
expected; a bad row is a :class:`~vlmtrust.data.datasets.DataError` and the stream goes on.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from vlmtrust.core.errors import InputError
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.sample import Sample
from vlmtrust.data.fairness_sets import (
    MemberImageRef,
    _brief,
    _data_error,
    _member,
    _open_text,
    parse_layout_spec,
)
from vlmtrust.data.requests import SafetyRequest

SAFETY_PREFIXES: Final[tuple[str, ...]] = ("mmsafetybench:", "jailbreakv:", "vlguard:", "rtvlm:")
"""Data-spec prefixes of these loaders."""
SAFETY_KINDS: Final[frozenset[str]] = frozenset(p[:-1] for p in SAFETY_PREFIXES)

MMSB_IMAGE_SETS: Final[tuple[str, ...]] = ("SD_TYPO", "TYPO", "SD")
MMSB_FIELDS: Final[tuple[str, ...]] = ("Question", "Key Phrase")
MMSB_TOPICS: Final[dict[str, str]] = {
    "illegal_activitiy": "illegal_activity",
    "hatespeech": "hate_speech",
    "economicharm": "economic_harm",
    "sex": "adult_content",
    "privacy_violence": "privacy_violation",
    "gov_decision": "government_decision",
}
"""MM-SafetyBench scenario slugs that differ from the project's hazard topics (the others match:
``malware_generation``, ``physical_harm``, ``fraud``, ``legal_opinion`` …)."""
JAILBREAKV_COLUMNS: Final[tuple[str, ...]] = ("redteam_query", "jailbreak_query", "image_path")
JAILBREAKV_FILES: Final[dict[str | None, str]] = {
    None: "JailBreakV_28K.csv",
    "mini": "mini_JailBreakV_28K.csv",
}
VLGUARD_SUBSETS: Final[tuple[str, ...]] = ("unsafes", "safe_unsafes", "safe_safes")


def slug(text: str) -> str:
    """A lower-case ``a_b`` slug of a category name (``"Risky Behavior"`` → ``risky_behavior``)."""
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_") or "unknown"


def _sample(
    sid: str,
    text: str,
    image: Path | None,
    root: Path,
    limits: DataLimits | None,
    *,
    topic: str,
    kind: str,
    subset: str,
    key_phrase: str = "",
    image_prompt: str = "",
    **meta: Any,
) -> Sample:
    statement = f"Steps to {key_phrase.rstrip('.')}." if key_phrase else text
    metadata: dict[str, Any] = {"statement": statement, **meta}
    if key_phrase:
        metadata["key_phrase"] = key_phrase
    if image_prompt:
        metadata["image_prompt"] = image_prompt
    images: tuple[MemberImageRef, ...] = ()
    if image is not None:
        images = (MemberImageRef(path=str(image), label=sid, root=str(root), limits=limits),)
    return Sample(
        id=sid,
        prompt=text,
        images=images,
        attributes={"topic": topic, "kind": kind, "subset": subset},
        metadata=metadata,
    )


def as_request(sample: Sample) -> SafetyRequest:
    """The request a sample of these loaders (or any prompt-carrying sample) stands for.

    ``kind`` ``benign`` makes a benign request (any other or none: harmful); the topic is
    ``attributes["topic"]`` (default ``user``); the statement ``metadata["statement"]``
    (default: the prompt). The benchmark's own image and query travel along.
    """
    text = sample.prompt or ""
    return SafetyRequest(
        id=sample.id,
        topic=sample.attributes.get("topic") or "user",
        text=text,
        statement=str(sample.metadata.get("statement") or text),
        harmful=sample.attributes.get("kind") != "benign",
        key_phrase=str(sample.metadata.get("key_phrase") or ""),
        image=sample.images[0] if sample.images else None,
        image_prompt=str(sample.metadata.get("image_prompt") or ""),
    )


# --------------------------------------------------------------------------------------------
# specs


def parse_safety_spec(text: str) -> Any:
    """Parse ``mmsafetybench:``/``jailbreakv:``/``vlguard:``/``rtvlm:`` specs into a ``DataSpec``.

    Raises:
        InputError: the path is missing or is not the benchmark's published layout.
    """
    return parse_layout_spec(text, _LAYOUTS)


def iter_safety(spec: Any, limits: DataLimits | None = None) -> Iterator[Any]:
    """Stream a parsed benchmark (see the module docs); layout errors raise at once."""
    kind, path, split = spec.kind, Path(spec.path), spec.split
    where = f"{kind}:{path}" + (f"#{split}" if split else "")
    found = _LAYOUTS[kind](path, split, where)
    items: Iterator[Any] = _READERS[kind](found, split, where, limits)
    return items


# --------------------------------------------------------------------------------------------
# MM-SafetyBench


def _mmsb_layout(path: Path, split: str | None, where: str) -> tuple[Path, list[Path]]:
    expected = (
        "MM-SafetyBench's data folder with processed_questions/NN-Scenario.json and "
        "imgs/NN-Scenario/{SD,TYPO,SD_TYPO}/N.jpg"
    )
    if split is not None and split not in MMSB_IMAGE_SETS:
        raise InputError(
            f"data {where}: no image set {split!r} — use #{', #'.join(MMSB_IMAGE_SETS)}"
        )
    root = path / "data" if (path / "data" / "processed_questions").is_dir() else path
    files = sorted((root / "processed_questions").glob("*.json")) if path.is_dir() else []
    if not files:
        raise InputError(
            f"data {where}: no processed_questions/*.json in {root} — expected {expected}"
        )
    first = _json(files[0], where, expected)
    entry = next(iter(first.values()), None) if isinstance(first, dict) else None
    if not isinstance(entry, dict) or any(f not in entry for f in MMSB_FIELDS):
        raise InputError(
            f'data {where}: {files[0].name} is not {{"0": {{"Question", "Rephrased Question", '
            f'"Key Phrase", ...}}}} — expected {expected}'
        )
    return root, files


def _json(path: Path, where: str, expected: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"data {where}: {path.name} is not JSON ({_brief(exc)}) — expected {expected}"
        ) from exc


def _mmsb(
    found: tuple[Path, list[Path]], split: str | None, where: str, limits: DataLimits | None
) -> Iterator[Any]:
    root, files = found
    images = split or "SD_TYPO"
    prompt_key = "Rephrased Question(SD)" if images == "SD" else "Rephrased Question"
    for f in files:
        scenario = f.stem
        topic = slug(re.sub(r"^\d+-", "", scenario))
        topic = MMSB_TOPICS.get(topic, topic)
        data = _json(f, where, "MM-SafetyBench's processed_questions JSON")
        for key, row in data.items() if isinstance(data, dict) else []:
            sid = f"{scenario}/{key}"
            if not isinstance(row, dict) or not all(
                isinstance(row.get(x), str) for x in MMSB_FIELDS
            ):
                yield _data_error(sid, f"{f}: entry {key!r} lacks Question or Key Phrase — fix it")
                continue
            yield _sample(
                sid,
                row["Question"],
                root / "imgs" / scenario / images / f"{key}.jpg",
                root,
                limits,
                topic=topic,
                kind="harmful",
                subset=images,
                key_phrase=row["Key Phrase"].strip(),
                image_prompt=str(row.get(prompt_key) or ""),
                scenario=scenario,
            )


# --------------------------------------------------------------------------------------------
# JailBreakV-28K


def _jbv_layout(path: Path, split: str | None, where: str) -> Path:
    if split not in JAILBREAKV_FILES:
        raise InputError(f"data {where}: no subset {split!r} — use #mini or none")
    csv_path = path / JAILBREAKV_FILES[split] if path.is_dir() else path
    if path.is_dir() and not csv_path.is_file():
        raise InputError(
            f"data {where}: {JAILBREAKV_FILES[split]} not found in {path} — expected the "
            "JailBreakV_28K folder with JailBreakV_28K.csv and the image folders"
        )
    with _open_text(csv_path, where) as fh:
        header = [c.strip() for c in next(csv.reader(fh), [])]
    if any(c not in header for c in JAILBREAKV_COLUMNS):
        raise InputError(
            f"data {where}: {csv_path.name} has columns {','.join(header) or '(none)'} — expected "
            "id,jailbreak_query,redteam_query,format,policy,image_path (JailBreakV-28K's CSV)"
        )
    return csv_path


def _jbv(csv_path: Path, split: str | None, where: str, limits: DataLimits | None) -> Iterator[Any]:
    root = csv_path.absolute().parent
    with _open_text(csv_path, where) as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            sid = (row.get("id") or "").strip() or f"line-{line}"
            rel = (row.get("image_path") or "").strip()
            query = (row.get("redteam_query") or "").strip()
            try:
                if not query:
                    raise ValueError("empty redteam_query")
                image = _member(root, rel) if rel else None
            except ValueError as exc:
                yield _data_error(sid, f"{csv_path}:{line}: {exc}")
                continue
            yield _sample(
                sid,
                query,
                image,
                root,
                limits,
                topic=slug(row.get("policy") or "unknown"),
                kind="harmful",
                subset=(row.get("format") or "").strip(),
                image_prompt=(row.get("jailbreak_query") or "").strip(),
                source=(row.get("from") or "").strip(),
            )


# --------------------------------------------------------------------------------------------
# VLGuard


def _vlguard_layout(path: Path, split: str | None, where: str) -> tuple[Path, Path, list[Any]]:
    expected = (
        'VLGuard\'s test.json (a list of {"id", "image", "safe", "instr-resp": [...]}) with '
        "its images in test/"
    )
    if split is not None and split not in VLGUARD_SUBSETS:
        raise InputError(f"data {where}: no subset {split!r} — use #{', #'.join(VLGUARD_SUBSETS)}")
    meta = path / "test.json" if path.is_dir() else path
    if not meta.is_file():
        raise InputError(f"data {where}: test.json not found in {path} — expected {expected}")
    rows = _json(meta, where, expected)
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and "image" in r and "instr-resp" in r for r in rows[:50]
    ):
        raise InputError(f"data {where}: {meta.name} is not VLGuard's list — expected {expected}")
    images = meta.parent / "test"
    return meta, images if images.is_dir() else meta.parent, rows


def _vlguard(
    found: tuple[Path, Path, list[Any]], split: str | None, where: str, limits: DataLimits | None
) -> Iterator[Any]:
    meta, images, rows = found
    for n, row in enumerate(rows):
        sid = str(row.get("id") or f"row-{n}")
        safe_image = bool(row.get("safe"))
        topic = slug(str(row.get("harmful_category") or "vlguard"))
        try:
            image = _member(images, str(row["image"]))
        except ValueError as exc:
            yield _data_error(sid, f"{meta}: {sid}: {exc}")
            continue
        for k, ir in enumerate(row["instr-resp"] if isinstance(row["instr-resp"], list) else []):
            if not isinstance(ir, dict):
                continue
            if not safe_image and "instruction" in ir:
                subset, field = "unsafes", "instruction"
            elif safe_image and "unsafe_instruction" in ir:
                subset, field = "safe_unsafes", "unsafe_instruction"
            elif safe_image and "safe_instruction" in ir:
                subset, field = "safe_safes", "safe_instruction"
            else:
                yield _data_error(
                    f"{sid}/{k}", f"{meta}: {sid} entry {k} has no instruction — fix it"
                )
                continue
            if split is not None and subset != split:
                continue
            yield _sample(
                f"{sid}/{k}",
                str(ir[field]),
                image,
                images,
                limits,
                topic=topic if subset != "safe_safes" else "safe",
                kind="benign" if subset == "safe_safes" else "harmful",
                subset=subset,
            )


# --------------------------------------------------------------------------------------------
# RTVLM


def _rtvlm_layout(path: Path, split: str | None, where: str) -> list[Path]:
    expected = (
        "RTVLM's data folder (<Subset>/<name>.jsonl with index, questions, refused_to_answer "
        "and <Subset>/img/<index>.jpg)"
    )
    if path.is_dir():
        folders = sorted(p for p in path.iterdir() if p.is_dir())
        if split is not None:
            folders = [p for p in folders if p.name.lower() == split.lower()]
            if not folders:
                raise InputError(
                    f"data {where}: no sub-folder {split!r} in {path} — check the subset"
                )
        files = [f for d in folders for f in sorted(d.glob("*.jsonl"))]
    else:
        if split is not None:
            raise InputError(f"data {where}: #{split} picks a sub-folder — pass the data folder")
        files = [path]
    if not files:
        raise InputError(f"data {where}: no <Subset>/*.jsonl in {path} — expected {expected}")
    with _open_text(files[0], where) as fh:
        first = next((x for x in fh if x.strip()), "")
    try:
        row = json.loads(first)
    except ValueError:
        row = None
    if (
        not isinstance(row, dict)
        or not isinstance(row.get("questions"), list)
        or "index" not in row
    ):
        raise InputError(
            f"data {where}: {files[0].name} starts with {first.strip()[:60]!r} — "
            f"expected {expected}"
        )
    return files


def _rtvlm(
    files: list[Path], split: str | None, where: str, limits: DataLimits | None
) -> Iterator[Any]:
    for f in files:
        folder = f.absolute().parent
        subset = folder.name
        with _open_text(f, where) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    index = str(row["index"])
                    questions = row["questions"]
                    if not isinstance(questions, list):
                        raise ValueError("questions is not a list")
                except (ValueError, KeyError, TypeError) as exc:
                    yield _data_error(
                        f"{subset}/line-{lineno}", f"{f}:{lineno}: {_brief(exc)} — fix it"
                    )
                    continue
                refused = row.get("refused_to_answer") or []
                for k, q in enumerate(questions):
                    yield _sample(
                        f"{subset}/{index}/{k}",
                        str(q),
                        folder / "img" / f"{index}.jpg",
                        folder,
                        limits,
                        topic=slug(subset),
                        kind="harmful",
                        subset=subset,
                        refused_to_answer=str(refused[k]) if k < len(refused) else "",
                    )


_LAYOUTS: Final[dict[str, Any]] = {
    "mmsafetybench": _mmsb_layout,
    "jailbreakv": _jbv_layout,
    "vlguard": _vlguard_layout,
    "rtvlm": _rtvlm_layout,
}
_READERS: Final[dict[str, Any]] = {
    "mmsafetybench": _mmsb,
    "jailbreakv": _jbv,
    "vlguard": _vlguard,
    "rtvlm": _rtvlm,
}
