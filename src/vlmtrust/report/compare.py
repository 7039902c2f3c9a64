"""Before/after comparison of two runs: the public entry points, in one import.

Logic (pairing runs, deltas, significance) lives in :mod:`vlmtrust.report.diff`; renderers
(HTML, Markdown, terminal) in :mod:`vlmtrust.report.compare_render`. :func:`compare_logs`
returns plain data (:class:`MetricDelta`) for the CLI to print; :func:`render_compare` writes a
self-contained HTML page and a Markdown file. Metrics are matched by their rendered name, so
schema-v1 runs compare with v2 runs.
"""

from __future__ import annotations

from vlmtrust.report.compare_render import deltas_table, render_compare
from vlmtrust.report.diff import (
    CompareSummary,
    MetricDelta,
    RunPair,
    compare_logs,
    deltas_as_json,
    pair_runs,
    summarize,
)

__all__ = [
    "CompareSummary",
    "MetricDelta",
    "RunPair",
    "compare_logs",
    "deltas_as_json",
    "deltas_table",
    "pair_runs",
    "render_compare",
    "summarize",
]
