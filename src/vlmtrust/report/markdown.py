"""Render a run (or several models) as GitHub-flavoured Markdown: the HTML report minus images.

Untrusted text (model outputs, prompts, sample ids, params, error messages) goes through
:func:`md_escape`: HTML is turned into entities (so a Markdown renderer shows ``<script>`` as
text instead of passing it through), Markdown punctuation is backslash-escaped (no code spans,
links, images or emphasis can be injected), pipes cannot break table cells, and newlines become
``<br>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vlmtrust.core.types import RiskBand
from vlmtrust.report.rundir import LoadedRun
from vlmtrust.report.view import (
    CardProbe,
    ExampleView,
    MetricView,
    MovementRow,
    PillarCard,
    ProbeView,
    RequestsView,
    RunView,
    movement,
    views_for,
)

__all__ = ["md_escape", "render_markdown", "risk_label"]

_MD_PUNCT = re.compile(r"([\\`*_\[\]{}|~#!])")
_RISK_ICON = {RiskBand.LOW: "🟢", RiskBand.MODERATE: "🟡", RiskBand.HIGH: "🔴"}


def md_escape(text: object) -> str:
    """Escape untrusted text for a Markdown document, table cells included.

    Example:
        >>> md_escape("<b>x</b>")
        '&lt;b&gt;x&lt;/b&gt;'
    """
    s = str(text).replace("\r\n", "\n").replace("\r", "\n")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_PUNCT.sub(r"\\\1", s)
    return s.replace("\n", "<br>")


def risk_label(risk: RiskBand | None, *, empty: str = "—") -> str:
    """A risk band with a colour icon (``🔴 high``)."""
    if risk is None:
        return empty
    return f"{_RISK_ICON[risk]} {risk.value}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A GitHub-style table (cells must already be escaped); ``align`` holds ``l``/``r``."""
    aligns = [("---:" if a == "r" else "---") for a in align.ljust(len(header), "l")]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _meta(view: RunView) -> list[str]:
    rows = [
        ["model", md_escape(view.spec)],
        ["fingerprint", md_escape(view.fingerprint)],
        [
            "kind",
            md_escape(
                view.kind + (f" ({', '.join(view.capabilities)})" if view.capabilities else "")
            ),
        ],
        ["seed", str(view.seed)],
        ["vlmtrust", md_escape(view.version + (f" ({view.git_sha})" if view.git_sha else ""))],
        ["date", md_escape(view.created)],
    ]
    if view.label:
        rows.append(["label", md_escape(view.label)])
    rows.append(["duration", view.seconds])
    return md_table(["", ""], rows)


def _card_probe(cp: CardProbe) -> str:
    out = f"{md_escape(cp.probe)} {risk_label(cp.risk, empty='no band')}"
    heads = [f"{md_escape(h.metric)} **{h.value_ci}**" for h in cp.headlines]
    out += ": " + ("; ".join(heads) if heads else "no headline metric")
    if cp.driver and cp.risk:
        out += f" ({cp.risk.value} from {md_escape(cp.driver.metric)} {cp.driver.value_ci})"
    return out


def _card_row(card: PillarCard) -> list[str]:
    if not card.audited:
        return [card.pillar.value, "not audited", "—", "0", "—"]
    heads = "<br>".join(_card_probe(cp) for cp in card.probes) or "no probe"
    return [
        card.pillar.value,
        risk_label(card.risk, empty="no band"),
        heads,
        str(card.n_probes),
        f"**{card.n_errors}**" if card.n_errors else "0",
    ]


def _metric_row(m: MetricView) -> list[str]:
    name = f"**{md_escape(m.name)}**" + (" (headline)" if m.headline else "")
    if m.fields:
        name += "<br>" + " · ".join(f"{f}: {md_escape(v)}" for f, v in m.fields)
    if m.description:
        name += f"<br>{md_escape(m.description)}"
    groups = "; ".join(f"{md_escape(g.label)}: {g.value} {g.ci} (n={g.n})" for g in m.groups)
    if groups:
        groups = f"by {md_escape(m.group_by or 'group')}: {groups}"
    if m.gap:
        gap = (
            f"gap: difference **{m.gap.difference}** {m.gap.difference_ci},"
            f" ratio **{m.gap.ratio}** {m.gap.ratio_ci}"
        )
        if m.gap.worst:
            gap += f", worst group **{md_escape(m.gap.worst)}**"
        groups = f"{groups}<br>{gap}" if groups else gap
    risk = risk_label(m.risk)
    if m.thresholds:
        risk += f"<br>{md_escape(m.thresholds)}"
    return [
        name,
        m.value,
        m.ci,
        str(m.n),
        f"{m.arrow} {md_escape(m.direction)}",
        risk,
        groups or "—",
    ]


