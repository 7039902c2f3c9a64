"""``privacy/pii_guard`` — black out PII text in images before the model, anonymise its answers.

A wrapper around a generative model, with no ground truth anywhere:

* **inputs** — every image of a request is read offline by rapidocr (the engine of
  ``safety/input_guard``); the recognised lines go through
  :class:`~vlmtrust.mitigations.privacy._pii_text.PiiTextFinder` (Presidio's pattern
  recognisers on the ``NoOpNlpEngine`` — no spaCy model, nothing downloaded — plus rules for
  two-word names, street addresses, short phone numbers and ID numbers); the part of each OCR
  box a finding covers is filled with ``fill`` before the model sees the image. The typed
  prompt is anonymised too (``prompt``);
* **outputs** — each successful answer goes through the same finder and Presidio's
  ``AnonymizerEngine`` (``replace`` operator): every finding becomes ``<NAME>``, ``<EMAIL>``,
  ``<PHONE>``, ``<ADDRESS>``, ``<ID_NUMBER>`` or ``<DOB>``. This also catches PII the model
  recites from memory rather than reads.

Changed answers get ``finish_reason = "privacy/pii_guard:output"``; the guard never refuses.
``kinds`` limits both sides to some PII types. Without NER, names are found by their shape
(two capitalised words), so two-word business names are blacked out too and names of three
words are missed; the benign-document cost is measured by ``privacy/pii_leakage``'s
``over_refusal`` and ``benign_readout``.

Cost: one OCR pass per distinct image (cached by content) and one Presidio pass per image text
and per answer. Needs the ``privacy`` and ``safety`` extras (presidio, rapidocr).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any, Literal

from PIL import Image, ImageDraw
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import WrapperMitigation, mitigation
from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.privacy._pii_text import (
    PiiKind,
    PiiTextFinder,
    image_pii_boxes,
    kinds_field,
)
from vlmtrust.mitigations.safety._guarded import GuardedModel

FILLS: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "white": (255, 255, 255)}


class PiiGuardParams(Params):
    """Parameters of ``privacy/pii_guard``."""

    kinds: list[PiiKind] = kinds_field("redact")
    images: bool = Field(True, description="black out PII text found in images (OCR boxes)")
    prompt: bool = Field(True, description="anonymise PII in the typed prompt")
    answers: bool = Field(True, description="anonymise PII in the model's answers")
    threshold: float = Field(0.3, ge=0.0, le=1.0, description="minimum Presidio score")
    ocr_max_side: int = Field(512, ge=64, le=2048, description="OCR input size (longer side)")
    pad: int = Field(2, ge=0, le=32, description="pixels added around each blacked-out box")
    fill: Literal["black", "white"] = Field("black", description="colour of the redaction")
    template: str = Field(
        "<{kind}>", min_length=1, description="replacement text; {kind}: the PII type"
    )


def _check_installed() -> None:
    for mod, extra in (("presidio_analyzer", "privacy"), ("presidio_anonymizer", "privacy")):
        try:
            importlib.import_module(mod)
        except ImportError:
            raise InputError(
                f'privacy/pii_guard needs {mod.replace("_", "-")}: pip install "vlmtrust[{extra}]"'
            ) from None


class PiiGuardedModel(GuardedModel):
    """A generative model behind the PII guard (see the module docstring)."""

    guard = "privacy/pii_guard"
    params: PiiGuardParams

    def __init__(self, base: Any, params: PiiGuardParams) -> None:
        super().__init__(base, params)
        _check_installed()
        self.finder = PiiTextFinder(params.kinds, params.threshold)
        self.redacted_boxes = 0
        """How many image regions the guard blacked out so far."""
        self.anonymised = 0
        """How many answers the guard changed so far."""

    def redact_image(self, image: Image.Image) -> Image.Image:
        """A copy of ``image`` with its PII text regions filled (the image itself if none)."""
        p = self.params
        boxes = image_pii_boxes(image, self.finder, max_side=p.ocr_max_side, pad=p.pad)
        if not boxes:
            return image
        out = image.convert("RGB")
        draw = ImageDraw.Draw(out)
        for b in boxes:
            draw.rectangle(b.box, fill=FILLS[p.fill])
        self.redacted_boxes += len(boxes)
        return out

    def anonymise(self, text: str) -> str:
        """``text`` with every PII finding replaced by the template (Presidio's anonymizer)."""
        spans = self.finder.find(text)
        if not spans:
            return text
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results = [RecognizerResult(s.entity, s.start, s.end, s.score) for s in spans]
        operators = {
            s.entity: OperatorConfig(
                "replace", {"new_value": self.params.template.format(kind=s.kind.upper())}
            )
            for s in spans
        }
        res = _anonymizer(AnonymizerEngine).anonymize(
            text=text, analyzer_results=results, operators=operators
        )
        return str(res.text)

    def prepare(self, requests: Sequence[GenerateRequest]) -> list[GenerateRequest]:
        """Black out PII in each request's images and anonymise its prompt."""
        out = []
        for r in requests:
            images = tuple(self.redact_image(im) for im in r.images) if self.params.images else None
            prompt = self.anonymise(r.prompt) if self.params.prompt else r.prompt
            changes: dict[str, Any] = {"prompt": prompt}
            if images is not None:
                changes["images"] = images
            out.append(dataclasses.replace(r, **changes))
        return out

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Redact the inputs, generate, anonymise each successful answer; order kept."""
        sent = await asyncio.to_thread(self.prepare, list(requests))
        gens = list(await self.base.generate(sent))
        if not self.params.answers:
            return gens
        return await asyncio.to_thread(self._review_answers, gens)

    def _review_answers(self, gens: Sequence[Generation]) -> list[Generation]:
        out = []
        for g in gens:
            if not g.ok:
                out.append(g)
                continue
            text = self.anonymise(g.text)
            if text != g.text:
                self.anonymised += 1
                g = Generation(text=text, finish_reason=f"{self.guard_name}:output")
            out.append(g)
        return out


_ANON: list[Any] = []


def _anonymizer(cls: Any) -> Any:
    if not _ANON:
        _ANON.append(cls())
    return _ANON[0]


@mitigation("privacy/pii_guard")
class PiiGuard(WrapperMitigation):
    """Black out PII text regions in images (OCR + Presidio) and anonymise answers."""

    pillar = Pillar.PRIVACY
    requires = Capability.GENERATE
    Params = PiiGuardParams
    wrapper = PiiGuardedModel
    description = (
        "PII guard: rapidocr reads the image text, Presidio patterns plus name/address/ID rules "
        "find PII in it and the OCR boxes are blacked out before the model sees the image; "
        "Presidio's anonymizer replaces PII in the answers."
    )
