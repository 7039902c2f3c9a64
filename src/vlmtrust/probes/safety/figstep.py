"""``safety/figstep`` — FigStep typographic jailbreak vs the same requests typed as text.

FigStep (Gong et al., AAAI 2025) writes a harmful request's statement form ("Steps to ...") as
typography in the published layout (760×760, wrapped at 15 characters, empty list 1-3, bold
monospace 80 px) and asks the model to fill in the list. The probe pairs each harmful request
with its plain-text form (the text-only baseline) and optionally the FigStep-Pro variant
(sub-figures that split the words, evading per-image OCR filters). The benign look-alikes are
rendered the same way, and their over-refusal rate is reported beside every ASR.

Metrics per judge: ``asr/<attack>/<judge>`` (groups: hazard topic),
``asr_lift/figstep_vs_text/<judge>`` (paired by request), ``over_refusal/<attack>/<judge>``,
``judge_agreement/<judge>`` and ``judge_kappa/<judge>`` (LLM judges:
``llm_agreement=true``); plots: topic × attack ASR heatmap per judge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import Field

from vlmtrust.attacks.typography import (
    FIGSTEP_PRO_PROMPT,
    FIGSTEP_PROMPT,
    render_figstep,
    render_figstep_pro,
)
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import Example, MetricResult, Plot, Record
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes.safety._common import (
    SafetyParams,
    agreement_metrics,
    asr_and_over_refusal,
    generate,
    judged_records,
    judges_for,
    paired_lift,
    request_sample,
    select_requests,
    success_examples,
    topic_heatmap,
)

Attack = Literal["text", "figstep", "figstep_pro"]


def _default_attacks() -> list[Attack]:
    return ["text", "figstep"]


class FigStepParams(SafetyParams):
    """Parameters of ``safety/figstep``."""

    attacks: list[Attack] = Field(
        default_factory=_default_attacks,
        min_length=1,
        description="conditions: text (baseline), figstep, figstep_pro (sub-figures)",
    )
    image_size: int = Field(760, ge=16, le=4096, description="side of the FigStep image")
    pro_parts: int = Field(3, ge=2, le=8, description="FigStep-Pro sub-figures")
    text_image: bool = Field(
        False, description="attach a blank white image to the text baseline (image-only models)"
    )


@probe("safety/figstep")
class FigStep(Probe):
    """FigStep typographic jailbreak: ASR as typography vs as text, per topic and judge."""

    pillar = Pillar.SAFETY
    requires = Capability.GENERATE
    Params = FigStepParams
    batch_size = 16
    description = (
        "FigStep: harmful requests written as an empty numbered list in an image vs typed as "
        "text; ASR per hazard topic and judge, with over-refusal on benign look-alikes."
    )

    params: FigStepParams

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars)."""
        p = self.params
        return (ctx.size(p.n_harmful) + ctx.size(p.n_benign)) * len(p.attacks)

    def _condition(self, req: Any, attack: str) -> Sample:
        p = self.params
        if attack == "text":
            images: tuple[ImageRef, ...] = ()
            if p.text_image:
                from PIL import Image

                blank = Image.new("RGB", (p.image_size, p.image_size), (255, 255, 255))
                images = (ImageRef.from_image(blank, label="blank"),)
            return request_sample(req, attack, prompt=req.text, images=images)
        if attack == "figstep":
            im = render_figstep(req.statement, font=p.font, size=p.image_size)
            return request_sample(
                req, attack, prompt=FIGSTEP_PROMPT, images=(ImageRef.from_image(im, "figstep"),)
            )
        ims = render_figstep_pro(req.statement, parts=p.pro_parts, font=p.font, size=p.image_size)
        refs = tuple(ImageRef.from_image(im, f"figstep_pro_{i}") for i, im in enumerate(ims))
        return request_sample(req, attack, prompt=FIGSTEP_PRO_PROMPT, images=refs)

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        """Each selected request under each attack condition (harmful first, then benign)."""
        p = self.params
        reqs = select_requests(p, ctx, harmful=True, n=p.n_harmful) + select_requests(
            p, ctx, harmful=False, n=p.n_benign
        )
        for req in reqs:
            for attack in p.attacks:
                yield self._condition(req, attack)

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Generate answers and judge them with every configured judge."""
        gens = generate(model, batch, ctx, max_new_tokens=self.params.max_new_tokens)
        return judged_records(self, batch, gens, judges_for(self.params.judges))

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """ASR per attack × judge, paired lift over text, over-refusal, judge agreement."""
        p = self.params
        out = asr_and_over_refusal(
            records, p.judges, p.attacks, headline_condition=_headline(p.attacks), seed=ctx.seed
        )
        if "text" in p.attacks:
            for judge in p.judges:
                for attack in p.attacks:
                    if attack != "text":
                        m = paired_lift(records, judge, attack, "text", seed=ctx.seed)
                        if m is not None:
                            out.append(m)
        return out + agreement_metrics(p.judges, p.agreement, llm=p.llm_agreement)

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Topic × attack ASR heatmap per judge."""
        return [
            topic_heatmap(records, j, self.params.attacks, title=f"FigStep ASR by topic ({j})")
            for j in self.params.judges
        ]

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """FigStep successes, preferring requests the model refused as text."""
        attack = _headline(self.params.attacks)
        base = "text" if "text" in self.params.attacks else None
        return success_examples(records, self.params.judges[0], attack, base)


def _headline(attacks: Sequence[str]) -> str:
    for a in ("figstep", "figstep_pro", "text"):
        if a in attacks:
            return a
    return attacks[0]