def _example(i: int, e: ExampleView) -> list[str]:
    head = f"{i}. " + (f"**{md_escape(e.title)}** — " if e.title else "")
    head += f"sample {md_escape(e.sample_id)}"
    if e.thumbnail_b64:
        head += " (input image in the HTML report)"
    elif e.thumbnail_invalid:
        head += " (thumbnail is not a valid PNG; not shown)"
    lines = [head]
    for label, text in (
        ("prompt", e.prompt),
        ("output", e.output),
        ("expected", e.expected),
        ("note", e.note),
    ):
        if text:
            lines.append(f"   - {label}: {md_escape(text)}")
    return lines


def _probe(p: ProbeView, level: str) -> list[str]:
    err = f"**{p.n_errors} errors**" if p.n_errors else "0 errors"
    out = [
        f"{level} {md_escape(p.probe)} — {risk_label(p.worst_risk, empty='no risk band')}",
        "",
        f"{p.pillar.value} · v{p.version} · {p.n_samples} samples · {err} · {p.seconds}",
        "",
    ]
    if p.description:
        out += [md_escape(p.description), ""]
    out += [f"- {md_escape(n)}" for n in p.notes]
    if p.notes:
        out.append("")
    if p.params:
        out += ["**Parameters**", ""]
        out += md_table(["parameter", "value"], [[md_escape(k), md_escape(v)] for k, v in p.params])
    if p.leakage is not None:
        lk = p.leakage
        out += ["**PII leakage by type** (exact [95% CI] · exact or partial)", ""]
        out += md_table(
            ["PII type", *(md_escape(c) for c in lk.columns)],
            [
                *([md_escape(t), *cells] for t, cells in lk.rows),
                [f"refusal ({md_escape(lk.judge)})", *lk.refusal],
            ],
            align="l" + "r" * len(lk.columns),
        )
        out += [f"Over-refusal on benign twins ({md_escape(lk.judge)}): {lk.over_refusal}", ""]
    if p.metrics:
        out += ["**Metrics**", ""]
        out += md_table(
            ["metric", "value", "95% CI", "n", "better", "risk", "groups"],
            [_metric_row(m) for m in p.metrics],
            align="lrrrlll",
        )
    if p.plots:
        out += ["**Plots** (drawn in the HTML report)", ""]
        out += [f"- {plot.kind}: {md_escape(plot.title)}" for plot in p.plots]
        out.append("")
    if p.examples:
        more = (
            f" ({len(p.examples)} of {p.n_examples_total})"
            if p.n_examples_total > len(p.examples)
            else ""
        )
        out += [f"**Worst examples**{more}", ""]
        for i, e in enumerate(p.examples, 1):
            out += _example(i, e)
        out.append("")
    if p.requests is not None:
        out += _requests(p.requests)
    if p.n_errors:
        kinds = len(p.error_groups)
        grouped = f" {kinds} kind{'s' if kinds != 1 else ''} of error:" if kinds else ""
        out += [f"**Errors:** {p.n_errors} of {p.n_samples} samples failed.{grouped}", ""]
        for g in p.error_groups:
            ids = ", ".join(md_escape(i) for i in g.sample_ids)
            more = f" and {g.more_ids} more" if g.more_ids else ""
            out.append(f"- **{g.count}×** {md_escape(g.message)}")
            if g.example:
                out.append(f"  - e.g. {md_escape(g.example)}")
            out.append(f"  - sample{'s' if g.count != 1 else ''}: {ids}{more}")
        if p.errors_unlisted:
            out.append(
                f"- {p.errors_unlisted} more error{'s' if p.errors_unlisted != 1 else ''} not "
                "listed here — see samples/ in the run directory"
            )
        out.append("")
    return out


