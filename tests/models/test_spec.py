"""Model-spec parsing, ``hf:`` target resolution, kind detection, fingerprints, device/dtype."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vlmtrust.core.errors import InputError, ModelSpecError
from vlmtrust.models.hf_common import (
    detect_kind,
    fingerprint,
    resolve_device,
    resolve_dtype,
    resolve_target,
)
from vlmtrust.models.loader import load_model, parse_spec


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------- parse_spec


@pytest.mark.parametrize(
    ("spec", "scheme", "target", "base_url"),
    [
        ("hf:openai/clip-vit-base-patch32", "hf", "openai/clip-vit-base-patch32", None),
        ("hf:/models/my clip", "hf", "/models/my clip", None),
        ("  reference:clip ", "reference", "clip", None),
        ("hardened:runs/fare", "hardened", "runs/fare", None),
        ("openai:llava@http://127.0.0.1:8000/v1/", "openai", "llava", "http://127.0.0.1:8000/v1"),
        (
            "openai:org/m@x@https://api.example.com/v1",
            "openai",
            "org/m@x",
            "https://api.example.com/v1",
        ),
    ],
)
def test_parse_good_specs(spec: str, scheme: str, target: str, base_url: str | None) -> None:
    ms = parse_spec(spec)
    assert (ms.scheme, ms.target, ms.base_url) == (scheme, target, base_url)
    assert ms.raw == spec.strip()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("clip", "no scheme"),
        ("hf:", "no scheme"),
        ("torch:resnet", "unknown scheme 'torch'"),
        ("openai:llava", "openai:MODEL@http"),
        ("openai:llava@ftp://x", "openai:MODEL@http"),
    ],
)
def test_parse_bad_specs_one_line(spec: str, fragment: str) -> None:
    with pytest.raises(ModelSpecError) as e:
        parse_spec(spec)
    msg = _one_line(e)
    assert fragment in msg
    assert repr(spec) in msg


KEY = "s3cr3t-KEY-0123456789"


@pytest.mark.parametrize(
    ("spec", "env"),
    [
        (f"openai:m@http://user:{KEY}@host/v1", "$OPENAI_API_KEY"),
        (f"openai:m@https://{KEY}@host:8000/v1", "$OPENAI_API_KEY"),
        (f"openai:m@https://host/v1?api_key={KEY}", "$OPENAI_API_KEY"),
        (f"openai:m@https://host/v1?api-version=1&Token={KEY}", "$OPENAI_API_KEY"),
        (f"openai:m@https://host/v1?sig={KEY}", "$OPENAI_API_KEY"),
        (f"hf:org/model?token={KEY}", "$HF_TOKEN"),
        (f"hf:https://user:{KEY}@huggingface.co/org/model", "$HF_TOKEN"),
        ("hf:hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "$HF_TOKEN"),
    ],
)
def test_spec_with_credentials_refused_without_echo(spec: str, env: str) -> None:
    with pytest.raises(ModelSpecError) as e:
        parse_spec(spec)
    msg = _one_line(e)
    assert "credential" in msg and env in msg and "***" in msg
    assert KEY not in msg and "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345" not in msg


@pytest.mark.parametrize(
    "spec",
    [
        f"openai:m@user:{KEY}@host/v1",  # user-info typed without its scheme
        f"openai:m@ftp://user:{KEY}@host/v1",
    ],
)
def test_malformed_openai_spec_never_echoes_user_info(spec: str) -> None:
    with pytest.raises(ModelSpecError) as e:
        parse_spec(spec)
    msg = _one_line(e)
    assert KEY not in msg and "***" in msg
    assert "openai:MODEL@http" in msg or "credential" in msg


def test_openai_spec_splits_at_the_first_url() -> None:
    ms = parse_spec("openai:org/m@v2@https://api.example.com/v1?api-version=2024-02-01")
    assert ms.target == "org/m@v2"
    assert ms.base_url == "https://api.example.com/v1?api-version=2024-02-01"


def test_llm_judge_spec_with_credentials_refused_without_echo() -> None:
    from vlmtrust.judges.base import check_judge_name

    for name in (
        f"llm:openai:guard@http://127.0.0.1:8000/v1?api_key={KEY}",
        f"llm:openai:guard@http://u:{KEY}@127.0.0.1:8000/v1#refusal",
    ):
        with pytest.raises(InputError) as e:
            check_judge_name(name)
        msg = _one_line(e)
        assert "credential" in msg and KEY not in msg


# ----------------------------------------------------------------------------- resolve_target


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelSpecError) as e:
        load_model(f"hf:{missing}")
    msg = _one_line(e)
    assert str(missing) in msg and "does not exist" in msg


def test_file_instead_of_directory(tmp_path: Path) -> None:
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelSpecError) as e:
        resolve_target(str(f))
    assert "is a file" in _one_line(e)


def test_not_a_model_directory(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ModelSpecError) as e:
        load_model(f"hf:{tmp_path}")
    msg = _one_line(e)
    assert "no config.json" in msg and f"hf:{tmp_path}" in msg


def test_pickle_only_directory_refused(tmp_path: Path, tiny_clip_dir: Path) -> None:
    shutil.copy(tiny_clip_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelSpecError) as e:
        load_model(f"hf:{tmp_path}")
    msg = _one_line(e)
    assert "pytorch_model.bin" in msg and "safetensors" in msg and "pickle" in msg


def test_directory_without_weights(tmp_path: Path, tiny_clip_dir: Path) -> None:
    shutil.copy(tiny_clip_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelSpecError) as e:
        resolve_target(str(tmp_path))
    assert "no *.safetensors" in _one_line(e)


def test_corrupt_weights(tmp_path: Path, tiny_clip_dir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_dir, copy)
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[: len(data) // 3])  # truncated download
    with pytest.raises(ModelSpecError) as e:
        load_model(f"hf:{copy}", device="cpu")
    msg = _one_line(e)
    assert str(copy) in msg and "corrupt or partial" in msg and "SafetensorError" in msg


@pytest.mark.parametrize("target", ["bad repo name", "org/name/extra", "org/name@", "-x/y"])
def test_malformed_repo_id(target: str) -> None:
    with pytest.raises(ModelSpecError) as e:
        resolve_target(target)
    assert "neither an existing directory nor a Hub repo id" in _one_line(e)


def test_repo_not_cached_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelSpecError) as e:
        load_model("hf:vlmtrust-test/definitely-not-cached")
    msg = _one_line(e)
    assert "not in the local Hugging Face cache" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "'hf:vlmtrust-test/definitely-not-cached'" in msg


def test_relative_directory_is_a_path(
    tmp_path: Path, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_clip_dir, tmp_path / "org" / "clip")
    monkeypatch.chdir(tmp_path)
    t = resolve_target("org/clip")
    assert t.path == (tmp_path / "org" / "clip").resolve() and t.repo_id is None
    assert detect_kind("org/clip") == "dual"


# ----------------------------------------------------------------------------- detect_kind


def test_detect_kind(tiny_clip_dir: Path, tiny_siglip_dir: Path, tiny_llava_dir: Path) -> None:
    assert detect_kind(str(tiny_clip_dir)) == "dual"
    assert detect_kind(str(tiny_siglip_dir)) == "dual"
    assert detect_kind(str(tiny_llava_dir)) == "generative"


def test_detect_kind_unsupported_architecture(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path)
    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelSpecError) as e:
        load_model(f"hf:{tmp_path}")
    msg = _one_line(e)
    assert "'bert' is not a supported" in msg and "CLIP" in msg and "LLaVA" in msg


def test_hub_id_loads_from_local_cache(
    tmp_path: Path, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub repo id resolves offline from the cache; its fingerprint is name@commit."""
    import huggingface_hub.constants as hc

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--vlmtrust-test--tiny-clip"
    shutil.copytree(tiny_clip_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert fingerprint("vlmtrust-test/tiny-clip") == f"vlmtrust-test/tiny-clip@{commit}"
    assert fingerprint("vlmtrust-test/tiny-clip@v2") == "vlmtrust-test/tiny-clip@v2"
    assert detect_kind("vlmtrust-test/tiny-clip") == "dual"
    m = load_model("hf:vlmtrust-test/tiny-clip", device="cpu")
    assert m.kind == "dual" and m.fingerprint == f"vlmtrust-test/tiny-clip@{commit}|float32"
    assert m.spec == "hf:vlmtrust-test/tiny-clip"


# ----------------------------------------------------------------------------- fingerprint


def test_fingerprint_stable_and_content_based(tmp_path: Path, tiny_clip_dir: Path) -> None:
    fp = fingerprint(str(tiny_clip_dir))
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 64
    assert fingerprint(str(tiny_clip_dir)) == fp
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_dir, copy)
    assert fingerprint(str(copy)) == fp  # same bytes, other place: same fingerprint


def test_fingerprint_changes_with_weights(tmp_path: Path, tiny_clip_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_dir, copy)
    before = fingerprint(str(copy))
    tensors = load_file(str(copy / "model.safetensors"))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 1e-3
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    after = fingerprint(str(copy))
    assert after != before
    # and the processor config is part of what the model computes
    cfg = copy / "preprocessor_config.json"
    cfg.write_text(cfg.read_text().replace('"do_center_crop": true', '"do_center_crop": false'))
    assert fingerprint(str(copy)) not in (before, after)


# ----------------------------------------------------------------------------- device / dtype


def test_device_and_dtype() -> None:
    import torch

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_dtype(None, torch.device("cpu"), half_on_gpu=True) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    assert resolve_dtype(torch.float64, torch.device("cpu")) == torch.float64
    with pytest.raises(InputError) as e:
        resolve_dtype("int8", torch.device("cpu"))
    assert "int8" in _one_line(e)
    with pytest.raises(InputError) as e:
        resolve_device("tpu9")
    assert "tpu9" in _one_line(e)
    if not torch.cuda.is_available():
        with pytest.raises(InputError) as e:
            resolve_device("cuda")
        assert "CUDA is not available" in _one_line(e)
