"""A contrastive fine-tuning loop for dual encoders with hard negatives and extra loss terms.

Used by ``robustness/hard_negatives`` (NegCLIP-style: hard-negative captions join the text side
of each batch) and ``robustness/alignment`` (an extra cross-modal alignment term). The loss is
the symmetric CLIP InfoNCE at the model's own (frozen) logit scale; with negatives, image→text
cross-entropy runs over the batch's captions *and* its negatives, text→image over the batch
(Yuksekgonul et al. 2023). Both towers train (AdamW); deterministic on CPU for a seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.model import require
from vlmtrust.core.types import Capability
from vlmtrust.mitigations._train import optimizer_step, train_started


@dataclass
class ContrastiveReport:
    """What a fine-tuning run did."""

    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _pooled(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    return out[0]


def text_features(model: Any, texts: Sequence[str]) -> Any:
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


def contrastive_finetune(
    model: Any,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    *,
    name: str,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-5,
    weight_decay: float = 0.01,
    seed: int = 0,
    negatives: Sequence[Sequence[str]] | None = None,
    extra_loss: Callable[[Any, Any], Any] | None = None,
    mix: Callable[[Any, list[str]], tuple[Any, list[str]]] | None = None,
    tag: str | None = None,
    announce: str | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> ContrastiveReport:
    """Fine-tune a dual encoder in place; the fingerprint gains ``+TAG:sSEEDnSTEPS``.

    Args:
        negatives: per pair, hard-negative captions (NegCLIP); ``None``: plain CLIP loss.
        extra_loss: ``f(image_features, text_features) -> scalar`` added to the loss (both
            ``(B, d)``, L2-normalised, matched row by row).
        mix: ``f(pixels, captions) -> (pixels, captions)`` applied to each batch before the
            forward pass (MixGen).
        tag: the fingerprint tag (default: the short name of ``name``).
        announce: the progress description of the loop (default: none announced).

    Raises:
        CapabilityError: the model cannot be trained.
        InputError: fewer than two pairs, or negatives not one list per pair.
    """
    import torch

    require(
        model,
        Capability.TRAIN | Capability.GRADIENT,
        name,
        "it needs a trainable hf: dual encoder (CLIP/SigLIP-style)",
    )
    if len(images) < 2 or len(images) != len(captions):
        raise InputError(f"{name}: needs at least 2 image-caption pairs, one caption each")
    if negatives is not None and len(negatives) != len(images):
        raise InputError(f"{name}: {len(negatives)} negative lists for {len(images)} pairs")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = model.model
    frozen = ("logit_scale", "logit_bias")
    params = [p for n, p in net.named_parameters() if not any(f in n for f in frozen)]
    for n, p in net.named_parameters():
        p.requires_grad_(not any(f in n for f in frozen))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scale = float(model.logit_scale)
    pixels = model.to_pixels(list(images)).cpu()
    bs = min(batch_size, len(images))
    report = ContrastiveReport(steps=steps)
    t0 = time.perf_counter()
    net.train()
    if announce is not None:
        train_started(announce, steps)
    try:
        for step in range(steps):
            idx = [int(i) for i in rng.choice(len(images), size=bs, replace=False)]
            px = pixels[torch.as_tensor(idx)].to(model.device)
            texts = [captions[i] for i in idx]
            if mix is not None:
                px, texts = mix(px, texts)
            img = model.image_features(px)
            if negatives is not None:
                texts += [t for i in idx for t in negatives[i]]
            txt = text_features(model, texts)
            logits = scale * img @ txt.T
            target = torch.arange(bs, device=logits.device)
            ce = torch.nn.functional.cross_entropy
            loss = 0.5 * (ce(logits, target) + ce(logits[:, :bs].T, target))
            if extra_loss is not None:
                loss = loss + extra_loss(img, txt[:bs])
            optimizer_step(opt, loss, report.losses, step, on_step)
    finally:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
    report.seconds = time.perf_counter() - t0
    # the weights changed: a new fingerprint keeps embedding caches from serving stale vectors
    tag = name.rsplit("/", 1)[-1] if tag is None else tag
    model.fingerprint = f"{model.fingerprint}+{tag}:s{seed}n{steps}"
    return report