def _requests(rq: RequestsView) -> list[str]:
    out = ["**Requests** (remote model)", ""]
    out += md_table(
        ["requests", "attempts", "retries by cause", "failed"],
        [[str(rq.requests), str(rq.attempts), md_escape(rq.retries), str(rq.errors)]],
        align="rrlr",
    )
    if rq.slowest:
        out += md_table(
            ["slowest requests: sample", "seconds", "attempts", "outcome"],
            [
                [md_escape(sid), sec, str(n), "ok" if ok else "failed"]
                for sid, sec, n, ok in rq.slowest
            ],
            align="lrrl",
        )
    return out


def _run(view: RunView, *, multi: bool) -> list[str]:
    h2, h3 = ("###", "####") if multi else ("##", "###")
    out: list[str] = []
    if multi:
        out += [f"## {md_escape(view.name)}", ""]
    out += _meta(view)
    out += [f"{h2} Scorecard", ""]
    out += md_table(
        ["pillar", "risk", "probes: band, headline metrics (value [95% CI])", "probes", "errors"],
        [_card_row(c) for c in view.scorecard],
        align="lllrr",
    )
    out += [f"{h2} Probes", ""]
    if not view.probes:
        out += ["This run holds no probe results.", ""]
    for p in view.probes:
        out += _probe(p, h3)
    if view.human:
        out += [f"{h2} Agreement with human labels", ""]
        out += md_table(
            ["probe", "judge", "n", "agreement", "κ", "control n", "κ (control)"],
            [
                [md_escape(h.probe), md_escape(h.judge), str(h.n), h.agreement, h.kappa]
                + [str(h.n_control), h.kappa_control]
                for h in view.human
            ],
            align="llrrrrr",
        )
    return out


def _movement(views: Sequence[RunView], rows: Sequence[MovementRow]) -> list[str]:
    if not rows:
        return []
    ref = md_escape(views[0].name)
    out = [
        "### Probes by model",
        "",
        f"Each probe's band and its headline metrics [95% CI] per model; Δ against {ref}"
        " (improved / worsened only when the 95% CI of the difference excludes 0).",
        "",
    ]
    body: list[list[str]] = []
    for row in rows:
        if row.metric is None:
            first = f"**{md_escape(row.probe)}**"
            cells = [
                "—"
                if c is None
                else risk_label(c.risk, empty="no band")
                + (f" (from {md_escape(c.note)})" if c.note else "")
                for c in row.cells
            ]
        else:
            first = f"{md_escape(row.metric)} {row.arrow}"
            cells = []
            for c in row.cells:
                if c is None:
                    cells.append("—")
                    continue
                text = c.value_ci + (f" {risk_label(c.risk)}" if c.risk else "")
                if c.change:
                    text += f"<br>{c.change}"
                    if c.delta and c.delta != "—":
                        text += f" {c.delta}" + (f" {c.delta_ci}" if c.delta_ci != "—" else "")
                cells.append(text)
        body.append([first, *cells])
    out += md_table(["probe / metric", *(md_escape(v.name) for v in views)], body)
    return out


def render_markdown(runs: Sequence[LoadedRun]) -> str:
    """Render loaded runs (one, or several models) as one Markdown document."""
    views = views_for(runs)
    multi = len(views) > 1
    out = ["# vlmtrust audit report", ""]
    if multi:
        out += [f"{len(views)} models.", "", "## Models", ""]
        header = ["model", *(c.pillar.value for c in views[0].scorecard), "errors"]
        rows = [
            [
                f"{md_escape(v.name)}<br>{md_escape(v.spec)}",
                *(risk_label(c.risk, empty="no band") if c.audited else "—" for c in v.scorecard),
                str(v.n_errors),
            ]
            for v in views
        ]
        out += md_table(header, rows)
        out += _movement(views, movement(runs, views))
    for v in views:
        out += _run(v, multi=multi)
    out += [
        "---",
        "",
        "Rendered by vlmtrust from the run files alone; model outputs are untrusted and shown"
        " escaped. Plots and input images are in the HTML report.",
        "",
    ]
    return "\n".join(out)
