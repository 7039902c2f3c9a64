"""A leaderboard across runs and models (``vlmtrust summarize``): models × headline metrics.

Every model of every run given is one row; every headline metric of any probe one column,
with its value, 95% CI ``[lo, hi]`` and risk band; a first block of columns gives each
pillar's band. Written as one self-contained HTML page and one Markdown file. Model specs,
run names and labels come from the run files and are escaped when rendered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlmtrust.core.errors import InputError
from vlmtrust.core.types import Pillar, RiskBand
from vlmtrust.report.html import environment, package_version, write_text_atomic
from vlmtrust.report.markdown import md_escape, md_table, risk_label
from vlmtrust.report.rundir import LoadedRun, load_runs
from vlmtrust.report.view import MetricView, RunView, build_run_view, slug

__all__ = [
    "Leaderboard",
    "LeaderboardCell",
    "LeaderboardColumn",
    "LeaderboardRow",
    "build_leaderboard",
    "leaderboard_markdown",
    "render_leaderboard",
]


@dataclass(frozen=True)
class LeaderboardColumn:
    """One headline metric: ``probe``, ``metric`` (its rendered name) and what better means."""

    probe: str
    metric: str
    arrow: str
    direction: str


@dataclass(frozen=True)
class LeaderboardCell:
    """One model's value of a column: ``value [lo, hi]`` and the metric's risk band."""

    value_ci: str
    risk: RiskBand | None


@dataclass(frozen=True)
class LeaderboardRow:
    """One model of one run. Texts are raw (escape when rendering)."""

    run: str
    """The run folder (as given, plus the sub-run of a multi-model audit)."""
    model: str
    """The model spec (as the run recorded it, secrets redacted)."""
    created: str
    label: str
    pillars: tuple[tuple[Pillar, bool, RiskBand | None], ...]
    """``(pillar, audited, band)`` in scorecard order."""
    cells: tuple[LeaderboardCell | None, ...]
    """One per column; ``None``: the run has no such metric."""
    n_errors: int


@dataclass(frozen=True)
class Leaderboard:
    """The rows (models) and columns (headline metrics) of a summary."""

    columns: tuple[LeaderboardColumn, ...]
    rows: tuple[LeaderboardRow, ...]
    pillars: tuple[Pillar, ...]


def _metrics(view: RunView) -> dict[tuple[str, str], MetricView]:
    return {(pv.probe, m.name): m for pv in view.probes for m in pv.metrics}


def build_leaderboard(runs: Sequence[str | Path]) -> Leaderboard:
    """Load every run folder in ``runs`` (a multi-model audit gives one row per model).

    Columns are the headline metrics in order of first appearance (a probe without headline
    metrics contributes its first metric).

    Raises:
        InputError: no run given, or a folder is not a readable run.
    """
    if not runs:
        raise InputError("summarize needs at least one run folder (`vlmtrust runs` lists them)")
    from vlmtrust.report.entry import run_folder

    loaded: list[tuple[str, LoadedRun]] = []
    for path in runs:
        sub = load_runs(run_folder(path))
        for one in sub:
            where = str(path) if len(sub) == 1 else f"{path}/{one.name}"
            loaded.append((where, one))
    views = [
        build_run_view(r, anchor_prefix=slug(f"m{i}", r.name)) for i, (_, r) in enumerate(loaded)
    ]
    columns: list[LeaderboardColumn] = []
    seen: set[tuple[str, str]] = set()
    for (_, run), view in zip(loaded, views, strict=True):
        by_name = _metrics(view)
        for res in run.log.results:
            heads = [m for m in res.metrics if m.headline] or res.metrics[:1]
            for m in heads:
                key = (res.probe, m.name)
                if key in seen or key not in by_name:
                    continue
                seen.add(key)
                head = by_name[key]
                columns.append(LeaderboardColumn(res.probe, m.name, head.arrow, head.direction))
    rows = []
    for (where, _), view in zip(loaded, views, strict=True):
        by_name = _metrics(view)
        cells: list[LeaderboardCell | None] = []
        for c in columns:
            mv = by_name.get((c.probe, c.metric))
            cells.append(None if mv is None else LeaderboardCell(mv.value_ci, mv.risk))
        rows.append(
            LeaderboardRow(
                run=where,
                model=view.spec,
                created=view.created,
                label=view.label,
                pillars=tuple((c.pillar, c.audited, c.risk) for c in view.scorecard),
                cells=tuple(cells),
                n_errors=view.n_errors,
            )
        )
    pillars = tuple(p for p, _, _ in rows[0].pillars) if rows else ()
    return Leaderboard(columns=tuple(columns), rows=tuple(rows), pillars=pillars)


def leaderboard_markdown(board: Leaderboard) -> str:
    """The leaderboard as a Markdown document (every run-provided text escaped)."""
    out = [
        "# vlmtrust summary",
        "",
        f"{len(board.rows)} model(s) × {len(board.columns)} headline metric(s). "
        "Cells: value [95% CI] and risk band. Arrows give what better means: ↑ higher, "
        "↓ lower, → closer to a target, · no direction.",
        "",
        "## Risk by pillar",
        "",
    ]
    out += md_table(
        ["model", "run", *(p.value for p in board.pillars), "errors"],
        [
            [
                md_escape(r.model) + (f"<br>{md_escape(r.label)}" if r.label else ""),
                md_escape(r.run),
                *(risk_label(band, empty="no band") if aud else "—" for _, aud, band in r.pillars),
                str(r.n_errors),
            ]
            for r in board.rows
        ],
        align="ll" + "l" * len(board.pillars) + "r",
    )
    out += ["## Headline metrics", ""]
    header = [
        "model",
        *(f"{md_escape(c.probe)}<br>{md_escape(c.metric)} {c.arrow}" for c in board.columns),
    ]
    body = []
    for r in board.rows:
        cells = [
            "—" if c is None else c.value_ci + (f" {risk_label(c.risk)}" if c.risk else "")
            for c in r.cells
        ]
        body.append([f"{md_escape(r.model)}<br>{md_escape(r.run)}", *cells])
    out += md_table(header, body)
    out += ["---", "", "Rendered by vlmtrust from the run files alone.", ""]
    return "\n".join(out)


def render_leaderboard(
    runs: Sequence[str | Path], out_dir: str | Path
) -> tuple[Leaderboard, Path, Path]:
    """Write ``summary.html`` and ``summary.md`` for ``runs`` under ``out_dir``.

    Returns:
        ``(leaderboard, html_path, md_path)``.

    Raises:
        InputError: a run folder is missing or unreadable, or the output cannot be written.
    """
    board = build_leaderboard(runs)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"{out}: cannot create the summary folder ({e}); pick another --out"
        ) from e
    html_text = (
        environment()
        .get_template("summary.html.j2")
        .render(board=board, generator_version=package_version())
    )
    html_path = write_text_atomic(out / "summary.html", html_text)
    md_path = write_text_atomic(out / "summary.md", leaderboard_markdown(board))
    return board, html_path, md_path
