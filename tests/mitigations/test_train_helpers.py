"""The shared pieces of the mitigations: records, run sizes, input checks, the wrapper default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, WrapperMitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import (
    data_manifest,
    hardening_record,
    need_dual,
    run_size,
    write_cleaned,
    write_record,
)
from vlmtrust.models.mock import MockModel


class _P(Params):
    steps: int = 40
    n_train: int = 1000
    seed: int | None = None


def test_write_record_writes_json_and_the_artifact(tmp_path: Path) -> None:
    rec = hardening_record("x/y", _P(), {"loss": 0.5})
    art = write_record(tmp_path, "hardening.json", rec, summary={"loss": 0.5})
    assert json.loads((tmp_path / "hardening.json").read_text()) == {
        "mitigation": "x/y",
        "params": {"steps": 40, "n_train": 1000, "seed": None},
        "loss": 0.5,
    }
    assert (tmp_path / "hardening.json").read_text().endswith("}\n")
    assert art.spec == f"hardened:{tmp_path}" and art.summary == {"loss": 0.5}


def test_write_cleaned_points_at_the_manifest(tmp_path: Path) -> None:
    report = {"records": 3, "kept": 2, "errors": []}
    art = write_cleaned(tmp_path, "x/y", _P(), report, "r.json", ("records", "kept"))
    assert art.spec == str(tmp_path / "manifest.jsonl")
    assert art.summary == {"records": 3, "kept": 2}
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert json.loads((tmp_path / "hardening.json").read_text())["kept"] == 2


def test_run_size_quick_and_seed() -> None:
    assert run_size(_P(), MitigationContext(seed=3)) == (3, 40, 1000)
    assert run_size(_P(seed=7), MitigationContext(seed=3, quick=True)) == (7, 4, 256)


def test_input_checks_name_the_input() -> None:
    with pytest.raises(InputError, match="x/y needs --data MANIFEST.jsonl .*to clean"):
        data_manifest("x/y", MitigationContext(), "to clean")
    with pytest.raises(InputError, match="x/y aligns dual encoders; model mock:"):
        need_dual(MockModel(), "x/y", "aligns")


class _Wrapped:
    def __init__(self, base: Any, params: Any) -> None:
        self.base, self.params = base, params


def test_wrapper_attribute_writes_wrap() -> None:
    class W(WrapperMitigation):
        name = "x/w"
        pillar = Pillar.SAFETY
        requires = Capability.GENERATE
        Params = _P
        wrapper = _Wrapped

    class Bare(W):
        wrapper = None

    base = MockModel()
    out = W().wrap(base)
    assert isinstance(out, _Wrapped) and out.base is base and isinstance(out.params, _P)
    with pytest.raises(NotImplementedError, match="x/w: set `wrapper`"):
        Bare().wrap(base)
