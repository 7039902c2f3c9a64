"""``fairness/self_debias`` — self-debiasing of a generative VLM at inference time (wrapper).

Three modes, after Gallegos et al. 2024 ("Self-Debiasing Large Language Models: Zero-Shot
Recognition and Reduction of Stereotypes"), carried over to image + text requests. The wording
is the project's own.

* ``instruction`` (one call): a system instruction and a reminder after the request: judge
  people by what the image shows, never by their group; answer "unclear" when the image cannot
  decide.
* ``explain`` (two calls): the model first states which assumptions the request invites and what
  the image actually shows; the second call asks the request again with that explanation and the
  instruction.
* ``reprompt`` (two calls): the model answers; it is then shown its answer and asked to give it
  again without relying on stereotypes (answering "unclear" when the image cannot decide).

A failed first call returns that error for the request; a failed second call too (the first
answer is never passed off as the debiased one). Evaluate with the fairness probes beside
capability (``capability/vqa``): a wrapper that answers "unclear" to everything would remove
bias and usefulness together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from pydantic import Field

from vlmtrust.core.mitigation import WrapperMitigation, mitigation
from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.safety._guarded import GuardedModel

__all__ = ["SelfDebias", "SelfDebiasedModel", "SelfDebiasParams"]

INSTRUCTION = (
    "Treat every person the same whatever their appearance, skin tone, gender, age or any other "
    "group they seem to belong to. Judge only by what the image actually shows. If the image "
    "does not show the answer, say that it is unclear instead of guessing."
)
"""The system instruction of every mode."""

REMINDER = (
    "Do not rely on stereotypes about the people shown; if the image cannot decide it, answer "
    "'unclear'."
)
"""The reminder appended to the (final) request."""

EXPLAIN = (
    "Before answering, list the assumptions about the people in the image that this request "
    "could tempt someone to make, and say what the image actually shows. Do not answer the "
    "request yet.\n\nRequest: {prompt}"
)
"""The first call of ``explain`` mode."""

WITH_EXPLANATION = "{prompt}\n\nWhat the image shows, and the assumptions to avoid: {note}"
"""The second call of ``explain`` mode (the reminder follows)."""

REPROMPT = (
    "{prompt}\n\nAn earlier answer was: {answer}\nGive the answer again, removing anything that "
    "relies on stereotypes about the people shown."
)
"""The second call of ``reprompt`` mode (the reminder follows)."""

Mode = Literal["instruction", "explain", "reprompt"]


PEOPLE_WORDS = (
    r"\b(person|people|persons|man|men|woman|women|boy|girl|child|he|she|his|her|him|they|"
    r"them|who|whose|someone|somebody|job|occupation|profession|work|leader|trustworthy|"
    r"competent|smart|lazy|dangerous|criminal|rich|poor|nurse|doctor|pilot|chef|teacher|"
    r"builder|farmer|engineer)\b"
)
"""A request matching this (case-insensitive) is about people and goes through the scheme."""


class SelfDebiasParams(Params):
    """Parameters of ``fairness/self_debias``."""

    mode: Mode = Field("instruction", description="instruction (1 call), explain or reprompt (2)")
    only_about_people: bool = Field(
        True,
        description="apply the scheme only to requests that mention people (other requests go "
        "to the model unchanged, so capability on other tasks is kept)",
    )
    note_tokens: int = Field(
        96, ge=8, le=2048, description="answer length of the first call (explain / reprompt)"
    )


def _join(a: str | None, b: str) -> str:
    return f"{a}\n\n{b}" if a else b


class SelfDebiasedModel(GuardedModel):
    """A generative model whose requests go through a self-debiasing prompt scheme."""

    guard = "fairness/self_debias"
    params: SelfDebiasParams

    def _final(self, r: GenerateRequest, prompt: str) -> GenerateRequest:
        return replace(r, prompt=f"{prompt}\n\n{REMINDER}", system=_join(r.system, INSTRUCTION))

    def applies(self, request: GenerateRequest) -> bool:
        """Whether ``request`` goes through the scheme (see ``only_about_people``)."""
        import re

        if not self.params.only_about_people:
            return True
        return re.search(PEOPLE_WORDS, request.prompt, flags=re.IGNORECASE) is not None

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """One answer per request, in order; requests about people after the mode's calls."""
        reqs = list(requests)
        about = [i for i, r in enumerate(reqs) if self.applies(r)]
        other = [i for i in range(len(reqs)) if i not in set(about)]
        out: list[Generation | None] = [None] * len(reqs)
        if other:
            for i, g in zip(other, await self.base.generate([reqs[i] for i in other]), strict=True):
                out[i] = g
        if about:
            for i, g in zip(about, await self._debiased([reqs[i] for i in about]), strict=True):
                out[i] = g
        return [g if g is not None else Generation("", error="not run") for g in out]

    async def _debiased(self, reqs: list[GenerateRequest]) -> list[Generation]:
        mode = self.params.mode
        if mode == "instruction":
            return list(await self.base.generate([self._final(r, r.prompt) for r in reqs]))
        n = self.params.note_tokens
        if mode == "explain":
            first = [
                replace(r, prompt=EXPLAIN.format(prompt=r.prompt), max_new_tokens=n) for r in reqs
            ]
        else:
            first = [replace(r, max_new_tokens=n) for r in reqs]
        notes = list(await self.base.generate(first))
        out: list[Generation | None] = [None if g.ok else g for g in notes]
        todo = [i for i, g in enumerate(notes) if g.ok]
        second = []
        for i in todo:
            r, note = reqs[i], notes[i].text.strip()
            if mode == "explain":
                prompt = WITH_EXPLANATION.format(prompt=r.prompt, note=note)
            else:
                prompt = REPROMPT.format(prompt=r.prompt, answer=note)
            second.append(self._final(r, prompt))
        if second:
            for i, g in zip(todo, await self.base.generate(second), strict=True):
                out[i] = g
        return [g if g is not None else Generation("", error="not run") for g in out]


@mitigation("fairness/self_debias")
class SelfDebias(WrapperMitigation):
    """Self-debiasing instructions (instruction, explain-then-answer, re-prompting)."""

    pillar = Pillar.FAIRNESS
    requires = Capability.GENERATE
    Params = SelfDebiasParams
    wrapper = SelfDebiasedModel
    description = (
        "Self-debiasing (Gallegos et al. 2024): an instruction to judge people only by what the "
        "image shows and to answer 'unclear' otherwise; optionally explain-then-answer or "
        "re-prompting with the model's own first answer."
    )
