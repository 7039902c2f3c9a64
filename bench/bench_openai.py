"""Benchmark of the ``openai:`` backend against the local test server (not a test).

Two measurements, each printed with its ratio from the same run:

1. throughput against a server that answers at once, concurrency 64 (target >= 500 req/s);
2. throughput against a server that answers in 200 ms vs the ideal ``concurrency / 0.2 s``
   (target >= 0.9).

The server (tests/servers/openai_server.py: starlette + uvicorn) runs in a separate process so
client and server do not share a GIL. Usage::

    python bench/bench_openai.py [--requests 4000] [--concurrency 64] [--latency 0.2]
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
def server_process(latency_s: float) -> Iterator[tuple[str, int]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--latency", str(latency_s)],
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--waves", type=int, default=10, help="latency run: requests = waves * conc")
    ap.add_argument("--image", action="store_true", help="attach one 8x8 PNG to each request")
    args = ap.parse_args()
    c = args.concurrency
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}, "
        f"concurrency {c}"
    )

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
