"""Helpers of the privacy tests (the fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import AuditLog, ProbeResult


def result(run_dir: Path, probe: str) -> ProbeResult:
    """``probe``'s result in the run at ``run_dir``."""
    log = AuditLog.model_validate_json((run_dir / "results.json").read_text())
    return log.result(probe)


def loaded(models: dict[str, Any]) -> ProbeContext:
    """A context whose model loader hands out already loaded models (no second load)."""

    def load(spec: str) -> Any:
        if spec not in models:
            raise AssertionError(f"unexpected reference model {spec!r}")
        return models[spec]

    loader: Callable[[str], Any] = load
    return ProbeContext(extras={"load_model": loader})
