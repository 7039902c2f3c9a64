"""What the dual-encoder debiasers share: the fitting gallery and the projected-model wrapper.

* :func:`fit_gallery` — the labelled people images a debiaser is fitted on: SynthWorld people
  drawn from a world seeded ``ctx.seed + FIT_SEED_OFFSET`` (the fairness probes evaluate on
  ``ctx.seed + 1_000_000``, so fitting and evaluation never share an image), or the user's
  ``--data`` with the attributes in the manifest.
* :class:`DebiasedDualModel` — a dual encoder whose text and/or image embeddings are mapped by
  a fixed matrix and L2-normalised again; everything else is delegated to the base model. Its
  fingerprint names the mitigation and a hash of the matrices, so an embedding cache never
  mixes the debiased and the original embeddings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import HardenedArtifact, MitigationContext, WrapperMitigation
from vlmtrust.core.types import Capability, Pillar

F64 = NDArray[np.float64]
_T = TypeVar("_T")

FIT_SEED_OFFSET = 2_000_003
"""SynthWorld seed offset of the fitting gallery (probes evaluate on seed + 1,000,000)."""


@dataclass(frozen=True)
class FitGallery:
    """Image embeddings of the fitting gallery with their attributes (rows in order)."""

    embeddings: F64
    attributes: list[dict[str, str]]

    def values(self, attr: str) -> list[str]:
        """Each row's value of ``attr`` (``""`` where it has none)."""
        return [a.get(attr, "") for a in self.attributes]


def require_dual(model: Any, name: str) -> None:
    """Refuse a model that is not a dual encoder, in one line."""
    if getattr(model, "kind", None) != "dual":
        raise InputError(
            f"{name} debiases dual encoders (embed_images / embed_texts); model "
            f"{getattr(model, 'spec', model)} is {getattr(model, 'kind', 'unknown')}"
        )


def fit_gallery(
    model: Any, ctx: MitigationContext, n: int, *, need: Sequence[str], name: str
) -> FitGallery:
    """Embed ``n`` labelled people images to fit on (SynthWorld, or ``ctx.data``).

    Raises:
        InputError: an attribute in ``need`` that fewer than two values of the data have.
    """
    images: list[Image.Image] = []
    attrs: list[dict[str, str]] = []
    if ctx.data is None:
        from vlmtrust.data.synthworld import SynthWorld

        world = SynthWorld(seed=ctx.seed + FIT_SEED_OFFSET)
        for s in world.people(n, correlation=0.0, cue_prob=0.5):
            images.append(s.image)
            attrs.append({str(k): str(v) for k, v in s.attributes.items()})
        where = "the SynthWorld fitting gallery"
    else:
        from vlmtrust.core.sample import Sample
        from vlmtrust.data.datasets import iter_dataset

        for item in iter_dataset(ctx.data, limits=ctx.data_limits):
            if len(images) >= n:
                break
            if isinstance(item, Sample) and item.images:
                images.append(item.images[0].load())
                attrs.append({str(k): str(v) for k, v in item.attributes.items() if v})
        where = f"dataset {ctx.data}"
    for attr in need:
        values = {a.get(attr) for a in attrs} - {None, ""}
        if len(values) < 2:
            raise InputError(
                f"{name}: {where} has {len(values)} value(s) of attribute {attr!r}; fitting "
                f'needs images of at least two (add "attributes": {{"{attr}": ...}} to the '
                "manifest lines, or name another attribute with --param attribute=...)"
            )
    emb = np.asarray(model.embed_images(images), dtype=np.float64)
    return FitGallery(embeddings=emb, attributes=attrs)


def fit_size(n_fit: int, ctx: MitigationContext) -> int:
    """How many fitting images to embed: ``n_fit``, at most 200 with ``--quick``."""
    return min(n_fit, 200) if ctx.quick else n_fit


def labelled_fit(
    model: Any, ctx: MitigationContext, n_fit: int, attribute: str, *, name: str
) -> tuple[F64, NDArray[Any]]:
    """The fitting gallery's embeddings and their ``attribute`` labels (unlabelled images dropped).

    Raises:
        InputError: as :func:`fit_gallery`.
    """
    fit = fit_gallery(model, ctx, fit_size(n_fit, ctx), need=[attribute], name=name)
    labels = np.asarray(fit.values(attribute))
    keep = labels != ""
    return fit.embeddings[keep], labels[keep]


def normalise(x: F64) -> F64:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.where(norm > 0, norm, 1.0), dtype=np.float64)


