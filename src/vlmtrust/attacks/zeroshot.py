"""Zero-shot scoring shared by attacks, probes and mitigations.

Class prompts, the text-embedding cache, top-1 zero-shot predictions with an abstaining
model's abstentions, lenient matching of a short VQA answer to a class name, and the
zero-shot OOD scores (MCM, MaxLogit, Energy) with their ID-threshold calibration.

Conventions (REFERENCE.md): zero-shot scores are raw cosines ``s_i = <v, t_i>`` of
L2-normalised embeddings, in float64; scaling (``logit_scale``) is applied explicitly where a
probability is needed. Abstaining models (e.g. the ``robustness/ood_guard`` wrapper) expose
``abstain(images, class_texts)``; an abstention never counts as a correct classification.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from vlmtrust.core.errors import InputError

DEFAULT_TEMPLATE = "a photo of a {}"
VQA_QUESTION = "What shape is in the image? Answer with one word."

F64 = NDArray[np.float64]


# --------------------------------------------------------------------------- prompts


def class_prompts(classes: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """Class prompts ``template.format(c)``.

    Example:
        >>> class_prompts(["circle", "square"])
        ['a photo of a circle', 'a photo of a square']
    """
    if "{}" not in template:
        raise InputError(f"class template {template!r} has no '{{}}' placeholder for the class")
    return [template.format(c) for c in classes]


# --------------------------------------------------------------------------- zero-shot


class TextCache:
    """Caches text embeddings per model fingerprint and text (class prompts repeat a lot)."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, str], NDArray[np.float64]] = {}

    def embed(self, model: Any, texts: Sequence[str]) -> F64:
        """Embeddings of ``texts`` (float64, rows in order)."""
        fp = str(getattr(model, "fingerprint", id(model)))
        missing = [t for t in dict.fromkeys(texts) if (fp, t) not in self._store]
        if missing:
            emb = np.asarray(model.embed_texts(missing), dtype=np.float64)
            for t, e in zip(missing, emb, strict=True):
                self._store[(fp, t)] = e
        return np.stack([self._store[(fp, t)] for t in texts])


def embed_images(model: Any, images: Sequence[Image.Image]) -> F64:
    """Image embeddings (float64), one row per image.

    The same image object appearing several times (a probe's variants of one image) is
    embedded once.
    """
    unique: dict[int, int] = {}
    order = [unique.setdefault(id(im), len(unique)) for im in images]
    distinct = list({id(im): im for im in images}.values())
    if not distinct:
        return np.zeros((0, 0))
    img = np.asarray(model.embed_images(distinct), dtype=np.float64)
    return np.asarray(img[order], dtype=np.float64)


def cosines(model: Any, images: Sequence[Image.Image], text_emb: F64) -> F64:
    """Raw cosines ``(n_images, n_texts)`` in float64."""
    if not images:
        return np.zeros((0, text_emb.shape[0]))
    return np.asarray(embed_images(model, images) @ text_emb.T, dtype=np.float64)


