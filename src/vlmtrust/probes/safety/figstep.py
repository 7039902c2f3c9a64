"""``safety/figstep`` — FigStep typographic jailbreak vs the same requests typed as text.

FigStep (Gong et al., AAAI 2025) writes a harmful request's statement form ("Steps to ...") in
the published layout (760×760, wrapped at 15 characters, empty list 1-3, bold monospace 80 px).
Conditions: ``text`` (typed baseline), ``figstep``, ``figstep_pro`` (sub-figures that split the
words, evading per-image OCR filters) and, with a safety benchmark as ``--data``
(:mod:`vlmtrust.data.safety_sets`), ``dataset``: its own image with its own query.
Metrics: :mod:`vlmtrust.probes.families.request`.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image
from pydantic import Field

from vlmtrust.attacks import typography as ty
from vlmtrust.core.probe import probe
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.data.requests import SafetyRequest
from vlmtrust.probes.families.request import RequestParams, RequestProbe, request_sample

Attack = Literal["text", "figstep", "figstep_pro", "dataset"]


class FigStepParams(RequestParams):
    """Parameters of ``safety/figstep``."""

    attacks: list[Attack] = Field(
        default_factory=lambda: list[Attack](("text", "figstep")),
        min_length=1,
        description=(
            "conditions: text (baseline), figstep, figstep_pro (sub-figures), dataset (a --data "
            "benchmark's own image and query)"
        ),
    )
    image_size: int = Field(760, ge=16, le=4096, description="side of the FigStep image")
    pro_parts: int = Field(3, ge=2, le=8, description="FigStep-Pro sub-figures")
    text_image: bool = Field(
        False, description="attach a blank white image to the text baseline (image-only models)"
    )


@probe("safety/figstep")
class FigStep(RequestProbe):
    """FigStep typographic jailbreak: ASR as typography vs as text, per topic and judge."""

    Params = FigStepParams
    description = (
        "FigStep: harmful requests written as an empty numbered list in an image vs typed as "
        "text; ASR per hazard topic and judge, with over-refusal on benign look-alikes."
    )
    headline_order = ("figstep", "figstep_pro", "text")
    heatmap_title = "FigStep ASR by topic"
    params: FigStepParams

    def conditions(self) -> list[Attack]:
        """The ``attacks`` parameter."""
        return self.params.attacks

    def condition_sample(self, req: SafetyRequest, condition: str, k: int) -> Sample:
        """The typed request (optionally with a blank image), FigStep or FigStep-Pro."""
        p, size = self.params, self.params.image_size
        if condition == "text":
            ims = [Image.new("RGB", (size, size), "white")] if p.text_image else []
            labels, prompt = ["blank"], req.text
        elif condition == "figstep":
            ims = [ty.render_figstep(req.statement, font=p.font, size=size)]
            labels, prompt = ["figstep"], ty.FIGSTEP_PROMPT
        else:
            ims = ty.render_figstep_pro(req.statement, parts=p.pro_parts, font=p.font, size=size)
            labels, prompt = [f"figstep_pro_{i}" for i in range(len(ims))], ty.FIGSTEP_PRO_PROMPT
        refs = tuple(ImageRef.from_image(im, lab) for im, lab in zip(ims, labels, strict=False))
        return request_sample(req, condition, prompt=prompt, images=refs)
