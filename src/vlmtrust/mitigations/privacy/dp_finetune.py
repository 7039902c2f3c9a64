"""``privacy/dp_finetune``: DP-SGD fine-tuning of a dual encoder with Opacus.

Fine-tunes a copy of a CLIP-style dual encoder on image–caption pairs with DP-SGD (Abadi et
al. 2016) through Opacus: Poisson-sampled batches, each pair's gradient clipped to
``max_grad_norm``, Gaussian noise of ``noise_multiplier · max_grad_norm`` added to the sum.
The noise multiplier is chosen by Opacus' RDP accountant so that the whole run is
``(epsilon, delta)``-DP (add/remove-one-pair adjacency) for the pairs trained on.
``epsilon=inf`` is the control: the same data, steps, batch size and learning rate with no
clipping and no noise.

**How a pair's gradient is clipped.** The usual CLIP loss couples a batch: each image is
contrasted with every other caption in it, so one pair's loss term depends on the others and
"per-sample" gradients of that loss do not bound what one pair contributes (replacing a pair
changes every row of the logit matrix). Clipping the whole batch's gradient instead would make
the batch the privacy unit (a far weaker guarantee per pair). Here each pair's loss is made
independent of the rest of the batch: the image is contrasted with its own caption and with a
bank of *public* captions, the caption with its own image and a bank of public images. The
bank (SynthWorld canaries from an index range no candidate uses, or the user's
``public_data``) is embedded by the current weights without gradient before each step; as a
function of public data and of earlier (already private) steps it costs no privacy. Then the
gradient of pair *i*'s loss is exactly what pair *i* adds, Opacus clips it per pair, and the
accountant's ε is per pair.

Trained: every parameter except the position and class embeddings and the logit scale
(Opacus computes per-sample gradients of layers whose inputs carry the batch; those three are
broadcast over it), which stay as they were.

The accountant's (ε, δ), noise multiplier, clipping norm and sampling rate go into
``config.json`` under ``vlmtrust_privacy`` and into ``hardening.json``; the latter also holds
the membership AUROC of the fine-tuning candidates (image–own-caption cosine, trained vs
held-out pairs; and calibrated: each pair's cosine gain over the base model), an empirical
lower bound on ε from the calibrated attack (:mod:`vlmtrust.mitigations.privacy.audit`) and
zero-shot shape accuracy before and after (the utility cost). Needs the ``privacy-train``
extra (``opacus``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, field_validator

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import TunedCopy, train_started, train_step

if TYPE_CHECKING:
    import torch
    from PIL import Image

MEMBER_START = 800_000
"""First SynthWorld canary index (world seed 0) of the default fine-tuning members."""
NON_MEMBER_START = 850_000
"""First canary index of the default held-out candidates."""
PUBLIC_START = 900_000
"""First canary index of the default public contrast bank."""
_HOOK_WARNING = "Full backward hook is firing"
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(11, 64)] + [96.0, 128.0]
"""RDP orders the accountant optimises over (Opacus' defaults and two larger ones, for short,
lightly-noised runs). When the best order is the largest, the ε reported is still an upper
bound, only a looser one; Opacus' warning about it is silenced."""
_ALPHA_WARNING = "Optimal order is the"
FROZEN = ("position_embedding", "class_embedding", "logit_scale")
"""Parameter-name parts left untrained (broadcast over the batch; see the module docstring)."""


def _opacus() -> Any:
    try:
        import opacus
    except ImportError:
        raise InputError(
            "privacy/dp_finetune needs opacus; install it with "
            "pip install 'vlmtrust[privacy-train]'"
        ) from None
    return opacus


