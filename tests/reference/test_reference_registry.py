from __future__ import annotations

import json
import shutil

import pytest

from vlmtrust.core.errors import ModelSpecError
from vlmtrust.models.loader import parse_spec
from vlmtrust.models.reference import (
    REFERENCE_MODELS,
    ReferenceIntegrityError,
    models_root,
    reference_path,
    verify_model_dir,
)
from vlmtrust.reference import canaries


def test_unknown_name_lists_known_ones():
    with pytest.raises(ModelSpecError) as e:
        reference_path("gpt9")
    msg = str(e.value)
    assert "gpt9" in msg and "reference:clip" in msg and "reference:vlm" in msg
    assert "\n" not in msg
    assert parse_spec("reference:clip").target == "clip"


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_shipped_models_match_their_manifest(name):
    path = reference_path(name)
    assert path == models_root() / name
    files = json.loads((path / "MANIFEST.json").read_text())["files"]
    assert "model.safetensors" in files and "config.json" in files and "MODEL_CARD.md" in files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert reference_path(name) is path  # cached per process


def test_shipped_total_size_is_small():
    total = sum(p.stat().st_size for p in models_root().rglob("*") if p.is_file())
    assert total <= 40 * 1024 * 1024


def test_corrupted_or_missing_weight_file_gives_clear_error(tmp_path):
    src = models_root() / "clip"
    dst = tmp_path / "clip"
    shutil.copytree(src, dst)
    assert verify_model_dir(dst, "clip") == dst
    weights = dst / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ReferenceIntegrityError) as e:
        verify_model_dir(dst, "clip")
    msg = str(e.value)
    assert "model.safetensors" in msg and "vlmtrust reference train clip" in msg
    assert "\n" not in msg
    weights.write_bytes(bytes(data[: len(data) // 3]))  # partial download
    with pytest.raises(ReferenceIntegrityError, match="sha256 mismatch"):
        verify_model_dir(dst, "clip")
    weights.unlink()
    with pytest.raises(ReferenceIntegrityError, match="missing.*vlmtrust reference train clip"):
        verify_model_dir(dst, "clip")
    (dst / "MANIFEST.json").unlink()
    with pytest.raises(ReferenceIntegrityError, match="MANIFEST.json"):
        verify_model_dir(dst, "clip")


def test_canaries_members_and_non_members():
    members, non = canaries()
    assert len(members) == 32 and len(non) == 32
    assert {s.attributes["member"] for s in members} == {"true"}
    assert {s.attributes["member"] for s in non} == {"false"}
    assert not {s.id for s in members} & {s.id for s in non}
    assert not {s.metadata["caption"] for s in members} & {s.metadata["caption"] for s in non}
    assert all(s.metadata["caption"].startswith("a secret code ") for s in members + non)
    assert members[0].images[0].load().size == (64, 64)


def test_no_fragility_is_refused_for_the_vlm(tmp_path):
    from vlmtrust.core.errors import InputError
    from vlmtrust.reference import train

    with pytest.raises(InputError) as e:
        train("vlm", out_dir=tmp_path / "v", quick=True, progress=False, fragility=False)
    assert "\n" not in str(e.value) and "reference:clip only" in str(e.value)
    assert not (tmp_path / "v").exists()
