"""The runner keeps several batches in flight for remote models (runner/pipeline.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_toys import AskProbe, ColourEncoder, ColourProbe

from vlmtrust.core.errors import CapabilityError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import AuditLog
from vlmtrust.models.openai_compat import OpenAICompatModel
from vlmtrust.runner.engine import batches_in_flight, evaluate_probe, run_audit, samples_file
from vlmtrust.runner.pipeline import LoopThread, pipelined

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "servers"))

from openai_server import EchoBackend, Fault, serve  # noqa: E402


def remote(url: str, **kw: object) -> OpenAICompatModel:
    opts: dict[str, object] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0}
    opts.update(kw)
    return OpenAICompatModel(
        "test-model",
        base_url=url,
        spec=f"openai:test-model@{url}",
        api_key_env="VLMTRUST_TEST_NO_KEY",
        **opts,  # type: ignore[arg-type]
    )


def test_one_slow_request_does_not_hold_back_the_other_batches() -> None:
    # 6 batches of 4; the first request of every batch answers 0.5 s late. One batch after
    # another (the old barrier) takes >= 6 * 0.5 = 3 s; with batches in flight, ~0.5 s.
    late, n_batches = 0.5, 6
    with serve(EchoBackend(), rules={"SLOW": Fault.slow(late)}) as url:
        model = remote(url, concurrency=8)
        probe = AskProbe({"n": 4 * n_batches, "slow_every": 4})
        assert batches_in_flight(model, probe) == 8
        done: list[float] = []  # when each batch's records came out (summaries not timed)
        t0 = time.monotonic()
        res = evaluate_probe(
            model, probe, ProbeContext(seed=1), on_progress=lambda n: done.append(time.monotonic())
        )
        elapsed = done[-1] - t0
        assert url.stats.prompts.count("question 0 SLOW") == 1
    assert res.n_samples == 24 and res.n_errors == 0
    assert elapsed < 0.5 * n_batches * late, f"{elapsed:.2f} s: batches ran one after another"


def test_records_are_written_in_sample_order_and_equal_one_batch_at_a_time(tmp_path) -> None:
    def latency(prompt: str) -> float:  # later questions answer first
        return 0.002 * (40 - int(prompt.split()[1]))

    with serve(EchoBackend(), latency_s=latency) as url:
        logs = {}
        for depth in (1, 6):
            model = remote(url, concurrency=6, batches_in_flight=depth)
            logs[depth] = run_audit(
                model, [AskProbe({"n": 40})], out_dir=tmp_path / str(depth), ctx=ProbeContext()
            )
    lines = {d: samples_file(tmp_path / str(d), "capability/test_ask").read_text() for d in logs}
    assert lines[1] == lines[6]  # byte for byte: same records, same order
    assert [json.loads(x)["index"] for x in lines[6].splitlines()] == list(range(40))
    assert logs[1].results[0].metrics == logs[6].results[0].metrics
    spec = json.loads((tmp_path / "6" / "spec.json").read_text())
    assert spec["model"]["options"]["batches_in_flight"] == 6


def test_local_models_and_unmarked_probes_run_one_batch_at_a_time(tmp_path) -> None:
    with serve(EchoBackend()) as url:
        assert batches_in_flight(remote(url), ColourProbe()) == 1  # probe not marked
    assert batches_in_flight(ColourEncoder(), AskProbe()) == 1  # model not remote
    assert batches_in_flight(remote("http://127.0.0.1:9/v1", batches_in_flight=1), AskProbe()) == 1


def test_a_failing_batch_stops_the_pipeline_promptly() -> None:
    # batch 3 raises while the others wait on 3 s late answers: the error arrives at once, the
    # in-flight requests are cancelled and every worker is joined.
    with serve(EchoBackend(), rules={"SLOW": Fault.slow(3.0)}) as url:
        model = remote(url, concurrency=8)
        probe = AskProbe({"n": 32, "slow_every": 4, "fail_batch": 12})
        t0 = time.monotonic()
        with pytest.raises(CapabilityError, match="cannot run"):
            evaluate_probe(model, probe, ProbeContext())
        assert time.monotonic() - t0 < 2.5


def test_pipelined_yields_in_input_order() -> None:
    def work(x: int) -> list[int]:
        time.sleep(0.002 * (10 - x))  # later jobs finish first
        return [x * 10]

    items = ((f"h{i}", i if i != 2 else None) for i in range(10))
    got = list(pipelined(items, work, 4, window=5))
    assert got == [(f"h{i}", [] if i == 2 else [i * 10]) for i in range(10)]


def test_pipelined_raises_a_workers_error_without_waiting_for_earlier_jobs() -> None:
    def work(x: int) -> list[int]:
        if x == 0:
            time.sleep(1.0)
        if x == 2:
            raise ValueError("job 2")
        return [x]

    t0 = time.monotonic()
    with pytest.raises(ValueError, match="job 2"):
        list(pipelined(((i, i) for i in range(6)), work, 3))
    assert time.monotonic() - t0 < 1.5  # job 0's sleep is not cancellable: joined, not awaited


def test_loop_thread_refuses_calls_after_cancel() -> None:
    import asyncio

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    with LoopThread() as lt:
        assert lt.run(answer()) == 42
        lt.cancel()
        with pytest.raises(RuntimeError, match="stopping"):
            lt.run(answer())
    assert lt.loop.is_closed()


def test_request_stats_are_stored_per_probe(tmp_path) -> None:
    faults = [
        Fault.http(429, retry_after=0),
        Fault.http(503),
        Fault.drop(),
        Fault.malformed_json(),
        Fault.slow(1.0),  # the client gives up at 0.3 s: a timeout
    ]
    with serve(EchoBackend(), faults=faults, rules={"SLOW": Fault.slow(0.15)}) as url:
        model = remote(url, concurrency=1, timeout_s=0.3)
        log = run_audit(
            model,
            [AskProbe({"n": 8, "slow_every": 5}), AskProbe({"n": 2, "id_prefix": "second-"})],
            out_dir=tmp_path / "run",
            ctx=ProbeContext(),
        )
    first, second = log.results
    assert first.n_errors == 0
    st = first.requests
    assert st is not None
    assert st.requests == 8 and st.attempts == 13 and st.errors == 0
    assert st.retries == {"429": 1, "5xx": 1, "timeout": 1, "connection": 1, "malformed": 1}
    assert len(st.slowest) == 5
    assert [s.seconds for s in st.slowest] == sorted((s.seconds for s in st.slowest), reverse=True)
    assert st.slowest[0].seconds >= 0.3 and st.slowest[0].attempts >= 2  # the timed-out one
    assert {"q000", "q005"} <= {s.sample_id for s in st.slowest}  # 0.15 s late each
    assert sum(s.attempts for s in st.slowest) >= 5
    assert second.requests is not None and second.requests.requests == 2
    assert second.requests.retries == {} and second.requests.attempts == 2
    on_disk = AuditLog.model_validate_json((tmp_path / "run" / "results.json").read_text())
    assert on_disk.results[0].requests == st


def test_resume_after_kill_minus_9_of_a_pipelined_run(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    worker = str(HERE / "_resume_remote_worker.py")

    def latency(prompt: str) -> float:
        return 0.15 if prompt.endswith("SLOW") else 0.03

    def audit(out: Path, resume: bool) -> AuditLog:
        model = remote(url, concurrency=4)  # the worker's settings
        probe = AskProbe({"n": 48, "slow_every": 7})
        return run_audit(model, [probe], out_dir=out, ctx=ProbeContext(seed=3), resume=resume)

    with serve(EchoBackend(), latency_s=latency) as url:
        cut = tmp_path / "cut"
        proc = subprocess.Popen([sys.executable, worker, url, str(cut), "0"], env=env)
        path = samples_file(cut, "capability/test_ask")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and len(path.read_bytes().splitlines()) >= 8:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        written = path.read_bytes().splitlines()
        assert 8 <= len(written) < 48, "the kill should land mid-run"
        with path.open("ab") as fh:
            fh.write(b'{"sample_id": "torn')  # a torn last line
        resumed = audit(cut, resume=True)
        full = audit(tmp_path / "full", resume=False)
    a, b = full.results[0], resumed.results[0]
    assert [m.model_dump() for m in a.metrics] == [m.model_dump() for m in b.metrics]
    assert b.n_samples == 48 and b.n_errors == 0
    assert b.requests is not None and b.requests.requests == 48 - len(written)
