"""Renderers of a comparison: a self-contained HTML page, Markdown, and the terminal.

The numbers come from :mod:`vlmtrust.report.diff`; every name and note is escaped one way per
format (Jinja2 autoescaping for HTML, :func:`~vlmtrust.report.markdown.md_escape` for Markdown,
``rich.text.Text`` for the terminal), so judge names holding URLs or markup are shown literally.
Each format leads with the summary and the warnings (what differs between the runs besides the
model), then the metrics probe by probe; the HTML page also overlays each probe's plots, A
dashed and B solid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import AuditLog, Plot, ProbeResult
from vlmtrust.core.types import RiskBand
from vlmtrust.report.diff import (
    Change,
    CompareSummary,
    CompareWarning,
    MetricDelta,
    RunPair,
    compare_logs,
    compare_warnings,
    direction_text,
    pair_runs,
    summarize,
)
from vlmtrust.report.html import environment, package_version, write_text_atomic
from vlmtrust.report.markdown import md_escape, md_table
from vlmtrust.report.rundir import LoadedRun
from vlmtrust.report.view import fmt_ci, fmt_delta, fmt_delta_ci, fmt_value, slug

if TYPE_CHECKING:
    import rich.text
    from markupsafe import Markup
    from rich.console import RenderableType

__all__ = ["RULE", "compare_renderables", "deltas_text", "render_compare"]

RULE = (
    "Δ = B − A. A change is improved or worsened only when the 95% CI of Δ (from the two runs'"
    " CIs) excludes 0 — for a metric with a target, the CI of the change in distance to it;"
    " otherwise it is no significant change."
)
"""The significance rule, in the words every format prints."""

_ARROW = {"higher": "↑", "lower": "↓", "target": "→", "none": "·"}


@dataclass(frozen=True)
class _Row:
    probe: str
    metric: str
    a: str
    a_ci: str
    b: str
    b_ci: str
    delta: str
    delta_ci: str
    change: Change
    arrow: str
    direction: str
    significant: bool
    risk: str
    risk_a: RiskBand | None
    risk_b: RiskBand | None
    note: str


def _row(d: MetricDelta) -> _Row:
    return _Row(
        probe=d.probe,
        metric=d.metric,
        a=fmt_value(d.a_value, d.unit) if d.presence != "only_b" else "—",
        a_ci=fmt_ci(d.a_ci_low, d.a_ci_high, d.unit),
        b=fmt_value(d.b_value, d.unit) if d.presence != "only_a" else "—",
        b_ci=fmt_ci(d.b_ci_low, d.b_ci_high, d.unit),
        delta="0 pp" if d.change == "unchanged" and d.unit == "%" else fmt_delta(d.delta, d.unit),
        delta_ci=fmt_delta_ci(d.delta_ci_low, d.delta_ci_high, d.unit),
        change=d.change,
        arrow=_ARROW[d.better],
        direction=direction_text(d.better, d.target, d.unit),
        significant=d.significant,
        risk=d.risk_change,
        risk_a=d.risk_a,
        risk_b=d.risk_b,
        note=d.row_note,
    )


@dataclass(frozen=True)
class _RunMeta:
    spec: str
    fingerprint: str
    seed: int
    created: str
    label: str
    version: str
    directory: str


def _meta(r: LoadedRun | None) -> _RunMeta | None:
    if r is None:
        return None
    s = r.log.spec
    return _RunMeta(
        spec=s.model.spec,
        fingerprint=s.model.fingerprint,
        seed=s.seed,
        created=s.created,
        label=s.label,
        version=s.vlmtrust_version,
        directory=str(r.directory),
    )


_PlotItem = tuple[str, "Markup | None", "str | None"]


@dataclass(frozen=True)
class _Probe:
    name: str
    anchor: str
    warnings: tuple[str, ...]
    rows: tuple[_Row, ...]
    plots: tuple[_PlotItem, ...]


@dataclass(frozen=True)
class _Section:
    name: str
    anchor: str
    a: _RunMeta | None
    b: _RunMeta | None
    warnings: tuple[str, ...]
    """Run-level warnings (data, --limit, seed)."""
    probes: tuple[_Probe, ...]
    only_a: tuple[_Row, ...]
    only_b: tuple[_Row, ...]
    summary: CompareSummary | None

    @property
    def all_warnings(self) -> tuple[str, ...]:
        """The run's warnings, then each probe's, prefixed with the probe name."""
        return self.warnings + tuple(f"{p.name}: {w}" for p in self.probes for w in p.warnings)


def _plot_pairs(pa: ProbeResult, pb: ProbeResult) -> list[tuple[Plot | None, Plot | None]]:
    """A's and B's plots paired by kind and title, then by kind in order; the rest alone."""
    left = list(pa.plots)
    pairs: list[tuple[Plot | None, Plot | None]] = []
    unmatched: list[Plot] = []
    for p in pb.plots:
        same = next((q for q in left if (q.kind, q.title) == (p.kind, p.title)), None)
        if same is None:
            unmatched.append(p)
        else:
            left.remove(same)
            pairs.append((same, p))
    for p in unmatched:
        same = next((q for q in left if q.kind == p.kind), None)
        if same is not None:
            left.remove(same)
        pairs.append((same, p))
    pairs += [(q, None) for q in left]
    return pairs


def _render_plots(pa: ProbeResult, pb: ProbeResult, anchor: str) -> tuple[_PlotItem, ...]:
    from markupsafe import Markup

    from vlmtrust.report.plots import overlay_to_svg, plot_to_svg, svg_for_html

    out: list[_PlotItem] = []
    for i, (a, b) in enumerate(_plot_pairs(pa, pb)):
        prefix = f"{anchor}-f{i}-"
        shown = b or a
        assert shown is not None
        try:
            if a is not None and b is not None:
                svg = overlay_to_svg(a, b, id_prefix=prefix)
                title = f"{b.title} — A dashed, B solid"
            else:
                svg = plot_to_svg(shown, id_prefix=prefix)
                title = f"{shown.title} (only in {'B' if b is not None else 'A'})"
        except InputError as exc:
            out.append((shown.title, None, str(exc)))
            continue
        # Trusted: produced by matplotlib, which XML-escapes every text it draws.
        out.append((title, Markup(svg_for_html(svg)), None))
    return tuple(out)


def _section(i: int, pair: RunPair, *, plots: bool = False) -> _Section:
    anchor = slug(f"c{i}", pair.name)
    if pair.a is None or pair.b is None:
        return _Section(pair.name, anchor, _meta(pair.a), _meta(pair.b), (), (), (), (), None)
    la, lb = pair.a.log, pair.b.log
    deltas = compare_logs(la, lb)
    warns = compare_warnings(la, lb)
    grouped: dict[str, list[_Row]] = {}
    for d in deltas:
        if d.presence == "both":
            grouped.setdefault(d.probe, []).append(_row(d))
    a_probes = {r.probe: r for r in la.results}
    b_probes = {r.probe: r for r in lb.results}
    probes = []
    for j, (name, rows) in enumerate(grouped.items()):
        p_anchor = slug(anchor, f"p{j}", name)
        probes.append(
            _Probe(
                name=name,
                anchor=p_anchor,
                warnings=tuple(w.message for w in warns if w.probe == name),
                rows=tuple(rows),
                plots=_render_plots(a_probes[name], b_probes[name], p_anchor) if plots else (),
            )
        )
    return _Section(
        name=pair.name,
        anchor=anchor,
        a=_meta(pair.a),
        b=_meta(pair.b),
        warnings=tuple(w.message for w in warns if w.probe is None),
        probes=tuple(probes),
        only_a=tuple(_row(d) for d in deltas if d.presence == "only_a"),
        only_b=tuple(_row(d) for d in deltas if d.presence == "only_b"),
        summary=summarize(deltas),
    )


def _md_change(r: _Row) -> str:
    change = r.change if r.change != "n/a" else "—"
    return f"**{change}**" if r.significant else change


def _md_row(r: _Row) -> list[str]:
    note = f"<br>{md_escape(r.note)}" if r.note else ""
    return [
        f"{md_escape(r.metric)} {r.arrow}{note}",
        r.a,
        r.a_ci,
        r.b,
        r.b_ci,
        r.delta,
        r.delta_ci,
        _md_change(r),
        r.risk,
    ]


def _markdown(sections: Sequence[_Section], title_a: str, title_b: str) -> str:
    out = [
        "# vlmtrust comparison",
        "",
        f"A (before): {md_escape(title_a)}  ",
        f"B (after): {md_escape(title_b)}",
        "",
        f"{RULE} Arrows: ↑ higher is better, ↓ lower, → closer to a target, · no direction"
        " (descriptive). Plots: compare.html.",
        "",
    ]
    for s in sections:
        out += [f"## {md_escape(s.name)}", ""]
        rows = []
        for label, m in (("A", s.a), ("B", s.b)):
            if m is None:
                rows.append([label, "missing", "—", "—", "—"])
            else:
                rows.append(
                    [
                        label,
                        md_escape(m.spec),
                        md_escape(m.fingerprint[:24]),
                        str(m.seed),
                        md_escape(m.created) + (f" ({md_escape(m.label)})" if m.label else ""),
                    ]
                )
        out += md_table(["run", "model", "fingerprint", "seed", "date"], rows)
        if s.summary is None:
            out += ["Only one of the two runs has this model; nothing to compare.", ""]
            continue
        out += [f"**{s.summary.text()}**", ""]
        warns = s.all_warnings
        if warns:
            out += ["**Warnings** (the runs differ besides the model):", ""]
            out += [f"- ⚠ {md_escape(w)}" for w in warns]
            out.append("")
        for p in s.probes:
            out += [f"### {md_escape(p.name)}", ""]
            out += [f"⚠ {md_escape(w)}  " for w in p.warnings]
            if p.warnings:
                out.append("")
            out += md_table(
                [
                    "metric",
                    "A",
                    "A 95% CI",
                    "B",
                    "B 95% CI",
                    "Δ (B − A)",
                    "Δ 95% CI",
                    "change",
                    "risk",
                ],
                [_md_row(r) for r in p.rows],
                align="lrrrrrrll",
            )
        for label, only in (("Only in A", s.only_a), ("Only in B", s.only_b)):
            if only:
                out += [f"### {label}", ""]
                out += md_table(
                    ["probe", "metric", "value", "95% CI"],
                    [
                        [
                            md_escape(r.probe),
                            md_escape(r.metric),
                            r.a if r.a != "—" else r.b,
                            r.a_ci if r.a != "—" else r.b_ci,
                        ]
                        for r in only
                    ],
                    align="llrr",
                )
    return "\n".join(out) + "\n"


def render_compare(
    run_a: Path,
    run_b: Path,
    *,
    out_html: Path | None = None,
    out_md: Path | None = None,
) -> tuple[Path, Path]:
    """Write a before/after comparison of two runs as HTML and Markdown.

    Leads with the summary (:meth:`CompareSummary.text`) and the warnings
    (:func:`~vlmtrust.report.diff.compare_warnings`). Then, per probe: for every metric in both
    runs A value [CI], B value [CI], Δ with its 95% CI, the verdict (improved / worsened only
    when significant, see :mod:`vlmtrust.report.diff`) and the risk-band change; in the HTML,
    the probe's plots with A's and B's series overlaid. Metrics present in only one run are
    listed. Two multi-model parents are compared model by model (paired by sub-run name).

    Args:
        run_a: the "before" run directory.
        run_b: the "after" run directory.
        out_html: default ``run_b/compare.html``.
        out_md: default ``run_b/compare.md``.

    Returns:
        ``(html_path, md_path)``.

    Raises:
        InputError: a run directory is missing or invalid, or an output cannot be written.
    """
    run_a, run_b = Path(run_a), Path(run_b)
    pairs = pair_runs(run_a, run_b)
    sections = [_section(i, p, plots=True) for i, p in enumerate(pairs)]

    def title(p: Path, runs: Sequence[LoadedRun | None]) -> str:
        specs = sorted({r.log.spec.model.spec for r in runs if r is not None})
        return f"{p.name} ({', '.join(specs)})"

    title_a = title(run_a, [p.a for p in pairs])
    title_b = title(run_b, [p.b for p in pairs])
    html_text = (
        environment()
        .get_template("compare.html.j2")
        .render(
            title_a=title_a,
            title_b=title_b,
            rule=RULE,
            sections=sections,
            generator_version=package_version(),
        )
    )
    md_text = _markdown(sections, title_a, title_b)
    html_path = write_text_atomic(Path(out_html) if out_html else run_b / "compare.html", html_text)
    md_path = write_text_atomic(Path(out_md) if out_md else run_b / "compare.md", md_text)
    return html_path, md_path


# ---- terminal ---------------------------------------------------------------------------------

_STYLE = {"improved": "bold green", "worsened": "bold red"}


def _compact_ci(lo: float | None, hi: float | None, unit: str) -> str:
    if lo is None or hi is None:
        return ""
    if unit == "%":
        return f" [{lo * 100:.1f}, {hi * 100:.1f}]"
    return " " + fmt_ci(lo, hi, unit)


def _numbers(d: MetricDelta) -> tuple[str, str, str]:
    """``A value [CI]``, ``B value [CI]``, ``Δ value [CI]`` (``%`` CIs in points, no signs)."""
    r = _row(d)
    a = f"A {r.a}{_compact_ci(d.a_ci_low, d.a_ci_high, d.unit)}"
    b = f"B {r.b}{_compact_ci(d.b_ci_low, d.b_ci_high, d.unit)}"
    dci = fmt_delta_ci(d.delta_ci_low, d.delta_ci_high, d.unit)
    delta = f"Δ {r.delta}" + ("" if dci == "—" else " " + dci.removesuffix(" pp"))
    return a, b, delta


def deltas_text(deltas: Sequence[MetricDelta], *, title: str = "") -> rich.text.Text:
    """The deltas as terminal text that survives 80 columns (names literal, never markup).

    Two lines a metric: its full name, better-direction arrow, verdict and risk band; then A, B
    and Δ, each with its 95% CI, aligned from metric to metric. Nothing is cut with an
    ellipsis: a line too long for the terminal wraps between words.

    Example:
        >>> from rich.console import Console
        >>> Console(width=80).print(deltas_text([], title="p"))
        p
    """
    from rich.text import Text

    out = Text()
    if title:
        out.append(title, style="bold")
    nums = [_numbers(d) for d in deltas]
    wa = max((len(n[0]) for n in nums), default=0)
    wb = max((len(n[1]) for n in nums), default=0)
    for d, (a, b, delta) in zip(deltas, nums, strict=True):
        if out:
            out.append("\n")
        out.append(f"  {d.metric} {_ARROW[d.better]}  ")
        if d.presence != "both":
            out.append("only in " + ("A" if d.presence == "only_a" else "B"), style="yellow")
        else:
            out.append(d.change, style=_STYLE.get(d.change, "dim"))
        if d.risk_a is not None or d.risk_b is not None:
            out.append(f", risk {d.risk_change}", style="bold" if d.risk_moved else "")
        if d.row_note:
            out.append(f" ({d.row_note})", style="yellow")
        out.append(f"\n      {a.ljust(wa)}   {b.ljust(wb)}   {delta}")
    return out


def _shown(d: MetricDelta) -> bool:
    return d.presence == "both" and (d.significant or d.risk_moved)


def _names(rows: Sequence[MetricDelta], limit: int = 12) -> str:
    names = [f"{d.probe}: {d.metric}" for d in rows[:limit]]
    more = f", … and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(names) + more


def _run_line(label: str, r: LoadedRun) -> str:
    s = r.log.spec
    extra = f" ({s.label})" if s.label else ""
    return f"{label}  {r.directory} — {s.model.spec}, seed {s.seed}, {s.created}{extra}"


def _pair_renderables(pair: RunPair, *, show_all: bool, heading: bool) -> list[RenderableType]:
    from rich.text import Text

    out: list[RenderableType] = []
    if heading:
        out.append(Text(f"== {pair.name} ==", style="bold"))
    if pair.a is None or pair.b is None:
        which = "A" if pair.a is not None else "B"
        out.append(Text(f"only {which} has this model; nothing to compare", style="yellow"))
        return out
    la: AuditLog = pair.a.log
    lb: AuditLog = pair.b.log
    out += [Text(_run_line("A", pair.a)), Text(_run_line("B", pair.b))]
    deltas = compare_logs(la, lb)
    summary = summarize(deltas)
    out.append(Text(summary.text(), style="bold"))
    warns: list[CompareWarning] = compare_warnings(la, lb)
    if warns:
        out.append(Text("Warnings (the runs differ besides the model):", style="bold yellow"))
        for w in warns:
            out.append(Text(f"  ! {w.probe + ': ' if w.probe else ''}{w.message}", style="yellow"))
    both = [d for d in deltas if d.presence == "both"]
    shown = both if show_all else [d for d in both if _shown(d)]
    if not show_all:
        if shown:
            out.append(
                Text(
                    f"Significant changes and risk-band moves ({len(shown)} of {len(both)};"
                    " --all lists every metric):"
                )
            )
        else:
            out.append(
                Text(
                    "No metric changed significantly and no risk band moved"
                    " (--all lists every metric)."
                )
            )
    by_probe: dict[str, list[MetricDelta]] = {}
    for d in shown:
        by_probe.setdefault(d.probe, []).append(d)
    for probe, rows in by_probe.items():
        out += [Text(""), deltas_text(rows, title=probe)]
    if by_probe:
        out.append(Text(""))
    for label, presence in (("Only in A", "only_a"), ("Only in B", "only_b")):
        only = [d for d in deltas if d.presence == presence]
        if only:
            out.append(Text(f"{label} ({len(only)}): {_names(only)}"))
    if shown:
        out.append(
            Text(
                "Better: ↑ higher, ↓ lower, → closer to a target, · no direction. Improved or"
                " worsened only when the 95% CI of Δ = B − A excludes 0; % CIs in points.",
                style="dim",
            )
        )
    return out


def compare_renderables(
    pairs: Sequence[RunPair], *, show_all: bool = False
) -> list[RenderableType]:
    """What ``vlmtrust compare`` prints; it reads in 80 columns (and wraps, never cuts).

    Per model: the two runs, the summary line, the warnings, then the metrics that changed
    significantly or moved risk band (every metric with ``show_all``), probe by probe.
    """
    out: list[RenderableType] = []
    for pair in pairs:
        out += _pair_renderables(pair, show_all=show_all, heading=len(pairs) > 1)
    return out
