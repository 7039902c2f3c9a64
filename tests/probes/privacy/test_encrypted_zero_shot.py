"""``privacy/encrypted_zero_shot``: CKKS-encrypted zero-shot in the results pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tenseal", reason="needs the crypto extra: pip install 'vlmtrust[crypto]'")

import vlmtrust  # noqa: E402
from vlmtrust.api import select_probes  # noqa: E402
from vlmtrust.core.errors import InputError  # noqa: E402

NAME = "privacy/encrypted_zero_shot"


def test_a_named_run_writes_agreement_error_latency_and_bytes(
    ref_clip: Any, tmp_path: Path
) -> None:
    log = vlmtrust.audit(
        ref_clip, probes=[NAME], params={NAME: {"n": 3}}, out=tmp_path / "run", cache=False
    )
    assert not isinstance(log, list)
    assert log.metric("agreement", probe=NAME).value == 1.0
    assert log.metric("agreement", probe=NAME).ci_low is not None
    assert log.metric("max_abs_dcos", probe=NAME).value < 1e-3
    assert log.metric("latency_ms", probe=NAME).value > 0
    assert log.metric("query_bytes", probe=NAME).value > 1000  # a ciphertext, not 512 floats
    assert log.metric("reply_bytes", probe=NAME).value > 1000
    assert (tmp_path / "run" / "results.json").exists()


def test_it_is_opt_in_and_checks_its_parameters(ref_clip: Any) -> None:
    assert NAME not in [p.name for p in select_probes(ref_clip, pillars=["privacy"])]
    with pytest.raises(InputError, match="he_params"):
        select_probes(ref_clip, [NAME], params={NAME: {"he_params": "tiny"}})