class DPFinetuneParams(Params):
    """Parameters of ``privacy/dp_finetune``."""

    epsilon: float = Field(8.0, gt=0, description="target ε of the run (inf: non-private control)")
    delta: float = Field(1e-5, gt=0, lt=1, description="target δ")
    max_grad_norm: float = Field(1.0, gt=0, description="per-pair gradient clipping norm")
    steps: int = Field(60, ge=1, le=100_000, description="optimiser steps")
    batch_size: int = Field(32, ge=2, le=4096, description="expected (Poisson) batch size")
    lr: float = Field(5e-4, gt=0, lt=1, description="AdamW learning rate (same for the control)")
    n_members: int = Field(128, ge=8, le=100_000, description="pairs fine-tuned on")
    n_non_members: int = Field(128, ge=8, le=100_000, description="held-out candidate pairs")
    n_public: int = Field(64, ge=1, le=10_000, description="public contrast bank size")
    n_eval: int = Field(128, ge=0, le=100_000, description="shape images for zero-shot accuracy")
    public_data: str | None = Field(
        None, description="manifest of public image–caption pairs for the contrast bank"
    )

    @field_validator("epsilon", mode="before")
    @classmethod
    def _eps(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in {"inf", "infinity", "∞", "none"}:
            return math.inf
        return v


@dataclass
class DPConfig:
    """One fine-tuning run (see :class:`DPFinetuneParams`)."""

    epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    steps: int = 60
    batch_size: int = 32
    lr: float = 5e-4
    seed: int = 0


@dataclass
class DPLog:
    """What a run did: losses, time, the noise and the accountant's ε."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trainable: int = 0
    noise_multiplier: float = 0.0
    sample_rate: float = 0.0
    epsilon: float = math.inf
    step_seconds: list[float] = field(default_factory=list)


def pair_losses(
    img: torch.Tensor,
    txt: torch.Tensor,
    bank_img: torch.Tensor,
    bank_txt: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Each pair's symmetric contrastive loss against its own partner and a public bank.

    ``img``, ``txt``: ``(B, d)`` L2-normalised; ``bank_*``: ``(P, d)`` constants. Row *i*
    depends on pair *i* and the bank only, so per-pair gradients are the pair's contribution.
    """
    import torch

    pos = scale * (img * txt).sum(1, keepdim=True)
    li = torch.cat([pos, scale * img @ bank_txt.T], dim=1)
    lt = torch.cat([pos, scale * txt @ bank_img.T], dim=1)
    zero = torch.zeros(len(img), dtype=torch.long, device=img.device)
    ce = torch.nn.functional.cross_entropy
    return 0.5 * (ce(li, zero, reduction="none") + ce(lt, zero, reduction="none"))


def _trainable(module: Any) -> list[Any]:
    params = []
    for n, p in module.named_parameters():
        train = not any(f in n for f in FROZEN)
        p.requires_grad_(train)
        if train:
            params.append(p)
    return params


def _start(params: Sequence[Any], cfg: DPConfig, n: int) -> tuple[DPLog, Any]:
    """A DP run's log (trainable size, Poisson sample rate over ``n`` records) and its AdamW."""
    import torch

    log = DPLog(trainable=sum(p.numel() for p in params))
    log.sample_rate = min(1.0, cfg.batch_size / n)
    return log, torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)


def _finish(log: DPLog, accountant: Any, cfg: DPConfig, t0: float) -> DPLog:
    """``log`` with the run's seconds since ``t0`` and the ε the accountant (if any) spent."""
    log.seconds = time.perf_counter() - t0
    if accountant is not None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_ALPHA_WARNING)
            log.epsilon = float(accountant.get_epsilon(delta=cfg.delta, alphas=ALPHAS))
    return log


