"""Comparison logic for two runs: pairing runs, per-metric deltas, significance, summaries.

Metrics are matched across runs by probe name and *rendered* metric name (``m.name``, i.e.
``MetricKey.render()``), so a run written by schema v1 (flat names only) compares with a v2 run
whose keys render to the same names. A change is called *significant* only when both 95% CIs
exist and do not overlap (a conservative test: overlapping CIs can still hide a significant
difference, never the reverse). Renderers are in :mod:`vlmtrust.report.compare_render`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import AuditLog, MetricResult, ProbeResult
from vlmtrust.core.types import RiskBand
from vlmtrust.report.rundir import LoadedRun, is_parent_dir, load_runs

__all__ = [
    "Change",
    "CompareSummary",
    "MetricDelta",
    "Presence",
    "RunPair",
    "compare_logs",
    "deltas_as_json",
    "pair_runs",
    "summarize",
]

Change = Literal["improved", "worsened", "unchanged", "n/a"]
Presence = Literal["both", "only_a", "only_b"]


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one probe, before (A) and after (B).

    Attributes:
        probe: probe name.
        metric: metric name.
        presence: ``"both"``, or the one run that has this metric (``"only_a"``/``"only_b"``).
        unit: the metric's unit (``"%"``: values are fractions shown as percentages).
        higher_is_better: direction (B's when both have it).
        a_value: A's value (``None`` when absent or undefined); likewise the CI and ``n``.
        b_value: B's value.
        delta: ``b_value - a_value`` when both are defined.
        change: improved / worsened (respecting ``higher_is_better``), unchanged, or ``n/a``.
        ci_overlap: whether the two 95% CIs overlap (``None`` when a CI is missing).
        significant: the change is improved/worsened and the CIs do not overlap.
        risk_a: A's risk band.
        risk_b: B's risk band.
        note: why a comparison may be apples to oranges (probe version or params changed).
    """

    probe: str
    metric: str
    presence: Presence
    unit: str
    higher_is_better: bool
    a_value: float | None
    a_ci_low: float | None
    a_ci_high: float | None
    a_n: int | None
    b_value: float | None
    b_ci_low: float | None
    b_ci_high: float | None
    b_n: int | None
    delta: float | None
    change: Change
    ci_overlap: bool | None
    significant: bool
    risk_a: RiskBand | None
    risk_b: RiskBand | None
    note: str = ""

    @property
    def improved(self) -> bool | None:
        """True if B is better than A, False if not, None when they cannot be compared."""
        return None if self.change == "n/a" else self.change == "improved"

    @property
    def risk_change(self) -> str:
        """``"high → low"`` when the band changed, the band alone when not, ``"—"`` if none."""
        a = self.risk_a.value if self.risk_a else "—"
        b = self.risk_b.value if self.risk_b else "—"
        if self.risk_a is None and self.risk_b is None:
            return "—"
        return a if a == b else f"{a} → {b}"


def _ci_overlap(a: MetricResult, b: MetricResult) -> bool | None:
    if None in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        return None
    assert a.ci_low is not None and a.ci_high is not None  # for mypy
    assert b.ci_low is not None and b.ci_high is not None
    return a.ci_low <= b.ci_high and b.ci_low <= a.ci_high


def _change(delta: float | None, a: float | None, higher_is_better: bool) -> Change:
    if delta is None or a is None:
        return "n/a"
    if abs(delta) <= 1e-12 * max(1.0, abs(a)):
        return "unchanged"
    better = delta > 0 if higher_is_better else delta < 0
    return "improved" if better else "worsened"


def _both(pa: ProbeResult, pb: ProbeResult, a: MetricResult, b: MetricResult) -> MetricDelta:
    notes: list[str] = []
    if pa.version != pb.version:
        notes.append(f"probe version {pa.version} → {pb.version}")
    if pa.params != pb.params:
        notes.append("params differ")
    if a.unit != b.unit:
        notes.append(f"unit {a.unit or 'none'!r} → {b.unit or 'none'!r}")
    comparable = a.higher_is_better == b.higher_is_better and a.unit == b.unit
    if a.higher_is_better != b.higher_is_better:
        notes.append("direction differs")
    delta = (
        b.value - a.value if comparable and a.value is not None and b.value is not None else None
    )
    if delta is not None and not math.isfinite(delta):
        delta = None
    change = _change(delta, a.value, b.higher_is_better)
    overlap = _ci_overlap(a, b) if comparable else None
    return MetricDelta(
        probe=pb.probe,
        metric=b.name,
        presence="both",
        unit=b.unit,
        higher_is_better=b.higher_is_better,
        a_value=a.value,
        a_ci_low=a.ci_low,
        a_ci_high=a.ci_high,
        a_n=a.n,
        b_value=b.value,
        b_ci_low=b.ci_low,
        b_ci_high=b.ci_high,
        b_n=b.n,
        delta=delta,
        change=change,
        ci_overlap=overlap,
        significant=overlap is False and change in ("improved", "worsened"),
        risk_a=a.risk,
        risk_b=b.risk,
        note="; ".join(notes),
    )


