"""vlmtrust: audit vision-language models for trustworthiness, and harden them.

Public API (it mirrors the CLI): :func:`audit`, :func:`harden`, :func:`compare`, :func:`report`,
:func:`summarize`, :func:`load_run`, :func:`load_model`; :class:`AuditLog` (``to_dataframe()``,
``to_csv()``, ``metric()``), :class:`Probe`, :func:`probe`, :class:`Sample`. Names are imported
on first use, so ``import vlmtrust`` stays fast; torch and transformers load only when a model
does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AuditLog",
    "Capability",
    "Comparison",
    "Pillar",
    "Probe",
    "ProbeContext",
    "Sample",
    "__version__",
    "audit",
    "compare",
    "harden",
    "load_model",
    "load_run",
    "probe",
    "report",
    "summarize",
]

if TYPE_CHECKING:
    from vlmtrust.api import Comparison, audit, compare, harden, load_run, summarize
    from vlmtrust.core.probe import Probe, ProbeContext, probe
    from vlmtrust.core.results import AuditLog
    from vlmtrust.core.sample import Sample
    from vlmtrust.core.types import Capability, Pillar
    from vlmtrust.models.loader import load_model

_LAZY = {
    "audit": "vlmtrust.api",
    "harden": "vlmtrust.api",
    "compare": "vlmtrust.api",
    "load_run": "vlmtrust.api",
    "summarize": "vlmtrust.api",
    "Comparison": "vlmtrust.api",
    "load_model": "vlmtrust.models.loader",
    "Probe": "vlmtrust.core.probe",
    "ProbeContext": "vlmtrust.core.probe",
    "probe": "vlmtrust.core.probe",
    "AuditLog": "vlmtrust.core.results",
    "Sample": "vlmtrust.core.sample",
    "Capability": "vlmtrust.core.types",
    "Pillar": "vlmtrust.core.types",
}


def __getattr__(name: str) -> Any:
    if name == "report":  # the subpackage, callable: vlmtrust.report(run) renders a report
        import importlib

        return importlib.import_module("vlmtrust.report")
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'vlmtrust' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
