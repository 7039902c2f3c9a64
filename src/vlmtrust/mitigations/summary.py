"""A hardening summary as readable lines (what ``vlmtrust harden`` prints without ``--json``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["summary_lines"]

_LONG = 6
"""Lists of numbers longer than this are shown as a count and their first and last values."""


def _label(key: object) -> str:
    return str(key).replace("_", " ")


def _number(x: float | int) -> str:
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.4g}"


def _value(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _number(v)
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            if len(v) > _LONG:
                return f"{len(v)} values, {_number(v[0])} → {_number(v[-1])}"
            return ", ".join(_number(x) for x in v)
        return ", ".join(str(x) for x in v) if v else "—"
    if v is None:
        return "—"
    return str(v)


def summary_lines(summary: Mapping[str, Any], indent: int = 2) -> list[str]:
    """``summary`` as aligned ``key  value`` lines, nested mappings indented under their key.

    Numbers get 4 significant digits; a long list of numbers (a loss curve) is shown as its
    length and its first and last values; keys read with spaces for underscores.
    """
    pad = " " * indent
    width = max((len(_label(k)) for k in summary), default=0)
    out: list[str] = []
    for k, v in summary.items():
        if isinstance(v, Mapping):
            out.append(f"{pad}{_label(k)}:")
            out.extend(summary_lines(v, indent + 2))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v):
            out.append(f"{pad}{_label(k)}:")
            for i, item in enumerate(v, 1):
                out.append(f"{pad}  #{i}")
                out.extend(summary_lines(item, indent + 4))
        else:
            out.append(f"{pad}{_label(k).ljust(width)}  {_value(v)}")
    return out