def dp_finetune(
    model: Any,
    pixels: torch.Tensor,
    captions: Sequence[str],
    bank_pixels: torch.Tensor,
    bank_captions: Sequence[str],
    cfg: DPConfig,
    *,
    progress: Callable[[int, float], None] | None = None,
) -> DPLog:
    """Fine-tune ``model`` (a dual-encoder wrapper) in place; DP-SGD unless ``epsilon`` is inf.

    Both runs draw each step's batch by Poisson sampling at rate ``batch_size / n`` (the
    control too, so the two differ only in clipping and noise).
    """
    import torch

    n = len(captions)
    if n < 2 or pixels.shape[0] != n:
        raise InputError(f"dp_finetune: {pixels.shape[0]} images for {n} captions (need ≥ 2)")
    torch.manual_seed(cfg.seed)
    module = model.model
    params = _trainable(module)
    log, opt = _start(params, cfg, n)
    q, private = log.sample_rate, math.isfinite(cfg.epsilon)
    gsm = None
    accountant = None
    if private:
        opacus = _opacus()
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_ALPHA_WARNING)
            sigma = get_noise_multiplier(
                target_epsilon=cfg.epsilon,
                target_delta=cfg.delta,
                sample_rate=q,
                steps=cfg.steps,
                accountant="rdp",
                alphas=ALPHAS,
            )
        log.noise_multiplier = float(sigma)
        gsm = opacus.GradSampleModule(module)
        opt = DPOptimizer(
            opt,
            noise_multiplier=sigma,
            max_grad_norm=cfg.max_grad_norm,
            expected_batch_size=cfg.batch_size,
            loss_reduction="mean",
            generator=torch.Generator().manual_seed(cfg.seed + 1),
        )
        accountant = RDPAccountant()
        opt.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=q))
    gen = torch.Generator().manual_seed(cfg.seed)
    scale = float(model.logit_scale)
    module.train()
    t0 = time.perf_counter()
    train_started("DP-SGD fine-tuning" if private else "fine-tuning (no DP control)", cfg.steps)
    try:
        for step in range(cfg.steps):
            ts = time.perf_counter()
            mask = torch.rand(n, generator=gen) < q
            idx = torch.nonzero(mask).flatten().tolist()
            with torch.no_grad():
                bank_img = model.image_features(bank_pixels)
                bank_txt = model.text_features(list(bank_captions))
            opt.zero_grad(set_to_none=True)
            if idx:
                img = model.image_features(pixels[idx])
                txt = model.text_features([captions[i] for i in idx], grad=True)
                # mean over the drawn batch; DPOptimizer rescales to the expected batch size
                loss: Any = pair_losses(img, txt, bank_img, bank_txt, scale).mean()
                with warnings.catch_warnings():
                    # Opacus' hooks see module outputs only (pixels need no gradient): harmless
                    warnings.filterwarnings("ignore", message=_HOOK_WARNING)
                    loss.backward()
                log.losses.append(float(loss.detach()))
            elif private:  # an empty Poisson batch: the step is noise only (still accounted)
                for p in params:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            opt.step()
            log.step_seconds.append(time.perf_counter() - ts)
            if log.losses:
                if progress is not None:
                    progress(step, log.losses[-1])
                train_step(step, log.losses[-1])
    finally:
        if gsm is not None:
            gsm._close()
        for p in module.parameters():
            p.requires_grad_(True)
            p.grad = None
            if hasattr(p, "grad_sample"):
                p.grad_sample = None
        module.eval()
    return _finish(log, accountant, cfg, t0)


def _canaries(start: int, n: int) -> tuple[list[Image.Image], list[str]]:
    from vlmtrust.data.synthworld import SynthWorld

    world = SynthWorld(seed=0, image_size=64)
    cs = world.canaries(n, start=start)
    return [c.image for c in cs], [c.caption for c in cs]


def _manifest_pairs(spec: str, ctx: MitigationContext) -> tuple[list[Image.Image], list[str]]:
    from vlmtrust.core.sample import Sample
    from vlmtrust.data.datasets import iter_dataset

    images: list[Image.Image] = []
    caps: list[str] = []
    for item in iter_dataset(spec, limits=ctx.data_limits):
        if isinstance(item, Sample) and item.images:
            cap = item.metadata.get("caption") or item.target or item.prompt
            if isinstance(cap, str) and cap:
                images.append(item.images[0].load())
                caps.append(cap)
    if len(images) < 4:
        raise InputError(
            f"privacy/dp_finetune: data {spec} has {len(images)} image–caption pairs; "
            "it needs at least 4 (give each line an image and a caption)"
        )
    return images, caps


def candidates(
    p: DPFinetuneParams, ctx: MitigationContext
) -> tuple[list[Image.Image], list[str], list[Image.Image], list[str]]:
    """``(member images, captions, held-out images, captions)``.

    Default: SynthWorld canaries from :data:`MEMBER_START` / :data:`NON_MEMBER_START`. With
    ``ctx.data``: its pairs, split at random (seeded) into members and held-out halves.
    """
    if ctx.data is None:
        mi, mc = _canaries(MEMBER_START, p.n_members)
        ni, nc = _canaries(NON_MEMBER_START, p.n_non_members)
        return mi, mc, ni, nc
    images, caps = _manifest_pairs(ctx.data, ctx)
    order = np.random.default_rng(ctx.seed).permutation(len(images))
    half = len(order) // 2
    m, h = order[:half][: p.n_members], order[half:][: p.n_non_members]
    return (
        [images[i] for i in m],
        [caps[i] for i in m],
        [images[i] for i in h],
        [caps[i] for i in h],
    )


