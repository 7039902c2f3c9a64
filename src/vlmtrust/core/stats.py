"""Confidence intervals, group breakdowns and risk bands.

Metrics elsewhere are plain functions ``f(y_true, y_score, **kw) -> float`` (fairlearn style);
this module turns them into :class:`~vlmtrust.core.results.MetricResult` with a 95% bootstrap
CI, per-group values (fairlearn ``MetricFrame``) and a risk band.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vlmtrust.core.results import (
    Better,
    GroupGap,
    GroupValue,
    MetricKey,
    MetricResult,
    Thresholds,
)
from vlmtrust.core.types import RiskBand

N_BOOTSTRAP = 1000


def bootstrap_replicates(
    stat: Callable[..., float],
    *arrays: ArrayLike,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> NDArray[np.float64]:
    """``n_boot`` bootstrap replicates of ``stat(*arrays)`` (rows resampled jointly).

    A replicate for which ``stat`` is undefined (raises ``ValueError``/``ZeroDivisionError`` or
    returns a non-finite value) is NaN. Empty for fewer than 2 rows.
    """
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if n < 2:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if stat is accuracy and len(arrs) == 1:
        return _replicate_means(np.asarray(arrs[0], dtype=np.float64), idx)
    out = np.full(n_boot, np.nan)
    for b, row in enumerate(idx):
        try:
            v = stat(*(a[row] for a in arrs))
        except (ValueError, ZeroDivisionError):
            continue
        if v is not None and np.isfinite(v):
            out[b] = float(v)
    return out


def _replicate_means(values: NDArray[np.float64], idx: NDArray[np.int64]) -> NDArray[np.float64]:
    """``values[row].mean()`` for every row of ``idx``, in blocks (the same numbers as a loop)."""
    out = np.empty(len(idx))
    step = max(1, 2_000_000 // max(1, idx.shape[1]))
    for i in range(0, len(idx), step):
        out[i : i + step] = values[idx[i : i + step]].mean(axis=1)
    return out


def percentile_ci(
    replicates: NDArray[np.float64], *, alpha: float = 0.05
) -> tuple[float | None, float | None]:
    """Percentile CI of bootstrap replicates; ``(None, None)`` when under 10% are defined."""
    vals = replicates[np.isfinite(replicates)]
    if len(replicates) == 0 or len(vals) < max(10, len(replicates) // 10):
        return None, None
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    stat: Callable[..., float],
    *arrays: ArrayLike,
    n_boot: int = N_BOOTSTRAP,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of ``stat(*arrays)``, resampling rows jointly.

    Resamples for which ``stat`` is undefined (raises ``ValueError`` or returns NaN, e.g. AUROC
    on a single class) are skipped. Returns ``(None, None)`` when fewer than 2 rows exist.

    Example:
        >>> lo, hi = bootstrap_ci(lambda x: float(np.mean(x)), [0, 1, 1, 0, 1], seed=1)
        >>> 0.0 <= lo <= hi <= 1.0
        True
    """
    return percentile_ci(bootstrap_replicates(stat, *arrays, n_boot=n_boot, seed=seed), alpha=alpha)


