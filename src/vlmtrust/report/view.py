"""The report's content as plain data, shared by the HTML and Markdown renderers.

Numbers are formatted here once (fractions as percentages when ``unit == "%"``); untrusted
strings (model outputs, prompts, sample ids, params, error messages) are passed through *raw*
and escaped by each renderer for its own format.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlmtrust.core.redact import redact_text
from vlmtrust.core.results import (
    Example,
    GroupGap,
    GroupValue,
    MetricKey,
    MetricResult,
    Plot,
    ProbeResult,
    RequestStats,
)
from vlmtrust.core.types import Pillar, RiskBand
from vlmtrust.report.errors import ErrorGroups
from vlmtrust.report.rundir import LoadedRun

__all__ = [
    "ErrorGroupView",
    "ExampleView",
    "GapView",
    "GroupView",
    "MetricView",
    "PillarCard",
    "ProbeView",
    "RequestsView",
    "RunView",
    "build_run_view",
    "fmt_ci",
    "fmt_pm",
    "fmt_value",
    "risk_rank",
    "truncate",
    "views_for",
]

MAX_TEXT = 1500
"""Untrusted texts (outputs, prompts) longer than this are cut in the report."""
MAX_PARAM = 300
MAX_EXAMPLES = 8
MAX_THUMB_BYTES = 512 * 1024
MAX_ERROR_TEXT = 500
"""Error messages longer than this are cut in the report."""
MAX_ID_TEXT = 200
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_RISK_ORDER = {RiskBand.LOW: 0, RiskBand.MODERATE: 1, RiskBand.HIGH: 2}


def risk_rank(risk: RiskBand | None) -> int:
    """Order risk bands: none < low < moderate < high."""
    return -1 if risk is None else _RISK_ORDER[risk]


def _num(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2e}"
    if a >= 100:
        return f"{v:,.1f}"
    if a >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_value(value: float | None, unit: str = "") -> str:
    """Format a metric value; ``unit == "%"`` turns a fraction into a percentage.

    Example:
        >>> fmt_value(0.8333, "%"), fmt_value(0.1234), fmt_value(None), fmt_value(2.5, "s")
        ('83.3%', '0.123', '—', '2.500 s')
    """
    if value is None or not math.isfinite(value):
        return "—"
    if unit == "%":
        return f"{value * 100:.1f}%"
    return _num(value) + (f" {unit}" if unit else "")


def fmt_ci(lo: float | None, hi: float | None, unit: str = "") -> str:
    """Format a confidence interval as ``[lo, hi]`` (``—`` when absent)."""
    if lo is None or hi is None:
        return "—"
    return f"[{fmt_value(lo, unit)}, {fmt_value(hi, unit)}]"


def fmt_pm(value: float | None, lo: float | None, hi: float | None, unit: str = "") -> str:
    """Format ``value ± half-width of the CI`` (the value alone when there is no CI).

    Example:
        >>> fmt_pm(0.5, 0.4, 0.6, "%")
        '50.0% ± 10.0%'
    """
    if value is None or lo is None or hi is None:
        return fmt_value(value, unit)
    return f"{fmt_value(value, unit)} ± {fmt_value((hi - lo) / 2, unit)}"


def truncate(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """Cut ``text`` to ``limit`` characters, saying how much was left out."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def slug(*parts: str) -> str:
    """An HTML id made of lowercase letters, digits and dashes."""
    s = "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts if p)
    return s or "x"


@dataclass(frozen=True)
class GroupView:
    """One group's value of a metric."""

    label: str
    value: str
    ci: str
    n: int


@dataclass(frozen=True)
class GapView:
    """The spread of a metric over its groups (difference and ratio with CIs), formatted."""

    difference: str
    difference_ci: str
    ratio: str
    ratio_ci: str
    best: str | None
    worst: str | None


@dataclass(frozen=True)
class MetricView:
    """One metric, formatted.

    ``name`` is the rendered key (display only); ``fields`` are the key's set fields besides
    ``metric`` (``("condition", "figstep")``, ...), raw — escape when rendering.
    """

    name: str
    metric: str
    fields: tuple[tuple[str, str], ...]
    anchor: str
    description: str
    value: str
    ci: str
    pm: str
    n: int
    higher_is_better: bool
    arrow: str
    risk: RiskBand | None
    thresholds: str
    group_by: str | None
    groups: tuple[GroupView, ...]
    gap: GapView | None
    headline: bool