def membership_scores(model: Any, images: Sequence[Image.Image], captions: Sequence[str]) -> Any:
    """Image–own-caption cosine of each pair (higher: more likely trained on)."""
    img = np.asarray(model.embed_images(list(images)), dtype=np.float64)
    txt = np.asarray(model.embed_texts(list(captions)), dtype=np.float64)
    return (img * txt).sum(1)


def _auc(s_in: Any, s_out: Any) -> float:
    from vlmtrust.core.metrics import auc

    return auc(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])


def membership_auc(model: Any, cands: tuple[Any, Any, Any, Any]) -> tuple[float, Any, Any]:
    """AUROC of the cosine score, members vs held-out, and both score arrays."""
    mi, mc, ni, nc = cands
    s_in = membership_scores(model, mi, mc)
    s_out = membership_scores(model, ni, nc)
    return _auc(s_in, s_out), s_in, s_out


def shape_accuracy(model: Any, n: int, seed: int) -> float | None:
    """Zero-shot accuracy on ``n`` fresh SynthWorld shapes ("a photo of a {shape}")."""
    if n <= 0:
        return None
    from vlmtrust.data.synthworld import SynthWorld

    world = SynthWorld(seed=7_000_000 + seed, image_size=64)
    samples = world.shapes(n)
    labels = [str(s.attributes["shape"]) for s in samples]
    classes = sorted(set(labels))
    img = np.asarray(model.embed_images([s.image for s in samples]))
    txt = np.asarray(model.embed_texts([f"a photo of a {c}" for c in classes]))
    pred = (img @ txt.T).argmax(1)
    return float(np.mean([classes[int(k)] == lab for k, lab in zip(pred, labels, strict=True)]))