def mean_ci(values: ArrayLike, *, seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """Mean with a bootstrap CI; ``(None, None, None)`` for no values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return None, None, None
    lo, hi = bootstrap_ci(accuracy, arr, seed=seed)
    return float(arr.mean()), lo, hi


def group_result(key: MetricKey, gv: GroupValue, **fields: Any) -> MetricResult:
    """The metric of one group under ``key``: ``gv``'s value, CI and n, with ``fields``."""
    return MetricResult(
        key=key, value=gv.value, ci_low=gv.ci_low, ci_high=gv.ci_high, n=gv.n, **fields
    )


def risk_band(
    value: float | None, thresholds: Thresholds | None, *, higher_is_better: bool
) -> RiskBand | None:
    """Band a value against thresholds (see :class:`Thresholds`)."""
    if value is None or thresholds is None:
        return None
    if higher_is_better:
        if value < thresholds.high:
            return RiskBand.HIGH
        if value < thresholds.moderate:
            return RiskBand.MODERATE
        return RiskBand.LOW
    if value > thresholds.high:
        return RiskBand.HIGH
    if value > thresholds.moderate:
        return RiskBand.MODERATE
    return RiskBand.LOW


def metric(
    name: MetricKey | str,
    fn: Callable[..., float],
    *arrays: ArrayLike | Sequence[Any],
    higher_is_better: bool,
    groups: Sequence[str] | None = None,
    group_by: str | None = None,
    thresholds: tuple[float, float] | None = None,
    description: str = "",
    unit: str = "",
    headline: bool = False,
    seed: int = 0,
    ci: bool = True,
    better: Better | None = None,
    target: float | None = None,
) -> MetricResult:
    """Evaluate ``fn(*arrays)`` with a bootstrap CI, per-group values and a risk band.

    Args:
        name: the structured key (a plain string is ``MetricKey(metric=name)``).
        fn: plain metric function over row-aligned arrays.
        *arrays: row-aligned inputs (e.g. ``y_true, y_score``).
        higher_is_better: direction.
        groups: optional group label per row; per-group values via fairlearn ``MetricFrame``,
            and their spread (:class:`~vlmtrust.core.results.GroupGap`: difference and ratio
            with bootstrap CIs) when there are two groups or more.
        group_by: the attribute name the groups come from (shown in the report).
        thresholds: ``(moderate, high)`` risk thresholds, see :class:`Thresholds`.
        description: one sentence for the report.
        unit: e.g. ``"%"`` (values stay fractions; the report formats).
        headline: show in the scorecard.
        seed: bootstrap seed.
        ci: compute the bootstrap CI.
        better: what a better value is when not simply ``higher_is_better``: ``"target"``
            (closer to ``target``) or ``"none"`` (descriptive); see
            :class:`~vlmtrust.core.results.MetricResult`.
        target: the ideal value, with ``better="target"``.

    Example:
        >>> m = metric("acc", lambda y: float(np.mean(y)), [1, 0, 1, 1], higher_is_better=True)
        >>> round(m.value, 2), m.n
        (0.75, 4)
    """
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0]) if arrs else 0
    value: float | None
    try:
        value = float(fn(*arrs)) if n else None
    except (ValueError, ZeroDivisionError):
        value = None
    if value is not None and not np.isfinite(value):
        value = None  # undefined: no value, hence no risk band either
    lo, hi = bootstrap_ci(fn, *arrs, seed=seed) if ci and n and value is not None else (None, None)
    th = Thresholds(moderate=thresholds[0], high=thresholds[1]) if thresholds else None
    group_values: dict[str, GroupValue] = {}
    gap: GroupGap | None = None
    if groups is not None and n:
        reps: dict[str, NDArray[np.float64]] = {}
        group_values = group_breakdown(fn, arrs, groups, seed=seed, ci=ci, replicates=reps)
        gap = group_gap(group_values, reps, higher_is_better=higher_is_better)
    return MetricResult(
        key=name if isinstance(name, MetricKey) else MetricKey(metric=name),
        value=value,
        ci_low=lo,
        ci_high=hi,
        n=n,
        higher_is_better=higher_is_better,
        better=better,
        target=target,
        description=description,
        unit=unit,
        groups=group_values,
        group_by=group_by,
        gap=gap,
        thresholds=th,
        risk=risk_band(value, th, higher_is_better=higher_is_better),
        headline=headline,
    )


def group_breakdown(
    fn: Callable[..., float],
    arrays: Sequence[NDArray[Any]],
    groups: Sequence[str],
    *,
    seed: int = 0,
    ci: bool = True,
    replicates: dict[str, NDArray[np.float64]] | None = None,
) -> dict[str, GroupValue]:
    """Per-group values of ``fn`` through fairlearn's ``MetricFrame``, with bootstrap CIs.

    When ``replicates`` is given (and ``ci``), each group's bootstrap replicates for
    :func:`group_gap` are stored in it. They are drawn with a seed of the group's own
    (:func:`_group_seed`): with one shared seed, two groups of equal size would draw the same
    row indices, their replicates would move together and the gap's CI would be too narrow.
    """
    from fairlearn.metrics import MetricFrame

    g = np.asarray([str(x) for x in groups])
    if len(g) < 2:
        # fairlearn cannot tell a one-row feature column from a row of features.
        try:
            v1 = float(fn(*arrays)) if len(g) else float("nan")
        except (ValueError, ZeroDivisionError):
            v1 = float("nan")
        return {str(x): GroupValue(value=v1 if np.isfinite(v1) else None, n=1) for x in g.tolist()}
    if len(arrays) == 1:
        y_true, y_pred = arrays[0], arrays[0]

        def one(yt: Any, yp: Any) -> float:
            try:
                return float(fn(np.asarray(yt)))
            except (ValueError, ZeroDivisionError):
                return float("nan")

        call: Callable[..., float] = one
    else:
        y_true, y_pred = arrays[0], arrays[1]
        extra = arrays[2:]
        if extra:
            raise ValueError("group_breakdown supports one or two row-aligned arrays")

        def two(yt: Any, yp: Any) -> float:
            try:
                return float(fn(np.asarray(yt), np.asarray(yp)))
            except (ValueError, ZeroDivisionError):
                return float("nan")

        call = two
    frame = MetricFrame(metrics=call, y_true=y_true, y_pred=y_pred, sensitive_features=g)
    out: dict[str, GroupValue] = {}
    for key, val in frame.by_group.items():
        label = str(key[0] if isinstance(key, tuple) else key)
        mask = g == label
        sub = [a[mask] for a in arrays]
        v = float(val)
        lo, hi = None, None
        if ci:
            lo, hi = bootstrap_ci(fn, *sub, seed=seed)
            if replicates is not None:
                replicates[label] = bootstrap_replicates(fn, *sub, seed=_group_seed(seed, label))
        out[label] = GroupValue(
            value=v if np.isfinite(v) else None, ci_low=lo, ci_high=hi, n=int(mask.sum())
        )
    return out


