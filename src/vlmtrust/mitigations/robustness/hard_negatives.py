"""``robustness/hard_negatives`` — fine-tuning with synthesised compositional hard negatives.

BiAug (Wu et al. 2023) decouples objects and their attributes and synthesises hard negatives
with an LLM and inpainting; here SynthWorld's own renderer draws the two-object scenes
(:mod:`vlmtrust.data.synthworld.composition`) and writes, per scene, the captions with the
colours, the relation or the objects swapped. The dual encoder is fine-tuned with them
NegCLIP-style (:mod:`vlmtrust.mitigations.robustness._contrastive`): the hard negatives join the
text side of each batch, so the image must prefer its caption over the same words bound
differently. Plain SynthWorld shape pairs are mixed in (``shape_fraction``) to keep zero-shot
classification. Measured by ``robustness/compositionality`` (scenes from another seed) and
``capability/zero_shot``. The hardened model is written with ``save_pretrained``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.data.synthworld.composition import SWAP_TYPES, composition_scenes
from vlmtrust.mitigations._train import need_dual, run_size, save_finetuned
from vlmtrust.mitigations.robustness._contrastive import contrastive_finetune

TRAIN_SEED_OFFSET = 2_000_029
"""Training scenes come from ``seed + TRAIN_SEED_OFFSET``, never the probe's stream."""


class HardNegativesParams(Params):
    """Parameters of ``robustness/hard_negatives``."""

    steps: int = Field(150, ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(1e-4, gt=0.0, le=1.0, description="AdamW learning rate")
    n_train: int = Field(1000, ge=2, le=10_000_000, description="two-object training scenes")
    shape_fraction: float = Field(
        0.3, ge=0.0, lt=1.0, description="share of plain shape pairs mixed in (no negatives)"
    )
    negatives: list[str] = Field(
        default_factory=lambda: list(SWAP_TYPES), description="hard-negative types to train on"
    )
    seed: int | None = Field(None, description="training seed (default: the run seed)")


@mitigation("robustness/hard_negatives")
class HardNegatives(Mitigation):
    """Fine-tune a dual encoder against attribute/relation/object-swapped captions."""

    pillar = Pillar.ROBUSTNESS
    kind = "model"
    requires = Capability.EMBED | Capability.TRAIN | Capability.GRADIENT
    Params = HardNegativesParams
    description = (
        "BiAug-style hard negatives drawn by SynthWorld (colours, relation or objects "
        "swapped) in NegCLIP-style contrastive fine-tuning; aimed at compositionality."
    )

    params: HardNegativesParams

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Fine-tune ``model`` and write it (safetensors) to ``ctx.out_dir``."""
        p = self.params
        unknown = [k for k in p.negatives if k not in SWAP_TYPES]
        if unknown or not p.negatives:
            raise InputError(
                f"robustness/hard_negatives negatives={p.negatives}: use some of "
                f"{', '.join(SWAP_TYPES)}"
            )
        need_dual(model, self.name)
        from vlmtrust.data.synthworld import SynthWorld

        seed, steps, n = run_size(p, ctx)
        scenes = composition_scenes(n, seed=seed + TRAIN_SEED_OFFSET)
        n_shapes = int(round(n * p.shape_fraction / (1.0 - p.shape_fraction)))
        shapes = SynthWorld(seed=seed + TRAIN_SEED_OFFSET).shapes(n_shapes) if n_shapes else []
        images = [s.image for s in scenes] + [s.image for s in shapes]
        captions = [s.caption for s in scenes] + [s.caption for s in shapes]
        # a plain shape pair takes k other shapes' captions as its negatives (every row of the
        # batch then brings the same number of text columns)
        k = len(p.negatives)
        negs = [[s.negatives[t] for t in p.negatives] for s in scenes]
        negs += [
            [shapes[(i + j + 1) % len(shapes)].caption for j in range(k)]
            for i in range(len(shapes))
        ]
        report = contrastive_finetune(
            model,
            images,
            captions,
            name=self.name,
            steps=steps,
            batch_size=p.batch_size,
            lr=p.lr,
            seed=seed,
            negatives=negs,
        )
        return save_finetuned(
            model, ctx, self.name, report, p, scenes=len(scenes), shape_pairs=len(shapes)
        )
