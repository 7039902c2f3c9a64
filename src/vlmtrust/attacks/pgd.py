"""A generic, batched white-box attack engine on [0, 1] pixels.

The engine maximises a per-sample objective ``loss(pixels) -> Tensor[B]`` (or minimises it for
targeted attacks) inside an L∞ or L2 ball of radius ε around the clean pixels, intersected with
the image box [0, 1]. Two algorithms:

* **PGD** (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"):
  ``x_{k+1} = Π_{B(x, ε) ∩ [0,1]}(x_k + α · step(∇L))`` with ``step = sign`` for L∞ and the
  L2-normalised gradient for L2, optionally from a uniform random start inside the ball.
* **APGD** (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
  of diverse parameter-free attacks", Alg. 1): momentum 0.75, initial step 2ε, and per-sample
  step halving at checkpoints ``w_j = ⌈p_j · N⌉`` (``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``) when fewer than ρ = 75% of the steps
  since the last checkpoint increased the objective, or when neither the step size nor the best
  objective changed since the last checkpoint; after halving, the sample restarts from its best
  point.

Objectives are small callables built by factory functions: :func:`zero_shot_ce`,
:func:`embedding_distance` and :func:`target_text_loss`. Any callable ``f(pixels) -> Tensor[B]``
works as well. Normalisation (mean/std) lives inside the model wrapper, never here.

Speed: parameters are frozen while attacking (no weight gradients), CPU models run the exact
rewrites of :mod:`vlmtrust.attacks.fastpath`, and PGD steps the whole batch in place while few
samples have stopped. Measured effect: docs/results/robustness.md#pgd.

Example:
    >>> import torch
    >>> from vlmtrust.attacks.pgd import AttackConfig, attack
    >>> w = torch.linspace(-1, 1, 12).reshape(1, 3, 2, 2)
    >>> x = torch.full((2, 3, 2, 2), 0.5)
    >>> res = attack(lambda p: (p * w).flatten(1).sum(1), x, AttackConfig(eps=0.1, steps=3))
    >>> bool(((res.pixels - x).abs().max() <= 0.1 + 1e-6))
    True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

from vlmtrust.attacks.fastpath import attack_fast_path
from vlmtrust.core.errors import InputError

if TYPE_CHECKING:
    import torch

Norm = Literal["linf", "l2"]
Algorithm = Literal["pgd", "apgd"]
NORMS: tuple[str, ...] = get_args(Norm)
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)

_APGD_MOMENTUM = 0.75
_APGD_RHO = 0.75


@dataclass(frozen=True)
class AttackConfig:
    """Settings of one attack run.

    Attributes:
        norm: ``"linf"`` or ``"l2"``.
        eps: radius of the ball on [0, 1] pixels (e.g. ``2/255``); must lie in [0, 1] for L∞.
            For L2 the radius is in pixel units over the whole image and may exceed 1 only up
            to the image diagonal; we still require ``eps >= 0``.
        step: step size α. ``None`` picks ``eps / 4`` (L∞ PGD), ``eps / 5`` (L2 PGD) or the
            paper's initial ``2 · eps`` (APGD).
        steps: number of gradient iterations.
        random_start: start from a uniform random point of the ball (PGD; APGD starts at the
            clean point unless this is set).
        algorithm: ``"pgd"`` or ``"apgd"``.
        targeted: minimise the objective instead of maximising it.
        seed: seed of the random start.
        early_stop: freeze a sample as soon as the objective's success test says it is fooled
            (objectives without a success test ignore this).
        keep_best: return the best iterate seen (by objective) instead of the last one.
    """

    norm: Norm = "linf"
    eps: float = 2 / 255
    step: float | None = None
    steps: int = 10
    random_start: bool = True
    algorithm: Algorithm = "pgd"
    targeted: bool = False
    seed: int = 0
    early_stop: bool = False
    keep_best: bool = True

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise InputError(f"attack norm {self.norm!r} is unknown: use one of {', '.join(NORMS)}")
        if self.algorithm not in ALGORITHMS:
            raise InputError(
                f"attack algorithm {self.algorithm!r} is unknown: use one of "
                f"{', '.join(ALGORITHMS)}"
            )
        if not isinstance(self.eps, int | float) or not math.isfinite(self.eps):
            raise InputError(f"attack eps {self.eps!r} is not a number: give e.g. eps=0.0078")
        if self.norm == "linf" and not 0.0 <= self.eps <= 1.0:
            raise InputError(
                f"attack eps {self.eps} is outside [0, 1]: budgets are on [0, 1] pixels, "
                "e.g. eps=2/255≈0.0078"
            )
        if self.norm == "l2" and self.eps < 0.0:
            raise InputError(f"attack eps {self.eps} is negative: give a radius >= 0")
        if self.steps < 0:
            raise InputError(f"attack steps {self.steps} is negative: give steps >= 0")
        if self.step is not None and (not math.isfinite(self.step) or self.step <= 0):
            raise InputError(f"attack step {self.step} must be a positive number (or None)")

    @property
    def alpha(self) -> float:
        """The step size actually used (see ``step``)."""
        if self.step is not None:
            return float(self.step)
        if self.algorithm == "apgd":
            return 2.0 * self.eps
        return self.eps / 4.0 if self.norm == "linf" else self.eps / 5.0


@dataclass(frozen=True)
class AttackResult:
    """What :func:`attack` returns.

    Attributes:
        pixels: adversarial pixels, detached, same shape/dtype/device as the input.
        loss: objective value at ``pixels``, shape ``(B,)``.
        best_loss: ``(steps + 1, B)``: best objective value reached so far, after each
            iteration (row 0 = the start point). Non-decreasing for untargeted attacks,
            non-increasing for targeted ones.
        success: per-sample success at ``pixels`` when the objective has a success test.
        iterations: gradient iterations actually run per sample (early stop).
    """

    pixels: torch.Tensor
    loss: torch.Tensor
    best_loss: torch.Tensor
    success: torch.Tensor | None
    iterations: torch.Tensor


@runtime_checkable
class Objective(Protocol):
    """A per-sample objective over a batch (``idx`` selects the rows of a sub-batch)."""

    targeted: bool | None
    """The direction the objective was built for (``None`` = either)."""

    def __call__(self, pixels: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample loss, shape ``(len(pixels),)``."""
        ...

    def success(
        self, pixels: torch.Tensor, idx: torch.Tensor | None = None, *, targeted: bool = False
    ) -> torch.Tensor | None:
        """Per-sample bool: is the sample fooled (or at its target)? ``None`` if undefined."""
        ...