def softmax(logits: F64, axis: int = -1) -> F64:
    """Numerically stable softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=axis, keepdims=True), dtype=np.float64)


def logit_scale(model: Any) -> float:
    """The model's learned temperature (CLIP's ``logit_scale``, already exponentiated)."""
    scale = getattr(model, "logit_scale", None)
    if scale is None or not np.isfinite(float(scale)) or float(scale) <= 0:
        return 100.0
    return float(scale)


def abstentions(model: Any, images: Sequence[Image.Image], class_texts: Sequence[str]) -> F64:
    """1.0 where an abstaining model (``abstain``) abstains, else 0.0 (all 0 otherwise)."""
    fn = getattr(model, "abstain", None)
    if fn is None:
        return np.zeros(len(images))
    return np.asarray(fn(list(images), list(class_texts)), dtype=np.float64)


@dataclass(frozen=True)
class Predictions:
    """Zero-shot predictions of a batch."""

    index: NDArray[np.int64]
    cos: F64
    abstained: F64


def predict(
    model: Any,
    images: Sequence[Image.Image],
    class_texts: Sequence[str],
    cache: TextCache,
    *,
    image_emb: F64 | None = None,
) -> Predictions:
    """Top-1 zero-shot predictions (argmax of raw cosines) plus the model's abstentions.

    ``image_emb`` (rows aligned with ``images``) skips re-embedding the images.
    """
    txt = cache.embed(model, class_texts)
    img = embed_images(model, images) if image_emb is None else image_emb
    cos = np.asarray(img @ txt.T, dtype=np.float64)
    return Predictions(
        index=np.argmax(cos, axis=1).astype(np.int64),
        cos=cos,
        abstained=abstentions(model, images, class_texts),
    )


# --------------------------------------------------------------------------- VQA

_WORD = re.compile(r"[a-z0-9]+")
_FILLER = {"a", "an", "the", "it", "is", "this", "that", "its", "it's", "shape", "answer"}


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("es") and word[:-2].endswith(("sh", "ch", "x", "s")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def answer_class(answer: str, classes: Sequence[str], *, window: int = 6) -> str | None:
    """The class an answer names: the first class mentioned among its first words.

    Lenient (case, punctuation, articles, plurals, "It is a ..." filler) but not
    "anywhere": a class named after ``window`` content words does not count.

    Example:
        >>> answer_class("It is a Circle.", ["circle", "square"])
        'circle'
        >>> answer_class("squares", ["circle", "square"])
        'square'
        >>> answer_class("I don't know", ["circle", "square"]) is None
        True
    """
    words = [_stem(w) for w in _WORD.findall(answer.lower()) if w not in _FILLER][:window]
    keyed = {tuple(_stem(w) for w in _WORD.findall(c.lower())): c for c in classes}
    for i in range(len(words)):
        for key, cls in keyed.items():
            if key and tuple(words[i : i + len(key)]) == key:
                return cls
    return None


def answer_correct(answer: str, target: str, classes: Sequence[str]) -> bool:
    """True when the first class the answer names is ``target``."""
    return answer_class(answer, list(classes) + ([target] if target not in classes else [])) == (
        target
    )


# --------------------------------------------------------------------------- OOD scores


def mcm_score(cos: ArrayLike, *, tau: float = 1.0) -> F64:
    """Maximum concept matching: ``max softmax(s / tau)`` per row, float64.

    Example:
        >>> float(mcm_score([[0.3, 0.1]])[0]) > 0.5
        True
    """
    s = np.asarray(cos, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] == 0:
        raise InputError("MCM needs a (n_images, n_classes) cosine matrix with >= 1 class")
    return np.asarray(softmax(s / tau).max(axis=1), dtype=np.float64)


def max_logit_score(cos: ArrayLike) -> F64:
    """``max_i s_i`` per row."""
    return np.asarray(np.asarray(cos, dtype=np.float64).max(axis=1), dtype=np.float64)


def energy_score(cos: ArrayLike, *, temperature: float = 1.0) -> F64:
    """``T * logsumexp(s / T)`` per row (higher = more in-distribution)."""
    from scipy.special import logsumexp

    s = np.asarray(cos, dtype=np.float64)
    return np.asarray(temperature * logsumexp(s / temperature, axis=1), dtype=np.float64)


SCORES: dict[str, Callable[[ArrayLike], F64]] = {
    "mcm": mcm_score,
    "max_logit": max_logit_score,
    "energy": energy_score,
}


def threshold_at_tpr(id_scores: ArrayLike, *, tpr: float = 0.95) -> float:
    """The score threshold accepting (``score >= t``) at least ``tpr`` of the ID scores."""
    s = np.sort(np.asarray(id_scores, dtype=np.float64))
    if s.size == 0:
        raise InputError("cannot calibrate a threshold on an empty ID set; give ID images")
    k = int(np.floor((1.0 - tpr) * s.size + 1e-9))
    return float(s[min(k, s.size - 1)])
