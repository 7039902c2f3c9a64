"""``privacy/adversarial_regularization``: min-max membership privacy (Nasr et al. 2018).

Fine-tunes a copy of a CLIP-style dual encoder on image–caption pairs (the members) while an
*inference model* ``h`` learns to tell members from a reference set of non-members the model
never trains on. The two are trained in alternation (Nasr, Shokri and Houmansadr 2018,
"Machine Learning with Membership Privacy using Adversarial Regularization", Algorithm 1):

1. ``attack_steps`` updates of ``h`` on a member batch (label 1) and a reference batch
   (label 0), the model frozen: binary cross-entropy on ``h(φ(x))``;
2. one update of the model on a member batch, ``h`` frozen, minimising

   ``L(f) + λ · mean_B log σ(h(φ_f(x)))``

   — the task loss plus λ times the attack's gain on the members (the log-probability it
   gives them of being members), so the model is pushed to make its members look like the
   reference non-members.

``φ(x)`` are the per-pair statistics a black-box attacker sees, differentiable in the model:
the scaled cosine of the image and its own caption (the threshold attack's score), the pair's
contrastive loss, and the largest scaled cosine of the image to a public caption. The task
loss is :func:`~vlmtrust.mitigations.privacy.dp_finetune.pair_losses` (each pair against its
own partner and a public contrast bank), so ``λ = 0`` is exactly the non-private fine-tune of
``privacy/dp_finetune`` with ``epsilon=inf`` on the same data, batches and budget: the
control.

Three disjoint candidate sets: members (trained on), the attacker's reference non-members
(seen by ``h`` only), held-out non-members (never seen by either; they measure the result).
Default: SynthWorld canaries from index ranges no probe or other mitigation uses; with
``--data``, the pairs split at random (seeded) into thirds. ``hardening.json`` holds the
membership AUC of the members against the held-out set (threshold attack: image–own-caption
cosine; and calibrated: the gain over the base model), the final attack's AUC on its own
training sets, and zero-shot shape accuracy before and after (the utility cost).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Pillar
from vlmtrust.mitigations._train import TunedCopy
from vlmtrust.mitigations.privacy.dp_finetune import (
    MEMBER_START,
    NON_MEMBER_START,
    PUBLIC_START,
    _auc,
    _canaries,
    _manifest_pairs,
    _trainable,
    membership_auc,
    pair_losses,
    shape_accuracy,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

NAME = "privacy/adversarial_regularization"
REFERENCE_START = 875_000
"""First SynthWorld canary index (world seed 0) of the attacker's reference non-members."""
N_FEATURES = 3


class AdvRegParams(Params):
    """Parameters of ``privacy/adversarial_regularization``."""

    lam: float = Field(
        3.0, ge=0, le=1000, description="λ: weight of the attack's gain (0: control)"
    )
    steps: int = Field(60, ge=1, le=100_000, description="model updates")
    attack_steps: int = Field(2, ge=1, le=100, description="attack updates before each model one")
    batch_size: int = Field(
        32, ge=2, le=4096, description="pairs per batch (members and reference)"
    )
    lr: float = Field(5e-4, gt=0, lt=1, description="AdamW learning rate of the model")
    attack_lr: float = Field(1e-2, gt=0, lt=1, description="Adam learning rate of the attack")
    n_members: int = Field(128, ge=8, le=100_000, description="pairs fine-tuned on")
    n_reference: int = Field(128, ge=8, le=100_000, description="attacker's reference non-members")
    n_non_members: int = Field(128, ge=8, le=100_000, description="held-out candidate pairs")
    n_public: int = Field(64, ge=1, le=10_000, description="public contrast bank size")
    n_eval: int = Field(128, ge=0, le=100_000, description="shape images for zero-shot accuracy")


@dataclass
class AdvRegLog:
    """What a run did: task losses, attack losses, the attack's final AUC, time."""

    task_losses: list[float] = field(default_factory=list)
    attack_losses: list[float] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    attack_auc: float | None = None
    seconds: float = 0.0
    trainable: int = 0


