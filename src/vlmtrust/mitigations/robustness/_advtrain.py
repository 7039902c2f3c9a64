"""Shared adversarial fine-tuning of a dual encoder's vision tower (FARE and TeCoA).

Both methods solve ``min_θ E max_{‖δ‖∞≤ε} L(θ, x + δ)`` with the text side frozen, the inner
maximisation done by the project's PGD engine (:mod:`vlmtrust.attacks.pgd`) and AdamW outside:

* TeCoA (Mao et al. 2023, "Understanding Zero-Shot Adversarial Robustness for Large-Scale
  Models"): ``L = CE(scale · cos(f_θ(x+δ), T), y)`` — supervised, class prompts ``T`` frozen.
* FARE (Schlarmann et al. 2024, "Robust CLIP: Unsupervised Adversarial Fine-Tuning of Vision
  Embeddings for Robust Large Vision-Language Models"): ``L = ‖f_θ(x+δ) − f_orig(x)‖²₂`` —
  unsupervised, keeps the clean embedding so the tower stays compatible with downstream models.

Embeddings are the model wrapper's L2-normalised ``image_features``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.mitigation import MitigationContext
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability
from vlmtrust.mitigations._train import optimizer_step, train_started

if TYPE_CHECKING:
    import torch
    from PIL import Image


def parse_eps(value: Any) -> float:
    """``0.0078`` or ``"2/255"`` → float in [0, 1]."""
    if isinstance(value, str):
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"eps {value!r} is not a number; write e.g. 2/255") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"eps {value!r} is not a number; write e.g. 2/255")
    v = float(value)
    if not (0.0 < v <= 1.0) or not math.isfinite(v):
        raise ValueError(f"eps {v:g} is outside (0, 1]; budgets are on [0, 1] pixels, e.g. 2/255")
    return v


class AdvTrainParams(Params):
    """Parameters shared by ``robustness/fare`` and ``robustness/tecoa``."""

    eps: float = Field(2 / 255, description="L∞ training budget on [0, 1] pixels (e.g. 2/255)")
    attack_steps: int = Field(3, ge=1, le=100, description="PGD steps of the inner maximisation")
    attack_step: float | None = Field(None, gt=0, description="PGD α; default 2.5·ε/steps")
    steps: int = Field(150, ge=1, le=1_000_000, description="optimiser steps")
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(1e-4, gt=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    warmup: float = Field(0.1, ge=0, lt=1, description="share of steps with linear LR warm-up")
    n_train: int = Field(2048, ge=8, le=1_000_000, description="training images")
    n_eval: int = Field(128, ge=0, le=100_000, description="held-out images for before/after")
    eval_steps: int = Field(10, ge=1, le=1000, description="PGD steps of the before/after check")
    class_template: str = "a photo of a {}"

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, v: Any) -> float:
        return parse_eps(v)

    @field_validator("class_template")
    @classmethod
    def _template(cls, v: str) -> str:
        if "{}" not in v:
            raise ValueError("class_template needs a '{}' placeholder for the class name")
        return v


@dataclass(frozen=True)
class AdvTrainConfig:
    """One adversarial fine-tuning run (see :class:`AdvTrainParams` for the meaning)."""

    objective: Literal["fare", "tecoa"]
    eps: float = 2 / 255
    attack_steps: int = 3
    attack_step: float | None = None
    steps: int = 150
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: float = 0.1
    seed: int = 0

    @classmethod
    def from_params(
        cls, objective: Literal["fare", "tecoa"], p: AdvTrainParams, seed: int, quick: bool
    ) -> AdvTrainConfig:
        """Build from mitigation params (``quick`` divides the step count by 5)."""
        return cls(
            objective=objective,
            eps=p.eps,
            attack_steps=p.attack_steps,
            attack_step=p.attack_step,
            steps=max(1, p.steps // 5) if quick else p.steps,
            batch_size=p.batch_size,
            lr=p.lr,
            weight_decay=p.weight_decay,
            warmup=p.warmup,
            seed=seed,
        )

    @property
    def alpha(self) -> float:
        """Inner PGD step size."""
        return (
            self.attack_step if self.attack_step is not None else 2.5 * self.eps / self.attack_steps
        )


@dataclass
class TrainLog:
    """What the training loop did."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trainable: int = 0


