"""Comparison logic for two runs: pairing runs, per-metric deltas, significance, summaries.

Metrics are matched across runs by probe name and *rendered* metric name (``m.name``, i.e.
``MetricKey.render()``), so a run written by schema v1 (flat names only) compares with a v2 run
whose keys render to the same names.

What "better" means comes from each metric (:attr:`MetricResult.direction`): higher, lower,
closer to a target, or none (a descriptive number). When only one run declares ``better`` (a
run from before schema v4 follows ``higher_is_better``), the declared one is used; when both
declare it differently, B's is used and the row says so.

Significance (:func:`assess_change`): a change is *improved* or *worsened* only when it is
significant at the 95% level; otherwise it is *no significant change* (also when a run has no
CI for the metric). The 95% CI of ``B − A`` is built from the two runs' own 95% CIs by the
MOVER method (Zou & Donner 2008), which keeps asymmetric intervals asymmetric and treats the
two estimates as independent; the change is significant when that CI excludes 0. Two runs of
one seed share their samples and their estimates are positively correlated, so the independent
treatment is conservative for them. For a target metric the same construction is applied to the
distance to the target, ``|value − target|`` (its CI is the image of the value's CI; it starts
at 0 when the value's CI holds the target). Every metric is tested on its own: among many
metrics, an occasional significant change is expected by chance. Renderers are in
:mod:`vlmtrust.report.compare_render`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlmtrust.core.errors import InputError
from vlmtrust.core.redact import redact_text
from vlmtrust.core.results import AuditLog, Better, MetricResult, ProbeResult
from vlmtrust.core.types import RiskBand
from vlmtrust.report.rundir import LoadedRun, is_parent_dir, load_runs

__all__ = [
    "Assessment",
    "Change",
    "CompareSummary",
    "CompareWarning",
    "MetricDelta",
    "Presence",
    "RunPair",
    "assess_change",
    "compare_logs",
    "compare_warnings",
    "deltas_as_json",
    "difference_ci",
    "direction_text",
    "pair_runs",
    "summarize",
]

Change = Literal[
    "improved", "worsened", "no significant change", "unchanged", "no direction", "n/a"
]
"""``improved``/``worsened``: significant, in the metric's better direction or against it;
``no significant change``: the difference CI holds 0, or a CI is missing; ``unchanged``: equal
values; ``no direction``: a descriptive metric (``better="none"``); ``n/a``: not comparable."""
Presence = Literal["both", "only_a", "only_b"]


def direction_text(better: Better, target: float | None = None, unit: str = "") -> str:
    """``"higher"``, ``"lower"``, ``"closer to 0%"`` or ``"no direction"`` (for display).

    Example:
        >>> direction_text("target", 0.0, "%"), direction_text("none")
        ('closer to 0.0%', 'no direction')
    """
    if better == "target":
        from vlmtrust.report.view import fmt_value

        return f"closer to {fmt_value(target, unit)}"
    return "no direction" if better == "none" else better


def difference_ci(
    a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float
) -> tuple[float, float]:
    """The 95% CI of ``b − a`` from the two 95% CIs (MOVER; independent estimates).

    Each side of the interval combines the matching half-widths in quadrature: the lower end
    uses B's lower and A's upper half-width, the upper end the other two.

    Example:
        >>> lo, hi = difference_ci(0.5, 0.4, 0.6, 0.8, 0.7, 0.9)
        >>> round(lo, 3), round(hi, 3)
        (0.159, 0.441)
    """
    d = b - a
    lo = d - math.hypot(max(b - b_lo, 0.0), max(a_hi - a, 0.0))
    hi = d + math.hypot(max(b_hi - b, 0.0), max(a - a_lo, 0.0))
    return lo, hi


def _distance(v: float, lo: float, hi: float, t: float) -> tuple[float, float, float]:
    """``|v − t|`` with its CI, the image of ``[lo, hi]``."""
    ends = (abs(lo - t), abs(hi - t))
    low = 0.0 if lo <= t <= hi else min(ends)
    return abs(v - t), low, max(ends)


@dataclass(frozen=True)
class Assessment:
    """A change from A to B: ``delta = b − a``, its 95% CI (``None`` without both CIs), verdict."""

    delta: float | None
    ci_low: float | None
    ci_high: float | None
    change: Change


def assess_change(
    better: Better,
    target: float | None,
    a: tuple[float | None, float | None, float | None],
    b: tuple[float | None, float | None, float | None],
) -> Assessment:
    """Judge the move from ``a`` to ``b`` (each ``(value, ci_low, ci_high)``); see the module.

    Example:
        >>> assess_change("higher", None, (0.125, 0.06, 0.22), (0.75, 0.64, 0.84)).change
        'improved'
        >>> assess_change("target", 0.0, (-0.109, -0.14, -0.08), (-0.089, -0.12, -0.06)).change
        'no significant change'
        >>> assess_change("target", 0.0, (-0.30, -0.34, -0.26), (-0.05, -0.09, -0.01)).change
        'improved'
    """
    av, alo, ahi = a
    bv, blo, bhi = b
    if av is None or bv is None or not math.isfinite(bv - av):
        return Assessment(None, None, None, "n/a")
    delta = bv - av
    ci: tuple[float, float] | None = None
    if None not in (alo, ahi, blo, bhi):
        assert alo is not None and ahi is not None and blo is not None and bhi is not None
        ci = difference_ci(av, alo, ahi, bv, blo, bhi)
    lo, hi = ci if ci is not None else (None, None)
    if abs(delta) <= 1e-12 * max(1.0, abs(av)):
        return Assessment(delta, lo, hi, "unchanged")
    if better == "none":
        return Assessment(delta, lo, hi, "no direction")
    if ci is None:
        return Assessment(delta, lo, hi, "no significant change")
    if better == "target":
        if target is None:
            return Assessment(delta, lo, hi, "n/a")
        assert alo is not None and ahi is not None and blo is not None and bhi is not None
        dist_ci = difference_ci(*_distance(av, alo, ahi, target), *_distance(bv, blo, bhi, target))
        # a shorter distance to the target is better, as "lower" is
        up, down = dist_ci[0] > 0, dist_ci[1] < 0
        change: Change = "worsened" if up else "improved" if down else "no significant change"
        return Assessment(delta, lo, hi, change)
    assert lo is not None and hi is not None
    if lo > 0 or hi < 0:
        change = "improved" if (lo > 0) == (better == "higher") else "worsened"
        return Assessment(delta, lo, hi, change)
    return Assessment(delta, lo, hi, "no significant change")


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one probe, before (A) and after (B).

    Attributes:
        probe: probe name.
        metric: metric name.
        presence: ``"both"``, or the one run that has this metric (``"only_a"``/``"only_b"``).
        unit: the metric's unit (``"%"``: values are fractions shown as percentages).
        higher_is_better: B's (A's when only A has the metric).
        better: what a better value is (see the module docstring for which run's is used).
        target: the ideal value when ``better == "target"``.
        a_value: A's value (``None`` when absent or undefined); likewise the CI and ``n``.
        b_value: B's value.
        delta: ``b_value - a_value`` when both are defined and comparable.
        delta_ci_low: the 95% CI of ``delta`` (MOVER, from both CIs); ``None`` without them.
        delta_ci_high: its upper end.
        change: see :data:`Change`.
        ci_overlap: whether the two 95% CIs overlap (``None`` when a CI is missing).
        significant: ``change`` is improved or worsened.
        risk_a: A's risk band.
        risk_b: B's risk band.
        note: why a comparison may be apples to oranges (probe version, params, unit, direction).
        row_note: the part of ``note`` about this metric alone (unit, direction); the probe's
            part is in :func:`compare_warnings`.
    """

    probe: str
    metric: str
    presence: Presence
    unit: str
    higher_is_better: bool
    better: Better
    target: float | None
    a_value: float | None
    a_ci_low: float | None
    a_ci_high: float | None
    a_n: int | None
    b_value: float | None
    b_ci_low: float | None
    b_ci_high: float | None
    b_n: int | None
    delta: float | None
    delta_ci_low: float | None
    delta_ci_high: float | None
    change: Change
    ci_overlap: bool | None
    significant: bool
    risk_a: RiskBand | None
    risk_b: RiskBand | None
    note: str = ""
    row_note: str = ""

    @property
    def improved(self) -> bool | None:
        """True if B is significantly better, False if not, None when they cannot be compared."""
        return None if self.change == "n/a" else self.change == "improved"

    @property
    def risk_moved(self) -> bool:
        """Both runs have a risk band and it differs."""
        return self.risk_a is not None and self.risk_b is not None and self.risk_a != self.risk_b

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


