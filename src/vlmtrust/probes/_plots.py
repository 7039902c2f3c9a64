"""Plot builders shared by the probes' ``plots()`` methods."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from vlmtrust.core.results import Plot, Series
from vlmtrust.core.stats import mean_ci

PlotKind = Literal["line", "bar", "heatmap", "roc", "reliability", "scatter"]


def one_plot(
    kind: PlotKind, title: str, x_label: str, y_label: str, series: list[Series]
) -> list[Plot]:
    """``plots()``'s answer for a single series plot: ``[Plot]``, or ``[]`` without series."""
    if not series:
        return []
    return [Plot(kind=kind, title=title, x_label=x_label, y_label=y_label, series=series)]


def mean_ci_series(
    name: str, x: Sequence[float], columns: Iterable[Sequence[Any]], *, seed: int
) -> Series:
    """A series of the mean of each column with its bootstrap CI (``None`` for an empty one).

    ``columns`` holds one sequence of 0/1 (or real) values per x position, in order.
    """
    ys: list[float | None] = []
    lo: list[float | None] = []
    hi: list[float | None] = []
    for col in columns:
        m, a, b = mean_ci(col, seed=seed)
        ys.append(m)
        lo.append(a)
        hi.append(b)
    return Series(name=name, x=list(x), y=ys, lo=lo, hi=hi)
