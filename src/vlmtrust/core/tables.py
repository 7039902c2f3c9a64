"""Flat tables of an :class:`~vlmtrust.core.results.AuditLog`'s metrics (pandas, CSV).

One row per metric: ``model, probe, pillar, metric, value, ci_low, ci_high, n, group, risk,
higher_is_better, headline``. ``group`` is the group a metric is restricted to (its key's
``group`` field) or empty; with ``groups=True`` every per-group value of a metric
(:attr:`MetricResult.groups`) adds a row of its own, named by the group, without a risk band.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from vlmtrust.core.results import AuditLog

COLUMNS = (
    "model",
    "probe",
    "pillar",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "group",
    "risk",
    "higher_is_better",
    "headline",
)
"""The columns of :func:`metric_rows`, in order."""


class NotFound(KeyError):
    """A look-up by name that failed; the message lists the valid names (close matches first)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    @classmethod
    def naming(cls, what: str, name: str, valid: Sequence[str]) -> NotFound:
        """``what name.``, then did-you-mean, then every valid name."""
        close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        shown = ", ".join(valid[:40]) + (f", … ({len(valid)} in all)" if len(valid) > 40 else "")
        return cls(f"{what} {name!r}.{hint} Valid: {shown or 'none'}")


def metric_rows(logs: Iterable[AuditLog], *, groups: bool = False) -> list[dict[str, Any]]:
    """One dict per metric (and per group value with ``groups``), keys :data:`COLUMNS`."""
    rows: list[dict[str, Any]] = []
    for log in logs:
        model = log.spec.model.spec
        for r in log.results:
            for m in r.metrics:
                base = {
                    "model": model,
                    "probe": r.probe,
                    "pillar": r.pillar.value,
                    "metric": m.name,
                    "higher_is_better": m.higher_is_better,
                    "headline": m.headline,
                }
                rows.append(
                    {
                        **base,
                        "value": m.value,
                        "ci_low": m.ci_low,
                        "ci_high": m.ci_high,
                        "n": m.n,
                        "group": m.key.group,
                        "risk": m.risk.value if m.risk else None,
                    }
                )
                if groups:
                    for gname, g in m.groups.items():
                        rows.append(
                            {
                                **base,
                                "value": g.value,
                                "ci_low": g.ci_low,
                                "ci_high": g.ci_high,
                                "n": g.n,
                                "group": gname,
                                "risk": None,
                            }
                        )
    return [{c: row[c] for c in COLUMNS} for row in rows]


def to_dataframe(logs: Iterable[AuditLog], *, groups: bool = False) -> pd.DataFrame:
    """The metric rows as a pandas DataFrame with columns :data:`COLUMNS`."""
    import pandas as pd

    return pd.DataFrame(metric_rows(logs, groups=groups), columns=list(COLUMNS))


def to_csv(logs: Iterable[AuditLog], path: str | Path, *, groups: bool = False) -> Path:
    """Write the metric rows to ``path`` as CSV (header :data:`COLUMNS`; empty cell = None)."""
    out = Path(path)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        for row in metric_rows(logs, groups=groups):
            w.writerow({k: "" if v is None else v for k, v in row.items()})
    return out