def run_dp_finetune(
    model: Any, ctx: MitigationContext, p: DPFinetuneParams
) -> tuple[Any, dict[str, Any]]:
    """Copy ``model``, fine-tune the copy, measure before/after; nothing written.

    Returns the fine-tuned wrapper and a JSON-serialisable summary.
    """
    from vlmtrust.mitigations.privacy.audit import empirical_epsilon
    from vlmtrust.mitigations.robustness._advtrain import check_dual, clone_dual

    check_dual(model, "privacy/dp_finetune")
    cands = candidates(p, ctx)
    if p.public_data is not None:
        bi, bc = _manifest_pairs(p.public_data, ctx)
        bi, bc = bi[: p.n_public], bc[: p.n_public]
    else:
        bi, bc = _canaries(PUBLIC_START, p.n_public)
    steps = max(1, p.steps // 5) if ctx.quick else p.steps
    cfg = DPConfig(p.epsilon, p.delta, p.max_grad_norm, steps, p.batch_size, p.lr, ctx.seed)
    before_auc, b_in, b_out = membership_auc(model, cands)
    before_acc = shape_accuracy(model, p.n_eval, ctx.seed)
    tuned = clone_dual(model)
    log = dp_finetune(tuned, tuned.to_pixels(cands[0]), cands[1], tuned.to_pixels(bi), bc, cfg)
    auc, s_in, s_out = membership_auc(tuned, cands)
    # the calibrated attack: each pair's cosine gain over the base model (the base model as the
    # reference model), which removes how well the base model already matched the pair
    g_in, g_out = s_in - b_in, s_out - b_out
    gain_auc = _auc(g_in, g_out)
    bound = empirical_epsilon(g_in, g_out, delta=p.delta)
    after_acc = shape_accuracy(tuned, p.n_eval, ctx.seed)
    privacy = _privacy_record(
        p, log, steps, "per pair (loss against a public contrast bank)", "one image–caption pair"
    )
    summary: dict[str, Any] = {
        "privacy": privacy,
        "membership_auc_before": before_auc,
        "membership_auc": auc,
        "membership_auc_calibrated": gain_auc,
        "epsilon_lower_bound": {
            "epsilon_lb": bound.epsilon_lb,
            "confidence": 1 - bound.alpha,
            "fpr": bound.fpr,
            "fnr": bound.fnr,
        },
        "zero_shot_accuracy_before": before_acc,
        "zero_shot_accuracy_after": after_acc,
        "n_members": len(cands[0]),
        "n_non_members": len(cands[2]),
        "train_seconds": round(log.seconds, 2),
        "mean_step_seconds": float(np.mean(log.step_seconds)) if log.step_seconds else None,
        "trainable_parameters": log.trainable,
        "final_loss": log.losses[-1] if log.losses else None,
    }
    return tuned, summary


def _privacy_record(
    p: DPFinetuneParams, log: Any, steps: int, clipping: str, unit: str
) -> dict[str, Any]:
    """The ``privacy`` record of a DP fine-tuning run (stored in the model's ``config.json``).

    ``log`` is the run's log (``epsilon``, ``noise_multiplier``, ``sample_rate``); without DP
    (``epsilon=inf``) the accounting fields are ``None`` and ``clipping`` is ``"none"``.
    ``unit`` is what one record is (added or removed).
    """
    private = math.isfinite(p.epsilon)
    return {
        "dp": private,
        "epsilon": log.epsilon if private else None,
        "target_epsilon": p.epsilon if private else None,
        "delta": p.delta if private else None,
        "accountant": "rdp" if private else None,
        "noise_multiplier": log.noise_multiplier,
        "max_grad_norm": p.max_grad_norm if private else None,
        "sample_rate": log.sample_rate,
        "steps": steps,
        "clipping": clipping if private else "none",
        "unit": f"{unit} (add/remove)",
    }


@mitigation("privacy/dp_finetune")
class DPFinetune(TunedCopy):
    """DP-SGD (Opacus) fine-tuning of a dual encoder or a generative model's LoRA adapters."""

    pillar = Pillar.PRIVACY
    Params = DPFinetuneParams
    description = (
        "DP-SGD fine-tuning (Opacus, RDP accountant) of a dual encoder on image–caption pairs, "
        "per-pair clipping against a public contrast bank; records (ε, δ) in the model's config."
    )

    params: DPFinetuneParams

    def tune(self, model: Any, ctx: MitigationContext) -> tuple[Any, dict[str, Any]]:
        """LoRA DP-SGD for a generative model, full DP-SGD of a dual encoder otherwise."""
        if getattr(model, "kind", None) == "generative":
            return run_dp_lora(model, ctx, self.params)
        return run_dp_finetune(model, ctx, self.params)


# --------------------------------------------------------------------------- generative: LoRA

LORA_TARGETS = ("q_proj", "v_proj")
"""Names of the linear layers that get LoRA adapters (peft): every attention query and value
projection, of the language model and of the vision tower alike."""
GEN_PROMPT = "What does the card say?"
"""Prompt of the default generative fine-tuning pairs (SynthWorld canaries, caption answers)."""


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise InputError(
            "privacy/dp_finetune on a generative model needs peft; install it with "
            "pip install 'vlmtrust[privacy-train]'"
        ) from None
    return peft


def dp_lora_finetune(
    model: Any,
    pixels: torch.Tensor,
    prompts: Sequence[str],
    targets: Sequence[str],
    cfg: DPConfig,
    *,
    rank: int = 4,
) -> DPLog:
    """DP-SGD fine-tuning of LoRA adapters of a generative wrapper's module, in place.

    peft adds rank-``rank`` adapters to :data:`LORA_TARGETS` (every other weight frozen).
    Each Poisson-sampled example's gradient is computed on its own (a micro-batch of one: the
    answer loss of one example does not depend on the others), handed to Opacus'
    ``DPOptimizer`` as the per-sample gradient, which clips it to ``max_grad_norm``, adds the
    Gaussian noise and steps; Opacus' RDP accountant gives ε. ``epsilon=inf``: the same steps
    with neither clipping nor noise. The adapters are merged into the weights at the end, so
    the saved model has the base architecture.
    """
    import torch

    peft = _peft()
    n = len(targets)
    if n < 2 or pixels.shape[0] != n or len(prompts) != n:
        raise InputError(f"dp_finetune: {pixels.shape[0]} images for {n} answers (need ≥ 2)")
    torch.manual_seed(cfg.seed)
    base = model.model
    for p in base.parameters():
        p.requires_grad_(False)
    lora_cfg = peft.LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS)
    )
    wrapped = peft.inject_adapter_in_model(lora_cfg, base)
    params = [p for n_, p in wrapped.named_parameters() if "lora_" in n_]
    for p in params:
        p.requires_grad_(True)
    log, opt = _start(params, cfg, n)
    q, private = log.sample_rate, math.isfinite(cfg.epsilon)
    accountant = None
    if private:
        _opacus()
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_ALPHA_WARNING)
            sigma = get_noise_multiplier(
                target_epsilon=cfg.epsilon, target_delta=cfg.delta, sample_rate=q,
                steps=cfg.steps, accountant="rdp", alphas=ALPHAS,
            )  # fmt: skip
        log.noise_multiplier = float(sigma)
        opt = DPOptimizer(
            opt, noise_multiplier=sigma, max_grad_norm=cfg.max_grad_norm,
            expected_batch_size=cfg.batch_size, loss_reduction="mean",
            generator=torch.Generator().manual_seed(cfg.seed + 1),
        )  # fmt: skip
        accountant = RDPAccountant()
        opt.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=q))
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    wrapped.train()
    try:
        for _ in range(cfg.steps):
            ts = time.perf_counter()
            idx = torch.nonzero(torch.rand(n, generator=gen) < q).flatten().tolist()
            opt.zero_grad(set_to_none=True)
            per: list[list[torch.Tensor]] = []
            losses = []
            for i in idx:
                loss = model.target_loss(pixels[i : i + 1], [prompts[i]], [targets[i]]).mean()
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                pairs = zip(grads, params, strict=True)
                per.append([torch.zeros_like(p) if g is None else g for g, p in pairs])
                losses.append(float(loss.detach()))
            for k, p in enumerate(params):
                if private:
                    p.grad_sample = (
                        torch.stack([g[k] for g in per])
                        if per
                        else torch.zeros((0, *p.shape), dtype=p.dtype)
                    )
                elif per:
                    p.grad = torch.stack([g[k] for g in per]).mean(0)
            if private or per:
                opt.step()
            if losses:
                log.losses.append(float(np.mean(losses)))
            log.step_seconds.append(time.perf_counter() - ts)
    finally:
        for p in params:
            p.grad = None
            if hasattr(p, "grad_sample"):
                p.grad_sample = None
        wrapped.eval()
    _merge_lora(wrapped)
    for p in base.parameters():
        p.requires_grad_(True)
    return _finish(log, accountant, cfg, t0)