def as_matrix(value: Sequence[Sequence[float]] | None, dim: int | None, what: str) -> F64 | None:
    """A stored square matrix as float64 (``None`` stays ``None``); checked to be square."""
    if value is None:
        return None
    m = np.asarray(value, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or (dim is not None and m.shape[0] != dim):
        raise InputError(
            f"{what}: the stored matrix has shape {m.shape}, not square; re-run `vlmtrust harden`"
        )
    return m


def store_matrix(m: F64) -> list[list[float]]:
    """A matrix as nested JSON lists (9 significant digits)."""
    return [[float(f"{x:.9g}") for x in row] for row in np.asarray(m, dtype=np.float64)]


class DebiasedDualModel:
    """A dual encoder with ``text' = norm(text @ Tᵀ)`` and ``image' = norm(image @ Vᵀ)``.

    ``text_matrix`` / ``image_matrix`` ``None`` leaves that side unchanged; ``tag`` (the
    mitigation's other fitted state) enters the fingerprint. The surface is the base model's
    (``embed_images``, ``embed_texts``, ``logit_scale``, everything else delegated).
    """

    def __init__(
        self,
        base: Any,
        *,
        name: str,
        text_matrix: F64 | None = None,
        image_matrix: F64 | None = None,
        tag: str = "",
    ) -> None:
        self.base = base
        self.name = name
        self.text_matrix = text_matrix
        self.image_matrix = image_matrix
        self.spec: str = str(base.spec)
        self.kind = base.kind
        self.capabilities: Capability = base.capabilities
        h = hashlib.sha256()
        for m in (text_matrix, image_matrix):
            h.update(b"-" if m is None else np.ascontiguousarray(m, dtype=np.float64).tobytes())
        h.update(tag.encode())
        self.fingerprint: str = f"{base.fingerprint}+{name}:{h.hexdigest()[:16]}"

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not yet set (copy / unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"DebiasedDualModel({self.base!r}, {self.name})"

    @property
    def logit_scale(self) -> float:
        """The base model's logit scale."""
        return float(self.base.logit_scale)

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Text embeddings, mapped by the text matrix (if any) and renormalised."""
        t = np.asarray(self.base.embed_texts(texts), dtype=np.float64)
        if self.text_matrix is not None and len(t):
            t = normalise(t @ self.text_matrix.T)
        return np.asarray(t, dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """Image embeddings, mapped by the image matrix (if any) and renormalised."""
        x = np.asarray(self.base.embed_images(images), dtype=np.float64)
        if self.image_matrix is not None and len(x):
            x = normalise(x @ self.image_matrix.T)
        return np.asarray(x, dtype=np.float32)


def group_means(x: F64, labels: Sequence[str]) -> tuple[list[str], F64]:
    """The sorted distinct non-empty labels and the mean row of each."""
    values = sorted({v for v in labels if v})
    lab = np.asarray(labels)
    return values, np.stack([x[lab == v].mean(axis=0) for v in values])


def orthonormal_rows(m: F64, tol: float = 1e-10) -> F64:
    """An orthonormal basis (rows) of the row space of ``m``."""
    if m.size == 0:
        return np.zeros((0, m.shape[-1] if m.ndim == 2 else 0))
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    return np.asarray(vt[s > tol * max(float(s[0]), 1e-300)], dtype=np.float64)


class FittedWrapper(WrapperMitigation):
    """A dual-encoder debiaser (fairness, needs ``embed``) whose fitted arrays (``LARGE``
    params) stay in ``wrapper.json`` only.

    The artifact summary (what `vlmtrust harden` prints) shows their shapes instead.
    """

    pillar = Pillar.FAIRNESS
    requires = Capability.EMBED

    LARGE: tuple[str, ...] = ("matrix",)

    def need_fit(self, value: _T | None, what: str, how: str = "fit it") -> _T:
        """``value``, a parameter `vlmtrust harden` fits; refused while it is ``None``.

        Raises:
            InputError: naming what is missing (``what``) and the harden command that fits it.
        """
        if value is None:
            raise InputError(
                f"{self.name} has no {what}: {how} with `vlmtrust harden --mitigation "
                f"{self.name}` and load the result with --model hardened:DIR"
            )
        return value

    def matrix_model(
        self, model: Any, side: Literal["image", "text"], what: str = "matrix", how: str = "fit it"
    ) -> DebiasedDualModel:
        """``model`` with its ``side`` embeddings mapped by the fitted ``matrix`` parameter."""
        stored = self.need_fit(getattr(self.params, "matrix", None), what, how)
        require_dual(model, self.name)
        m = as_matrix(stored, None, self.name)
        short = self.name.rsplit("/", 1)[-1]
        if side == "image":
            return DebiasedDualModel(model, name=short, image_matrix=m)
        return DebiasedDualModel(model, name=short, text_matrix=m)

    def labelled(self, model: Any, ctx: MitigationContext) -> tuple[F64, NDArray[Any]]:
        """:func:`labelled_fit` of a dual ``model`` by the ``n_fit`` / ``attribute`` parameters."""
        require_dual(model, self.name)
        p: Any = self.params
        return labelled_fit(model, ctx, p.n_fit, p.attribute, name=self.name)

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Write ``wrapper.json``; the summary names the fitted arrays by shape."""
        art = super().apply(model, ctx)
        payload = dict(art.summary.get("wrapper", {}))
        params = dict(payload.get("params", {}))
        for key in self.LARGE:
            if isinstance(params.get(key), dict):  # named weights (a torch state)
                params[key] = f"<{len(params[key])} weight arrays in wrapper.json>"
            elif params.get(key) is not None:
                params[key] = f"<{'x'.join(map(str, np.shape(params[key])))} in wrapper.json>"
        payload["params"] = params
        return HardenedArtifact(spec=art.spec, out_dir=art.out_dir, summary={"wrapper": payload})