def _single(probe: str, m: MetricResult, presence: Presence) -> MetricDelta:
    in_a = presence == "only_a"
    return MetricDelta(
        probe=probe,
        metric=m.name,
        presence=presence,
        unit=m.unit,
        higher_is_better=m.higher_is_better,
        a_value=m.value if in_a else None,
        a_ci_low=m.ci_low if in_a else None,
        a_ci_high=m.ci_high if in_a else None,
        a_n=m.n if in_a else None,
        b_value=None if in_a else m.value,
        b_ci_low=None if in_a else m.ci_low,
        b_ci_high=None if in_a else m.ci_high,
        b_n=None if in_a else m.n,
        delta=None,
        change="n/a",
        ci_overlap=None,
        significant=False,
        risk_a=m.risk if in_a else None,
        risk_b=None if in_a else m.risk,
    )


def compare_logs(a: AuditLog, b: AuditLog) -> list[MetricDelta]:
    """Compare two audit logs metric by metric (matched on probe and metric names).

    Returns A's metrics in A's order (each matched with B's, or marked ``only_a``), then B's
    metrics that A lacks (``only_b``).

    Example:
        >>> from vlmtrust.core.results import (AuditLog, MetricResult, ModelInfo, ProbeResult,
        ...     RunSpec)
        >>> def log(v, lo, hi):
        ...     spec = RunSpec(model=ModelInfo(spec="m", fingerprint="f", kind="dual",
        ...         capabilities=[]), probes=[], seed=0, vlmtrust_version="0", created="now")
        ...     m = MetricResult(name="acc", value=v, ci_low=lo, ci_high=hi, n=100,
        ...         higher_is_better=True)
        ...     return AuditLog(spec=spec, results=[ProbeResult(probe="p", pillar="capability",
        ...         version=1, params={}, metrics=[m])])
        >>> d = compare_logs(log(0.5, 0.4, 0.6), log(0.8, 0.7, 0.9))[0]
        >>> round(d.delta, 3), d.change, d.significant
        (0.3, 'improved', True)
    """
    out: list[MetricDelta] = []
    b_probes = {r.probe: r for r in b.results}
    seen: set[tuple[str, str]] = set()
    for pa in a.results:
        pb = b_probes.get(pa.probe)
        b_metrics = {m.name: m for m in pb.metrics} if pb else {}
        for ma in pa.metrics:
            mb = b_metrics.get(ma.name)
            if pb is not None and mb is not None:
                out.append(_both(pa, pb, ma, mb))
                seen.add((pa.probe, ma.name))
            else:
                out.append(_single(pa.probe, ma, "only_a"))
    for pb in b.results:
        for mb in pb.metrics:
            if (pb.probe, mb.name) not in seen:
                out.append(_single(pb.probe, mb, "only_b"))
    return out


@dataclass(frozen=True)
class CompareSummary:
    """Counts over a comparison."""

    compared: int
    improved: int
    worsened: int
    unchanged: int
    significant_improved: int
    significant_worsened: int
    only_a: int
    only_b: int
    risk_up: int
    risk_down: int


def _rank(r: RiskBand | None) -> int:
    return {None: -1, RiskBand.LOW: 0, RiskBand.MODERATE: 1, RiskBand.HIGH: 2}[r]


def summarize(deltas: Sequence[MetricDelta]) -> CompareSummary:
    """Count improvements, regressions, significant ones and risk-band moves."""
    both = [d for d in deltas if d.presence == "both"]
    banded = [d for d in both if d.risk_a is not None and d.risk_b is not None]
    return CompareSummary(
        compared=len(both),
        improved=sum(d.change == "improved" for d in both),
        worsened=sum(d.change == "worsened" for d in both),
        unchanged=sum(d.change == "unchanged" for d in both),
        significant_improved=sum(d.significant and d.change == "improved" for d in both),
        significant_worsened=sum(d.significant and d.change == "worsened" for d in both),
        only_a=sum(d.presence == "only_a" for d in deltas),
        only_b=sum(d.presence == "only_b" for d in deltas),
        risk_up=sum(_rank(d.risk_b) > _rank(d.risk_a) for d in banded),
        risk_down=sum(_rank(d.risk_b) < _rank(d.risk_a) for d in banded),
    )


@dataclass(frozen=True)
class RunPair:
    """Two runs of the same model slot, to compare (``a`` or ``b`` is None when unmatched)."""

    name: str
    a: LoadedRun | None
    b: LoadedRun | None


def pair_runs(run_a: Path, run_b: Path) -> list[RunPair]:
    """Load two run directories (or two multi-model parents, paired by sub-run name).

    Raises:
        InputError: a directory is invalid, or a single run is compared with a parent.
    """
    parent_a, parent_b = is_parent_dir(Path(run_a)), is_parent_dir(Path(run_b))
    if parent_a != parent_b:
        single = run_b if parent_a else run_a
        raise InputError(
            f"{single}: a single run cannot be compared with a multi-model parent — pass two"
            " run directories, or two parents with index.json"
        )
    runs_a, runs_b = load_runs(Path(run_a)), load_runs(Path(run_b))
    if not parent_a:
        return [RunPair(name=runs_b[0].log.spec.model.spec, a=runs_a[0], b=runs_b[0])]
    by_b = {r.name: r for r in runs_b}
    pairs = [RunPair(name=r.name, a=r, b=by_b.get(r.name)) for r in runs_a]
    names_a = {r.name for r in runs_a}
    pairs += [RunPair(name=r.name, a=None, b=r) for r in runs_b if r.name not in names_a]
    return pairs


def deltas_as_json(deltas: Sequence[MetricDelta]) -> str:
    """The deltas as a JSON array (for ``vlmtrust compare --json``)."""
    from dataclasses import asdict

    return json.dumps([asdict(d) for d in deltas], indent=2, ensure_ascii=False)
