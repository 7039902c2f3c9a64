"""Renderers of a comparison: a self-contained HTML page, Markdown, and a terminal table.

The numbers come from :mod:`vlmtrust.report.diff`; every name and note is escaped one way per
format (Jinja2 autoescaping for HTML, :func:`~vlmtrust.report.markdown.md_escape` for Markdown,
``rich.text.Text`` for the terminal), so judge names holding URLs or markup are shown literally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmtrust.core.types import RiskBand
from vlmtrust.report.diff import (
    Change,
    CompareSummary,
    MetricDelta,
    RunPair,
    compare_logs,
    pair_runs,
    summarize,
)
from vlmtrust.report.html import environment, package_version, write_text_atomic
from vlmtrust.report.markdown import md_escape, md_table
from vlmtrust.report.rundir import LoadedRun
from vlmtrust.report.view import fmt_ci, fmt_value, slug

if TYPE_CHECKING:
    import rich.table

__all__ = ["deltas_table", "render_compare"]


@dataclass(frozen=True)
class _Row:
    probe: str
    metric: str
    a: str
    a_ci: str
    b: str
    b_ci: str
    delta: str
    change: Change
    arrow: str
    significant: bool
    ci_overlap: str
    risk: str
    risk_a: RiskBand | None
    risk_b: RiskBand | None
    note: str


def _fmt_delta(d: MetricDelta) -> str:
    if d.delta is None:
        return "—"
    if d.change == "unchanged":
        return "0 pp" if d.unit == "%" else "0"
    sign = "+" if d.delta > 0 else "−"
    if d.unit == "%":
        return f"{sign}{abs(d.delta) * 100:.1f} pp"
    return sign + fmt_value(abs(d.delta), d.unit)


def _row(d: MetricDelta) -> _Row:
    return _Row(
        probe=d.probe,
        metric=d.metric,
        a=fmt_value(d.a_value, d.unit) if d.presence != "only_b" else "—",
        a_ci=fmt_ci(d.a_ci_low, d.a_ci_high, d.unit),
        b=fmt_value(d.b_value, d.unit) if d.presence != "only_a" else "—",
        b_ci=fmt_ci(d.b_ci_low, d.b_ci_high, d.unit),
        delta=_fmt_delta(d),
        change=d.change,
        arrow="↑" if d.higher_is_better else "↓",
        significant=d.significant,
        ci_overlap={None: "n/a", True: "yes", False: "no"}[d.ci_overlap],
        risk=d.risk_change,
        risk_a=d.risk_a,
        risk_b=d.risk_b,
        note=d.note,
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


@dataclass(frozen=True)
class _Section:
    name: str
    anchor: str
    a: _RunMeta | None
    b: _RunMeta | None
    probes: tuple[tuple[str, tuple[_Row, ...]], ...]
    only_a: tuple[_Row, ...]
    only_b: tuple[_Row, ...]
    summary: CompareSummary | None


def _section(i: int, pair: RunPair) -> _Section:
    deltas = compare_logs(pair.a.log, pair.b.log) if pair.a and pair.b else []
    grouped: dict[str, list[_Row]] = {}
    for d in deltas:
        if d.presence == "both":
            grouped.setdefault(d.probe, []).append(_row(d))
    return _Section(
        name=pair.name,
        anchor=slug(f"c{i}", pair.name),
        a=_meta(pair.a),
        b=_meta(pair.b),
        probes=tuple((k, tuple(v)) for k, v in grouped.items()),
        only_a=tuple(_row(d) for d in deltas if d.presence == "only_a"),
        only_b=tuple(_row(d) for d in deltas if d.presence == "only_b"),
        summary=summarize(deltas) if pair.a and pair.b else None,
    )


def _md_row(r: _Row, *, both: bool) -> list[str]:
    change: str = r.change if r.change != "n/a" else "—"
    if r.significant:
        change = f"**{change}**"
    note = f"<br>{md_escape(r.note)}" if r.note else ""
    if not both:
        return [
            md_escape(r.probe),
            md_escape(r.metric),
            r.a if r.a != "—" else r.b,
            r.a_ci if r.a != "—" else r.b_ci,
        ]
    return [
        f"{md_escape(r.metric)} {r.arrow}{note}",
        r.a,
        r.a_ci,
        r.b,
        r.b_ci,
        r.delta,
        change,
        "yes" if r.significant else "no",
        r.ci_overlap,
        r.risk,
    ]


def _markdown(sections: Sequence[_Section], title_a: str, title_b: str) -> str:
    out = [
        "# vlmtrust comparison",
        "",
        f"A (before): {md_escape(title_a)}  ",
        f"B (after): {md_escape(title_b)}",
        "",
        "A change is significant only when the two 95% CIs do not overlap.",
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
        sm = s.summary
        out += [
            f"{sm.compared} metrics compared: {sm.improved} improved"
            f" ({sm.significant_improved} significantly), {sm.worsened} worsened"
            f" ({sm.significant_worsened} significantly), {sm.unchanged} unchanged;"
            f" risk band up {sm.risk_up}, down {sm.risk_down}.",
            "",
        ]
        for probe, rows_ in s.probes:
            out += [f"### {md_escape(probe)}", ""]
            out += md_table(
                [
                    "metric",
                    "A",
                    "A 95% CI",
                    "B",
                    "B 95% CI",
                    "Δ (B − A)",
                    "change",
                    "significant",
                    "CIs overlap",
                    "risk",
                ],
                [_md_row(r, both=True) for r in rows_],
                align="lrrrrrllll",
            )
        for label, rows_ in (("Only in A", s.only_a), ("Only in B", s.only_b)):
            if rows_:
                out += [f"### {label}", ""]
                out += md_table(
                    ["probe", "metric", "value", "95% CI"],
                    [_md_row(r, both=False) for r in rows_],
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

    For every probe and metric present in both runs: A value [CI], B value [CI], delta,
    whether it improved (respecting ``higher_is_better``), whether the CIs overlap (a change is
    called significant only when they do not) and the risk-band change. Metrics present in only
    one run are listed. Two multi-model parents are compared model by model (paired by sub-run
    name).

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
    sections = [_section(i, p) for i, p in enumerate(pairs)]

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
            sections=sections,
            generator_version=package_version(),
        )
    )
    md_text = _markdown(sections, title_a, title_b)
    html_path = write_text_atomic(Path(out_html) if out_html else run_b / "compare.html", html_text)
    md_path = write_text_atomic(Path(out_md) if out_md else run_b / "compare.md", md_text)
    return html_path, md_path


def deltas_table(deltas: Sequence[MetricDelta], *, title: str = "") -> rich.table.Table:
    """A ``rich`` table of the deltas for the terminal (names are shown literally, not markup).

    Example:
        >>> from rich.console import Console
        >>> Console(width=120).print(deltas_table([]))  # doctest: +SKIP
    """
    from rich.table import Table
    from rich.text import Text

    style = {"improved": "green", "worsened": "red", "unchanged": "dim", "n/a": "dim"}
    table = Table(title=title or None, show_lines=False)
    for col, justify in (
        ("probe", "left"),
        ("metric", "left"),
        ("A [95% CI]", "right"),
        ("B [95% CI]", "right"),
        ("Δ", "right"),
        ("change", "left"),
        ("risk", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for d in deltas:
        r = _row(d)
        change = Text(r.change + (" *" if r.significant else ""), style=style[r.change])
        if d.presence != "both":
            change = Text("only in " + ("A" if d.presence == "only_a" else "B"), style="yellow")
        table.add_row(
            Text(d.probe),
            Text(f"{d.metric} {r.arrow}"),
            Text(f"{r.a} {r.a_ci}" if r.a != "—" else "—"),
            Text(f"{r.b} {r.b_ci}" if r.b != "—" else "—"),
            Text(r.delta),
            change,
            Text(r.risk),
        )
    table.caption = "* significant: the two 95% CIs do not overlap"
    return table
