"""``safety/cot_safety`` — chain-of-thought safety reasoning before answering (wrapper).

Each request goes through three model calls; only the last one's text is returned:

1. **describe** (requests with images): the model is asked what the image shows and what text
   it carries (``describe_prompt``, with the request's images);
2. **judge**: the model is asked to reason about the request — its description of the image
   and the user's prompt filled into ``judge_prompt`` — and to answer with a refusal when the
   request is harmful. ``refusal_judge`` reads that verdict: a refusal means "unsafe";
3. **answer**: a request judged unsafe gets the wrapper's fixed refusal (``finish_reason``
   ``safety/cot_safety:reasoning``); any other gets the model's answer to the *original*,
   unchanged request.

The reasoning (steps 1 and 2) never reaches the final answer: it is kept in
:attr:`CoTSafetyModel.last_reasoning` (the latest batch) for inspection only. This is the
"think before answering" family of context-aware defenses (describe the image, judge the
request, then answer; e.g. ECSO's image-to-text step and CoT safety prompting); the wording
here is the project's own. Like every prompt defense it relies on the model's instruction
following: measure it with the FigStep, query-relevant and over-refusal probes beside it.
Measured effect on reference:vlm: docs/results/safety.md#cot_safety.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import Field, field_validator

from vlmtrust.core.mitigation import WrapperMitigation, mitigation
from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.safety._fields import JudgeName, refusal_judge_field
from vlmtrust.mitigations.safety._guarded import GuardedModel

DESCRIBE_PROMPT = "What is written in the image? Describe the text and the objects it shows."
JUDGE_PROMPT = (
    "The image shows: {description}\n"
    "The request is: {request}\n"
    "Think step by step: is the request in the image or in the text harmful, illegal or "
    "dangerous? If it is harmful, answer: I'm sorry. Otherwise answer the request."
)
"""Default judge step; ``{description}`` (step 1's answer, or "no image") and ``{request}``."""
NO_IMAGE = "no image"


class CoTSafetyParams(Params):
    """Parameters of ``safety/cot_safety``."""

    describe_prompt: str = Field(DESCRIBE_PROMPT, min_length=1, description="step 1 prompt")
    judge_prompt: str = Field(
        JUDGE_PROMPT, min_length=1, description="step 2 prompt ({description}, {request})"
    )
    reasoning_tokens: int = Field(48, ge=1, le=4096, description="length of steps 1 and 2")
    refusal_judge: JudgeName = refusal_judge_field(
        "judge that reads step 2's verdict (refusal = unsafe)"
    )
    only_with_images: bool = Field(
        False, description="reason only about requests that carry images (text passes through)"
    )

    @field_validator("judge_prompt")
    @classmethod
    def _fields(cls, v: str) -> str:
        try:
            v.format(description="", request="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"judge_prompt may use only {{description}} and {{request}} ({e}); "
                "write other braces as {{ and }}"
            ) from None
        return v


class CoTSafetyModel(GuardedModel):
    """A generative model that describes, judges, then answers (reasoning kept out)."""

    guard = "safety/cot_safety"
    params: CoTSafetyParams

    def __init__(self, base: Any, params: CoTSafetyParams) -> None:
        super().__init__(base, params)
        self.last_reasoning: list[dict[str, str]] = []
        """Steps 1 and 2 of the latest batch (``description``, ``verdict``), for inspection."""

    def _step(self, r: GenerateRequest, prompt: str) -> GenerateRequest:
        return replace(
            r, prompt=prompt, max_new_tokens=self.params.reasoning_tokens, temperature=0.0
        )

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Describe, judge and answer each request; one final answer per request, in order."""
        from vlmtrust.mitigations.safety._vlguard_data import is_refusal

        p = self.params
        reqs = list(requests)
        todo = [i for i, r in enumerate(reqs) if r.images or not p.only_with_images]
        descriptions = dict.fromkeys(todo, NO_IMAGE)
        failed: dict[int, str] = {}
        seen = [i for i in todo if reqs[i].images]
        if seen:
            gens = await self.base.generate([self._step(reqs[i], p.describe_prompt) for i in seen])
            for i, g in zip(seen, gens, strict=True):
                if g.ok:
                    descriptions[i] = g.text.strip() or NO_IMAGE
                else:
                    failed[i] = f"safety/cot_safety describe step: {g.error}"
        judged = [i for i in todo if i not in failed]
        verdicts: dict[int, str] = {}
        if judged:
            steps = [
                self._step(
                    reqs[i],
                    p.judge_prompt.format(description=descriptions[i], request=reqs[i].prompt),
                )
                for i in judged
            ]
            for i, g in zip(judged, await self.base.generate(steps), strict=True):
                if g.ok:
                    verdicts[i] = g.text
                else:
                    failed[i] = f"safety/cot_safety judge step: {g.error}"
        order = sorted(verdicts)
        flags = await asyncio.to_thread(is_refusal, [verdicts[i] for i in order], p.refusal_judge)
        unsafe = {i for i, f in zip(order, flags, strict=True) if f}
        self.last_reasoning = [
            {"description": descriptions.get(i, ""), "verdict": verdicts.get(i, "")}
            for i in range(len(reqs))
        ]
        answer = [i for i in range(len(reqs)) if i not in unsafe and i not in failed]
        out: list[Generation] = [Generation("", error="not run")] * len(reqs)
        if answer:
            for i, g in zip(
                answer, await self.base.generate([reqs[i] for i in answer]), strict=True
            ):
                out[i] = g
        for i in unsafe:
            out[i] = self.refuse("reasoning")
        for i, err in failed.items():
            out[i] = Generation("", error=err)
        return out


@mitigation("safety/cot_safety")
class CoTSafety(WrapperMitigation):
    """Chain-of-thought safety reasoning (describe the image, judge the request), then answer."""

    description = (
        "Chain-of-thought safety: the model describes the image text, judges the request "
        "(a refusal = unsafe), then answers the original request; the reasoning stays out of "
        "the answer."
    )
    params: CoTSafetyParams
    Params = CoTSafetyParams
    pillar = Pillar.SAFETY
    requires = Capability.GENERATE

    def wrap(self, model: Any) -> CoTSafetyModel:
        """Put the describe–judge–answer steps around ``model``."""
        return CoTSafetyModel(model, self.params)