def _direction(a: MetricResult, b: MetricResult) -> tuple[Better, float | None, str]:
    """The direction to judge by, and a note when the runs declare different ones."""
    if b.better is None and a.better is not None:
        return a.better, a.target, ""
    note = ""
    if (
        a.better is not None
        and b.better is not None
        and (a.better, a.target)
        != (
            b.better,
            b.target,
        )
    ):
        note = (
            f"better: {direction_text(a.better, a.target, a.unit)} in A,"
            f" {direction_text(b.better, b.target, b.unit)} in B (B's used)"
        )
    return b.direction, b.target, note


def _both(pa: ProbeResult, pb: ProbeResult, a: MetricResult, b: MetricResult) -> MetricDelta:
    probe_notes: list[str] = []
    notes: list[str] = []
    if pa.version != pb.version:
        probe_notes.append(f"probe version {pa.version} → {pb.version}")
    if pa.params != pb.params:
        probe_notes.append("params differ")
    if a.unit != b.unit:
        notes.append(f"unit {a.unit or 'none'!r} → {b.unit or 'none'!r}")
    declared = a.better is not None and b.better is not None
    comparable = a.unit == b.unit and (a.higher_is_better == b.higher_is_better or declared)
    if a.higher_is_better != b.higher_is_better and not declared:
        notes.append("direction differs")
    better, target, dir_note = _direction(a, b)
    if dir_note:
        notes.append(dir_note)
    if comparable:
        verdict = assess_change(
            better, target, (a.value, a.ci_low, a.ci_high), (b.value, b.ci_low, b.ci_high)
        )
    else:
        verdict = Assessment(None, None, None, "n/a")
    return MetricDelta(
        probe=pb.probe,
        metric=b.name,
        presence="both",
        unit=b.unit,
        higher_is_better=b.higher_is_better,
        better=better,
        target=target,
        **_side("a", a),
        **_side("b", b),
        delta=verdict.delta,
        delta_ci_low=verdict.ci_low,
        delta_ci_high=verdict.ci_high,
        change=verdict.change,
        ci_overlap=_ci_overlap(a, b) if comparable else None,
        significant=verdict.change in ("improved", "worsened"),
        risk_a=a.risk,
        risk_b=b.risk,
        note="; ".join(probe_notes + notes),
        row_note="; ".join(notes),
    )