@dataclass(frozen=True)
class ExampleView:
    """One worst/illustrative example; texts raw (escape when rendering)."""

    sample_id: str
    title: str
    prompt: str | None
    output: str | None
    expected: str | None
    note: str
    thumbnail_b64: str | None
    thumbnail_invalid: bool


@dataclass(frozen=True)
class ErrorGroupView:
    """Errors that share a message (``…`` where the members differ); texts raw."""

    message: str
    example: str | None
    """The first member's full message, when it differs from ``message``."""
    count: int
    sample_ids: tuple[str, ...]
    more_ids: int
    """Sample ids of the group not listed."""


@dataclass(frozen=True)
class RequestsView:
    """A remote model's requests for one probe: counts, retries by cause, the slowest."""

    requests: int
    attempts: int
    retries: str
    """``429: 3 · 5xx: 1``, or ``none``."""
    errors: int
    slowest: tuple[tuple[str, str, int, bool], ...]
    """``(sample id, seconds, attempts, ok)``, slowest first (sample ids are untrusted)."""


def requests_view(st: RequestStats | None) -> RequestsView | None:
    """Format a probe's request statistics (None stays None)."""
    if st is None:
        return None
    retries = " · ".join(f"{cause}: {n}" for cause, n in st.retries.items()) or "none"
    return RequestsView(
        requests=st.requests,
        attempts=st.attempts,
        retries=retries,
        errors=st.errors,
        slowest=tuple(
            (s.sample_id or "—", f"{s.seconds:.2f} s", s.attempts, s.ok) for s in st.slowest
        ),
    )


@dataclass(frozen=True)
class ProbeView:
    """One probe's section."""

    probe: str
    anchor: str
    description: str
    pillar: Pillar
    version: int
    params: tuple[tuple[str, str], ...]
    metrics: tuple[MetricView, ...]
    plots: tuple[Plot, ...]
    examples: tuple[ExampleView, ...]
    n_examples_total: int
    n_samples: int
    n_errors: int
    error_groups: tuple[ErrorGroupView, ...]
    errors_unlisted: int
    """Errors counted but in no group shown (beyond the group cap, or not on disk)."""
    seconds: str
    notes: tuple[str, ...]
    worst_risk: RiskBand | None
    requests: RequestsView | None = None


@dataclass(frozen=True)
class HeadlineView:
    """A headline metric in the scorecard."""

    probe: str
    anchor: str
    metric: str
    pm: str
    ci: str
    risk: RiskBand | None


@dataclass(frozen=True)
class PillarCard:
    """One pillar of the scorecard."""

    pillar: Pillar
    audited: bool
    risk: RiskBand | None
    headlines: tuple[HeadlineView, ...]
    n_probes: int
    n_metrics: int
    n_errors: int
    n_samples: int


@dataclass(frozen=True)
class HumanAgreementView:
    """One judge's agreement with the human labels of one probe."""

    probe: str
    judge: str
    n: int
    agreement: str
    kappa: str
    n_control: int
    kappa_control: str


def _human_views(run: LoadedRun) -> tuple[HumanAgreementView, ...]:
    from vlmtrust.report.human import read_agreement

    return tuple(
        HumanAgreementView(
            probe=a.probe,
            judge=a.judge,
            n=a.n,
            agreement=fmt_pm(a.agreement, *a.agreement_ci),
            kappa=fmt_pm(a.kappa, *a.kappa_ci),
            n_control=a.n_control,
            kappa_control=fmt_pm(a.kappa_control, *a.kappa_control_ci),
        )
        for a in read_agreement(run.directory, run.name)
    )


@dataclass(frozen=True)
class RunView:
    """One model's whole report content."""

    name: str
    anchor: str
    spec: str
    fingerprint: str
    kind: str
    capabilities: tuple[str, ...]
    seed: int
    version: str
    git_sha: str | None
    created: str
    label: str
    seconds: str
    scorecard: tuple[PillarCard, ...]
    probes: tuple[ProbeView, ...]
    n_errors: int
    human: tuple[HumanAgreementView, ...] = ()
    """Each judge's agreement with imported human labels (``vlmtrust import-labels``)."""


