"""vlmtrust: audit vision-language models for trustworthiness, and harden them.

Public API: :func:`audit`, :func:`load_model`, :class:`Probe`, :func:`probe`, :class:`Sample`,
:class:`AuditLog`. Heavy libraries (torch, transformers) load only when a model does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AuditLog",
    "Capability",
    "Pillar",
    "Probe",
    "ProbeContext",
    "Sample",
    "__version__",
    "audit",
    "load_model",
    "probe",
]

if TYPE_CHECKING:
    from vlmtrust.api import audit
    from vlmtrust.core.probe import Probe, ProbeContext, probe
    from vlmtrust.core.results import AuditLog
    from vlmtrust.core.sample import Sample
    from vlmtrust.core.types import Capability, Pillar
    from vlmtrust.models.loader import load_model

_LAZY = {
    "audit": "vlmtrust.api",
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
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vlmtrust' has no attribute {name!r}")
