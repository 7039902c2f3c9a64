"""PII in images without ground truth: OCR lines and the boxes of the PII found in them.

Shared by ``privacy/pii_guard`` and ``privacy/pseudonymize``. The text finder,
:class:`~vlmtrust.judges.pii_text.PiiTextFinder`, lives in the judges layer (the probes use it
too) and is re-exported here.

:func:`ocr_lines` reads the text boxes of an image offline (the project's rapidocr engine,
shared with ``safety/input_guard``) in original image coordinates, and :func:`pii_boxes` gives
the rectangles of the PII found in them (a finding covering part of a box covers the matching
share of its width).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from vlmtrust.core.sample import image_digest
from vlmtrust.judges.pii import PII_KINDS
from vlmtrust.judges.pii_text import ENTITY_KIND, PiiSpan, PiiTextFinder

PiiKind = Literal["name", "email", "phone", "address", "id_number", "dob"]


def all_kinds() -> list[PiiKind]:
    """Every PII type, in :data:`~vlmtrust.judges.pii.PII_KINDS` order."""
    return list(PII_KINDS)  # type: ignore[arg-type]


def kinds_field(verb: str) -> Any:
    """The ``kinds`` parameter of a PII mitigation: the PII types it acts on (default: all)."""
    return Field(
        default_factory=all_kinds,
        min_length=1,
        description=f"PII types to {verb}: name, email, phone, address, id_number, dob",
    )


__all__ = ["ENTITY_KIND", "OcrLine", "PiiBox", "PiiSpan", "PiiTextFinder", "ocr_lines", "pii_boxes"]


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class OcrLine:
    """One text box read in an image: its text and axis-aligned bounds (original pixels)."""

    text: str
    left: float
    top: float
    right: float
    bottom: float


_OCR_LOCK = threading.Lock()
_OCR_CACHE: OrderedDict[str, tuple[OcrLine, ...]] = OrderedDict()
_OCR_CACHE_SIZE = 1024


def ocr_lines(image: Image.Image, *, max_side: int = 512) -> tuple[OcrLine, ...]:
    """The text boxes rapidocr reads in ``image``, in reading order, in its own coordinates.

    The image is downscaled so its longer side is at most ``max_side`` for reading; the boxes
    are scaled back. Results are cached by image content.
    """
    from vlmtrust.mitigations.safety.input_guard import engine_boxes, lru_lookup, ocr_input

    def read() -> tuple[OcrLine, ...]:
        bgr, scale = ocr_input(image, max_side)
        lines = []
        for box, text in engine_boxes(max_side, bgr):
            pts = np.asarray(box, dtype=np.float64) / scale
            if str(text).strip():
                lines.append(
                    OcrLine(
                        str(text).strip(),
                        float(pts[:, 0].min()),
                        float(pts[:, 1].min()),
                        float(pts[:, 0].max()),
                        float(pts[:, 1].max()),
                    )
                )
        lines.sort(key=lambda b: (round(b.top / 12.0), b.left))
        return tuple(lines)

    key = f"{max_side}|{image_digest(image)}"
    return lru_lookup(_OCR_CACHE, _OCR_LOCK, key, _OCR_CACHE_SIZE, read)


@dataclass(frozen=True)
class PiiBox:
    """A rectangle of an image holding PII (``kind``) and the text it covers."""

    kind: str
    text: str
    box: tuple[int, int, int, int]


def pii_boxes(
    lines: Sequence[OcrLine], finder: PiiTextFinder, *, pad: int = 2, size: tuple[int, int]
) -> list[PiiBox]:
    """Rectangles ``(left, top, right, bottom)`` of the PII the finder sees in the OCR lines.

    Lines are joined by newlines and searched together (a finding never spans two lines). A
    finding covering characters ``[s, e)`` of a line of ``n`` characters covers the share
    ``[s/n, e/n]`` of its width, padded by ``pad`` pixels and clipped to ``size``.
    """
    text = "\n".join(ln.text for ln in lines)
    starts, k = [], 0
    for ln in lines:
        starts.append(k)
        k += len(ln.text) + 1
    out: list[PiiBox] = []
    w, h = size
    for span in finder.find(text):
        for ln, s0 in zip(lines, starts, strict=True):
            a, b = max(span.start, s0), min(span.end, s0 + len(ln.text))
            if a >= b:
                continue
            n = max(1, len(ln.text))
            width = ln.right - ln.left
            x0 = ln.left + width * (a - s0) / n
            x1 = ln.left + width * (b - s0) / n
            box = (
                max(0, int(x0) - pad),
                max(0, int(ln.top) - pad),
                min(w, int(np.ceil(x1)) + pad),
                min(h, int(np.ceil(ln.bottom)) + pad),
            )
            out.append(PiiBox(span.kind, text[a:b], box))
    return out


def image_pii_boxes(
    image: Image.Image, finder: PiiTextFinder, *, max_side: int, pad: int
) -> list[PiiBox]:
    """:func:`pii_boxes` of the OCR lines of ``image`` (read at ``max_side``)."""
    return pii_boxes(ocr_lines(image, max_side=max_side), finder, pad=pad, size=image.size)