def vision_parameters(module: Any) -> list[tuple[str, Any]]:
    """The image-side parameters of a dual encoder (``vision_model.*``, ``visual_projection.*``).

    Raises:
        InputError: when the module has no recognisable vision tower.
    """
    named = [
        (n, p)
        for n, p in module.named_parameters()
        if n.startswith(("vision_model.", "visual_projection.", "vision_tower.", "visual."))
    ]
    if not named:
        raise InputError(
            "adversarial fine-tuning: the model has no vision_model/visual_projection "
            "parameters; use a CLIP/SigLIP-style dual encoder"
        )
    return named


def clone_dual(model: Any) -> Any:
    """A copy of a dual-encoder wrapper with its own weights (the caller's model is untouched)."""
    twin = copy.copy(model)
    twin.model = copy.deepcopy(model.model)
    return twin


def check_dual(model: Any, what: str) -> None:
    """Raise a one-line error unless ``model`` is a trainable dual encoder with GRADIENT."""
    if getattr(model, "kind", None) != "dual":
        raise CapabilityError(f"{what} hardens dual encoders; model {model.spec} is {model.kind}")
    missing = (Capability.GRADIENT | Capability.TRAIN) & ~model.capabilities
    if missing:
        raise CapabilityError(
            f"{what} needs {', '.join(missing.names()).upper()} but model {model.spec} lacks it; "
            "use a local transformers CLIP/SigLIP checkpoint (hf:DIR)"
        )


def training_images(
    ctx: MitigationContext, n: int, *, purpose: str
) -> tuple[list[Image.Image], list[str]]:
    """Labeled training images: the user's data (``ctx.data``) or SynthWorld ID shapes.

    SynthWorld images are drawn from a seed stream disjoint from the probes' (``purpose``).
    """
    if ctx.data is None:
        import hashlib

        from vlmtrust.data.synthworld import SynthWorld

        h = hashlib.sha256(f"{ctx.seed}|{purpose}".encode()).digest()
        world = SynthWorld(seed=int.from_bytes(h[:4], "little") & 0x7FFFFFFF)
        samples = world.shapes(n)
        return [s.image for s in samples], [str(s.attributes["shape"]) for s in samples]
    from vlmtrust.core.sample import Sample
    from vlmtrust.data.datasets import iter_dataset

    images: list[Image.Image] = []
    labels: list[str] = []
    for item in iter_dataset(ctx.data, limits=ctx.data_limits):
        if len(images) >= n:
            break
        if isinstance(item, Sample) and item.images:
            images.append(item.images[0].load())
            labels.append(str(item.target or ""))
    if not images:
        raise InputError(f"dataset {ctx.data}: no usable images for adversarial fine-tuning")
    return images, labels