class _PlainObjective:
    """Adapts a plain callable ``f(pixels) -> Tensor[B]`` (no sub-batching, no success test)."""

    targeted: bool | None = None

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn
        self.subbatch = False

    def __call__(self, pixels: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(pixels)

    def success(
        self, pixels: torch.Tensor, idx: torch.Tensor | None = None, *, targeted: bool = False
    ) -> torch.Tensor | None:
        return None


def _as_objective(loss_fn: Objective | Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(loss_fn, Objective):
        return loss_fn
    return _PlainObjective(loss_fn)


# ----------------------------------------------------------------------------- geometry


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, broadcastable to ``t``."""
    n: torch.Tensor = t.flatten(1).norm(p=2, dim=1)
    return n.view(-1, *([1] * (t.dim() - 1)))


def project(delta: torch.Tensor, x0: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """Project ``x0 + delta`` onto ``B(x0, eps) ∩ [0, 1]``; returns the projected pixels.

    Clamping to [0, 1] after the ball projection stays inside the ball because ``x0`` itself
    lies in [0, 1] (clamping moves every coordinate toward ``x0``).
    """
    import torch

    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _flat_norm(delta)
        delta = delta * torch.clamp(eps / (n + 1e-12), max=1.0)
    return (x0 + delta).clamp(0.0, 1.0)


def _step_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / (_flat_norm(grad) + 1e-12)


def _random_start(x0: torch.Tensor, norm: Norm, eps: float, gen: torch.Generator) -> torch.Tensor:
    import torch

    if norm == "linf":
        u = torch.rand(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
        delta = (2.0 * u - 1.0) * eps
    else:
        g = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
        r = torch.rand((x0.shape[0],), generator=gen, dtype=x0.dtype).to(x0.device)
        d = g[0].numel()
        radius = eps * r.pow(1.0 / d).view(-1, *([1] * (x0.dim() - 1)))
        delta = g / (_flat_norm(g) + 1e-12) * radius
    return project(delta, x0, norm, eps)


# ----------------------------------------------------------------------------- engine


@contextlib.contextmanager
def _frozen(obj: Any) -> Iterator[None]:
    """Switch off parameter gradients of the objective's model during the attack.

    The attack only needs ``∂L/∂pixels``; with parameters frozen autograd neither records nor
    computes weight gradients. The previous ``requires_grad`` flags are restored afterwards
    (adversarial training calls the attack between its own optimiser steps). While frozen the
    model also runs the exact CPU rewrites of :mod:`vlmtrust.attacks.fastpath`.
    """
    import torch

    model = getattr(obj, "model", None)
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module):
        yield
        return
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with attack_fast_path(module, pooled_only=bool(getattr(obj, "pooled_only", False))):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def attack(
    loss_fn: Objective | Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    config: AttackConfig,
) -> AttackResult:
    """Run PGD or APGD on a batch of [0, 1] pixels.

    Args:
        loss_fn: an :class:`Objective` from a factory below, or any callable
            ``f(pixels) -> Tensor[B]``. The attack maximises it (minimises when
            ``config.targeted``).
        pixels: clean images, ``(B, C, H, W)`` in [0, 1].
        config: the attack settings.

    Returns:
        An :class:`AttackResult` with detached adversarial pixels and the loss history.

    Raises:
        InputError: pixels outside [0, 1], or an objective built for the other direction.
    """
    import torch

    obj = _as_objective(loss_fn)
    if obj.targeted is not None and obj.targeted != config.targeted:
        want = "targeted" if obj.targeted else "untargeted"
        raise InputError(
            f"objective was built for a {want} attack but AttackConfig.targeted="
            f"{config.targeted}: set targeted={obj.targeted}"
        )
    if pixels.dim() < 2 or pixels.shape[0] == 0:
        raise InputError("attack pixels must be a non-empty batch (B, C, H, W)")
    x0 = pixels.detach()
    lo, hi = float(x0.min()), float(x0.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise InputError(
            f"attack pixels span [{lo:.3g}, {hi:.3g}], not [0, 1]: pass un-normalised pixels "
            "from model.to_pixels(...)"
        )
    x0 = x0.clamp(0.0, 1.0)
    sign = -1.0 if config.targeted else 1.0
    gen = torch.Generator().manual_seed(int(config.seed))
    b = x0.shape[0]
    dev = x0.device
    can_sub = getattr(obj, "subbatch", True)

    joint = config.early_stop and can_sub and hasattr(obj, "loss_and_success")

    def evaluate(x: torch.Tensor, idx: torch.Tensor, grad: bool) -> tuple[Any, Any, Any]:
        """Signed objective (to maximise) at rows ``idx``, its gradient, success flags.

        With early stop the flags come from the same forward pass when the objective offers
        ``loss_and_success``.
        """
        sub = None if len(idx) == b else idx
        if sub is not None and not can_sub:
            # A plain callable sees the whole batch: embed the rows into the clean batch.
            full = x0.clone()
            full[idx] = x.detach()
        else:
            full = x.detach()
        arg = sub if can_sub else None
        g: torch.Tensor | None = None
        succ: torch.Tensor | None = None

        def run(inp: torch.Tensor) -> torch.Tensor:
            nonlocal succ
            if joint:
                val, succ = obj.loss_and_success(inp, arg, targeted=config.targeted)
                return val  # type: ignore[no-any-return]
            return obj(inp, arg)  # type: ignore[no-any-return]

        if grad:
            xin = full.requires_grad_(True)
            with torch.enable_grad():
                val = run(xin)
                g = torch.autograd.grad((sign * val).sum(), xin)[0]
        else:
            with torch.no_grad():
                val = run(full)
        if sub is not None and not can_sub:
            val = val[idx]
            g = None if g is None else g[idx]
        if config.early_stop and not joint:
            succ = fooled(x, idx)
        return (
            (sign * val).detach(),
            None if g is None else g.detach(),
            None if succ is None else succ.detach().to(torch.bool),
        )

    def fooled(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor | None:
        sub = None if len(idx) == b else idx
        if sub is not None and not can_sub:
            return None
        with torch.no_grad():
            s = obj.success(x, sub, targeted=config.targeted)
        return None if s is None else s.to(torch.bool)

    x = _random_start(x0, config.norm, config.eps, gen) if config.random_start else x0.clone()
    all_idx = torch.arange(b, device=dev)
    with _frozen(obj):
        if config.algorithm == "pgd":
            xbest, fbest, history, iters = _pgd(evaluate, fooled, x, x0, all_idx, config)
        else:
            xbest, fbest, history, iters = _apgd(evaluate, fooled, x, x0, all_idx, config)
        succ = fooled(xbest, all_idx)
    return AttackResult(
        pixels=xbest.detach().to(pixels.dtype),
        loss=(sign * fbest).detach(),
        best_loss=(sign * torch.stack(history)).detach(),
        success=succ,
        iterations=iters,
    )


_Eval = Callable[[Any, Any, bool], tuple[Any, Any, Any]]

#: PGD attacks the whole batch in place while at least this share of it is still active, and
#: gathers the active rows below it. Gathering costs ~6 copies of the batch per step, which a
#: nearly full batch does not repay (measured effect: docs/results/robustness.md#pgd).
_DENSE = 0.85
_Fooled = Callable[[Any, Any], Any]


def _pgd(
    evaluate: _Eval,
    fooled: _Fooled,
    x: torch.Tensor,
    x0: torch.Tensor,
    all_idx: torch.Tensor,
    cfg: AttackConfig,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    import torch

    alpha = cfg.alpha
    b = x.shape[0]
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    iters = torch.zeros(b, dtype=torch.long, device=x.device)
    xbest = x.clone()
    fbest = torch.full((b,), -math.inf, dtype=torch.float32, device=x.device)
    history: list[torch.Tensor] = []
    # L∞: the feasible set B(x0, ε) ∩ [0, 1] is a box, computed once; each step is then two
    # in-place clamps instead of a subtraction, a clamp, an addition and a clamp (measured
    # effect: docs/results/robustness.md#pgd).
    box = (
        ((x0 - cfg.eps).clamp_(min=0.0), (x0 + cfg.eps).clamp_(max=1.0))
        if cfg.norm == "linf"
        else None
    )
    for k in range(cfg.steps + 1):
        n_active = int(active.sum())
        if n_active == 0:
            history.append(fbest.clone())
            continue
        last = k == cfg.steps
        if n_active >= _DENSE * b:
            # Dense: attack the whole batch in place and mask out stopped samples; cheaper than
            # gathering the active rows while few have stopped (see _DENSE).
            f, g, s = evaluate(x, all_idx, not last)
            f = f.float()
            upd = active & (f > fbest) if cfg.keep_best else active
            if bool(upd.all()):
                fbest.copy_(f)
                xbest.copy_(x)
            else:
                fbest[upd] = f[upd]
                xbest[upd] = x[upd]
            history.append(fbest.clone())
            if cfg.early_stop and s is not None:
                done = s & active
                if bool(done.any()):
                    fbest[done] = f[done]
                    xbest[done] = x[done]
                    active &= ~done
            if last:
                break
            if not bool(active.all()):
                g[~active] = 0.0  # a zero gradient leaves a stopped sample where it is
            _step_inplace(x, g, x0, box, alpha, cfg)
            iters += active
            continue
        # Sparse: gather the active rows, evaluate and step only those.
        idx = all_idx[active]
        f, g, s = evaluate(x[idx], idx, not last)
        f = f.float()
        if cfg.keep_best:
            better = f > fbest[idx]
            upd_idx = idx[better]
            fbest[upd_idx] = f[better]
            xbest[upd_idx] = x[upd_idx]
        else:
            fbest[idx] = f
            xbest[idx] = x[idx]
        history.append(fbest.clone())
        if cfg.early_stop and s is not None and bool(s.any()):
            done_idx = idx[s]
            fbest[done_idx] = f[s]
            xbest[done_idx] = x[done_idx]
            active[done_idx] = False
        if last:
            break
        keep = active[idx]
        step_idx = all_idx[active]
        if len(step_idx) == 0:
            continue
        gk = g[keep]
        xs = x[step_idx] + alpha * _step_direction(gk, cfg.norm)
        if box is not None:
            x[step_idx] = torch.minimum(torch.maximum(xs, box[0][step_idx]), box[1][step_idx])
        else:
            x[step_idx] = project(xs - x0[step_idx], x0[step_idx], cfg.norm, cfg.eps)
        iters[step_idx] += 1
    while len(history) < cfg.steps + 1:
        history.append(fbest.clone())
    return xbest, fbest, history, iters


def _step_inplace(
    x: torch.Tensor,
    g: torch.Tensor,
    x0: torch.Tensor,
    box: tuple[torch.Tensor, torch.Tensor] | None,
    alpha: float,
    cfg: AttackConfig,
) -> None:
    """One ascent step on the whole batch, written into ``x`` and projected."""
    import torch

    if box is not None:
        x.add_(g.sign_(), alpha=alpha)
        torch.maximum(x, box[0], out=x)
        torch.minimum(x, box[1], out=x)
    else:
        x.copy_(project(x + alpha * _step_direction(g, cfg.norm) - x0, x0, cfg.norm, cfg.eps))


def apgd_checkpoints(n_iter: int) -> list[int]:
    """The APGD checkpoints ``w_j = ⌈p_j · N⌉`` (Croce & Hein 2020, Sec. 3.2).

    Example:
        >>> apgd_checkpoints(100)
        [0, 22, 41, 57, 70, 80, 87, 93, 99]
    """
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0:
            break
        p.append(nxt)
    out: list[int] = []
    for pj in p:
        w = math.ceil(round(pj * n_iter, 9))
        if not out or w > out[-1]:
            out.append(w)
    return out


def _apgd(
    evaluate: _Eval,
    fooled: _Fooled,
    x: torch.Tensor,
    x0: torch.Tensor,
    all_idx: torch.Tensor,
    cfg: AttackConfig,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    import torch

    b = x.shape[0]
    dev = x.device
    n = cfg.steps
    view = (-1, *([1] * (x.dim() - 1)))
    eta = torch.full((b,), cfg.alpha, dtype=x0.dtype, device=dev)
    checkpoints = set(apgd_checkpoints(n)[1:])
    active = torch.ones(b, dtype=torch.bool, device=dev)
    iters = torch.zeros(b, dtype=torch.long, device=dev)

    f, g, s0 = evaluate(x, all_idx, n > 0)
    f = f.float()
    xbest, fbest = x.clone(), f.clone()
    gbest = g.clone() if g is not None else None
    history = [fbest.clone()]
    if n == 0:
        return xbest, fbest, history, iters
    assert g is not None and gbest is not None
    x_prev = x.clone()
    grad = g
    f_cur = f.clone()
    # bookkeeping since the last checkpoint
    n_incr = torch.zeros(b, dtype=torch.long, device=dev)
    last_ckpt = 0
    eta_at_ckpt = eta.clone()
    fbest_at_ckpt = fbest.clone()

    def stop_fooled(
        idx: torch.Tensor, xs: torch.Tensor, fs: torch.Tensor, s: torch.Tensor | None
    ) -> None:
        if not cfg.early_stop or len(idx) == 0:
            return
        if s is not None and bool(s.any()):
            done = idx[s]
            fbest[done] = fs[s]
            xbest[done] = xs[s]
            active[done] = False

    stop_fooled(all_idx, x, f_cur, s0)
    for k in range(n):
        idx = all_idx[active]
        if len(idx) == 0:
            history.append(fbest.clone())
            continue
        xi, x0i, gi = x[idx], x0[idx], grad[idx]
        e = eta[idx].view(view)
        z = project(xi + e * _step_direction(gi, cfg.norm) - x0i, x0i, cfg.norm, cfg.eps)
        if k == 0:
            x_new = z
        else:
            a = _APGD_MOMENTUM
            x_new = xi + a * (z - xi) + (1.0 - a) * (xi - x_prev[idx])
            x_new = project(x_new - x0i, x0i, cfg.norm, cfg.eps)
        last = k == n - 1
        f_new, g_new, s_new = evaluate(x_new, idx, not last)
        f_new = f_new.float()
        iters[idx] += 1
        n_incr[idx] += (f_new > f_cur[idx]).long()
        x_prev[idx] = xi
        x[idx] = x_new
        f_cur[idx] = f_new
        if g_new is not None:
            grad[idx] = g_new
        better = f_new > fbest[idx]
        upd = idx[better]
        fbest[upd] = f_new[better]
        xbest[upd] = x_new[better]
        if g_new is not None:
            gbest[upd] = g_new[better]
        history.append(fbest.clone())
        stop_fooled(idx, x_new, f_new, s_new)
        if last:
            break
        if (k + 1) in checkpoints:
            span = (k + 1) - last_ckpt
            cond1 = n_incr.float() < _APGD_RHO * span
            cond2 = (eta_at_ckpt == eta) & (fbest_at_ckpt == fbest)
            halve = (cond1 | cond2) & active
            eta_at_ckpt = eta.clone()
            fbest_at_ckpt = fbest.clone()
            if bool(halve.any()):
                h = all_idx[halve]
                eta[h] = eta[h] / 2.0
                x[h] = xbest[h]
                x_prev[h] = xbest[h]
                grad[h] = gbest[h]
                f_cur[h] = fbest[h]
            n_incr.zero_()
            last_ckpt = k + 1
    while len(history) < n + 1:
        history.append(fbest.clone())
    if not cfg.keep_best:
        return x, f_cur, history, iters
    return xbest, fbest, history, iters


# ----------------------------------------------------------------------------- objectives


class _ZeroShotCE:
    """Cross-entropy of scaled cosine logits against per-sample labels."""

    targeted: bool | None = None
    subbatch = True
    pooled_only = True  # reads model.image_features only (see attacks.fastpath)

    def __init__(self, model: Any, text: torch.Tensor, labels: torch.Tensor, scale: float) -> None:
        self.model = model
        self.text = text
        self.labels = labels
        self.scale = float(scale)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        feats: torch.Tensor = self.model.image_features(pixels)
        return self.scale * feats @ self.text.to(feats.dtype).T

    def __call__(self, pixels: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        import torch.nn.functional as F  # noqa: N812

        y = self.labels if idx is None else self.labels[idx]
        return F.cross_entropy(self.logits(pixels), y, reduction="none")

    def success(
        self, pixels: torch.Tensor, idx: torch.Tensor | None = None, *, targeted: bool = False
    ) -> torch.Tensor | None:
        return self.loss_and_success(pixels, idx, targeted=targeted)[1]

    def loss_and_success(
        self, pixels: torch.Tensor, idx: torch.Tensor | None = None, *, targeted: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and success flags from one forward pass."""
        import torch.nn.functional as F  # noqa: N812

        y = self.labels if idx is None else self.labels[idx]
        logits = self.logits(pixels)
        pred = logits.detach().argmax(dim=1)
        ok = pred == y if targeted else pred != y
        return F.cross_entropy(logits, y, reduction="none"), ok


def zero_shot_ce(
    model: Any,
    class_text_features: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    logit_scale: float,
) -> Objective:
    """Zero-shot cross-entropy objective for a dual encoder with GRADIENT.

    ``loss_i = CE(logit_scale · cos(f(x_i), T), y_i)`` with ``f = model.image_features``
    (normalisation inside the model) and ``T`` the L2-normalised class-prompt embeddings.
    Untargeted: ``labels`` are the true classes (maximise). Targeted: the target classes
    (minimise, ``AttackConfig(targeted=True)``). Its success test is ``argmax != y``
    (untargeted) or ``argmax == y`` (targeted).

    Args:
        model: anything with ``image_features(pixels) -> Tensor[B, d]``.
        class_text_features: ``(C, d)`` L2-normalised.
        labels: ``(B,)`` class indices.
        logit_scale: the model's logit scale (≈100 for CLIP).
    """
    import torch

    y = torch.as_tensor(labels, dtype=torch.long, device=class_text_features.device)
    return _ZeroShotCE(model, class_text_features.detach(), y, logit_scale)


class _EmbeddingDistance:
    targeted: bool | None = None
    subbatch = True
    pooled_only = True

    def __init__(self, model: Any, clean: torch.Tensor) -> None:
        self.model = model
        self.clean = clean

    def __call__(self, pixels: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        ref = self.clean if idx is None else self.clean[idx]
        feats: torch.Tensor = self.model.image_features(pixels)
        return (feats - ref.to(feats.dtype)).pow(2).sum(dim=1)

    def success(
        self, pixels: torch.Tensor, idx: torch.Tensor | None = None, *, targeted: bool = False
    ) -> torch.Tensor | None:
        return None


def embedding_distance(model: Any, clean_features: torch.Tensor) -> Objective:
    """Untargeted feature attack: ``‖f(x + δ) − f(x)‖²₂`` (the FARE inner objective).

    With ``targeted=True`` in the config and target embeddings as ``clean_features`` it pulls
    the image toward those embeddings instead.

    Args:
        model: anything with ``image_features(pixels) -> Tensor[B, d]``.
        clean_features: ``(B, d)`` reference embeddings (detached).
    """
    return _EmbeddingDistance(model, clean_features.detach())


class _TargetText:
    subbatch = True

    def __init__(self, model: Any, prompts: list[str], targets: list[str], targeted: bool) -> None:
        self.model = model
        self.prompts = prompts
        self.targets = targets
        self.targeted: bool | None = targeted

    def __call__(self, pixels: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        if idx is None:
            p, t = self.prompts, self.targets
        else:
            rows = [int(i) for i in idx.tolist()]
            p = [self.prompts[i] for i in rows]
            t = [self.targets[i] for i in rows]
        loss: torch.Tensor = self.model.target_loss(pixels, p, t)
        return loss

    def success(
        self, pixels: torch.Tensor, idx: torch.Tensor | None = None, *, targeted: bool = False
    ) -> torch.Tensor | None:
        return None


def target_text_loss(
    gen_model: Any, prompts: Sequence[str], targets: Sequence[str], targeted: bool = True
) -> Objective:
    """Generative objective: the per-sample NLL of ``targets`` given image + prompt.

    ``targeted=True`` (MultiTrust R.5 style): minimise the NLL of a chosen target text
    (``AttackConfig(targeted=True)``). ``targeted=False`` (R.4 style): maximise the NLL of the
    true caption/answer, pushing the model away from it.

    Args:
        gen_model: anything with ``target_loss(pixels, prompts, targets) -> Tensor[B]``.
        prompts: one prompt per image.
        targets: one target (or true) text per image.
        targeted: the direction, checked against the :class:`AttackConfig`.
    """
    if len(prompts) != len(targets):
        raise InputError(
            f"target_text_loss got {len(prompts)} prompts but {len(targets)} targets: "
            "give one of each per image"
        )
    return _TargetText(gen_model, list(prompts), list(targets), targeted)


# ----------------------------------------------------------------------------- ART cross-check


def zero_shot_module(
    model: Any, class_text_features: torch.Tensor, logit_scale: float
) -> torch.nn.Module:
    """A ``torch.nn.Module`` mapping [0, 1] pixels to scaled zero-shot logits.

    Used to hand a dual encoder to other toolkits (e.g. ART's ``PyTorchClassifier``).
    """
    import torch

    text = class_text_features.detach()
    scale = float(logit_scale)
    inner = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)

    class ZeroShotHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if isinstance(inner, torch.nn.Module):
                self.inner = inner  # registered so .eval()/.to() reach the weights

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            feats: torch.Tensor = model.image_features(pixels)
            return scale * feats @ text.to(feats.dtype).T

    return ZeroShotHead().eval()


def art_pgd_attack(
    model: Any,
    class_text_features: torch.Tensor,
    logit_scale: float,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    config: AttackConfig,
    *,
    batch_size: int = 128,
) -> torch.Tensor:
    """The same zero-shot PGD through ART's ``ProjectedGradientDescentPyTorch`` (cross-check).

    The model is wrapped as ``art.estimators.classification.PyTorchClassifier`` with
    ``clip_values=(0, 1)``; ``eps``, step and iterations come from ``config`` (no random start
    unless ``config.random_start``). Returns ART's adversarial pixels as a tensor.
    """
    import numpy as np
    import torch

    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError(
            "the ART cross-check needs adversarial-robustness-toolbox: "
            "pip install 'vlmtrust[attacks]'"
        ) from e
    if config.algorithm != "pgd":
        raise InputError("the ART cross-check runs PGD only: use AttackConfig(algorithm='pgd')")
    head = zero_shot_module(model, class_text_features, logit_scale)
    n_classes = int(class_text_features.shape[0])
    clf = PyTorchClassifier(
        model=head,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(pixels.shape[1:]),
        nb_classes=n_classes,
        clip_values=(0.0, 1.0),
        device_type="gpu" if pixels.is_cuda else "cpu",
    )
    atk = ProjectedGradientDescentPyTorch(
        clf,
        norm=np.inf if config.norm == "linf" else 2,
        eps=config.eps,
        eps_step=config.alpha,
        max_iter=config.steps,
        targeted=config.targeted,
        num_random_init=1 if config.random_start else 0,
        batch_size=batch_size,
        verbose=False,
    )
    x_np = pixels.detach().cpu().numpy().astype(np.float32)
    y_np = labels.detach().cpu().numpy()
    adv = atk.generate(x_np, y=y_np)
    return torch.from_numpy(np.asarray(adv, dtype=np.float32)).to(pixels.device)