def attack_head(seed: int) -> Any:
    """The inference model ``h``: a small MLP over standardised pair statistics."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
    )


def pair_features(
    img: torch.Tensor,
    txt: torch.Tensor,
    bank_img: torch.Tensor,
    bank_txt: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """``(B, 3)``: scaled own cosine, pair loss, largest scaled cosine to a public caption."""
    import torch

    cos = scale * (img * txt).sum(1)
    loss = pair_losses(img, txt, bank_img, bank_txt, scale)
    top = (scale * img @ bank_txt.T).max(1).values
    return torch.stack([cos, loss, top], dim=1)


def adversarial_finetune(
    model: Any,
    pixels: torch.Tensor,
    captions: list[str],
    ref_pixels: torch.Tensor,
    ref_captions: list[str],
    bank_pixels: torch.Tensor,
    bank_captions: list[str],
    p: AdvRegParams,
    *,
    steps: int,
    seed: int,
) -> AdvRegLog:
    """Fine-tune ``model`` (a dual-encoder wrapper) in place with the min-max objective.

    ``λ = 0`` trains the attack too (its AUC is still reported) but leaves it out of the
    model's loss, so the model's updates equal the plain fine-tune's.
    """
    import torch

    n, n_ref = len(captions), len(ref_captions)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = model.model
    params = _trainable(module)
    log = AdvRegLog(trainable=sum(q.numel() for q in params))
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=0.0)
    head = attack_head(seed + 1)
    h_opt = torch.optim.Adam(head.parameters(), lr=p.attack_lr)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    scale = float(model.logit_scale)
    b = min(p.batch_size, n, n_ref)

    def feats(px: torch.Tensor, caps: list[str], bank: tuple[Any, Any], grad: bool) -> Any:
        img = model.image_features(px)
        txt = model.text_features(caps, grad=grad)
        return pair_features(img, txt, bank[0], bank[1], scale)

    def norm(f: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return (f - stats[0]) / stats[1]

    t0 = time.perf_counter()
    module.train()
    try:
        for _ in range(steps):
            with torch.no_grad():
                bank = (model.image_features(bank_pixels), model.text_features(bank_captions))
            # 1. the inference model, on fresh member and reference batches (model frozen)
            for _ in range(p.attack_steps):
                mi = torch.randperm(n, generator=gen)[:b].tolist()
                ri = torch.randperm(n_ref, generator=gen)[:b].tolist()
                with torch.no_grad():
                    fm = feats(pixels[mi], [captions[i] for i in mi], bank, False)
                    fr = feats(ref_pixels[ri], [ref_captions[i] for i in ri], bank, False)
                    both = torch.cat([fm, fr])
                    stats = (both.mean(0), both.std(0).clamp_min(1e-6))
                logits = head(norm(both, stats))[:, 0]
                y = torch.cat([torch.ones(len(mi)), torch.zeros(len(ri))])
                h_loss: Any = bce(logits, y)
                h_opt.zero_grad(set_to_none=True)
                h_loss.backward()
                h_opt.step()
                log.attack_losses.append(float(h_loss.detach()))
            # 2. the model, on a member batch (attack frozen)
            mi = torch.randperm(n, generator=gen)[:b].tolist()
            img = model.image_features(pixels[mi])
            txt = model.text_features([captions[i] for i in mi], grad=True)
            task = pair_losses(img, txt, bank[0], bank[1], scale).mean()
            loss: Any = task
            if p.lam > 0:
                f = pair_features(img, txt, bank[0], bank[1], scale)
                gain = torch.nn.functional.logsigmoid(head(norm(f, stats))[:, 0]).mean()
                loss = task + p.lam * gain
                log.gains.append(float(gain.detach()))
            opt.zero_grad(set_to_none=True)
            head.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            log.task_losses.append(float(task.detach()))
        # the final attack's AUC on its own training sets (members vs reference)
        with torch.no_grad():
            fm = feats(pixels, list(captions), bank, False)
            fr = feats(ref_pixels, list(ref_captions), bank, False)
            both = torch.cat([fm, fr])
            stats = (both.mean(0), both.std(0).clamp_min(1e-6))
            s = head(norm(both, stats))[:, 0].numpy()
        log.attack_auc = _auc(s[:n], s[n:])
    finally:
        for q in module.parameters():
            q.requires_grad_(True)
            q.grad = None
        module.eval()
    log.seconds = time.perf_counter() - t0
    return log


def advreg_candidates(
    p: AdvRegParams, ctx: MitigationContext
) -> tuple[tuple[list[Image.Image], list[str]], ...]:
    """``(members, reference, held-out)`` as ``(images, captions)`` each (disjoint)."""
    if ctx.data is None:
        return (
            _canaries(MEMBER_START, p.n_members),
            _canaries(REFERENCE_START, p.n_reference),
            _canaries(NON_MEMBER_START, p.n_non_members),
        )
    images, caps = _manifest_pairs(ctx.data, ctx)
    order = np.random.default_rng(ctx.seed).permutation(len(images))
    third = len(order) // 3
    parts = (
        order[:third][: p.n_members],
        order[third : 2 * third][: p.n_reference],
        order[2 * third :][: p.n_non_members],
    )
    return tuple(([images[i] for i in idx], [caps[i] for i in idx]) for idx in parts)


def run_adversarial_regularization(
    model: Any, ctx: MitigationContext, p: AdvRegParams
) -> tuple[Any, dict[str, Any]]:
    """Copy ``model``, fine-tune the copy, measure before/after; nothing written.

    Returns the fine-tuned wrapper and a JSON-serialisable summary.
    """
    from vlmtrust.mitigations.robustness._advtrain import check_dual, clone_dual

    check_dual(model, NAME)
    members, reference, held = advreg_candidates(p, ctx)
    bi, bc = _canaries(PUBLIC_START, p.n_public)
    steps = max(1, p.steps // 5) if ctx.quick else p.steps
    cands = (members[0], members[1], held[0], held[1])
    before_auc, b_in, b_out = membership_auc(model, cands)
    before_acc = shape_accuracy(model, p.n_eval, ctx.seed)
    tuned = clone_dual(model)
    log = adversarial_finetune(
        tuned,
        tuned.to_pixels(members[0]),
        members[1],
        tuned.to_pixels(reference[0]),
        reference[1],
        tuned.to_pixels(bi),
        bc,
        p,
        steps=steps,
        seed=ctx.seed,
    )
    auc, s_in, s_out = membership_auc(tuned, cands)
    after_acc = shape_accuracy(tuned, p.n_eval, ctx.seed)
    privacy = {
        "adversarial_regularization": True,
        "lambda": p.lam,
        "steps": steps,
        "attack_steps": p.attack_steps,
        "attack_features": ["scaled own cosine", "pair loss", "max scaled public cosine"],
        "dp": False,
        "epsilon": None,
    }
    summary: dict[str, Any] = {
        "privacy": privacy,
        "membership_auc_before": before_auc,
        "membership_auc": auc,
        "membership_auc_calibrated": _auc(s_in - b_in, s_out - b_out),
        "attack_auc_train": log.attack_auc,
        "zero_shot_accuracy_before": before_acc,
        "zero_shot_accuracy_after": after_acc,
        "n_members": len(members[0]),
        "n_reference": len(reference[0]),
        "n_non_members": len(held[0]),
        "train_seconds": round(log.seconds, 2),
        "trainable_parameters": log.trainable,
        "final_task_loss": log.task_losses[-1] if log.task_losses else None,
        "final_attack_loss": log.attack_losses[-1] if log.attack_losses else None,
        "final_gain": log.gains[-1] if log.gains else None,
    }
    if not math.isfinite(auc):
        summary["membership_auc"] = None
    return tuned, summary


@mitigation(NAME)
class AdversarialRegularization(TunedCopy):
    """Nasr et al. 2018 min-max membership-privacy fine-tuning; λ=0 is the plain control."""

    pillar = Pillar.PRIVACY
    Params = AdvRegParams
    description = (
        "Adversarial regularisation (Nasr et al. 2018): fine-tune a dual encoder while an "
        "inference model learns to spot its members; the model's loss adds λ·the attack's gain."
    )

    params: AdvRegParams

    def tune(self, model: Any, ctx: MitigationContext) -> tuple[Any, dict[str, Any]]:
        """The min-max fine-tuning run."""
        return run_adversarial_regularization(model, ctx, self.params)
