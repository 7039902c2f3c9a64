"""Render :class:`~vlmtrust.core.results.Plot` descriptions as self-contained inline SVG.

Every plot kind (``line``, ``bar``, ``heatmap``, ``roc``, ``reliability``, ``scatter``) is
drawn on a bare matplotlib ``Figure`` (no pyplot, no GUI backend, no global state) and saved
with the SVG backend, using only the DejaVu fonts that ship inside matplotlib.
The output is deterministic (fixed ``svg.hashsalt``, no date, no metadata block) and references
nothing outside itself: the XML prolog, the DOCTYPE (which names an external DTD) and the RDF
metadata are stripped. Text is emitted as ``<text>`` elements (``svg.fonttype = "none"``), which
matplotlib XML-escapes, and math-text parsing is off so untrusted labels containing ``$`` are
drawn literally.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import Plot, Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["overlay_to_svg", "plot_to_svg", "svg_for_html"]

_HASH_SALT = "vlmtrust-report"
_PALETTE = (
    "#2563eb",
    "#dc2626",
    "#059669",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#4b5563",
)
_ID_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class _Style:
    """How one series is drawn: its colour, and whether it is the faded "before" of a pair."""

    color: str
    before: bool = False


def _styles(plot: Plot, styles: Sequence[_Style] | None) -> Sequence[_Style]:
    if styles is not None:
        return styles
    return [_Style(_PALETTE[i % len(_PALETTE)]) for i in range(len(plot.series))]


def _rc() -> Any:  # matplotlib types rc keys as a Literal union
    return {
        "svg.fonttype": "none",
        "svg.hashsalt": _HASH_SALT,
        "svg.image_inline": True,
        "text.parse_math": False,
        "text.usetex": False,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],
        "font.monospace": ["DejaVu Sans Mono"],
        "font.size": 9.0,
        "axes.titlesize": 10.0,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.fontsize": 8.0,
        "legend.frameon": False,
        "path.simplify": True,
    }


def _nums(values: Sequence[float | None], *, what: str, title: str) -> list[float]:
    out: list[float] = []
    for v in values:
        if v is None:
            out.append(math.nan)
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise InputError(
                f"plot {title!r}: {what} holds {v!r}, not a number — write numbers (or null)"
            ) from None
        out.append(f if math.isfinite(f) else math.nan)
    return out


def _check_series(plot: Plot, s: Series) -> None:
    n = len(s.x)
    if len(s.y) != n:
        raise InputError(
            f"plot {plot.title!r}: series {s.name!r} has {n} x values but {len(s.y)} y values"
            " — make x and y the same length"
        )
    for band, name in ((s.lo, "lo"), (s.hi, "hi")):
        if band is not None and len(band) != n:
            raise InputError(
                f"plot {plot.title!r}: series {s.name!r} has {len(band)} {name} values for {n}"
                " points — make lo/hi the same length as y"
            )


def _numeric_x(s: Series) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in s.x)


def _labels(ax: Axes, plot: Plot) -> None:
    ax.set_title(plot.title, loc="left")
    if plot.x_label:
        ax.set_xlabel(plot.x_label)
    if ax.get_xscale() == "log":
        ax.set_xlabel(f"{ax.get_xlabel()} (log scale)")
    if plot.y_label:
        ax.set_ylabel(plot.y_label)


def _legend(ax: Axes, plot: Plot) -> None:
    if len(plot.series) > 1 or any(s.name for s in plot.series):
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, loc="best")


def _categories(plot: Plot) -> list[str]:
    seen: dict[str, None] = {}
    for s in plot.series:
        for v in s.x:
            seen.setdefault(str(v), None)
    return list(seen)


def _draw_scatter(ax: Axes, plot: Plot, styles: Sequence[_Style] | None = None) -> None:
    """Points only (numeric x), one colour per series; ``before`` series hollow."""
    for i, (s, st) in enumerate(zip(plot.series, _styles(plot, styles), strict=True)):
        xs = _nums([float(v) for v in s.x], what="x", title=plot.title)
        ys = _nums(s.y, what=f"series {s.name!r} y", title=plot.title)
        ax.scatter(
            xs,
            ys,
            s=18,
            facecolors="none" if st.before else st.color,
            edgecolors=st.color,
            alpha=0.75 if st.before else 0.9,
            label=s.name,
            gid=f"series_s{i}",
        )
    _legend(ax, plot)


def _draw_line(ax: Axes, plot: Plot, styles: Sequence[_Style] | None = None) -> None:
    numeric = all(_numeric_x(s) for s in plot.series)
    cats = [] if numeric else _categories(plot)
    for i, (s, st) in enumerate(zip(plot.series, _styles(plot, styles), strict=True)):
        color = st.color
        if numeric:
            xs = _nums([float(v) for v in s.x], what="x", title=plot.title)
        else:
            xs = [float(cats.index(str(v))) for v in s.x]
        ys = _nums(s.y, what=f"series {s.name!r} y", title=plot.title)
        ax.plot(
            xs,
            ys,
            marker="s" if st.before else "o",
            markersize=3.5,
            linewidth=1.6,
            linestyle="--" if st.before else "-",
            alpha=0.75 if st.before else 1.0,
            color=color,
            label=s.name,
            gid=f"series_s{i}",
        )
        if s.lo is not None and s.hi is not None:
            lo = _nums(s.lo, what="lo", title=plot.title)
            hi = _nums(s.hi, what="hi", title=plot.title)
            ax.fill_between(
                xs,
                lo,
                hi,
                color=color,
                alpha=0.09 if st.before else 0.18,
                linewidth=0,
                label=None,
                gid=f"ci_band_s{i}",
            )
    if not numeric:
        ax.set_xticks(
            range(len(cats)),
            cats,
            rotation=30 if len(cats) > 6 else 0,
            ha="right" if len(cats) > 6 else "center",
        )
    _legend(ax, plot)


def _draw_bar(ax: Axes, plot: Plot, styles: Sequence[_Style] | None = None) -> None:
    cats = _categories(plot)
    k = max(len(plot.series), 1)
    width = 0.8 / k
    for i, (s, st) in enumerate(zip(plot.series, _styles(plot, styles), strict=True)):
        color = st.color
        pos = {str(x): j for j, x in enumerate(s.x)}
        ys_all = _nums(s.y, what=f"series {s.name!r} y", title=plot.title)
        xs: list[float] = []
        ys: list[float] = []
        gids: list[str] = []
        err_lo: list[float] = []
        err_hi: list[float] = []
        lo = _nums(s.lo, what="lo", title=plot.title) if s.lo is not None else None
        hi = _nums(s.hi, what="hi", title=plot.title) if s.hi is not None else None
        for c_idx, cat in enumerate(cats):
            j = pos.get(cat)
            if j is None or math.isnan(ys_all[j]):
                continue
            xs.append(c_idx - 0.4 + width * (i + 0.5))
            ys.append(ys_all[j])
            gids.append(f"bar_s{i}_c{c_idx}")
            if lo is not None and hi is not None:
                lo_j = lo[j] if not math.isnan(lo[j]) else ys_all[j]
                hi_j = hi[j] if not math.isnan(hi[j]) else ys_all[j]
                err_lo.append(max(ys_all[j] - lo_j, 0.0))
                err_hi.append(max(hi_j - ys_all[j], 0.0))
        yerr = [err_lo, err_hi] if err_lo else None
        bars = ax.bar(
            xs,
            ys,
            width=width * 0.92,
            color=color,
            alpha=0.45 if st.before else 1.0,
            hatch="//" if st.before else None,
            label=s.name,
            yerr=yerr,
            error_kw={"elinewidth": 1.0, "capsize": 2.0, "ecolor": "#111827"},
        )
        for patch, gid in zip(bars.patches, gids, strict=True):
            patch.set_gid(gid)
    ax.set_xticks(
        range(len(cats)),
        cats,
        rotation=30 if len(cats) > 6 else 0,
        ha="right" if len(cats) > 6 else "center",
    )
    ax.grid(axis="x", visible=False)
    _legend(ax, plot)


def _matrix(plot: Plot) -> list[list[float]]:
    if not plot.matrix:
        raise InputError(
            f"plot {plot.title!r}: a heatmap needs a non-empty matrix — set Plot.matrix"
        )
    width = len(plot.matrix[0])
    rows: list[list[float]] = []
    for r in plot.matrix:
        if len(r) != width or width == 0:
            raise InputError(
                f"plot {plot.title!r}: heatmap rows differ in length — give every row"
                f" {width} values"
            )
        rows.append(_nums(r, what="matrix", title=plot.title))
    if plot.row_labels is not None and len(plot.row_labels) != len(rows):
        raise InputError(
            f"plot {plot.title!r}: {len(plot.row_labels)} row labels for {len(rows)} rows"
            " — give one label per row"
        )
    if plot.col_labels is not None and len(plot.col_labels) != width:
        raise InputError(
            f"plot {plot.title!r}: {len(plot.col_labels)} column labels for {width} columns"
            " — give one label per column"
        )
    return rows


def _fmt_cell(v: float) -> str:
    if math.isnan(v):
        return "–"
    a = abs(v)
    if a != 0 and (a >= 1000 or a < 0.01):
        return f"{v:.1e}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


def _value_range(plots: Sequence[Plot]) -> tuple[float, float]:
    import numpy as np

    vals = [v for p in plots for r in _matrix(p) for v in r if not math.isnan(v)]
    vmin = float(np.min(vals)) if vals else 0.0
    vmax = float(np.max(vals)) if vals else 1.0
    return vmin, vmax


def _draw_heatmap(
    fig: Figure, ax: Axes, plot: Plot, value_range: tuple[float, float] | None = None
) -> None:
    import numpy as np

    rows = _matrix(plot)
    data = np.ma.masked_invalid(np.asarray(rows, dtype=np.float64))
    cmap = _cmap()
    vmin, vmax = value_range or _value_range([plot])
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    n_rows, n_cols = data.shape
    if n_rows * n_cols <= 400:
        for i in range(n_rows):
            for j in range(n_cols):
                v = rows[i][j]
                shade = 0.5 if math.isnan(v) else (v - vmin) / (vmax - vmin)
                ax.text(
                    j,
                    i,
                    _fmt_cell(v),
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="#111827" if shade > 0.55 else "#ffffff",
                    gid=f"cell_{i}_{j}",
                )
    ax.set_xticks(
        range(n_cols),
        plot.col_labels or [str(j) for j in range(n_cols)],
        rotation=30 if n_cols > 5 else 0,
        ha="right" if n_cols > 5 else "center",
    )
    ax.set_yticks(range(n_rows), plot.row_labels or [str(i) for i in range(n_rows)])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)


def _cmap() -> Any:
    import matplotlib as mpl

    return mpl.colormaps["viridis"].with_extremes(bad="#e5e7eb")


LOG_FPR_BELOW = 0.01
"""A ROC whose curve has an operating point with 0 < FPR < this is drawn on a log FPR axis:
the low-FPR regime membership inference is judged by (TPR at 0.1% / 1% FPR) is then visible."""


def _draw_roc(ax: Axes, plot: Plot, styles: Sequence[_Style] | None = None) -> None:
    import numpy as np

    curves = []
    for s in plot.series:
        if not _numeric_x(s):
            raise InputError(
                f"plot {plot.title!r}: ROC series {s.name!r} needs numeric false-positive rates"
                " on x — write numbers"
            )
        xs = _nums([float(v) for v in s.x], what="x", title=plot.title)
        curves.append((s, xs, _nums(s.y, what="y", title=plot.title)))
    positive = [x for _, xs, _ in curves for x in xs if x > 0]
    low = min(positive, default=1.0)
    log_axis = low < LOG_FPR_BELOW
    left = max(10.0 ** np.floor(np.log10(low)), 1e-5) if log_axis else 0.0
    diag = np.geomspace(left, 1.0, 60).tolist() if log_axis else [0.0, 1.0]
    ax.plot(
        diag,
        diag,
        linestyle="--",
        color="#9ca3af",
        linewidth=1.0,
        label="chance",
        gid="reference_diagonal",
    )
    for i, ((s, xs, ys), st) in enumerate(zip(curves, _styles(plot, styles), strict=True)):
        if log_axis:  # FPR 0 sits on the left edge of a log axis
            xs = [max(x, left) for x in xs]
        ax.plot(
            xs,
            ys,
            gid=f"series_s{i}",
            color=st.color,
            linestyle="--" if st.before else "-",
            alpha=0.75 if st.before else 1.0,
            linewidth=1.8,
            label=s.name,
            drawstyle="default",
        )
    if log_axis:
        ax.set_xscale("log")
        ax.set_xlim(left, 1)
    else:
        ax.set_xlim(0, 1)
        ax.set_aspect("equal")
    ax.set_ylim(0, 1.01)
    if not plot.x_label:
        ax.set_xlabel("false positive rate")
    if not plot.y_label:
        ax.set_ylabel("true positive rate")
    _legend(ax, plot)


def _draw_reliability(ax: Axes, plot: Plot, styles: Sequence[_Style] | None = None) -> None:
    ax.plot(
        [0, 1],
        [0, 1],
        linestyle="--",
        color="#9ca3af",
        linewidth=1.0,
        label="perfect calibration",
        gid="reference_diagonal",
    )
    k = max(len(plot.series), 1)
    for i, (s, st) in enumerate(zip(plot.series, _styles(plot, styles), strict=True)):
        if not _numeric_x(s):
            raise InputError(
                f"plot {plot.title!r}: reliability series {s.name!r} needs numeric confidences"
                " on x — write bin centres in [0, 1]"
            )
        xs = _nums([float(v) for v in s.x], what="x", title=plot.title)
        ys = _nums(s.y, what="y", title=plot.title)
        finite_x = sorted(x for x in xs if not math.isnan(x))
        gaps = [b - a for a, b in zip(finite_x, finite_x[1:], strict=False) if b > a]
        bin_w = min(gaps) if gaps else 1.0 / max(len(finite_x), 1)
        width = bin_w * 0.9 / k
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if not (math.isnan(x) or math.isnan(y))]
        offs = -bin_w * 0.45 + width * (i + 0.5)
        bars = ax.bar(
            [x + offs for x, _ in pts],
            [y for _, y in pts],
            width=width,
            color=st.color,
            alpha=0.35 if st.before else 0.75,
            hatch="//" if st.before else None,
            edgecolor="#1f2937",
            linewidth=0.5,
            label=s.name,
        )
        for j, patch in enumerate(bars.patches):
            patch.set_gid(f"bin_s{i}_b{j}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    if not plot.x_label:
        ax.set_xlabel("confidence")
    if not plot.y_label:
        ax.set_ylabel("accuracy")
    _legend(ax, plot)


def _figsize(plot: Plot) -> tuple[float, float]:
    if plot.kind == "heatmap" and plot.matrix:
        n_rows = len(plot.matrix)
        n_cols = len(plot.matrix[0]) if plot.matrix[0] else 1
        label_w = max((len(x) for x in plot.row_labels or []), default=2) * 0.07
        w = min(max(3.2 + 0.55 * n_cols + label_w, 4.5), 11.0)
        h = min(max(1.4 + 0.34 * n_rows, 2.6), 9.0)
        return (w, h)
    if plot.kind in ("roc", "reliability"):
        return (4.6, 4.2)
    return (5.6, 3.4)


def _strip(svg: str) -> str:
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg, flags=re.S)
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    return svg.strip() + "\n"


def _prefix_ids(svg: str, prefix: str) -> str:
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return re.sub(
        r'(xlink:href|href)="#([^"]+)"', lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', svg
    )


def plot_to_svg(plot: Plot, *, id_prefix: str = "") -> str:
    """Render a :class:`Plot` as a standalone SVG element (no XML prolog, no metadata).

    Args:
        plot: the plot description; ``kind`` selects line (with a CI band from ``lo``/``hi``),
            bar (grouped by series, CI error bars), heatmap (``matrix`` with row/column labels
            and annotated values), roc (with the chance diagonal), reliability (bars with the
            perfect-calibration diagonal) or scatter (points, numeric x).
        id_prefix: prefixed to every element id (and reference to one), so several SVGs can be
            inlined in one HTML document without id clashes. Letters, digits, ``-`` and ``_``.

    Returns:
        The ``<svg ...>...</svg>`` text. The same plot always gives the same text.

    Raises:
        InputError: the plot data is inconsistent (ragged matrix, x/y length mismatch, ...).

    Example:
        >>> from vlmtrust.core.results import Plot, Series
        >>> svg = plot_to_svg(Plot(kind="line", title="acc", series=[Series(
        ...     name="clean", x=[0.0, 1.0], y=[0.9, 0.5])]))
        >>> svg.startswith("<svg") and "http://www.w3.org/Graphics" not in svg
        True
    """
    for s in plot.series:
        _check_series(plot, s)
    if plot.kind != "heatmap" and not plot.series:
        raise InputError(f"plot {plot.title!r}: a {plot.kind} plot needs at least one series")
    return _render([plot], None, id_prefix)


def _render(panels: Sequence[Plot], styles: Sequence[_Style] | None, id_prefix: str) -> str:
    """Draw one plot (or, for heatmaps, panels side by side on one colour scale) to SVG."""
    import matplotlib
    from matplotlib.figure import Figure

    if _ID_SAFE.search(id_prefix):
        raise InputError(
            f"id_prefix {id_prefix!r} has characters other than letters, digits, - and _"
            " — pass a plain identifier"
        )
    plot = panels[0]
    with matplotlib.rc_context(_rc()):
        w, h = _figsize(plot)
        fig = Figure(figsize=(min(w * len(panels), 16.0), h), layout="constrained")
        if plot.kind == "heatmap":
            value_range = _value_range(panels)
            for i, panel in enumerate(panels):
                ax = fig.add_subplot(1, len(panels), i + 1)
                _draw_heatmap(fig, ax, panel, value_range)
                _labels(ax, panel)
        else:
            ax = fig.add_subplot()
            if plot.kind == "line":
                _draw_line(ax, plot, styles)
            elif plot.kind == "bar":
                _draw_bar(ax, plot, styles)
            elif plot.kind == "roc":
                _draw_roc(ax, plot, styles)
            elif plot.kind == "scatter":
                _draw_scatter(ax, plot, styles)
            else:
                _draw_reliability(ax, plot, styles)
            _labels(ax, plot)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = _strip(buf.getvalue())
    return _prefix_ids(svg, id_prefix) if id_prefix else svg


def _tagged(name: str, label: str) -> str:
    return f"{name} ({label})" if name else label


def _overlay(a: Plot, b: Plot, labels: tuple[str, str]) -> tuple[Plot, list[_Style]]:
    """One plot holding A's and B's series, each tagged ``"name (A)"`` / ``"name (B)"``.

    Series are paired by name (B's order, then those only A has); each pair shares a colour,
    A's drawn as the faded "before".
    """
    names = list(dict.fromkeys([s.name for s in b.series] + [s.name for s in a.series]))
    by_a = {s.name: s for s in a.series}
    by_b = {s.name: s for s in b.series}
    series: list[Series] = []
    styles: list[_Style] = []
    for i, name in enumerate(names):
        for which, label, before in ((by_a, labels[0], True), (by_b, labels[1], False)):
            if name in which:
                series.append(which[name].model_copy(update={"name": _tagged(name, label)}))
                styles.append(_Style(_PALETTE[i % len(_PALETTE)], before=before))
    return b.model_copy(update={"series": series}), styles


def overlay_to_svg(
    a: Plot, b: Plot, *, labels: tuple[str, str] = ("A", "B"), id_prefix: str = ""
) -> str:
    """Render A's and B's version of a plot in one SVG: "before" dashed/faded, "after" solid.

    Lines, ROC curves, bars and reliability bins are overlaid on one axis, series paired by
    name and tagged ``"name (A)"`` / ``"name (B)"``, each pair in one colour; heatmaps are
    drawn side by side on one colour scale, titled with the labels. Same guarantees as
    :func:`plot_to_svg` (self-contained, deterministic).

    Raises:
        InputError: the plots are of different kinds or their data is inconsistent.
    """
    for p in (a, b):
        for s in p.series:
            _check_series(p, s)
    if a.kind != b.kind:
        raise InputError(
            f"plot {b.title!r}: a {a.kind} plot in A and a {b.kind} plot in B cannot be"
            " overlaid — compare the runs' reports side by side"
        )
    if a.kind == "heatmap":
        panels = [
            p.model_copy(update={"title": f"{label}: {p.title}"})
            for p, label in ((a, labels[0]), (b, labels[1]))
        ]
        return _render(panels, None, id_prefix)
    merged, styles = _overlay(a, b, labels)
    if not merged.series:
        raise InputError(f"plot {b.title!r}: a {b.kind} plot needs at least one series")
    return _render([merged], styles, id_prefix)


def svg_for_html(svg: str) -> str:
    """Make an SVG from :func:`plot_to_svg` ready to inline in HTML5.

    Drops the namespace declarations (the HTML parser puts ``<svg>`` in the SVG namespace
    itself), so the page holds no URL of any kind, and makes the size responsive.
    """
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    return re.sub(r"<svg\b", '<svg role="img" preserveAspectRatio="xMidYMid meet"', svg, count=1)
