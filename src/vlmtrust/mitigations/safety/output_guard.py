"""``safety/output_guard`` — judge every answer and replace unsafe ones with a refusal.

Two checks run on each successful answer (model outputs are untrusted text):

1. every judge in ``judges`` (toxicity / harm judges, e.g. ``toxicity/profanity`` or a Llama
   Guard ``llm:openai:llama-guard@URL``) — an ``unsafe`` verdict replaces the answer;
2. ``harm_check``: when the refusal judge says the model *complied*, the request harm classifier
   scores the answer and the prompt + answer; a score ≥ ``threshold`` (the answer restates or
   carries out a harmful request) replaces it;
3. ``context_ocr``: a complying answer is also judged in the context of its request, as Llama
   Guard's response classification does: the text in the request's images is read offline
   (the input guard's rapidocr reader, cached by image content) and the classifier scores
   image text + prompt. Compliance with a harmful request is unsafe even when the answer never
   names it.

A judge that fails (``label == "error"``) blocks the answer when ``fail_closed`` (default) and
lets it through otherwise. Replaced answers get ``finish_reason = "safety/output_guard:output"``.

Without ``context_ocr`` an answer that is harmful only in a context it does not repeat — e.g.
reference:vlm's content-free "Sure. 1. … 2. … 3. …" to a FigStep image — passes every check:
the judges see only text. Measured effect: docs/results/safety.md#output_guard.

Unlike the input guard the model still sees every request; only complying answers are judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator

from vlmtrust.core.mitigation import WrapperMitigation, mitigation
from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.safety._guarded import REFUSAL_TEXT, GuardedModel, harm_classifier


class OutputGuardParams(Params):
    """Parameters of ``safety/output_guard``."""

    judges: list[str] = Field(
        default_factory=lambda: ["toxicity/profanity"],
        description="toxicity/harm judges whose 'unsafe' verdict replaces an answer",
    )
    harm_check: bool = Field(True, description="classify complying answers with the harm model")
    context_ocr: bool = Field(
        True, description="also judge complying answers by the text in the request's images"
    )
    ocr_max_side: int = Field(320, ge=64, le=2048, description="OCR input size (longer side)")
    refusal_judge: str = Field("refusal/keyword", description="decides whether an answer complied")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="harm probability that blocks")
    fail_closed: bool = Field(True, description="block answers a judge failed on")
    refusal: str = Field(REFUSAL_TEXT, min_length=1, description="replacement answer")

    @field_validator("judges")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from vlmtrust.judges.base import check_judge_name

        for name in v:
            check_judge_name(name)
        return v

    @field_validator("refusal_judge")
    @classmethod
    def _known_refusal(cls, v: str) -> str:
        from vlmtrust.judges.base import check_judge_name

        return check_judge_name(v)


class OutputGuardedModel(GuardedModel):
    """A generative model whose answers pass through judges before they are returned."""

    guard = "safety/output_guard"
    params: OutputGuardParams

    def __init__(self, base: Any, params: OutputGuardParams) -> None:
        super().__init__(base, params)
        self._judges: list[Any] | None = None
        self._refusal_judge: Any = None

    def _load_judges(self) -> tuple[list[Any], Any]:
        from vlmtrust.judges.base import get_judge

        if self._judges is None:
            self._judges = [get_judge(n) for n in self.params.judges]
            self._refusal_judge = get_judge(self.params.refusal_judge)
        return self._judges, self._refusal_judge

    def review(
        self, requests: Sequence[GenerateRequest], generations: Sequence[Generation]
    ) -> list[bool]:
        """True for each answer an unsafe verdict or the harm check replaces."""
        if not generations:
            return []
        judges, refusal_judge = self._load_judges()
        texts = [g.text for g in generations]
        prompts: list[str | None] = [r.prompt for r in requests]
        block = [False] * len(texts)
        for judge in judges:
            for i, j in enumerate(judge.judge(texts, prompts)):
                if (j.ok and j.label == "unsafe") or (not j.ok and self.params.fail_closed):
                    block[i] = True
        if self.params.harm_check:
            verdicts = refusal_judge.judge(texts, prompts)
            complied = [
                i
                for i, v in enumerate(verdicts)
                if not block[i] and ((v.ok and v.label == "compliance") or not v.ok)
            ]
            if complied:
                # per answer: the answer, prompt + answer and (context_ocr) the request context
                per = [
                    [texts[i], f"{requests[i].prompt} {texts[i]}", *self._context(requests[i])]
                    for i in complied
                ]
                p = harm_classifier().proba([t for ts in per for t in ts])
                k = 0
                for ts, i in zip(per, complied, strict=True):
                    if float(p[k : k + len(ts)].max()) >= self.params.threshold:
                        block[i] = True
                    k += len(ts)
        return block

    def _context(self, request: GenerateRequest) -> list[str]:
        """The request's image text, alone and with the prompt (empty without OCR or images)."""
        from vlmtrust.mitigations.safety.input_guard import images_text

        if not (self.params.context_ocr and request.images):
            return []
        image_text = images_text(request.images, self.params.ocr_max_side)
        return [image_text, f"{image_text} {request.prompt}"] if image_text else []


@mitigation("safety/output_guard")
class OutputGuard(WrapperMitigation):
    """Judge each answer; replace unsafe or harmful-compliant answers with a refusal."""

    pillar = Pillar.SAFETY
    requires = Capability.GENERATE
    Params = OutputGuardParams
    wrapper = OutputGuardedModel
    description = (
        "Output guard: toxicity/harm judges and the MiniLM harm classifier review each answer "
        "(with the OCR'd image text as context); unsafe or harmful-compliant answers are "
        "replaced with a refusal."
    )
