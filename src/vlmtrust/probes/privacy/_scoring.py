"""What the privacy probes ask a model: pair statistics, losses, reference-model fine-tuning.

* Dual encoders: the cosine of an image–caption pair (Ko et al. 2023's threshold statistic)
  and LiRA's ``φ`` of the matched probability — the softmax at the model's logit scale ``s``
  over the pair's own caption and one average distractor of a fixed set,
  ``φ = s·cos − log mean_d exp(s·cos_d)`` (the negative contrastive loss against them; the mean,
  not the sum, so a distractor left out for equalling the caption shifts nothing).
* Generative VLMs (GRADIENT): the mean token NLL of a target answer
  (:meth:`~vlmtrust.models.hf_generative.HFGenerativeModel.target_loss`), ``p = exp(−NLL)``.
* Reference models: :func:`clone` copies a local model's weights; :func:`finetune` trains the
  copy on a set of pairs (contrastive loss for dual encoders, the answers' NLL for generative
  models). :func:`architecture` names what a reference model must share with the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vlmtrust.core.errors import CapabilityError
from vlmtrust.models.clone import clone, unwrap

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "architecture",
    "clone",
    "dual_pair_stats",
    "finetune",
    "generative_nll",
    "same_image_nll",
    "unwrap",
]


def architecture(model: Any) -> str:
    """What a reference model must share with the target: kind, model type, tower sizes.

    Example:
        >>> class M: kind, model_type, config = "dual", "clip", None
        >>> architecture(M())
        'dual clip'
    """
    base = unwrap(model)
    parts = [str(getattr(base, "kind", "?")), str(getattr(base, "model_type", "?"))]
    cfg = getattr(base, "config", None)
    for side in ("vision_config", "text_config"):
        sub = getattr(cfg, side, None)
        if sub is not None:
            h = getattr(sub, "hidden_size", None)
            n = getattr(sub, "num_hidden_layers", None)
            parts.append(f"{side.split('_')[0]} {h}×{n}")
    return " ".join(parts)


def spec_architecture(spec: str) -> str | None:
    """:func:`architecture` of a model spec read from its local ``config.json``, unloaded.

    ``reference:NAME``, ``hf:DIR`` and ``hardened:DIR`` (a local folder with a transformers
    config); ``None`` for anything else (a hub id, a server), whose architecture only loading
    tells.
    """
    import json
    from pathlib import Path

    scheme, _, rest = spec.strip().partition(":")
    folder: Path | None = None
    if scheme == "reference":
        from vlmtrust.models.reference import REFERENCE_MODELS, models_root

        if rest in REFERENCE_MODELS:
            folder = models_root() / rest
    elif scheme in ("hf", "hardened"):
        folder = Path(rest)
    cfg_file = None if folder is None else folder / "config.json"
    if cfg_file is None or not cfg_file.is_file():
        return None
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        return None
    mtype = str(cfg["model_type"])
    kind = "dual" if mtype in DUAL_TYPES else "generative"
    parts = [kind, mtype]
    for side in ("vision_config", "text_config"):
        sub = cfg.get(side)
        if isinstance(sub, dict):
            parts.append(
                f"{side.split('_')[0]} {sub.get('hidden_size')}×{sub.get('num_hidden_layers')}"
            )
    return " ".join(parts)


DUAL_TYPES = frozenset({"clip", "siglip", "siglip2", "chinese_clip", "altclip"})
"""``model_type`` values of transformers dual encoders."""


def check_reference_specs(what: str, refs: Sequence[str], targets: Sequence[str]) -> None:
    """Raise one line when, from their configs, reference models and targets differ in
    architecture (only specs whose architecture :func:`spec_architecture` tells count)."""
    known = [(s, a) for s in refs if (a := spec_architecture(s)) is not None]
    if not known:
        return
    first_spec, first_arch = known[0]
    for spec, arch in known[1:]:
        if arch != first_arch:
            raise CapabilityError(
                f"{what}: reference model {spec} is {arch} but reference model {first_spec} is "
                f"{first_arch}; reference models must share the target's architecture — pass "
                "models of one architecture, or let the probe train them (references=4)"
            )
    for t in targets:
        got = spec_architecture(t)
        if got is not None and got != first_arch:
            raise CapabilityError(
                f"{what}: reference model {first_spec} is {first_arch} but the target {t} is "
                f"{got}; reference models must share the target's architecture — pass such "
                "models, or let the probe train them (references=4)"
            )


def dual_pair_stats(
    model: Any,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    distractors: tuple[Sequence[str], NDArray[np.float32]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(cosine, φ)`` of each image–caption pair (batched embeddings).

    ``distractors`` is ``(texts, their embeddings under this model)``; a distractor equal to
    the pair's own caption is left out of its mean.
    """
    img = np.asarray(model.embed_images(list(images)), dtype=np.float64)
    txt = np.asarray(model.embed_texts(list(captions)), dtype=np.float64)
    cos = (img * txt).sum(axis=1)
    d_texts, d_emb = distractors
    s = float(model.logit_scale)
    other = s * (img @ np.asarray(d_emb, dtype=np.float64).T)
    same = np.array([[c == d for d in d_texts] for c in captions], dtype=bool)
    keep = ~same
    top = np.where(keep, other, -np.inf).max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    mean = (np.exp(other - top) * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
    phi = s * cos - (np.log(np.maximum(mean, 1e-300)) + top[:, 0])
    return cos, phi


def generative_nll(
    model: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 32,
) -> NDArray[np.float64]:
    """Mean token NLL of each target answer after its prompt and image (no gradients)."""
    import torch

    out: list[NDArray[np.float64]] = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            px = model.to_pixels(list(images[i : i + batch_size]))
            loss = model.target_loss(
                px, list(prompts[i : i + batch_size]), list(targets[i : i + batch_size])
            )
            out.append(loss.detach().float().cpu().numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def same_image_nll(
    model: Any, image: Image.Image, prompts: Sequence[str], targets: Sequence[str]
) -> NDArray[np.float64]:
    """:func:`generative_nll` of several answers to one image, its pixels prepared once."""
    import torch

    if not targets:
        return np.zeros(0)
    with torch.no_grad():
        px = model.to_pixels([image])
        px = px.repeat(len(targets), *([1] * (px.dim() - 1)))
        loss = model.target_loss(px, list(prompts), list(targets))
    return np.asarray(loss.detach().float().cpu().numpy(), dtype=np.float64)


def finetune(
    model: Any,
    images: Sequence[Image.Image],
    texts: Sequence[str] | None,
    *,
    prompts: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    steps: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Fine-tune ``model`` (a :func:`clone`) in place on pairs; returns the step losses.

    Dual encoders (``texts`` = captions): the symmetric contrastive loss at the model's logit
    scale, identical captions counted as positives. Generative models (``prompts`` and
    ``targets``): the mean token NLL of the targets. Every parameter is trained with AdamW;
    each step draws ``batch_size`` pairs without replacement.
    """
    import torch

    module = model.model
    n = len(images)
    if n == 0 or steps <= 0:
        return []
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    losses: list[float] = []
    try:
        for step in range(steps):
            idx = rng.choice(n, size=min(batch_size, n), replace=False)
            ims = [images[int(i)] for i in idx]
            if model.kind == "dual":
                assert texts is not None
                caps = [texts[int(i)] for i in idx]
                loss = _contrastive(model, ims, caps)
            else:
                assert prompts is not None and targets is not None
                px = model.to_pixels(ims)
                loss = model.target_loss(
                    px, [prompts[int(i)] for i in idx], [targets[int(i)] for i in idx]
                ).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step, losses[-1])
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        opt.zero_grad(set_to_none=True)
    return losses


def _contrastive(model: Any, images: Sequence[Image.Image], captions: Sequence[str]) -> Any:
    import torch

    img = model.image_features(model.to_pixels(list(images)))
    txt = model.text_features(list(captions), grad=True)
    logits = float(model.logit_scale) * img @ txt.t()
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    lab = torch.tensor([ids[c] for c in captions])
    same = (lab[:, None] == lab[None, :]).float().to(logits.device)
    target = same / same.sum(1, keepdim=True)
    ce = torch.nn.functional.cross_entropy
    return 0.5 * (ce(logits, target) + ce(logits.t(), target))