def _merge_lora(module: Any) -> None:
    """Fold each peft LoRA layer into its base linear layer and put the base layer back."""
    from peft.tuners.lora import LoraLayer

    for name, sub in list(module.named_modules()):
        if isinstance(sub, LoraLayer):
            sub.merge()
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, sub.get_base_layer())


def run_dp_lora(
    model: Any, ctx: MitigationContext, p: DPFinetuneParams
) -> tuple[Any, dict[str, Any]]:
    """Copy a generative ``model``, DP-fine-tune LoRA adapters on canary read-outs; summary."""
    from vlmtrust.core.errors import CapabilityError
    from vlmtrust.models.clone import clone

    missing = (Capability.GRADIENT | Capability.TRAIN) & ~getattr(
        model, "capabilities", Capability.NONE
    )
    if missing:
        raise CapabilityError(
            f"privacy/dp_finetune fine-tunes dual encoders, or generative models with GRADIENT "
            f"and TRAIN (LoRA); model {model.spec} lacks {', '.join(missing.names()).upper()}: "
            "use a local hf: checkpoint"
        )
    images, caps = _canaries(MEMBER_START, p.n_members)
    steps = max(1, p.steps // 5) if ctx.quick else p.steps
    cfg = DPConfig(p.epsilon, p.delta, p.max_grad_norm, steps, p.batch_size, p.lr, ctx.seed)
    tuned = clone(model, "dp-lora")
    prompts = [GEN_PROMPT] * len(caps)
    log = dp_lora_finetune(tuned, tuned.to_pixels(images), prompts, caps, cfg)
    privacy = _privacy_record(
        p,
        log,
        steps,
        "per example (LoRA adapters, merged after training)",
        "one image–prompt–answer example",
    )
    privacy["lora"] = {"rank": 4, "targets": list(LORA_TARGETS)}
    summary: dict[str, Any] = {
        "privacy": privacy,
        "n_members": len(caps),
        "train_seconds": round(log.seconds, 2),
        "trainable_parameters": log.trainable,
        "final_loss": log.losses[-1] if log.losses else None,
    }
    return tuned, summary