def _thresholds(m: MetricResult) -> str:
    if m.thresholds is None:
        return ""
    op = "<" if m.higher_is_better else ">"
    return (
        f"moderate {op} {fmt_value(m.thresholds.moderate, m.unit)}, "
        f"high {op} {fmt_value(m.thresholds.high, m.unit)}"
    )


def _group(label: str, g: GroupValue, unit: str) -> GroupView:
    return GroupView(
        label=label, value=fmt_value(g.value, unit), ci=fmt_ci(g.ci_low, g.ci_high, unit), n=g.n
    )


_KEY_FIELDS = ("condition", "judge", "step", "eps", "group")


def key_fields(key: MetricKey) -> tuple[tuple[str, str], ...]:
    """The set fields of a key besides ``metric``, in a fixed order (read, never parsed).

    Example:
        >>> key_fields(MetricKey(metric="asr", condition="figstep", judge="llm:m@http://h/v1"))
        (('condition', 'figstep'), ('judge', 'llm:m@http://h/v1'))
    """
    return tuple((f, v) for f in _KEY_FIELDS if (v := getattr(key, f)) is not None)


def gap_view(gap: GroupGap | None, unit: str = "") -> GapView | None:
    """Format a group gap: the difference in the metric's unit, the ratio unitless."""
    if gap is None:
        return None
    return GapView(
        difference=fmt_value(gap.difference, unit),
        difference_ci=fmt_ci(gap.difference_ci_low, gap.difference_ci_high, unit),
        ratio=fmt_value(gap.ratio),
        ratio_ci=fmt_ci(gap.ratio_ci_low, gap.ratio_ci_high),
        best=gap.best,
        worst=gap.worst,
    )


def metric_view(m: MetricResult, anchor: str = "") -> MetricView:
    """Format one metric (``anchor``: its HTML id, made from its position, never its name)."""
    return MetricView(
        name=m.name,
        metric=m.key.metric,
        fields=key_fields(m.key),
        anchor=anchor,
        description=m.description,
        value=fmt_value(m.value, m.unit),
        ci=fmt_ci(m.ci_low, m.ci_high, m.unit),
        pm=fmt_pm(m.value, m.ci_low, m.ci_high, m.unit),
        n=m.n,
        higher_is_better=m.higher_is_better,
        arrow="↑" if m.higher_is_better else "↓",
        risk=m.risk,
        thresholds=_thresholds(m),
        group_by=m.group_by,
        groups=tuple(_group(k, g, m.unit) for k, g in m.groups.items()),
        gap=gap_view(m.gap, m.unit),
        headline=m.headline,
    )


def _thumbnail(b64: str | None) -> tuple[str | None, bool]:
    """Validate a base64 PNG thumbnail; return it re-encoded canonically, or flag it invalid."""
    if not b64:
        return None, False
    try:
        data = base64.b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError):
        return None, True
    if not data.startswith(_PNG_MAGIC) or len(data) > MAX_THUMB_BYTES:
        return None, True
    return base64.b64encode(data).decode("ascii"), False


def _example(e: Example) -> ExampleView:
    thumb, invalid = _thumbnail(e.image_png_b64)
    return ExampleView(
        sample_id=e.sample_id,
        title=e.title,
        prompt=truncate(e.prompt),
        output=truncate(e.output),
        expected=truncate(e.expected),
        note=truncate(e.note) or "",
        thumbnail_b64=thumb,
        thumbnail_invalid=invalid,
    )


def _param(v: Any) -> str:
    if isinstance(v, str):
        text = v
    else:
        try:
            text = json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = repr(v)
    return truncate(redact_text(text), MAX_PARAM) or ""


def _worst(risks: list[RiskBand | None]) -> RiskBand | None:
    known = [r for r in risks if r is not None]
    return max(known, key=risk_rank) if known else None


