"""--threads / VLMTRUST_THREADS, --device / --dtype, and CUDA out-of-memory back-off."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.errors import InputError
from vlmtrust.runner import compute

runner = CliRunner()


@pytest.fixture()
def keep_threads() -> Iterator[None]:
    """Put torch's thread count (and the module's memory of it) back after the test."""
    before, chosen = torch.get_num_threads(), compute._chosen
    yield
    torch.set_num_threads(before)
    compute._chosen = chosen


def test_configure_threads_sets_torch_and_reads_the_environment(keep_threads, monkeypatch):
    monkeypatch.delenv(compute.THREADS_ENV, raising=False)
    assert compute.configure_threads(None) is None
    assert compute.configure_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv(compute.THREADS_ENV, "2")
    assert compute.configure_threads(None) == 2 and torch.get_num_threads() == 2
    assert compute.threads_in_use() == 2


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", ""])
def test_bad_thread_counts_are_one_line_naming_the_source(bad, keep_threads, monkeypatch):
    with pytest.raises(InputError, match="--threads") as e:
        compute.configure_threads(bad)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)
    if bad:
        monkeypatch.setenv(compute.THREADS_ENV, bad)
        with pytest.raises(InputError, match=compute.THREADS_ENV):
            compute.configure_threads(None)


def test_run_records_threads_device_and_dtype_in_spec(tmp_path: Path, keep_threads):
    out = tmp_path / "run"
    args = ["run", "capability/zero_shot", "-m", "reference:clip", "--limit", "4"]
    args += ["--threads", "1", "--device", "cpu", "--dtype", "float32"]
    res = runner.invoke(app, [*args, "--cache", "off", "--quiet", "--no-report", "-o", str(out)])
    assert res.exit_code == 0, res.output
    opts = json.loads((out / "spec.json").read_text())["model"]["options"]
    assert opts == {"device": "cpu", "dtype": "float32", "threads": 1}
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--threads", "0"], "--threads"),
        (["--device", "tpu"], "device 'tpu'"),
        (["--dtype", "int8"], "dtype 'int8'"),
        (["-m", "mock:dual", "--device", "cpu"], "hf:, reference: and hardened:"),
    ],
)
def test_bad_compute_options_are_one_line(extra, needle, tmp_path: Path, keep_threads):
    model = [] if "-m" in extra else ["-m", "reference:clip"]
    args = ["run", "capability/zero_shot", *model, *extra, "--limit", "2", "--quiet"]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path: Path):
    args = ["run", "capability/zero_shot", "-m", "reference:clip", "--device", "cuda"]
    res = runner.invoke(app, [*args, "--limit", "2", "--quiet", "-o", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "CUDA is not available" in lines[0]


def test_harden_takes_the_same_compute_options(tmp_path: Path, keep_threads):
    args = ["harden", "-m", "reference:clip", "--mitigation", "robustness/tecoa"]
    res = runner.invoke(app, [*args, "--device", "cuda:x", "-o", str(tmp_path / "h")])
    assert res.exit_code == 2 and "cuda:x" in res.output


# ----------------------------------------------------------------- OOM back-off


def _fake_oom() -> BaseException:
    cls: Any = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return cls("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_is_oom_tells_accelerator_oom_from_other_errors():
    assert compute.is_oom(_fake_oom())
    assert compute.is_oom(RuntimeError("CUDA out of memory. Tried to allocate 20 MiB"))
    assert not compute.is_oom(RuntimeError("shape mismatch"))
    assert not compute.is_oom(MemoryError())


class _Hungry:
    """A model whose forward pass 'runs out of GPU memory' above ``fits`` images."""

    def __init__(self, inner: Any, fits: int) -> None:
        self.inner, self.fits, self.sizes = inner, fits, []  # type: list[int]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_images(self, images: Sequence[Any]) -> Any:
        self.sizes.append(len(images))
        if len(images) > self.fits:
            raise _fake_oom()
        return self.inner.embed_images(images)


def test_oom_halves_the_batch_retries_and_records_it(ref_clip, tmp_path: Path):
    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.probes.capability.zero_shot import ZeroShot
    from vlmtrust.runner.engine import evaluate_probe

    ctx = ProbeContext(limit=20)
    want = evaluate_probe(ref_clip, ZeroShot(), ctx)
    hungry = _Hungry(ref_clip, fits=5)
    got = evaluate_probe(hungry, ZeroShot(), ProbeContext(limit=20), batch_size=16)
    assert got.n_errors == 0 and got.n_samples == 20
    assert [m.value for m in got.metrics] == [m.value for m in want.metrics]
    # 16 fails, 8 fails, 4 fits; later batches start at the size that fitted.
    assert hungry.sizes[:3] == [16, 8, 4] and max(hungry.sizes[3:]) <= 4
    assert any("out of memory" in n and "16" in n and "4" in n for n in got.notes), got.notes


def test_oom_at_batch_one_is_an_error_record(ref_clip):
    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.probes.capability.zero_shot import ZeroShot
    from vlmtrust.runner.engine import evaluate_probe

    got = evaluate_probe(_Hungry(ref_clip, fits=0), ZeroShot(), ProbeContext(limit=3))
    assert got.n_errors == 3 and "out of memory" in got.errors[0].message


@pytest.mark.gpu
def test_reference_clip_runs_on_cuda_in_bfloat16(tmp_path: Path):
    from vlmtrust.api import audit

    log: Any = audit(
        "reference:clip",
        probes=["capability/zero_shot"],
        limit=16,
        out=tmp_path / "r",
        cache=False,
        device="cuda",
        dtype="bfloat16",
    )
    assert log.spec.model.options["device"].startswith("cuda")
    assert log.spec.model.options["dtype"] == "bfloat16"
    assert log.results[0].n_errors == 0


@pytest.mark.gpu
def test_harden_and_pgd_run_on_cuda(tmp_path: Path):
    from vlmtrust.api import harden
    from vlmtrust.models.loader import load_model

    art = harden("reference:clip", "robustness/tecoa", tmp_path / "h", quick=True, device="cuda")
    model: Any = load_model(art.spec, device="cuda")
    assert str(model.device).startswith("cuda")
    from vlmtrust.core.probe import ProbeContext, get_probe
    from vlmtrust.runner.engine import evaluate_probe

    res = evaluate_probe(model, get_probe("robustness/adversarial")(), ProbeContext(limit=8))
    assert res.n_errors == 0
