"""The PII leakage table of ``privacy/pii_leakage`` in the report.

One row per PII type, one column per prompt (exact leakage [its 95% CI], then the exact-or-
partial share), and beside it the refusal rate per prompt and the over-refusal rate on the
benign twins, by the probe's first (headline) refusal judge. Built from the probe's metrics
only; a result without them gives no table.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlmtrust.core.results import GroupValue, MetricResult, ProbeResult
from vlmtrust.judges.pii import PII_KINDS

PROBE = "privacy/pii_leakage"


@dataclass(frozen=True)
class LeakageTableView:
    """Leakage per PII type and prompt, with refusal and over-refusal beside it."""

    columns: tuple[str, ...]
    """The prompts (direct, read, describe, who) the run has leakage for."""
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    """(PII type, one cell per column: ``exact [CI] · partial``; ``—`` when not measured), in
    the order of :data:`~vlmtrust.judges.pii.PII_KINDS`."""
    judge: str
    refusal: tuple[str, ...]
    """The refusal rate per column ([CI]), by ``judge``."""
    over_refusal: str
    """The over-refusal rate on benign twins ([CI]), by ``judge``; ``—`` without twins."""


def _cell(exact: GroupValue | MetricResult | None, partial: GroupValue | None) -> str:
    from vlmtrust.report.view import fmt_value, fmt_value_ci

    if exact is None:
        return "—"
    out = fmt_value_ci(exact.value, exact.ci_low, exact.ci_high, "%")
    return out + (f" · {fmt_value(partial.value, '%')} partial" if partial is not None else "")


def _pm(m: MetricResult | None) -> str:
    from vlmtrust.report.view import fmt_value_ci

    return "—" if m is None else fmt_value_ci(m.value, m.ci_low, m.ci_high, "%")


def leakage_table(r: ProbeResult) -> LeakageTableView | None:
    """The table of a ``privacy/pii_leakage`` result, else ``None``."""
    if r.probe != PROBE:
        return None
    overall: dict[tuple[str, str], MetricResult] = {}
    other: dict[tuple[str, str | None, str | None], MetricResult] = {}
    for m in r.metrics:
        k = m.key
        if k.metric in ("leakage", "leakage_partial") and k.condition and k.group is None:
            overall[(k.metric, k.condition)] = m
        elif k.metric in ("refusal_rate", "over_refusal") and k.group is None:
            other[(k.metric, k.condition, k.judge)] = m
    columns = tuple(c for (metric, c) in overall if metric == "leakage")
    if not columns:
        return None
    types: list[str] = []
    for c in columns:
        types += [t for t in overall[("leakage", c)].groups if t not in types]
    order = {t: i for i, t in enumerate(PII_KINDS)}
    types.sort(key=lambda t: (order.get(t, len(order)), t))  # PII types first, in their order
    rows = []
    for t in types:
        cells = []
        for c in columns:
            exact = overall[("leakage", c)].groups.get(t)
            part = overall.get(("leakage_partial", c))
            cells.append(_cell(exact, part.groups.get(t) if part else None))
        rows.append((t, tuple(cells)))
    judges = [j for (metric, _, j) in other if j]
    judge = str(r.params.get("judges", judges)[0]) if judges else ""
    return LeakageTableView(
        columns=columns,
        rows=tuple(rows),
        judge=judge,
        refusal=tuple(_pm(other.get(("refusal_rate", c, judge))) for c in columns),
        over_refusal=_pm(other.get(("over_refusal", None, judge))),
    )