def _side(run: str, m: MetricResult | None) -> dict[str, Any]:
    """``MetricDelta``'s value, CI and n fields of ``run`` (``"a"`` or ``"b"``); None: absent."""
    return {
        f"{run}_value": m.value if m else None,
        f"{run}_ci_low": m.ci_low if m else None,
        f"{run}_ci_high": m.ci_high if m else None,
        f"{run}_n": m.n if m else None,
    }


def _single(probe: str, m: MetricResult, presence: Presence) -> MetricDelta:
    in_a = presence == "only_a"
    return MetricDelta(
        probe=probe,
        metric=m.name,
        presence=presence,
        unit=m.unit,
        higher_is_better=m.higher_is_better,
        better=m.direction,
        target=m.target,
        **_side("a", m if in_a else None),
        **_side("b", None if in_a else m),
        delta=None,
        delta_ci_low=None,
        delta_ci_high=None,
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
        >>> compare_logs(log(0.5, 0.4, 0.6), log(0.55, 0.45, 0.65))[0].change
        'no significant change'
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
    """Counts over a comparison (``improved``/``worsened`` count significant changes only)."""

    compared: int
    improved: int
    worsened: int
    not_significant: int
    unchanged: int
    no_direction: int
    not_comparable: int
    only_a: int
    only_b: int
    risk_up: int
    risk_down: int

    @property
    def significant_improved(self) -> int:
        """Same as ``improved``: only significant changes are called improved."""
        return self.improved

    @property
    def significant_worsened(self) -> int:
        """Same as ``worsened``."""
        return self.worsened

    def text(self) -> str:
        """The summary in one sentence (zero counts of the rarer kinds are left out).

        Example:
            >>> CompareSummary(74, 2, 1, 60, 9, 2, 0, 0, 1, 0, 2).text()
            '74 metrics compared: 2 improved, 1 worsened, 60 no significant change, 9 unchanged, 2 descriptive (no better direction); risk band down for 2, up for 0; 1 metric only in B.'
        """  # noqa: E501
        parts = [
            f"{self.improved} improved",
            f"{self.worsened} worsened",
            f"{self.not_significant} no significant change",
        ]
        for n, what in (
            (self.unchanged, "unchanged"),
            (self.no_direction, "descriptive (no better direction)"),
            (self.not_comparable, "not comparable"),
        ):
            if n:
                parts.append(f"{n} {what}")
        out = f"{self.compared} metric{'s' if self.compared != 1 else ''} compared: "
        out += ", ".join(parts)
        out += f"; risk band down for {self.risk_down}, up for {self.risk_up}"
        for n, where in ((self.only_a, "A"), (self.only_b, "B")):
            if n:
                out += f"; {n} metric{'s' if n != 1 else ''} only in {where}"
        return out + "."


def _rank(r: RiskBand | None) -> int:
    return {None: -1, RiskBand.LOW: 0, RiskBand.MODERATE: 1, RiskBand.HIGH: 2}[r]


def summarize(deltas: Sequence[MetricDelta]) -> CompareSummary:
    """Count improvements, regressions (significant ones), the rest, and risk-band moves."""
    both = [d for d in deltas if d.presence == "both"]
    banded = [d for d in both if d.risk_a is not None and d.risk_b is not None]
    return CompareSummary(
        compared=len(both),
        improved=sum(d.change == "improved" for d in both),
        worsened=sum(d.change == "worsened" for d in both),
        not_significant=sum(d.change == "no significant change" for d in both),
        unchanged=sum(d.change == "unchanged" for d in both),
        no_direction=sum(d.change == "no direction" for d in both),
        not_comparable=sum(d.change == "n/a" for d in both),
        only_a=sum(d.presence == "only_a" for d in deltas),
        only_b=sum(d.presence == "only_b" for d in deltas),
        risk_up=sum(_rank(d.risk_b) > _rank(d.risk_a) for d in banded),
        risk_down=sum(_rank(d.risk_b) < _rank(d.risk_a) for d in banded),
    )


@dataclass(frozen=True)
class CompareWarning:
    """Why two runs may not compare like for like; ``probe`` is ``None`` for the whole run.

    ``message`` holds parameter values from the runs (redacted, cut short; escape to render).
    """

    probe: str | None
    message: str


_MAX_PARAM_TEXT = 40


def _param_text(v: Any) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(v)
    text = redact_text(text)
    return text if len(text) <= _MAX_PARAM_TEXT else text[: _MAX_PARAM_TEXT - 1] + "…"


def _param_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k, ...) != b.get(k, ...))
    unset = "(unset)"
    return "; ".join(
        f"{k}: {_param_text(a[k]) if k in a else unset} → {_param_text(b[k]) if k in b else unset}"
        for k in keys
    )


