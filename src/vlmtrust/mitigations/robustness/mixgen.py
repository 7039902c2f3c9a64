"""``robustness/mixgen`` — contrastive fine-tuning of a dual encoder with MixGen augmentation.

MixGen (Hao et al., "MixGen: A New Multi-Modal Data Augmentation", WACV-W 2023): in each batch
of ``B`` image-text pairs, ``M = mix_fraction * B`` new pairs replace the first ``M``:
``x_i = lam * x_i + (1 - lam) * x_{i+M}`` (pixels in [0, 1], ``lam = 0.5``) and
``t_i = t_i + " " + t_{i+M}`` (caption concatenation), so the mixed pair stays semantically
matched. Training is the symmetric CLIP InfoNCE loss at the model's own (frozen) logit scale,
both towers trained, AdamW.

The data are SynthWorld shape scenes and their captions (or, with ``ctx.data``, the user's
images with their ``prompt`` / ``target`` as captions). The hardened model is written with
``save_pretrained`` and loads back as ``hardened:DIR``.

Measured effect: docs/results/robustness.md#mixgen
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import (
    need_dual,
    run_size,
    save_finetuned,
)
from vlmtrust.mitigations.robustness._contrastive import contrastive_finetune


class MixGenParams(Params):
    """Parameters of ``robustness/mixgen``."""

    steps: int = Field(200, ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int = Field(64, ge=2, le=4096)
    lr: float = Field(2e-5, gt=0.0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    lam: float = Field(0.5, ge=0.0, le=1.0, description="MixGen image mixing weight")
    mix_fraction: float = Field(
        0.25, ge=0.0, le=0.5, description="share of each batch replaced by MixGen pairs"
    )
    n_train: int = Field(2000, ge=2, le=10_000_000, description="training pairs")
    mixgen: bool = Field(True, description="False: the same fine-tuning without MixGen")
    seed: int | None = Field(None, description="training seed (default: the run seed)")


# --------------------------------------------------------------------------- MixGen


def mixgen_batch(
    pixels: Any, texts: Sequence[str], *, lam: float = 0.5, n_mix: int | None = None
) -> tuple[Any, list[str]]:
    """Apply MixGen to a batch: the first ``n_mix`` pairs become mixes with pairs ``i + n_mix``.

    Args:
        pixels: ``(B, 3, H, W)`` tensor in [0, 1].
        texts: ``B`` captions.
        lam: image mixing weight (0.5 in the paper).
        n_mix: number of mixed pairs ``M`` (default ``B // 4``); needs ``2 * M <= B``.

    Returns:
        The new pixels (a new tensor) and captions.

    Example:
        >>> import torch
        >>> px, tx = mixgen_batch(torch.ones(4, 3, 2, 2) * torch.arange(4).view(4, 1, 1, 1),
        ...                       ["a", "b", "c", "d"], n_mix=2)
        >>> px[:, 0, 0, 0].tolist(), tx
        ([1.0, 2.0, 2.0, 3.0], ['a c', 'b d', 'c', 'd'])
    """
    b = int(pixels.shape[0])
    if len(texts) != b:
        raise InputError(f"MixGen: {b} images but {len(texts)} captions; pass one caption each")
    m = b // 4 if n_mix is None else n_mix
    if m < 0 or 2 * m > b:
        raise InputError(f"MixGen: n_mix={m} needs 0 <= 2*n_mix <= batch size {b}")
    out = pixels.clone()
    if m:
        out[:m] = lam * pixels[:m] + (1.0 - lam) * pixels[m : 2 * m]
    new_texts = [f"{texts[i]} {texts[i + m]}" if i < m else texts[i] for i in range(b)]
    return out, new_texts


# --------------------------------------------------------------------------- training


@dataclass
class TrainReport:
    """What a fine-tuning run did."""

    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    mixgen: bool = True


def training_pairs(
    seed: int, n: int, data: str | None = None, limits: DataLimits | None = None
) -> list[tuple[Image.Image, str]]:
    """Image-caption pairs: SynthWorld shapes (default) or a user dataset's captions.

    A user dataset is read within ``limits`` (default :class:`DataLimits`).
    """
    if data is None:
        from vlmtrust.data.synthworld import SynthWorld

        world = SynthWorld(seed=seed)
        return [(s.image, s.caption) for s in world.shapes(n)]
    from vlmtrust.core.sample import Sample
    from vlmtrust.data.datasets import iter_dataset

    out: list[tuple[Image.Image, str]] = []
    for item in iter_dataset(data, limits=limits):
        if len(out) >= n:
            break
        if isinstance(item, Sample):
            caption = item.prompt or item.target
            if not caption:
                raise InputError(
                    f"dataset {data}: sample {item.id} has no caption; give each image a "
                    "prompt (caption) or label for MixGen training"
                )
            out.append((item.images[0].load(), caption))
    if len(out) < 2:
        raise InputError(f"dataset {data}: MixGen needs at least 2 image-caption pairs")
    return out


def finetune(
    model: Any,
    pairs: Sequence[tuple[Image.Image, str]],
    *,
    mixgen: bool = True,
    lam: float = 0.5,
    mix_fraction: float = 0.25,
    **train: Any,
) -> TrainReport:
    """Fine-tune a dual encoder (in place) with the CLIP contrastive loss, optionally MixGen.

    ``train`` are :func:`~vlmtrust.mitigations.robustness._contrastive.contrastive_finetune`'s
    training arguments (``steps``, ``batch_size``, ``lr``, ``weight_decay``, ``seed``,
    ``on_step``); the loop is that function's with MixGen's batch mixing. Deterministic on CPU
    for a seed; the logit scale stays frozen. The fingerprint gains ``+mixgen:sSEEDnSTEPS``
    (``+finetune:…`` without MixGen).
    """
    if len(pairs) < 2:
        raise InputError("MixGen training needs at least 2 image-caption pairs")
    n_mix = int(round(mix_fraction * min(train.get("batch_size", 64), len(pairs)))) if mixgen else 0

    def mix(px: Any, texts: list[str]) -> tuple[Any, list[str]]:
        return mixgen_batch(px, texts, lam=lam, n_mix=n_mix) if n_mix else (px, texts)

    run = contrastive_finetune(
        model,
        [im for im, _ in pairs],
        [c for _, c in pairs],
        name="robustness/mixgen",
        mix=mix,
        tag="mixgen" if mixgen else "finetune",
        announce="mixgen fine-tuning" if mixgen else "contrastive fine-tuning",
        **train,
    )
    return TrainReport(steps=run.steps, losses=run.losses, seconds=run.seconds, mixgen=mixgen)


@mitigation("robustness/mixgen")
class MixGen(Mitigation):
    """Fine-tune a dual encoder with MixGen (image mixing + caption concatenation)."""

    pillar = Pillar.ROBUSTNESS
    kind = "model"
    requires = Capability.EMBED | Capability.TRAIN | Capability.GRADIENT
    Params = MixGenParams
    description = (
        "MixGen data augmentation (mixed images, concatenated captions) in contrastive "
        "fine-tuning; a regulariser aimed at robustness to natural distribution shift."
    )

    params: MixGenParams

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Fine-tune ``model`` and write it (safetensors) to ``ctx.out_dir``."""
        need_dual(model, self.name)
        p = self.params
        seed, steps, n_train = run_size(p, ctx)
        pairs = training_pairs(seed, n_train, ctx.data, ctx.data_limits)
        # the loop's arguments are the parameters of the same names
        same = {"batch_size", "lr", "weight_decay", "mixgen", "lam", "mix_fraction"}
        report = finetune(model, pairs, steps=steps, seed=seed, **p.model_dump(include=same))
        return save_finetuned(model, ctx, self.name, report, p, mixgen=report.mixgen)
