"""Membership-inference statistics: LiRA (online, offline) and RMIA, as plain array functions.

Inputs are per-candidate statistics of the target model and of ``R`` reference models, with a
boolean ``inside[i, k]`` saying whether reference ``k`` was trained on candidate ``i``
(REFERENCE.md, Privacy):

* LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles") works on the
  logit-scaled confidence ``φ = log(p / (1 − p))``. Online: the log likelihood ratio of two
  Gaussians fitted per candidate on the IN and OUT references. Offline: how far above the OUT
  Gaussian the target lies, ``(φ − μ_out) / σ_out`` (ranked exactly like ``Φ(·)`` of it, without
  its saturation at 1). With few references the variance is pooled over all candidates (the
  paper's fixed-variance variant); with one reference per side, the spread of its statistic over
  candidates stands in for the variance.
* RMIA (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference Attacks") compares
  the likelihood ratio ``p(x|θ) / p(x)`` of a candidate with that of population samples ``z``:
  ``score(x) = Pr_z[(p(x|θ)/p(x)) / (p(z|θ)/p(z)) ≥ γ]``, ``p(x) = ½(p_in(x) + p_out(x))``;
  offline (no IN references) ``p_in ≈ a·p_out + (1 − a)``.

Tested on synthetic Gaussians with known answers in ``tests/probes/privacy/test_attacks.py``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "fit_rmia_a",
    "lira_offline",
    "lira_online",
    "logit",
    "phi_from_nll",
    "rmia",
]

FIXED_VARIANCE_BELOW = 32
"""Per-candidate IN/OUT counts below this pool the Gaussian variance over candidates."""
_EPS = 1e-12


def logit(p: ArrayLike) -> NDArray[np.float64]:
    """``log(p / (1 − p))``, with ``p`` clipped into ``(0, 1)``.

    Example:
        >>> logit([0.5, 0.9]).round(3).tolist()
        [0.0, 2.197]
    """
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    out: NDArray[np.float64] = np.log(q) - np.log1p(-q)
    return out


def phi_from_nll(nll: ArrayLike) -> NDArray[np.float64]:
    """LiRA's ``φ`` of ``p = exp(−nll)`` (a mean token NLL), computed stably.

    Example:
        >>> phi_from_nll([np.log(2.0)]).round(6).tolist()  # p = 1/2
        [0.0]
    """
    a = np.maximum(np.asarray(nll, dtype=np.float64), _EPS)
    out: NDArray[np.float64] = -a - np.log(-np.expm1(-a))
    return out


def _split(ref: ArrayLike, inside: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    r = np.asarray(ref, dtype=np.float64)
    m = np.asarray(inside, dtype=bool)
    if r.ndim != 2 or r.shape != m.shape:
        raise ValueError(f"ref has shape {r.shape} but inside {m.shape}; both must be (n, R)")
    return r, m


def _moments(
    ref: NDArray[np.float64], mask: NDArray[np.bool_], fixed_variance: bool | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-candidate mean and standard deviation over the masked references (NaN: none)."""
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(n > 0, np.where(mask, ref, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
        resid = np.where(mask, ref - mu[:, None], 0.0)
        ss = (resid**2).sum(axis=1)
        dof = np.maximum(n - 1, 0)
        if dof.sum() > 0:
            pooled = float(np.sqrt(ss.sum() / dof.sum()))
        else:  # one reference per candidate: its spread over candidates stands in
            vals = ref[mask]
            pooled = float(vals.std()) if vals.size > 1 else np.nan
        per = np.sqrt(np.where(dof > 0, ss / np.maximum(dof, 1), np.nan))
    fixed = (
        fixed_variance if fixed_variance is not None else bool(np.median(n) < FIXED_VARIANCE_BELOW)
    )
    sd = np.full(len(mu), pooled) if fixed else np.where(np.isfinite(per), per, pooled)
    return mu, np.maximum(sd, 1e-6)


def lira_online(
    target: ArrayLike,
    ref: ArrayLike,
    inside: ArrayLike,
    *,
    fixed_variance: bool | None = None,
) -> NDArray[np.float64]:
    """Online LiRA: ``log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²)`` per candidate.

    Args:
        target: ``(n,)`` the target model's ``φ`` per candidate.
        ref: ``(n, R)`` each reference model's ``φ``.
        inside: ``(n, R)`` True where reference ``k`` was trained on candidate ``i``.
        fixed_variance: pool each side's variance over candidates (default: when the median
            candidate has fewer than :data:`FIXED_VARIANCE_BELOW` references on a side).

    Returns:
        ``(n,)`` scores, higher = more likely a member; NaN where a candidate has no IN or no
        OUT reference.

    Example:
        >>> ref = [[2.0, 2.2, 0.0, 0.2], [2.0, 2.2, 0.0, 0.2]]
        >>> inside = [[True, True, False, False]] * 2
        >>> s = lira_online([2.1, 0.1], ref, inside)
        >>> bool(s[0] > 0 > s[1])
        True
    """
    r, m = _split(ref, inside)
    t = np.asarray(target, dtype=np.float64)
    mu_in, sd_in = _moments(r, m, fixed_variance)
    mu_out, sd_out = _moments(r, ~m, fixed_variance)
    ll_in = -0.5 * ((t - mu_in) / sd_in) ** 2 - np.log(sd_in)
    ll_out = -0.5 * ((t - mu_out) / sd_out) ** 2 - np.log(sd_out)
    out: NDArray[np.float64] = ll_in - ll_out
    return out


def lira_offline(
    target: ArrayLike,
    ref: ArrayLike,
    inside: ArrayLike | None = None,
    *,
    fixed_variance: bool | None = None,
) -> NDArray[np.float64]:
    """Offline LiRA: ``(φ − μ_out) / σ_out`` over the OUT references only.

    ``inside`` None means no reference was trained on any candidate (user-supplied references).
    Ranks candidates exactly as ``Φ((φ − μ_out)/σ_out)`` does. NaN where a candidate has no
    OUT reference.

    Example:
        >>> s = lira_offline([1.0, 3.0], [[0.0, 2.0], [0.0, 2.0]], fixed_variance=True)
        >>> s.round(6).tolist()
        [0.0, 1.414214]
    """
    r = np.asarray(ref, dtype=np.float64)
    m = np.zeros(r.shape, dtype=bool) if inside is None else np.asarray(inside, dtype=bool)
    r, m = _split(r, m)
    t = np.asarray(target, dtype=np.float64)
    mu, sd = _moments(r, ~m, fixed_variance)
    out: NDArray[np.float64] = (t - mu) / sd
    return out


def fit_rmia_a(p_in: ArrayLike, p_out: ArrayLike) -> float:
    """RMIA's offline ``a``: least squares of ``p_in − 1 = a (p_out − 1)``, clipped to [0, 1].

    Fitted on candidates that have both IN and OUT references (the paired references).

    Example:
        >>> fit_rmia_a([0.7, 0.8], [0.4, 0.6])
        0.5
    """
    i = np.asarray(p_in, dtype=np.float64) - 1.0
    o = np.asarray(p_out, dtype=np.float64) - 1.0
    ok = np.isfinite(i) & np.isfinite(o)
    den = float((o[ok] ** 2).sum())
    if den <= 0:
        return 1.0
    return float(np.clip((o[ok] * i[ok]).sum() / den, 0.0, 1.0))


def _marginal(ref: NDArray[np.float64], inside: NDArray[np.bool_], a: float) -> NDArray[np.float64]:
    """``p(x) = ½(p_in + p_out)``; ``p_in ≈ a·p_out + (1 − a)`` where no IN reference exists."""
    n_in, n_out = inside.sum(axis=1), (~inside).sum(axis=1)
    with np.errstate(invalid="ignore"):
        p_in = np.where(inside, ref, 0.0).sum(axis=1) / np.maximum(n_in, 1)
        p_out = np.where(~inside, ref, 0.0).sum(axis=1) / np.maximum(n_out, 1)
    p_in = np.where(n_in > 0, p_in, a * p_out + (1.0 - a))
    p_out = np.where(n_out > 0, p_out, (p_in - (1.0 - a)) / max(a, 1e-6))
    out: NDArray[np.float64] = np.maximum(0.5 * (p_in + p_out), _EPS)
    return out


def rmia(
    target_x: ArrayLike,
    ref_x: ArrayLike,
    inside_x: ArrayLike | None,
    target_z: ArrayLike,
    ref_z: ArrayLike,
    inside_z: ArrayLike | None,
    *,
    gamma: float = 1.0,
    a: float = 1.0,
) -> NDArray[np.float64]:
    """RMIA scores: the share of population samples ``z`` that ``x`` dominates by ``γ``.

    Args:
        target_x: ``(n,)`` the target's probability of each candidate (``p(x|θ)``).
        ref_x: ``(n, R)`` each reference model's probability of each candidate.
        inside_x: ``(n, R)`` True where reference ``k`` trained on candidate ``i`` (None: none).
        target_z: ``(m,)`` the target's probability of each population sample.
        ref_z: ``(m, R)``, inside_z: ``(m, R)`` the same for the population.
        gamma: the dominance threshold ``γ ≥ 1``.
        a: offline ``p_in ≈ a·p_out + (1 − a)``, used only where a sample has no IN reference.

    Returns:
        ``(n,)`` scores in [0, 1], higher = more likely a member.

    Example:
        >>> s = rmia([0.9, 0.5], [[0.5], [0.5]], None, [0.5, 0.5], [[0.5], [0.5]], None)
        >>> s.tolist()
        [1.0, 1.0]
        >>> rmia([0.9, 0.5], [[0.5], [0.5]], None, [0.5, 0.5], [[0.5], [0.5]], None,
        ...      gamma=1.5).tolist()
        [1.0, 0.0]
    """
    rx = np.asarray(ref_x, dtype=np.float64)
    rz = np.asarray(ref_z, dtype=np.float64)
    mx = np.zeros(rx.shape, bool) if inside_x is None else np.asarray(inside_x, dtype=bool)
    mz = np.zeros(rz.shape, bool) if inside_z is None else np.asarray(inside_z, dtype=bool)
    rx, mx = _split(rx, mx)
    rz, mz = _split(rz, mz)
    if len(rz) == 0:
        raise ValueError("RMIA needs population samples z")
    lx = np.log(np.maximum(np.asarray(target_x, dtype=np.float64), _EPS)) - np.log(
        _marginal(rx, mx, a)
    )
    lz = np.log(np.maximum(np.asarray(target_z, dtype=np.float64), _EPS)) - np.log(
        _marginal(rz, mz, a)
    )
    # Pr_z[lx - lz >= log γ] = share of lz <= lx - log γ (sorted search, O((n + m) log m)).
    lz_sorted = np.sort(lz)
    count = np.searchsorted(lz_sorted, lx - np.log(gamma) + 1e-12, side="right")
    out: NDArray[np.float64] = count / len(lz_sorted)
    return out
