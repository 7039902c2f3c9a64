"""Shared fixtures of the privacy tests: each reference model loads once per session, and one
audit run of both privacy probes on reference:clip (the default audit's settings) serves the
planted-flaw tests of both probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ref_clip() -> Any:
    from vlmtrust.models.loader import load_model

    return load_model("reference:clip", device="cpu")


@pytest.fixture(scope="session")
def ref_vlm() -> Any:
    from vlmtrust.models.loader import load_model

    return load_model("reference:vlm", device="cpu")


@pytest.fixture(scope="session")
def planted(ref_clip: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One audit run of both privacy probes on reference:clip with their default parameters."""
    from vlmtrust.probes.privacy.membership_inference import MembershipInferenceProbe
    from vlmtrust.probes.privacy.memorization import MemorizationProbe
    from vlmtrust.runner.engine import run_audit

    out = tmp_path_factory.mktemp("privacy_run")
    run_audit(ref_clip, [MembershipInferenceProbe(), MemorizationProbe()], out_dir=out)
    return out
