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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.model import require
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import (
    need_dual,
    optimizer_step,
    run_size,
    save_finetuned,
    train_started,
)


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


def _pooled(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    return out[0]


def _text_features(model: Any, texts: Sequence[str]) -> Any:
    """Differentiable, L2-normalised text embeddings through the model's own tokenizer."""
    import torch

    text_cfg = getattr(model.model.config, "text_config", None)
    max_len = int(getattr(text_cfg, "max_position_embeddings", 77) or 77)
    enc = model.tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
    )
    keep = ("input_ids", "attention_mask")
    enc = {k: v.to(model.device) for k, v in enc.items() if k in keep}
    feats = _pooled(model.model.get_text_features(**enc)).float()
    return torch.nn.functional.normalize(feats, dim=-1)


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
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-5,
    weight_decay: float = 0.01,
    mixgen: bool = True,
    lam: float = 0.5,
    mix_fraction: float = 0.25,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainReport:
    """Fine-tune a dual encoder (in place) with the CLIP contrastive loss, optionally MixGen.

    Deterministic on CPU for a seed. The logit scale stays frozen.
    """
    import torch

    require(
        model,
        Capability.TRAIN | Capability.GRADIENT,
        "robustness/mixgen",
        "it needs a trainable hf: dual encoder (CLIP/SigLIP-style)",
    )
    if len(pairs) < 2:
        raise InputError("MixGen training needs at least 2 image-caption pairs")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = model.model
    params = [
        p for n, p in net.named_parameters() if "logit_scale" not in n and "logit_bias" not in n
    ]
    for n, p in net.named_parameters():
        p.requires_grad_("logit_scale" not in n and "logit_bias" not in n)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scale = float(model.logit_scale)
    all_pixels = model.to_pixels([im for im, _ in pairs]).cpu()
    captions = [c for _, c in pairs]
    bs = min(batch_size, len(pairs))
    n_mix = int(round(mix_fraction * bs)) if mixgen else 0
    report = TrainReport(steps=steps, mixgen=mixgen)
    t0 = time.perf_counter()
    net.train()
    train_started("mixgen fine-tuning" if mixgen else "contrastive fine-tuning", steps)
    try:
        for step in range(steps):
            idx = rng.choice(len(pairs), size=bs, replace=False)
            px = all_pixels[torch.as_tensor(idx)].to(model.device)
            texts = [captions[int(i)] for i in idx]
            if n_mix:
                px, texts = mixgen_batch(px, texts, lam=lam, n_mix=n_mix)
            img = model.image_features(px)
            txt = _text_features(model, texts)
            logits = scale * img @ txt.T
            target = torch.arange(bs, device=logits.device)
            loss = 0.5 * (
                torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)
            )
            optimizer_step(opt, loss, report.losses, step, on_step)
    finally:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
    report.seconds = time.perf_counter() - t0
    # the weights changed: a new fingerprint keeps embedding caches from serving stale vectors
    tag = "mixgen" if mixgen else "finetune"
    model.fingerprint = f"{model.fingerprint}+{tag}:s{seed}n{steps}"
    return report


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
        report = finetune(
            model,
            pairs,
            steps=steps,
            batch_size=p.batch_size,
            lr=p.lr,
            weight_decay=p.weight_decay,
            mixgen=p.mixgen,
            lam=p.lam,
            mix_fraction=p.mix_fraction,
            seed=seed,
        )
        return save_finetuned(model, ctx, self.name, report, p, mixgen=report.mixgen)
