"""The Ray executor on one module-scoped local 2-CPU cluster: same numbers as the local
executor, resume across executors, a killed worker, an address that does not answer."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'vlmtrust[ray]')")

from vlmtrust.api import audit  # noqa: E402
from vlmtrust.core.errors import InputError  # noqa: E402
from vlmtrust.runner.executor import RayOptions, check_address  # noqa: E402

PROBES = ["capability/zero_shot", "robustness/calibration"]
PARAMS = {"robustness/calibration": {"corruptions": ["contrast"]}}
LIMIT = 12


@pytest.fixture(scope="module")
def cluster() -> Any:
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("local") / "run"
    log = audit("reference:clip", probes=PROBES, params=PARAMS, out=out, limit=LIMIT, cache=False)
    return log, out


def _metrics(log: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(r.probe, [m.model_dump() for m in r.metrics]) for r in log.results]


def _close(x: Any, y: Any, where: tuple[Any, ...]) -> None:
    """Equal, floats to the last bits (a worker's one torch thread sums in another order)."""
    if isinstance(x, float) and isinstance(y, float):
        assert y == pytest.approx(x, rel=1e-6, abs=1e-9), where
    elif isinstance(x, dict) and isinstance(y, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _close(x[k], y[k], (*where, k))
    elif isinstance(x, list | tuple) and isinstance(y, list | tuple):
        assert len(x) == len(y), where
        for i, (a, b) in enumerate(zip(x, y, strict=True)):
            _close(a, b, (*where, i))
    else:
        assert y == x, where


def _same_metrics(a: Any, b: Any) -> None:
    _close(_metrics(a), _metrics(b), ())
    for ra, rb in zip(a.results, b.results, strict=True):
        assert (ra.n_samples, ra.n_errors) == (rb.n_samples, rb.n_errors)


def _records(run: Path, probe: str) -> list[dict[str, Any]]:
    import json

    lines = (run / "samples" / (probe.replace("/", "__") + ".jsonl")).read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_two_models_on_ray_equal_the_local_run(cluster: Any, local_run: Any, tmp_path: Path):
    log, local_dir = local_run
    logs = audit(
        ["reference:clip", "reference:clip"],
        probes=PROBES,
        params=PARAMS,
        out=tmp_path / "ray",
        limit=LIMIT,
        cache=False,
        executor="ray",
    )
    assert isinstance(logs, list) and len(logs) == 2
    for sub, other in zip(sorted((tmp_path / "ray").iterdir()), logs, strict=False):
        if not sub.is_dir():
            continue
        _same_metrics(log, other)
        for probe in PROBES:
            mine, theirs = _records(local_dir, probe), _records(sub, probe)
            assert [r["sample_id"] for r in theirs] == [r["sample_id"] for r in mine]
            assert [r["output"] for r in theirs] == [r["output"] for r in mine]


def test_resume_a_local_run_on_ray(cluster: Any, local_run: Any, tmp_path: Path):
    log, local_dir = local_run
    run = tmp_path / "half"
    shutil.copytree(local_dir, run)
    (run / "results.json").unlink()
    f = run / "samples" / "capability__zero_shot.jsonl"
    f.write_text("".join(f.read_text().splitlines(keepends=True)[:5]))
    (run / "samples" / "robustness__calibration.jsonl").unlink()
    resumed = audit(
        "reference:clip",
        probes=PROBES,
        params=PARAMS,
        out=run,
        limit=LIMIT,
        cache=False,
        resume=True,
        executor="ray",
        ray=RayOptions(workers=1),
    )
    _same_metrics(log, resumed)
    ids = [r["sample_id"] for r in _records(run, "capability/zero_shot")]
    assert len(ids) == len(set(ids)) == LIMIT  # the 5 kept lines were not computed again


def test_a_killed_worker_loses_and_doubles_nothing(cluster: Any, local_run: Any, tmp_path: Path):
    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.models.loader import load_model
    from vlmtrust.probes.capability.zero_shot import ZeroShot
    from vlmtrust.runner.engine import RecordWriter, evaluate_probe, read_records
    from vlmtrust.runner.executor import RayExecutor

    log, local_dir = local_run
    model = load_model("reference:clip")
    killed: list[int] = []
    path = tmp_path / "zs.jsonl"
    writer = RecordWriter(path)
    with RayExecutor(model.spec, model.fingerprint, options=RayOptions(workers=2)) as ex:

        def kill_one(n: int) -> None:
            if not killed:
                pid = next(s.pid for s in ex._slots if s.pid and s.busy)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        result = evaluate_probe(
            model,
            ZeroShot(),
            ProbeContext(limit=LIMIT),
            writer=writer,
            batch_size=1,
            on_progress=kill_one,
            executor=ex,
        )
        writer.close()
        assert killed and ex.retried, "the killed worker had no batch in flight"
        assert killed[0] not in ex.pids()
    lines = path.read_text().splitlines()
    assert len(lines) == LIMIT  # each sample written once
    mine = [
        r.model_dump() for r in read_records(local_dir / "samples" / "capability__zero_shot.jsonl")
    ]
    theirs = [r.model_dump() for r in read_records(path)]
    assert [r["output"] for r in theirs] == [r["output"] for r in mine]
    want = next(r for r in log.results if r.probe == "capability/zero_shot")
    assert [m.value for m in result.metrics] == [m.value for m in want.metrics]


def test_an_address_that_does_not_answer_fails_fast_with_one_line():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    try:
        t = time.perf_counter()
        with pytest.raises(InputError, match=rf"127.0.0.1:{port}: no Ray cluster answered"):
            check_address(f"127.0.0.1:{port}", 0.5)
        assert time.perf_counter() - t < 5
    finally:
        silent.close()
    with pytest.raises(InputError, match="cannot reach a Ray cluster"):
        check_address(f"127.0.0.1:{port}", 0.5)  # now closed: refused
    with pytest.raises(InputError, match="expected HOST:PORT"):
        check_address("nowhere", 0.5)


def test_cli_ray_address_and_executor_errors(tmp_path: Path):
    from typer.testing import CliRunner

    from vlmtrust.cli import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    base = ["run", "capability/zero_shot", "-m", "reference:clip", "--limit", "2", "-q"]
    res = CliRunner().invoke(
        app,
        [
            *base,
            "--out",
            str(tmp_path / "a"),
            "--executor",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
        ],
    )
    assert res.exit_code == 2
    assert f"--ray-address 127.0.0.1:{port}: cannot reach a Ray cluster" in res.output
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b"), "--executor", "spark"])
    assert res.exit_code == 2 and "--executor 'spark': choose one of local, ray" in res.output
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "c"), "--ray-workers", "2"])
    assert res.exit_code == 2 and "--ray-workers needs --executor ray" in res.output


def test_executor_ray_without_ray_installed_is_one_line(monkeypatch: pytest.MonkeyPatch):
    import sys

    from vlmtrust.runner.executor import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(InputError, match=r"needs Ray, which is not installed: pip install"):
        connect(RayOptions())