def _spread(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(max - min, min / max)`` over the last axis; ratio NaN when undefined."""
    hi = np.max(values, axis=-1)
    lo = np.min(values, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((hi > 0) & (lo >= 0), lo / np.where(hi == 0, 1.0, hi), np.nan)
    return np.asarray(hi - lo, dtype=np.float64), np.asarray(ratio, dtype=np.float64)


def group_gap(
    groups: dict[str, GroupValue],
    replicates: dict[str, NDArray[np.float64]] | None = None,
    *,
    higher_is_better: bool,
) -> GroupGap | None:
    """Difference (max − min) and ratio (min / max) over the groups, fairlearn semantics.

    CIs combine each group's bootstrap replicates (resampled within the group), replicate by
    replicate; without replicates the CIs are ``None``. ``None`` for fewer than two groups with
    a value.

    Example:
        >>> g = {"a": GroupValue(value=0.8, n=10), "b": GroupValue(value=0.4, n=10)}
        >>> gap = group_gap(g, higher_is_better=True)
        >>> round(gap.difference, 2), round(gap.ratio, 2), gap.worst
        (0.4, 0.5, 'b')
    """
    named = {k: v.value for k, v in groups.items() if v.value is not None}
    if len(named) < 2:
        return None
    vals = np.array(list(named.values()), dtype=np.float64)
    diff, ratio = (float(x) for x in _spread(vals))
    labels = list(named)
    best = labels[int(np.argmax(vals) if higher_is_better else np.argmin(vals))]
    worst = labels[int(np.argmin(vals) if higher_is_better else np.argmax(vals))]
    d_ci: tuple[float | None, float | None] = (None, None)
    r_ci: tuple[float | None, float | None] = (None, None)
    if replicates and all(k in replicates and len(replicates[k]) for k in named):
        reps = np.stack([replicates[k] for k in named], axis=-1)
        d_rep, r_rep = _spread(reps)
        d_ci, r_ci = percentile_ci(d_rep), percentile_ci(r_rep)
    return GroupGap(
        difference=diff,
        difference_ci_low=d_ci[0],
        difference_ci_high=d_ci[1],
        ratio=ratio if np.isfinite(ratio) else None,
        ratio_ci_low=r_ci[0],
        ratio_ci_high=r_ci[1],
        best=best,
        worst=worst,
    )


def accuracy(correct: ArrayLike) -> float:
    """Mean of a 0/1 correctness vector."""
    arr = np.asarray(correct, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("accuracy of no samples")
    return float(arr.mean())


def mean(values: ArrayLike) -> float:
    """The mean of real values (the statistic of :func:`mean_metric`)."""
    return float(np.mean(np.asanyarray(values)))


def mean_metric(key: MetricKey | str, values: ArrayLike, **fields: Any) -> MetricResult:
    """:func:`metric` of the :func:`mean` of ``values``; ``fields`` are :func:`metric`'s."""
    return metric(key, mean, values, **fields)


def share_metric(
    key: MetricKey,
    vals: Sequence[Any],
    description: str,
    *,
    higher_is_better: bool,
    thresholds: tuple[float, float] | None,
    seed: int,
    groups: Sequence[str] | None = None,
    group_by: str | None = None,
    headline: bool = False,
    better: Better | None = None,
    target: float | None = None,
) -> MetricResult:
    """:func:`metric` of the :func:`accuracy` (mean) of 0/1 outcomes, in percent."""
    return metric(
        key,
        accuracy,
        vals,
        higher_is_better=higher_is_better,
        groups=groups,
        group_by=group_by,
        thresholds=thresholds,
        description=description,
        unit="%",
        headline=headline,
        seed=seed,
        better=better,
        target=target,
    )


def _group_seed(seed: int, label: str) -> int:
    import hashlib

    h = hashlib.sha256(f"{seed}|group|{label}".encode()).digest()
    return int.from_bytes(h[:8], "little")
