"""Before/after comparison of two runs: the public entry points, in one import.

Logic (pairing runs, deltas, significance, warnings) lives in :mod:`vlmtrust.report.diff`;
renderers (HTML, Markdown, terminal) in :mod:`vlmtrust.report.compare_render`.
:func:`compare_logs` returns plain data (:class:`MetricDelta`); :func:`compare_renderables` is
what the CLI prints; :func:`render_compare` writes a self-contained HTML page (with the plots of
both runs overlaid) and a Markdown file. Metrics are matched by their rendered name, so
schema-v1 runs compare with v2 runs.
"""

from __future__ import annotations

from vlmtrust.report.compare_render import compare_renderables, deltas_text, render_compare
from vlmtrust.report.diff import (
    CompareSummary,
    CompareWarning,
    MetricDelta,
    RunPair,
    assess_change,
    compare_logs,
    compare_warnings,
    deltas_as_json,
    pair_runs,
    summarize,
)

__all__ = [
    "CompareSummary",
    "CompareWarning",
    "MetricDelta",
    "RunPair",
    "assess_change",
    "compare_logs",
    "compare_renderables",
    "compare_warnings",
    "deltas_as_json",
    "deltas_text",
    "pair_runs",
    "render_compare",
    "summarize",
]
