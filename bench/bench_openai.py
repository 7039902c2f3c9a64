"""Benchmark of the ``openai:`` backend against the local test server (not a test).

Three measurements, each printed with its ratio from the same run:

1. throughput against a server that answers at once, concurrency 64 (target >= 500 req/s);
2. throughput against a server that answers in 200 ms vs the ideal ``concurrency / 0.2 s``
   (target >= 0.9);
3. the runner's pipeline under faults: ``safety/figstep`` (text + typography image per request,
   judge refusal/keyword) through :func:`vlmtrust.runner.engine.evaluate_probe`, against a
   server that answers ``--capacity`` requests at once in ``--fault-latency`` seconds each
   (a GPU server's throughput), fault-free and then with 40% faults (10% of answers 5 s late;
   429 with Retry-After on arrival, 500, dropped connections and malformed JSON after the work,
   7.5% each). Target: faulty throughput >= 0.6 x fault-free, 0 lost samples. The same faults
   with one batch at a time (``batches_in_flight=1``, the old barrier) are run on a few batches
   for comparison. Throughput counts samples until the last record is written (the probe's
   summary afterwards is the same for every run and not timed).

The server (tests/servers/openai_server.py: starlette + uvicorn) runs in a separate process so
client and server do not share a GIL. Usage::

    python bench/bench_openai.py [--requests 4000] [--concurrency 64] [--latency 0.2]
    python bench/bench_openai.py --only faults [--samples 640] [--fault-concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from vlmtrust.core.model import GenerateRequest
from vlmtrust.models.openai_compat import OpenAICompatModel

SERVER = Path(__file__).resolve().parents[1] / "tests" / "servers" / "openai_server.py"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(latency_s: float, *extra: str) -> Iterator[tuple[str, int]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--latency", str(latency_s), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield line.split(" ", 1)[1], proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_requests(n: int, with_image: bool) -> list[GenerateRequest]:
    image = Image.new("RGB", (8, 8), (120, 30, 200))
    images = (image,) if with_image else ()
    return [GenerateRequest(f"question {i}?", images=images, max_new_tokens=8) for i in range(n)]


class Result:
    def __init__(self, n: int, elapsed: float, ok: int, client_cpu: float, server_cpu: float):
        self.rps = n / elapsed
        self.ok = ok
        self.client_ms = 1000 * client_cpu / n
        self.server_ms = 1000 * server_cpu / n

    def __str__(self) -> str:
        return (
            f"{self.rps:8.1f} req/s ({self.ok} ok; CPU per request: client "
            f"{self.client_ms:.2f} ms, server {self.server_ms:.2f} ms)"
        )


async def timed_run(
    model: OpenAICompatModel, reqs: list[GenerateRequest], server_pid: int
) -> Result:
    # one warm-up wave opens the keep-alive connections, then the measured run on the same loop
    await model.generate(reqs[: model.concurrency])
    server0, client0 = cpu_seconds(server_pid), time.process_time()
    start = time.perf_counter()
    out = await model.generate(reqs)
    elapsed = time.perf_counter() - start
    client = time.process_time() - client0
    server = cpu_seconds(server_pid) - server0
    await model.aclose()
    return Result(len(reqs), elapsed, sum(g.ok for g in out), client, server)


def measure(url: str, pid: int, n: int, concurrency: int, with_image: bool) -> Result:
    model = OpenAICompatModel(
        "test-model", base_url=url, spec=f"openai:test-model@{url}", concurrency=concurrency
    )
    return asyncio.run(timed_run(model, make_requests(n, with_image), pid))


class PipelineRun:
    """One evaluate_probe run of safety/figstep against the server at ``url``."""

    def __init__(self, url: str, samples: int, options: dict[str, Any]) -> None:
        from vlmtrust.core.probe import ProbeContext, get_probe
        from vlmtrust.models.loader import load_model
        from vlmtrust.runner.engine import evaluate_probe

        spec = f"openai:test-model@{url}"
        model = load_model(spec, api_key_env="VLMTRUST_BENCH_NO_KEY", **options)
        per_kind = samples // 4  # harmful + benign look-alikes, each as text and as typography
        probe = get_probe("safety/figstep")(
            {
                "judges": ["refusal/keyword"],
                "n_harmful": per_kind,
                "n_benign": per_kind,
                "split": "all",
                "image_size": 96,
                "agreement": False,
            }
        )
        done: list[float] = []

        def progress(n: int) -> None:
            done.append(time.perf_counter())

        start = time.perf_counter()
        res = evaluate_probe(model, probe, ProbeContext(seed=0), on_progress=progress)
        self.seconds = (done[-1] if done else time.perf_counter()) - start
        self.n = res.n_samples
        self.errors = res.n_errors
        self.rate = self.n / self.seconds
        self.requests = res.requests

    def __str__(self) -> str:
        st = self.requests
        extra = ""
        if st is not None:
            retries = ", ".join(f"{k} {v}" for k, v in st.retries.items()) or "none"
            slow = ", ".join(f"{s.seconds:.1f} s ({s.attempts} attempts)" for s in st.slowest[:3])
            extra = f"; {st.attempts} attempts, retries: {retries}; slowest {slow}"
        return (
            f"{self.rate:6.1f} samples/s ({self.n} samples in {self.seconds:.1f} s, "
            f"{self.errors} lost{extra})"
        )


def fault_bench(args: argparse.Namespace) -> None:
    """Measurement 3: the runner's pipeline, fault-free vs 40% faults, side by side."""
    c, cap, lat = args.fault_concurrency, args.capacity, args.fault_latency
    server = ["--capacity", str(cap)]
    faults = [*server, "--fault-rate", "0.4", "--late", "0.1", "--late-s", "5"]
    faults += ["--retry-after", "1", "--seed", str(args.seed)]
    # At 30% failing attempts, 5 retries (the default) lose 0.3**6 = 0.07% of the samples;
    # 10 retries make a loss unlikely (6e-6 per sample).
    # A local server: backoff waits capped at a few seconds (the default 30 s suits a hosted
    # API that is shedding load).
    opts: dict[str, Any] = {
        "concurrency": c,
        "max_retries": args.retries,
        "backoff_max_s": args.backoff_max,
    }
    print(
        f"pipeline: safety/figstep, {args.samples} samples, server capacity {cap} x "
        f"{lat * 1000:.0f} ms (ideal {cap / lat:.0f} samples/s), concurrency {c}, "
        f"batches in flight {c}, max_retries {args.retries}, backoff_max_s {args.backoff_max:g}"
    )
    with server_process(lat, *server) as (url, _):
        PipelineRun(url, 16, opts)  # warm-up: imports, fonts, the first connections
        clean = PipelineRun(url, args.samples, opts)
    print(f"  fault-free          : {clean}")
    with server_process(lat, *faults) as (url, _):
        faulty = PipelineRun(url, args.samples, opts)
    print(f"  40% faults          : {faulty}")
    with server_process(lat, *faults) as (url, _):
        barrier = PipelineRun(url, args.barrier_samples, {**opts, "batches_in_flight": 1})
    print(f"  40% faults, barrier : {barrier}  (one batch at a time)")
    ratio = faulty.rate / clean.rate
    lost = args.samples - faulty.n + faulty.errors
    verdict = "ok" if ratio >= 0.6 and lost == 0 else "BELOW TARGET"
    old = barrier.rate / clean.rate
    print(
        f"  -> faulty / fault-free throughput: ratio {ratio:.2f} (target >= 0.6), "
        f"{lost} lost samples: {verdict}; one batch at a time: ratio {old:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["all", "throughput", "faults"], default="all")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--waves", type=int, default=10, help="latency run: requests = waves * conc")
    ap.add_argument("--image", action="store_true", help="attach one 8x8 PNG to each request")
    ap.add_argument("--samples", type=int, default=640, help="faults run: samples (x4)")
    ap.add_argument("--barrier-samples", type=int, default=64, help="faults run, barrier: samples")
    ap.add_argument("--fault-concurrency", type=int, default=32)
    ap.add_argument("--capacity", type=int, default=8, help="faults run: server capacity")
    ap.add_argument("--fault-latency", type=float, default=0.25, help="faults run: s per answer")
    ap.add_argument("--seed", type=int, default=0, help="faults run: seed of the fault draws")
    ap.add_argument("--retries", type=int, default=10, help="faults run: max_retries")
    ap.add_argument("--backoff-max", type=float, default=2.0, help="faults run: backoff_max_s")
    args = ap.parse_args()
    c = args.concurrency
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}, "
        f"concurrency {c}"
    )
    if args.only in ("all", "faults"):
        fault_bench(args)
    if args.only == "faults":
        return

    with server_process(0.0) as (url, pid):
        r = measure(url, pid, args.requests, c, args.image)
    print(f"instant server : {r} over {args.requests} requests")
    print(f"  -> {r.rps:.1f} req/s vs target 500: ratio {r.rps / 500:.2f}")

    n = args.waves * c
    ideal = c / args.latency
    with server_process(args.latency) as (url, pid):
        r = measure(url, pid, n, c, args.image)
    print(f"{args.latency * 1000:.0f} ms server : {r} over {n} requests")
    print(
        f"  -> {r.rps:.1f} req/s vs ideal concurrency/latency = {ideal:.1f} req/s: "
        f"ratio {r.rps / ideal:.3f} (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
