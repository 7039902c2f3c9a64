"""Empirical lower bounds on ε from a membership attack (Jagielski et al. 2020).

An (ε, δ)-DP training run bounds every membership test's error rates:
``FPR + e^ε · FNR ≥ 1 − δ`` and ``FNR + e^ε · FPR ≥ 1 − δ``. So an attack with false-positive
rate FPR and false-negative rate FNR shows ``ε ≥ log((1 − δ − FPR) / FNR)`` (and the same with
the roles swapped). The rates are estimates from finitely many candidates, so (as Jagielski,
Ullman and Oprea 2020, "Auditing Differentially Private Machine Learning: How Private is
Private SGD?") the bound uses Clopper–Pearson *upper* confidence limits of both rates; with
one confidence level ``1 − α`` spread (Bonferroni) over both rates and every threshold tried,
the reported ε_lb is below the true ε with probability at least ``1 − α``.

The candidates are the members and non-members of one training run, drawn from one
distribution and assigned to a side before training (a one-run audit, Steinke, Nasr and
Jagielski 2023); a DP run's guarantee holds for each candidate, so the bound is a valid
lower bound, though looser than one from many training runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided ``1 − alpha`` upper confidence limit of a rate with ``k`` events in ``n``.

    Example:
        >>> round(clopper_pearson_upper(0, 100, 0.05), 4)
        0.0295
    """
    from vlmtrust.core.metrics import clopper_pearson

    if n <= 0:
        return 1.0
    # The one-sided 1 − alpha limit is the upper end of the two-sided 1 − 2·alpha interval.
    return clopper_pearson(min(k, n), n, alpha=2 * alpha)[1]


@dataclass(frozen=True)
class EpsilonBound:
    """An empirical ε lower bound and the attack threshold that gave it."""

    epsilon_lb: float
    threshold: float
    fpr: float
    fnr: float
    n_members: int
    n_non_members: int
    alpha: float


def empirical_epsilon(
    member_scores: ArrayLike,
    non_member_scores: ArrayLike,
    *,
    delta: float = 1e-5,
    alpha: float = 0.05,
    max_thresholds: int = 64,
) -> EpsilonBound:
    """ε_lb from a score where higher means "member", with ``1 − alpha`` confidence.

    Thresholds are up to ``max_thresholds`` quantiles of the pooled scores; each threshold
    predicts "member" for scores ≥ it. Returns ε_lb = 0 when no threshold shows leakage.

    Example:
        >>> b = empirical_epsilon(np.arange(100) + 100.0, np.arange(100.0))
        >>> 0 < b.epsilon_lb < math.log(100)
        True
        >>> empirical_epsilon([0.0] * 50, [0.0] * 50).epsilon_lb
        0.0
    """
    ins = np.asarray(member_scores, dtype=np.float64)
    outs = np.asarray(non_member_scores, dtype=np.float64)
    n_in, n_out = len(ins), len(outs)
    if n_in == 0 or n_out == 0:
        return EpsilonBound(0.0, math.nan, math.nan, math.nan, n_in, n_out, alpha)
    pooled = np.concatenate([ins, outs])
    qs = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, max_thresholds)))
    a = alpha / (2 * len(qs))  # both rates at every threshold (Bonferroni)
    best = EpsilonBound(0.0, math.nan, math.nan, math.nan, n_in, n_out, alpha)
    for t in qs:
        fp = int((outs >= t).sum())
        fn = int((ins < t).sum())
        fpr_hi = clopper_pearson_upper(fp, n_out, a)
        fnr_hi = clopper_pearson_upper(fn, n_in, a)
        cands = []
        if fnr_hi > 0 and 1 - delta - fpr_hi > 0:
            cands.append(math.log((1 - delta - fpr_hi) / fnr_hi))
        if fpr_hi > 0 and 1 - delta - fnr_hi > 0:
            cands.append(math.log((1 - delta - fnr_hi) / fpr_hi))
        eps = max([0.0, *cands])
        if eps > best.epsilon_lb:
            best = EpsilonBound(eps, float(t), fp / n_out, fn / n_in, n_in, n_out, alpha)
    return best
