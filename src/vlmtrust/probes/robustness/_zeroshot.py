"""Shared helpers of the robustness probes: data, class prompts, zero-shot scoring, VQA matching.

Conventions (REFERENCE.md): zero-shot scores are raw cosines ``s_i = <v, t_i>`` of
L2-normalised embeddings, in float64; scaling (``logit_scale``) is applied explicitly where a
probability is needed.

Abstaining models (e.g. the ``robustness/ood_guard`` wrapper) expose ``abstain(images,
class_texts)``. In every zero-shot probe here an abstention counts as *not correct* (an
abstention never is a correct classification) and is reported separately as
``abstention_rate``; see :func:`predict`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import Probe, ProbeContext
from vlmtrust.core.sample import ImageRef, Sample

DEFAULT_TEMPLATE = "a photo of a {}"
VQA_QUESTION = "What shape is in the image? Answer with one word."

F64 = NDArray[np.float64]


# --------------------------------------------------------------------------- data


def id_classes() -> list[str]:
    """SynthWorld's in-distribution shape classes."""
    from vlmtrust.data.synthworld import ID_SHAPES

    return list(ID_SHAPES)


def ood_classes() -> list[str]:
    """SynthWorld's held-out (OOD) shape classes."""
    from vlmtrust.data.synthworld import OOD_SHAPES

    return list(OOD_SHAPES)


def synth_shapes(
    ctx: ProbeContext, n: int, *, purpose: str, split: Literal["id", "ood"] = "id"
) -> list[tuple[str, Image.Image, str]]:
    """``n`` SynthWorld shape scenes as ``(id, image, shape)``, seeded by run seed and purpose."""
    from vlmtrust.data.synthworld import SynthWorld

    seed = int(ctx.rng("synthworld", purpose, split).integers(0, 2**31 - 1))
    world = SynthWorld(seed=seed)
    out = []
    for i, s in enumerate(world.shapes(n, split=split)):
        shape = str(s.attributes["shape"])
        out.append((f"{purpose}-{split}-{i:05d}", s.image, shape))
    return out


def user_labeled(spec: str, n: int) -> Iterator[Any]:
    """Up to ``n`` labeled samples (``target`` = class name) from a user dataset spec.

    Data errors are yielded through unchanged (the runner records them).
    """
    from vlmtrust.data.datasets import iter_dataset

    for count, item in enumerate(iter_dataset(spec)):
        if count >= n:
            return
        if isinstance(item, Sample) and not item.target:
            raise InputError(
                f"dataset {spec}: sample {item.id} has no label; give every item a label "
                "(the class name) for zero-shot robustness probes"
            )
        yield item


@dataclass(frozen=True)
class Base:
    """A clean labeled image the probes derive their variants from."""

    id: str
    image: Image.Image
    label: str
    attributes: dict[str, str]


def base_images(
    ctx: ProbeContext, n: int, *, purpose: str
) -> tuple[list[Base], list[Any], list[str]]:
    """Clean labeled images: the user's dataset (``ctx.data``) or SynthWorld ID shapes.

    Returns ``(bases, data_errors, classes)``; the classes are the label set (SynthWorld's ID
    shapes, or the sorted labels found in the user's data).
    """
    size = ctx.size(n)
    if ctx.data is None:
        bases = [
            Base(i, im, lab, {"class": lab})
            for i, im, lab in synth_shapes(ctx, size, purpose=purpose)
        ]
        return bases, [], id_classes()
    bases, errors = [], []
    for item in user_labeled(ctx.data, size):
        if isinstance(item, Sample):
            try:
                img = item.images[0].load()
            except InputError as e:  # one bad image is one error record, not a failed run
                from vlmtrust.data.datasets import DataError

                errors.append(DataError(item.id, str(e)))
                continue
            bases.append(Base(item.id, img, str(item.target), {"class": str(item.target)}))
        else:
            errors.append(item)
    classes = sorted({b.label for b in bases})
    if len(classes) < 2:
        raise InputError(
            f"dataset {ctx.data}: zero-shot probes need at least 2 distinct labels, found "
            f"{len(classes)}; add images of other classes"
        )
    return bases, errors, classes


def make_sample(
    sample_id: str,
    image: Image.Image,
    label: str,
    classes: Sequence[str],
    *,
    attributes: dict[str, str],
    prompt: str | None = None,
    **metadata: Any,
) -> Sample:
    """A sample carrying its label set in metadata (so ``evaluate`` needs no shared state)."""
    return Sample(
        id=sample_id,
        images=(ImageRef.from_image(image, label=sample_id),),
        prompt=prompt,
        target=label,
        attributes=attributes,
        metadata={"classes": list(classes), **metadata},
    )


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


class ZeroShotProbe(Probe):
    """Base of probes that score images against class prompts: one text-embedding cache each."""

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._cache = TextCache()


def embed_images(model: Any, images: Sequence[Image.Image]) -> F64:
    """Image embeddings (float64), one row per image; the same image object appearing several
    times (a probe's variants of one image) is embedded once."""
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
