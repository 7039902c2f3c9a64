"""Cross-modal alignment: close the modality gap, trained or training-free.

Two mitigations, measured by ``robustness/modality_gap`` (the gap, and zero-shot accuracy and
OOD AUROC on the same model) before and after:

* ``robustness/gap_shift`` (training-free projection adjustment, an inference-time wrapper):
  Liang et al. (2022) close the gap by moving the image embeddings along the gap vector
  ``Δ = μ_text − μ_image`` estimated on calibration image–caption pairs: ``norm(x + λΔ)``
  (``λ = 1`` puts the image centroid on the text centroid). Text embeddings are unchanged.
* ``robustness/alignment`` (trained): contrastive fine-tuning with bidirectional constraints —
  the symmetric InfoNCE (image→text and text→image) plus ``centroid_weight · ‖μ_I − μ_T‖²``
  over each batch (the two modality centroids pulled together) and ``pair_weight · (1 − cos)``
  of matched pairs (each image pulled onto its own caption, and each caption onto its image).
  SynthWorld shape pairs from a stream disjoint from the probes'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import (
    HardenedArtifact,
    Mitigation,
    MitigationContext,
    WrapperMitigation,
    mitigation,
)
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import need_dual, run_size, save_finetuned
from vlmtrust.mitigations.robustness._contrastive import contrastive_finetune

CALIBRATION_SEED_OFFSET = 3_000_017
"""Calibration / training pairs come from ``seed + CALIBRATION_SEED_OFFSET``."""


def _pairs(seed: int, n: int) -> tuple[list[Image.Image], list[str]]:
    from vlmtrust.data.synthworld import SynthWorld

    shapes = SynthWorld(seed=seed + CALIBRATION_SEED_OFFSET).shapes(n)
    return [s.image for s in shapes], [s.caption for s in shapes]


# --------------------------------------------------------------------------- training-free


class GapShiftedModel:
    """A dual encoder whose image embeddings are moved along a fixed gap vector.

    Everything not defined here is delegated to the base model.
    """

    def __init__(self, base: Any, delta: Sequence[float], lam: float) -> None:
        self.base = base
        self.delta = np.asarray(delta, dtype=np.float64)
        self.lam = float(lam)
        self.spec: str = str(base.spec)
        self.kind = base.kind
        self.capabilities: Capability = base.capabilities & ~Capability.TRAIN
        self.fingerprint = f"{base.fingerprint}+gap_shift:{self.lam:g}:{self.delta[:4].round(6)}"

    def __getattr__(self, name: str) -> Any:
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    @property
    def logit_scale(self) -> float:
        """The base model's logit scale."""
        return float(self.base.logit_scale)

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """``norm(norm(x) + λΔ)`` of the base model's image embeddings."""
        x = np.asarray(self.base.embed_images(images), dtype=np.float64)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        y = x + self.lam * self.delta
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y.astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """The base model's text embeddings (unchanged)."""
        return np.asarray(self.base.embed_texts(texts), dtype=np.float32)

    def image_features(self, pixels: Any) -> Any:
        """Differentiable image features with the same shift (for white-box attacks)."""
        import torch

        x = torch.nn.functional.normalize(self.base.image_features(pixels), dim=-1)
        d = torch.as_tensor(self.delta, dtype=x.dtype, device=x.device)
        return torch.nn.functional.normalize(x + self.lam * d, dim=-1)


class GapShiftParams(Params):
    """Parameters of ``robustness/gap_shift``."""

    lam: float = Field(1.0, ge=-2.0, le=2.0, description="λ of norm(x + λΔ) (1 closes the gap)")
    n_calibration: int = Field(500, ge=10, le=10_000_000, description="calibration pairs")
    delta: list[float] | None = Field(None, description="gap vector (set by calibration)")


@mitigation("robustness/gap_shift")
class GapShift(WrapperMitigation):
    """Move image embeddings along the calibrated modality-gap vector (training-free)."""

    pillar = Pillar.ROBUSTNESS
    requires = Capability.EMBED
    Params = GapShiftParams
    description = (
        "Training-free modality-gap closing (Liang et al. 2022): image embeddings moved "
        "along the calibrated gap vector μ_text − μ_image."
    )

    params: GapShiftParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Estimate ``Δ`` on SynthWorld calibration pairs."""
        need_dual(model, self.name, "aligns")
        n = min(self.params.n_calibration, 100) if ctx.quick else self.params.n_calibration
        images, captions = _pairs(ctx.seed, n)
        from vlmtrust.core.metrics import gap_vector

        img = np.asarray(model.embed_images(images), dtype=np.float64)
        txt = np.asarray(model.embed_texts(captions), dtype=np.float64)
        return {"delta": np.round(gap_vector(img, txt), 6).tolist()}

    def wrap(self, model: Any) -> GapShiftedModel:
        """Wrap ``model``; needs a calibrated (or given) gap vector."""
        if self.params.delta is None:
            raise InputError(
                "robustness/gap_shift has no gap vector: calibrate it with `vlmtrust harden "
                "--mitigation robustness/gap_shift`"
            )
        return GapShiftedModel(model, self.params.delta, self.params.lam)


# --------------------------------------------------------------------------- trained


class AlignmentParams(Params):
    """Parameters of ``robustness/alignment``."""

    steps: int = Field(100, ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int = Field(64, ge=2, le=4096)
    lr: float = Field(5e-5, gt=0.0, le=1.0, description="AdamW learning rate")
    n_train: int = Field(1000, ge=2, le=10_000_000, description="training pairs")
    centroid_weight: float = Field(10.0, ge=0.0, description="weight of ‖μ_I − μ_T‖²")
    pair_weight: float = Field(1.0, ge=0.0, description="weight of 1 − cos of matched pairs")
    seed: int | None = Field(None, description="training seed (default: the run seed)")


@mitigation("robustness/alignment")
class Alignment(Mitigation):
    """Contrastive fine-tuning with centroid and matched-pair alignment terms."""

    pillar = Pillar.ROBUSTNESS
    kind = "model"
    requires = Capability.EMBED | Capability.TRAIN | Capability.GRADIENT
    Params = AlignmentParams
    description = (
        "Trained cross-modal alignment: symmetric InfoNCE plus centroid (‖μ_I − μ_T‖²) and "
        "matched-pair terms that close the modality gap."
    )

    params: AlignmentParams

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Fine-tune ``model`` and write it (safetensors) to ``ctx.out_dir``."""
        need_dual(model, self.name, "aligns")
        p = self.params
        seed, steps, n_train = run_size(p, ctx)
        images, captions = _pairs(seed, n_train)

        def align(img: Any, txt: Any) -> Any:
            centroid = (img.mean(0) - txt.mean(0)).pow(2).sum()
            pair = (1.0 - (img * txt).sum(-1)).mean()
            return p.centroid_weight * centroid + p.pair_weight * pair

        report = contrastive_finetune(
            model,
            images,
            captions,
            name=self.name,
            steps=steps,
            batch_size=p.batch_size,
            lr=p.lr,
            seed=seed,
            extra_loss=align,
        )
        return save_finetuned(model, ctx, self.name, report, p)