def _pixels(model: Any, images: Sequence[Image.Image], chunk: int = 256) -> torch.Tensor:
    import torch

    parts = [model.to_pixels(list(images[i : i + chunk])) for i in range(0, len(images), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _features(model: Any, pixels: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    import torch

    with torch.no_grad():
        return torch.cat(
            [model.image_features(pixels[i : i + chunk]) for i in range(0, len(pixels), chunk)]
        )


def adversarial_finetune(
    model: Any,
    pixels: torch.Tensor,
    cfg: AdvTrainConfig,
    *,
    labels: torch.Tensor | None = None,
    class_text_features: torch.Tensor | None = None,
    logit_scale: float = 100.0,
    progress: Callable[[int, float], None] | None = None,
) -> TrainLog:
    """Fine-tune ``model``'s vision tower in place against PGD (FARE or TeCoA).

    Args:
        model: a dual-encoder wrapper with ``model`` (torch module) and ``image_features``.
        pixels: ``(N, 3, H, W)`` training images in [0, 1] (from ``model.to_pixels``).
        cfg: the run's settings.
        labels: ``(N,)`` class indices (TeCoA).
        class_text_features: ``(C, d)`` frozen, L2-normalised class prompts (TeCoA).
        logit_scale: TeCoA's logit scale.
        progress: called as ``progress(step, loss)`` after each step.

    Returns:
        A :class:`TrainLog` (per-step losses, time, number of trained parameters).
    """
    import torch

    from vlmtrust.attacks.pgd import AttackConfig, attack, embedding_distance, zero_shot_ce

    if cfg.objective == "tecoa" and (labels is None or class_text_features is None):
        raise InputError("TeCoA needs labels and class text features")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    module = model.model
    train = vision_parameters(module)
    train_ids = {id(p) for _, p in train}
    for p in module.parameters():
        p.requires_grad_(id(p) in train_ids)
    params = [p for _, p in train]
    log = TrainLog(trainable=sum(p.numel() for p in params))
    clean = _features(model, pixels) if cfg.objective == "fare" else None
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_warm = int(cfg.warmup * cfg.steps)

    def lr_at(step: int) -> float:
        if step < n_warm:
            return cfg.lr * (step + 1) / n_warm
        t = (step - n_warm) / max(1, cfg.steps - n_warm)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))

    n = pixels.shape[0]
    bs = min(cfg.batch_size, n)
    order = torch.randperm(n, generator=gen)
    pos = 0
    module.eval()  # CLIP-style towers have no dropout/batch-norm to switch; keep eval semantics
    t0 = time.perf_counter()
    train_started(f"{cfg.objective} adversarial fine-tuning", cfg.steps)
    for step in range(cfg.steps):
        if pos + bs > n:
            order = torch.randperm(n, generator=gen)
            pos = 0
        idx = order[pos : pos + bs]
        pos += bs
        x = pixels[idx]
        if cfg.objective == "fare":
            assert clean is not None
            obj = embedding_distance(model, clean[idx])
        else:
            assert labels is not None and class_text_features is not None
            obj = zero_shot_ce(model, class_text_features, labels[idx], logit_scale)
        acfg = AttackConfig(
            norm="linf",
            eps=cfg.eps,
            step=cfg.alpha,
            steps=cfg.attack_steps,
            random_start=True,
            seed=cfg.seed * 1_000_003 + step,
        )
        adv = attack(obj, x, acfg).pixels
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = obj(adv).mean()
        optimizer_step(opt, loss, log.losses, step, progress)
    for p in module.parameters():
        p.requires_grad_(True)
    module.eval()
    log.seconds = time.perf_counter() - t0
    return log


@dataclass(frozen=True)
class RobustEval:
    """Clean and PGD robust zero-shot accuracy on a held-out set."""

    clean_accuracy: float
    robust_accuracy: float
    eps: float
    n: int


def zero_shot_robustness(
    model: Any,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    class_text_features: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    seed: int = 0,
    logit_scale: float | None = None,
    batch_size: int = 128,
) -> RobustEval:
    """Clean and L∞ PGD (early-stopped, random start) robust zero-shot accuracy."""
    import torch

    from vlmtrust.attacks.pgd import AttackConfig, attack, zero_shot_ce

    scale = float(logit_scale if logit_scale is not None else getattr(model, "logit_scale", 100.0))
    clean_ok = 0
    robust_ok = 0
    for i in range(0, len(pixels), batch_size):
        x, y = pixels[i : i + batch_size], labels[i : i + batch_size]
        with torch.no_grad():
            clean_ok += int(
                ((model.image_features(x) @ class_text_features.T).argmax(1) == y).sum()
            )
        cfg = AttackConfig(eps=eps, steps=steps, seed=seed + i, early_stop=True)
        adv = attack(zero_shot_ce(model, class_text_features, y, scale), x, cfg).pixels
        with torch.no_grad():
            robust_ok += int(
                ((model.image_features(adv) @ class_text_features.T).argmax(1) == y).sum()
            )
    n = len(pixels)
    return RobustEval(clean_ok / max(n, 1), robust_ok / max(n, 1), eps, n)


def class_setup(
    model: Any, labels: Sequence[str], template: str
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Class list, label indices and frozen class-prompt features for ``labels``."""
    import torch

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InputError(
            "adversarial fine-tuning with labels needs at least 2 classes in the training data"
        )
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index[lab] for lab in labels], dtype=torch.long)
    text = model.text_features([template.format(c) for c in classes])
    return classes, y.to(text.device), text


def holdout_indices(labels: Sequence[str], n: int, seed: int) -> list[int]:
    """Up to ``n`` indices to hold out, round-robin over the classes (both orders seeded).

    A class never gives up its last image, so training keeps every class.

    Example:
        >>> labels = ["a"] * 10 + ["b"] * 3
        >>> sorted(labels[i] for i in holdout_indices(labels, 4, 0))
        ['a', 'a', 'b', 'b']
        >>> holdout_indices(["a", "b"], 2, 0)
        []
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    queues = [[int(i) for i in rng.permutation(g)] for _, g in sorted(groups.items())]
    queues = [queues[int(k)] for k in rng.permutation(len(queues))]  # no alphabetical bias
    held: list[int] = []
    while len(held) < n:
        moved = False
        for q in queues:
            if len(q) > 1 and len(held) < n:
                held.append(q.pop())
                moved = True
        if not moved:
            break
    return sorted(held)


def _measure(
    model: Any, px: torch.Tensor, y: torch.Tensor, text: torch.Tensor, p: AdvTrainParams, seed: int
) -> dict[str, Any]:
    """Clean and robust zero-shot accuracy of ``model`` on held-out pixels (the summary rows)."""
    r = zero_shot_robustness(model, px, y, text, eps=p.eps, steps=p.eval_steps, seed=seed)
    return {"clean_accuracy": r.clean_accuracy, "robust_accuracy": r.robust_accuracy, "n": r.n}


def harden_dual(
    model: Any,
    ctx: MitigationContext,
    p: AdvTrainParams,
    objective: Literal["fare", "tecoa"],
) -> tuple[Any, dict[str, Any]]:
    """Copy ``model``, fine-tune the copy (FARE/TeCoA), measure before/after; no writing.

    Returns the hardened wrapper and a JSON-serialisable summary.
    """
    what = f"robustness/{objective}"
    check_dual(model, what)
    images, labels = training_images(ctx, p.n_train, purpose=f"{objective}-train")
    held_images: list[Any] = []
    held_labels: list[str] = []
    # user data: up to n_eval labeled images, spread over the classes and never a class's
    # last one, are held out of training for before/after (only when as many remain to train)
    if ctx.data is not None and p.n_eval > 0 and all(labels) and len(images) >= 2 * p.n_eval:
        held = set(holdout_indices(labels, p.n_eval, ctx.seed))
        held_images = [im for i, im in enumerate(images) if i in held]
        held_labels = [lab for i, lab in enumerate(labels) if i in held]
        images = [im for i, im in enumerate(images) if i not in held]
        labels = [lab for i, lab in enumerate(labels) if i not in held]
    hardened = clone_dual(model)
    pixels = _pixels(hardened, images)
    cfg = AdvTrainConfig.from_params(objective, p, ctx.seed, ctx.quick)
    use_labels = objective == "tecoa" or p.n_eval > 0
    classes: list[str] = []
    y = text = None
    if use_labels and all(labels):
        classes, y, text = class_setup(model, labels, p.class_template)
    elif objective == "tecoa":
        raise InputError(f"{what}: every training image needs a label (the class name)")
    summary: dict[str, Any] = {"objective": objective, "eps": p.eps, "steps": cfg.steps}
    eval_px = eval_y = None

    if p.n_eval > 0 and text is None:
        summary["before_after_skipped"] = (
            "the before/after robust accuracy needs a label (class name) on every image; "
            "FARE trained without labels"
        )
    if p.n_eval > 0 and text is not None:
        if ctx.data is None:
            ev_images, ev_labels = training_images(ctx, p.n_eval, purpose="advtrain-eval")
        else:  # user data: the held-out images (none when there were too few to split)
            ev_images, ev_labels = held_images, held_labels
        keep = [i for i, lab in enumerate(ev_labels) if lab in classes]
        if not keep:
            summary["before_after_skipped"] = (
                f"no labeled images could be held out of the {len(images)} training images for "
                f"the before/after measurement (n_eval={p.n_eval} needs {2 * p.n_eval} labeled "
                "images, two of a class at least); set n_eval lower or add data"
            )
        else:
            import torch

            eval_px = _pixels(model, [ev_images[i] for i in keep])
            eval_y = torch.tensor([classes.index(ev_labels[i]) for i in keep], dtype=torch.long)
            summary["before"] = _measure(model, eval_px, eval_y, text, p, ctx.seed)
    scale = float(getattr(model, "logit_scale", 100.0))
    log = adversarial_finetune(
        hardened, pixels, cfg, labels=y, class_text_features=text, logit_scale=scale
    )
    summary.update(
        {
            "train_seconds": round(log.seconds, 2),
            "trainable_parameters": log.trainable,
            "final_loss": log.losses[-1] if log.losses else None,
            "n_train": len(images),
        }
    )
    if eval_px is not None and eval_y is not None and text is not None:
        summary["after"] = _measure(hardened, eval_px, eval_y, text, p, ctx.seed)
    return hardened, summary
