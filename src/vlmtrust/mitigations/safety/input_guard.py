"""``safety/input_guard`` — OCR the image, classify its text and the prompt, refuse up front.

Typographic jailbreaks (FigStep, MM-SafetyBench) move the harmful request into the image, where
a text-only safety check never looks. The guard reads every image offline with ``rapidocr``
3.x (it ships its PP-OCR ONNX models and depends on headless OpenCV, so it installs without
``libGL``; the older ``rapidocr-onnxruntime`` 1.x is used when only it is installed), joins the
text of all images of a request
in order (so FigStep-Pro's sub-figures are read back as one sentence), and scores the prompt,
the image text and both together with the request harm classifier
(:func:`~vlmtrust.mitigations.safety._guarded.harm_classifier`). When any score reaches
``threshold`` the model never sees the request: a fixed refusal is returned with
``finish_reason = "safety/input_guard:input"``.

Measured effect: docs/results/safety.md#input_guard.

Cost: one OCR pass per distinct image (results are cached by image content). Images are
downscaled to ``ocr_max_side`` first — FigStep's 80-px type stays legible.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import WrapperMitigation, mitigation
from vlmtrust.core.model import GenerateRequest
from vlmtrust.core.params import Params
from vlmtrust.core.sample import image_digest
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.safety._guarded import REFUSAL_TEXT, GuardedModel, harm_classifier

_OCR_LOCK = threading.Lock()
_OCR: dict[str, Any] = {}
_OCR_CACHE: OrderedDict[str, str] = OrderedDict()
_OCR_CACHE_SIZE = 4096


def _engine(max_side: int) -> Any:
    """The offline OCR engine, built once per input size.

    ``rapidocr`` 3.x (headless OpenCV, ships PP-OCR models), else the older
    ``rapidocr-onnxruntime`` 1.x (its OpenCV wheel needs ``libGL``).
    """
    key = f"rapidocr-{max_side}"
    if key not in _OCR:
        v3 = _rapidocr_v3(max_side)
        if v3 is not None:
            _OCR[key] = ("v3", v3)
            return _OCR[key]
        try:
            from rapidocr_onnxruntime import RapidOCR as RapidOCRv1
        except ImportError as e:
            raise InputError(
                "safety/input_guard needs an offline OCR engine: pip install rapidocr "
                f"onnxruntime (or vlmtrust[safety]); import failed: {e}"
            ) from None
        _OCR[key] = (
            "v1",
            RapidOCRv1(
                intra_op_num_threads=2,
                inter_op_num_threads=1,
                det_limit_side_len=max_side,
                det_limit_type="max",
                rec_batch_num=16,
            ),
        )
    return _OCR[key]


#: The models rapidocr 3.x ships in its wheel (its default det/rec pair); the guard names them
#: explicitly so a missing file is one clear error instead of a download attempt.
RAPIDOCR_MODELS = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx"}


def _rapidocr_v3(max_side: int) -> Any:
    """A ``rapidocr`` 3.x engine on its shipped models, or None when 3.x is not installed."""
    try:
        import logging
        from pathlib import Path

        import onnxruntime  # noqa: F401 - rapidocr 3.x loads it lazily; fail here, not mid-run
        import rapidocr
        from rapidocr import RapidOCR
    except ImportError:
        return None
    models = Path(rapidocr.__file__).parent / "models"
    paths = {part: models / name for part, name in RAPIDOCR_MODELS.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(
            f"rapidocr's shipped OCR model {missing[0]} is missing (nothing is downloaded at run "
            "time): reinstall rapidocr>=3.10,<4"
        )
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return RapidOCR(
        params={
            "Global.log_level": "error",  # an image without text is not worth a warning
            "Global.use_cls": False,
            "Det.model_path": str(paths["Det"]),
            "Rec.model_path": str(paths["Rec"]),
            "Det.limit_side_len": max_side,
            "Det.limit_type": "max",
            "Rec.rec_batch_num": 16,
            "EngineConfig.onnxruntime.intra_op_num_threads": 2,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )


def engine_boxes(max_side: int, bgr: Any) -> list[tuple[Any, Any]]:
    """``(corner points, text)`` of each text box the engine finds in the BGR array ``bgr``."""
    version, engine = _engine(max_side)
    if version == "v3":
        res = engine(bgr)
        return list(zip([] if res.boxes is None else res.boxes, res.txts or (), strict=False))
    result, _ = engine(bgr, use_cls=False)
    return [(r[0], r[1]) for r in result or []]


def _read(max_side: int, arr: Any) -> list[tuple[float, float, str]]:
    """``(top, left, text)`` of each text box the engine finds in ``arr``."""
    return [(float(b[0][1]), float(b[0][0]), str(t)) for b, t in engine_boxes(max_side, arr)]


def ocr_input(image: Image.Image, max_side: int) -> tuple[Any, float]:
    """``(bgr, scale)``: ``image`` as the engines' OpenCV BGR array, and the scale applied.

    The image is downscaled so its longer side is at most ``max_side`` (``scale`` 1.0 when it
    was not).
    """
    im = image.convert("RGB")
    scale = min(1.0, max_side / max(im.size))
    if scale < 1.0:
        im = im.resize(
            (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))),
            Image.Resampling.LANCZOS,
        )
    return np.ascontiguousarray(np.asarray(im)[:, :, ::-1]), scale


_V = TypeVar("_V")


def lru_lookup(
    cache: OrderedDict[str, _V], lock: threading.Lock, key: str, size: int, make: Callable[[], _V]
) -> _V:
    """``cache[key]``, made by ``make()`` under ``lock`` on a miss.

    The cache keeps the ``size`` most recently used entries.
    """
    with lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = make()
        cache[key] = value
        if len(cache) > size:
            cache.popitem(last=False)
        return value


def ocr_text(image: Image.Image, *, max_side: int = 320) -> str:
    """The text the OCR engine reads in ``image`` (boxes in reading order joined by spaces).

    Results are cached by image content. The image is downscaled so its longer side is at
    most ``max_side`` pixels.
    """

    def read() -> str:
        bgr, _ = ocr_input(image, max_side)  # both engines take OpenCV BGR
        boxes = sorted(_read(max_side, bgr), key=lambda r: (round(r[0] / 12.0), r[1]))
        return " ".join(t.strip() for _, _, t in boxes if t.strip())

    key = f"{max_side}|{image_digest(image)}"
    return lru_lookup(_OCR_CACHE, _OCR_LOCK, key, _OCR_CACHE_SIZE, read)


def images_text(images: Sequence[Image.Image], max_side: int) -> str:
    """The OCR text of each image (:func:`ocr_text`), the non-empty ones joined by spaces."""
    parts = [ocr_text(im, max_side=max_side) for im in images]
    return " ".join(p for p in parts if p)


class InputGuardParams(Params):
    """Parameters of ``safety/input_guard``."""

    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="harm probability that blocks")
    check_prompt: bool = Field(True, description="also classify the typed prompt")
    ocr: bool = Field(True, description="read text in images (off: prompt-only guard)")
    ocr_max_side: int = Field(320, ge=64, le=2048, description="OCR input size (longer side)")
    refusal: str = Field(REFUSAL_TEXT, min_length=1, description="answer to blocked requests")


class InputGuardedModel(GuardedModel):
    """A generative model behind the OCR + harm-classifier input guard."""

    guard = "safety/input_guard"
    params: InputGuardParams

    def __init__(self, base: Any, params: InputGuardParams) -> None:
        super().__init__(base, params)
        self.last_scores: list[float] = []
        """Harm score of each request of the last screened batch (diagnostics)."""

    def texts_for(self, request: GenerateRequest) -> list[str]:
        """The texts the guard classifies for one request (prompt, image text, both)."""
        p = self.params
        image_text = images_text(request.images, p.ocr_max_side) if p.ocr else ""
        texts = []
        if self.params.check_prompt:
            texts.append(request.prompt)
        if image_text:
            texts.append(image_text)
            texts.append(f"{image_text} {request.prompt}")
        return texts

    def screen(self, requests: Sequence[GenerateRequest]) -> list[bool]:
        """Block requests whose prompt or image text the classifier calls harmful."""
        per_req = [self.texts_for(r) for r in requests]
        flat = [t for ts in per_req for t in ts]
        probs = harm_classifier().proba(flat) if flat else np.zeros(0)
        scores: list[float] = []
        k = 0
        for ts in per_req:
            scores.append(float(probs[k : k + len(ts)].max()) if ts else 0.0)
            k += len(ts)
        self.last_scores = scores
        return [s >= self.params.threshold for s in scores]


@mitigation("safety/input_guard")
class InputGuard(WrapperMitigation):
    """OCR the images, classify the extracted text and the prompt, refuse before the model."""

    pillar = Pillar.SAFETY
    requires = Capability.GENERATE
    Params = InputGuardParams
    wrapper = InputGuardedModel
    description = (
        "Input guard: rapidocr reads the image text; a MiniLM harm classifier scores it with "
        "the prompt; harmful requests get a fixed refusal before the model sees them."
    )