def error_group_views(groups: ErrorGroups) -> tuple[ErrorGroupView, ...]:
    """Every error group, formatted (messages and ids cut to a readable length)."""
    out: list[ErrorGroupView] = []
    for g in groups.groups:
        message = truncate(g.message, MAX_ERROR_TEXT) or ""
        out.append(
            ErrorGroupView(
                message=message,
                example=truncate(g.example, MAX_ERROR_TEXT) if g.example != g.message else None,
                count=g.count,
                sample_ids=tuple(truncate(i, MAX_ID_TEXT) or "" for i in g.sample_ids),
                more_ids=g.more_ids,
            )
        )
    return tuple(out)


def probe_view(r: ProbeResult, run: LoadedRun, anchor_prefix: str, index: int) -> ProbeView:
    """Format one probe's section."""
    groups = run.errors_for(r.probe)
    anchor = slug(anchor_prefix, f"p{index}", r.probe)
    return ProbeView(
        probe=r.probe,
        anchor=anchor,
        description=r.description,
        pillar=r.pillar,
        version=r.version,
        params=tuple((str(k), _param(v)) for k, v in sorted(r.params.items())),
        metrics=tuple(metric_view(m, f"{anchor}-m{i}") for i, m in enumerate(r.metrics)),
        plots=tuple(r.plots),
        examples=tuple(_example(e) for e in r.examples[:MAX_EXAMPLES]),
        n_examples_total=len(r.examples),
        n_samples=r.n_samples,
        n_errors=r.n_errors,
        error_groups=error_group_views(groups),
        errors_unlisted=max(0, r.n_errors - groups.n_grouped),
        seconds=f"{r.seconds:.1f} s",
        notes=tuple(r.notes),
        worst_risk=_worst([m.risk for m in r.metrics]),
        requests=requests_view(r.requests),
    )


def scorecard(probes: tuple[ProbeView, ...], results: list[ProbeResult]) -> tuple[PillarCard, ...]:
    """Per pillar: worst risk band, headline metrics (value ± CI) and error count."""
    cards: list[PillarCard] = []
    for pillar in Pillar:
        mine = [(pv, r) for pv, r in zip(probes, results, strict=True) if r.pillar == pillar]
        heads = tuple(
            HeadlineView(
                probe=pv.probe,
                anchor=m.anchor or pv.anchor,
                metric=m.name,
                pm=m.pm,
                ci=m.ci,
                risk=m.risk,
            )
            for pv, _ in mine
            for m in pv.metrics
            if m.headline
        )
        cards.append(
            PillarCard(
                pillar=pillar,
                audited=bool(mine),
                risk=_worst([pv.worst_risk for pv, _ in mine]),
                headlines=heads,
                n_probes=len(mine),
                n_metrics=sum(len(pv.metrics) for pv, _ in mine),
                n_errors=sum(r.n_errors for _, r in mine),
                n_samples=sum(r.n_samples for _, r in mine),
            )
        )
    return tuple(cards)


def build_run_view(run: LoadedRun, *, anchor_prefix: str = "") -> RunView:
    """Turn a loaded run into the report's content."""
    log = run.log
    probes = tuple(probe_view(r, run, anchor_prefix, i) for i, r in enumerate(log.results))
    spec = log.spec
    return RunView(
        name=run.name,
        anchor=slug(anchor_prefix or "run", "model"),
        spec=redact_text(spec.model.spec),
        fingerprint=redact_text(spec.model.fingerprint),
        kind=spec.model.kind,
        capabilities=tuple(spec.model.capabilities),
        seed=spec.seed,
        version=spec.vlmtrust_version,
        git_sha=spec.git_sha,
        created=spec.created,
        label=spec.label,
        seconds=f"{log.seconds:.1f} s",
        scorecard=scorecard(probes, list(log.results)),
        probes=probes,
        n_errors=sum(r.n_errors for r in log.results),
        human=_human_views(run),
    )


def views_for(runs: Sequence[LoadedRun]) -> list[RunView]:
    """Build the content of each run (anchors prefixed per model when there are several)."""
    if len(runs) == 1:
        return [build_run_view(runs[0])]
    return [build_run_view(r, anchor_prefix=slug(f"m{i}", r.name)) for i, r in enumerate(runs)]
