"""Reports: HTML and Markdown from a run's files, comparisons, labels for human review.

The package is also callable: ``vlmtrust.report(run)`` renders a run's report
(:func:`vlmtrust.report.entry.render`, the same as :func:`vlmtrust.api.report`).
``vlmtrust.report`` names this package as soon as any of its modules is imported, so the
function lives on the package itself rather than beside it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, run: str | Path = "latest", **kwargs: Any) -> tuple[Path, Path]:
        from vlmtrust.report.entry import render

        return render(run, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
