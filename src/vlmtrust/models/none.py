"""The model of a data-only run (``--model none``): no capabilities at all.

Some probes read data and never ask a model anything (``fairness/dataset_audit``). They declare
no capability (``requires = Capability.NONE`` and no ``requires_any``), so they accept
:class:`NoModel`, and every other probe refuses it with the usual one-line capability error.
``vlmtrust run PROBE --data DATA`` without ``--model`` uses it when every named probe is such
a probe.

The run's log records the spec ``none`` with no capabilities. The log schema (v2) knows only the
kinds ``dual`` and ``generative``, so the kind field reads ``dual``; nothing about the run
depends on it.
"""

from __future__ import annotations

from typing import Final

from vlmtrust.core.model import ModelKind
from vlmtrust.core.types import Capability

NO_MODEL_SPEC: Final[str] = "none"
"""The spec of :class:`NoModel` (``--model none``)."""


class NoModel:
    """A placeholder model with no capabilities, for probes that need no model."""

    spec: str = NO_MODEL_SPEC
    fingerprint: str = NO_MODEL_SPEC
    kind: ModelKind = "dual"
    capabilities: Capability = Capability.NONE

    def __repr__(self) -> str:
        return "NoModel()"
