"""``robustness/ood_guard`` — abstain on out-of-distribution inputs (inference-time wrapper).

The guard scores each image with MCM (Ming et al. 2022: ``max softmax(s / tau)`` over the raw
cosines to the in-distribution class prompts, float64, ``tau = 1``) and abstains when the score
is below a threshold calibrated so that ``tpr`` (default 95%) of in-distribution calibration
images are accepted. ``score="knn"`` uses instead the cosine between the image embedding and
its k-th nearest ID calibration embedding (Sun et al., "Out-of-Distribution Detection with Deep
Nearest Neighbors", ICML 2022): zero-shot MCM only sees the class prompts, kNN sees the whole
image-embedding neighbourhood, which separates held-out kinds much better on small models
(measured on reference:clip: see the tests). Calibration data: SynthWorld ID shapes drawn from
a stream disjoint from the probes' (seed + 1,000,003), or the user's dataset (``ctx.data``; its
labels are the ID classes).

The wrapped model keeps the dual-encoder surface unchanged (``embed_images``, ``embed_texts``,
``logit_scale``, and everything else delegated to the base model) and adds
``abstain(images, class_texts=None) -> bool array`` and ``mcm(images)``. The decision always
uses the guard's *calibrated* class prompts — the threshold means nothing for another label
set — so ``class_texts`` is accepted for interface compatibility only.

How probes count abstentions: in the zero-shot robustness probes an abstention is *not a
correct* classification (accuracy counts it as an error) and is reported beside as
``abstention_rate``; ``robustness/ood_detection`` reports the guard's ``ood_rejection_rate`` and
``id_rejection_rate`` (both 0 for an unguarded model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, WrapperMitigation, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar

CALIBRATION_SEED_OFFSET = 1_000_003


class OODGuardParams(Params):
    """Parameters of ``robustness/ood_guard``."""

    tpr: float = Field(0.95, gt=0.0, lt=1.0, description="ID acceptance rate at calibration")
    tau: float = Field(1.0, gt=0.0, description="MCM temperature on raw cosines")
    template: str = Field("a photo of a {}", description="class prompt")
    classes: list[str] | None = Field(
        None, description="ID class names (default: SynthWorld ID shapes / dataset labels)"
    )
    n_calibration: int = Field(500, ge=10, le=10_000_000, description="calibration images")
    threshold: float | None = Field(
        None, description="score threshold (set by calibration; give it to skip calibrating)"
    )
    score: Literal["mcm", "knn"] = Field(
        "mcm",
        description="'mcm' (zero-shot MCM, the default) or 'knn' (cosine to the k-th nearest "
        "ID calibration image embedding; Sun et al. 2022)",
    )
    k: int = Field(1, ge=1, le=1000, description="neighbour rank for score='knn'")
    n_bank: int = Field(250, ge=1, le=100_000, description="ID embeddings kept for 'knn'")
    bank: list[list[float]] | None = Field(
        None, description="ID calibration embeddings for 'knn' (set by calibration)"
    )


class OODGuardedModel:
    """A dual encoder that abstains when its OOD score is below ``threshold``.

    Everything not defined here is delegated to the base model, so probes and attacks see the
    same surface (``embed_images``, ``embed_texts``, ``logit_scale``, ``to_pixels`` ...).

    Args:
        base: the dual encoder to guard.
        threshold: abstain when the score is below it.
        class_texts: the in-distribution class prompts (MCM).
        tau: MCM temperature on raw cosines.
        bank: ID image embeddings; when given, the score is the cosine to the ``k``-th nearest
            of them (kNN) instead of MCM.
        k: neighbour rank for the kNN score.
    """

    def __init__(
        self,
        base: Any,
        *,
        threshold: float,
        class_texts: Sequence[str],
        tau: float = 1.0,
        bank: NDArray[np.float64] | None = None,
        k: int = 1,
    ) -> None:
        if not class_texts:
            raise InputError("ood_guard: no ID class prompts; pass the in-distribution classes")
        self.base = base
        self.threshold = float(threshold)
        self.class_texts = list(class_texts)
        self.tau = float(tau)
        self.bank = None if bank is None else np.asarray(bank, dtype=np.float64)
        if self.bank is not None and (self.bank.ndim != 2 or len(self.bank) < k):
            raise InputError(f"ood_guard: the kNN bank needs at least k={k} embeddings")
        self.k = int(k)
        self.score_name = "mcm" if self.bank is None else "knn"
        self.spec: str = str(base.spec)
        self.kind = base.kind
        self.capabilities: Capability = base.capabilities
        self.fingerprint: str = (
            f"{base.fingerprint}+ood_guard:{self.score_name}:{self.threshold:.9g}"
        )
        self._text: NDArray[np.float64] | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not yet set (copy / unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return (
            f"OODGuardedModel({self.base!r}, score={self.score_name}, "
            f"threshold={self.threshold:.6g})"
        )

    @property
    def logit_scale(self) -> float:
        """The base model's logit scale."""
        return float(self.base.logit_scale)

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """The base model's image embeddings (unchanged)."""
        return np.asarray(self.base.embed_images(images), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """The base model's text embeddings (unchanged)."""
        return np.asarray(self.base.embed_texts(texts), dtype=np.float32)

    def _class_embeddings(self) -> NDArray[np.float64]:
        if self._text is None:
            self._text = np.asarray(self.base.embed_texts(self.class_texts), dtype=np.float64)
        return self._text

    def ood_score(self, images: Sequence[Image.Image]) -> NDArray[np.float64]:
        """The guard's score of each image (higher = more in-distribution)."""
        if len(images) == 0:
            return np.zeros(0)
        img = np.asarray(self.base.embed_images(list(images)), dtype=np.float64)
        return guard_score(img, self._class_embeddings(), tau=self.tau, bank=self.bank, k=self.k)

    def mcm(self, images: Sequence[Image.Image]) -> NDArray[np.float64]:
        """MCM score of each image against the calibrated ID class prompts."""
        from vlmtrust.attacks.zeroshot import mcm_score

        if len(images) == 0:
            return np.zeros(0)
        img = np.asarray(self.base.embed_images(list(images)), dtype=np.float64)
        return mcm_score(img @ self._class_embeddings().T, tau=self.tau)

    def abstain(
        self, images: Sequence[Image.Image], class_texts: Sequence[str] | None = None
    ) -> NDArray[np.bool_]:
        """True where the guard abstains (score below the calibrated threshold).

        ``class_texts`` is accepted for interface compatibility; the decision uses the
        calibrated ID prompts (see the module docstring).
        """
        del class_texts
        return np.asarray(self.ood_score(images) < self.threshold, dtype=np.bool_)


def guard_score(
    image_emb: NDArray[np.float64],
    class_emb: NDArray[np.float64],
    *,
    tau: float = 1.0,
    bank: NDArray[np.float64] | None = None,
    k: int = 1,
) -> NDArray[np.float64]:
    """MCM over ``class_emb`` or, with ``bank``, the cosine to the ``k``-th nearest bank row."""
    from vlmtrust.attacks.zeroshot import mcm_score

    if bank is None:
        return mcm_score(image_emb @ class_emb.T, tau=tau)
    sims = image_emb @ bank.T
    return np.asarray(np.sort(sims, axis=1)[:, -k], dtype=np.float64)


def calibration_images(
    ctx: MitigationContext, n: int, classes: list[str] | None
) -> tuple[list[Image.Image], list[str]]:
    """ID calibration images and the ID class names."""
    if ctx.data is None:
        from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld

        world = SynthWorld(seed=ctx.seed + CALIBRATION_SEED_OFFSET)
        return [s.image for s in world.shapes(n)], list(classes or ID_SHAPES)
    from vlmtrust.core.sample import Sample
    from vlmtrust.data.datasets import iter_dataset

    images: list[Image.Image] = []
    labels: set[str] = set()
    for item in iter_dataset(ctx.data, limits=ctx.data_limits):
        if len(images) >= n:
            break
        if isinstance(item, Sample):
            images.append(item.images[0].load())
            if item.target:
                labels.add(item.target)
    names = list(classes or sorted(labels))
    if not images:
        raise InputError(f"dataset {ctx.data}: no usable images to calibrate the OOD guard")
    if not names:
        raise InputError(
            f"dataset {ctx.data}: no labels; pass --param classes=[...] (the ID class names)"
        )
    return images, names


@mitigation("robustness/ood_guard")
class OODGuard(WrapperMitigation):
    """Abstain when MCM says the input is out of distribution (threshold at 95% ID TPR)."""

    pillar = Pillar.ROBUSTNESS
    requires = Capability.EMBED
    Params = OODGuardParams
    description = (
        "Inference-time OOD guard: abstains when the MCM score is below a threshold that "
        "accepts 95% of in-distribution calibration images."
    )

    params: OODGuardParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Calibrate the threshold on ID data at the configured TPR.

        For ``score="knn"`` the first ``n_bank`` calibration images form the neighbour bank and
        the threshold is set on the others (a bank image is its own nearest neighbour).
        """
        from vlmtrust.attacks.zeroshot import threshold_at_tpr

        if getattr(model, "kind", None) != "dual":
            raise InputError(
                f"robustness/ood_guard wraps dual encoders; model {model.spec} is "
                f"{getattr(model, 'kind', 'unknown')}"
            )
        p = self.params
        n = min(p.n_calibration, 100) if ctx.quick else p.n_calibration
        extra = min(p.n_bank, n) if p.score == "knn" else 0
        images, classes = calibration_images(ctx, n + extra, p.classes)
        texts = [p.template.format(c) for c in classes]
        img = np.asarray(model.embed_images(images), dtype=np.float64)
        txt = np.asarray(model.embed_texts(texts), dtype=np.float64)
        bank = img[:extra] if extra else None
        if bank is not None and len(bank) < p.k:
            raise InputError(f"ood_guard: n_bank must be at least k={p.k}")
        scores = guard_score(img[extra:], txt, tau=p.tau, bank=bank, k=p.k)
        out: dict[str, Any] = {
            "threshold": threshold_at_tpr(scores, tpr=p.tpr),
            "classes": classes,
        }
        if bank is not None:
            out["bank"] = np.round(bank, 6).tolist()
        return out

    def wrap(self, model: Any) -> OODGuardedModel:
        """Wrap ``model``; needs a calibrated (or given) threshold."""
        p = self.params
        if p.threshold is None:
            raise InputError(
                "robustness/ood_guard has no threshold: calibrate it with `vlmtrust harden "
                "--mitigation robustness/ood_guard` or pass --param threshold=VALUE"
            )
        if p.score == "knn" and not p.bank:
            raise InputError(
                "robustness/ood_guard score='knn' has no ID embedding bank: calibrate it with "
                "`vlmtrust harden --mitigation robustness/ood_guard --param score=knn`"
            )
        from vlmtrust.data.synthworld import ID_SHAPES

        classes = p.classes or list(ID_SHAPES)
        texts = [p.template.format(c) for c in classes]
        bank = np.asarray(p.bank, dtype=np.float64) if p.score == "knn" else None
        return OODGuardedModel(
            model, threshold=p.threshold, class_texts=texts, tau=p.tau, bank=bank, k=p.k
        )