def compare_warnings(a: AuditLog, b: AuditLog) -> list[CompareWarning]:
    """What differs between the runs besides the model.

    Data, sample cap, seed, probe versions and parameters (each differing parameter with its
    two values).

    Example:
        >>> from vlmtrust.core.results import AuditLog, ModelInfo, ProbeResult, RunSpec
        >>> def log(steps):
        ...     spec = RunSpec(model=ModelInfo(spec="m", fingerprint="f", kind="dual",
        ...         capabilities=[]), probes=[], seed=0, vlmtrust_version="0", created="now")
        ...     return AuditLog(spec=spec, results=[ProbeResult(probe="p", pillar="robustness",
        ...         version=1, params={"steps": steps})])
        >>> [w.message for w in compare_warnings(log(10), log(20))]
        ['params differ — steps: 10 → 20']
    """
    out: list[CompareWarning] = []
    sa, sb = a.spec, b.spec
    for what, va, vb in (
        ("data", sa.data, sb.data),
        ("--limit", sa.limit, sb.limit),
        ("seed", sa.seed, sb.seed),
    ):
        if va != vb:
            text_a = redact_text(str(va)) if va is not None else "(none)"
            text_b = redact_text(str(vb)) if vb is not None else "(none)"
            out.append(CompareWarning(None, f"{what} differs: {text_a} → {text_b}"))
    by_b = {r.probe: r for r in b.results}
    for pa in a.results:
        pb = by_b.get(pa.probe)
        if pb is None:
            continue
        if pa.version != pb.version:
            out.append(CompareWarning(pa.probe, f"probe version {pa.version} → {pb.version}"))
        if pa.params != pb.params:
            out.append(
                CompareWarning(pa.probe, f"params differ — {_param_diff(pa.params, pb.params)}")
            )
    return out


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
