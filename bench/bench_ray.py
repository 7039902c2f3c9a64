"""Scale-out: 2 Ray workers with one thread each vs 1 local worker with one thread.

``capability/zero_shot`` on N SynthWorld images with a CLIP of ViT-B/32 size (random weights,
built offline as in bench_runner.py). Printed:

* start-up: the local Ray cluster (``ray.init``) and the actor pool (each actor imports torch
  and loads the model) -- apart from the throughput, which counts only the samples;
* throughput of the local executor (1 torch thread) and of the Ray executor (2 actors,
  1 thread each), and their ratio (target >= 1.7x);
* the per-sample cost of the forward pass, and Ray's per-task overhead (an empty actor call
  and a batch of records coming back), the inputs of the scaling model in docs/scaling.md.

Usage: python bench/bench_ray.py [--n 256] [--model SPEC] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None, help="model spec (default: the ViT-B/32-size CLIP)")
    args = ap.parse_args()

    import torch

    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.models.loader import load_model
    from vlmtrust.probes.capability.zero_shot import ZeroShot
    from vlmtrust.runner.engine import evaluate_probe
    from vlmtrust.runner.executor import RayExecutor, RayOptions, connect

    torch.set_num_threads(1)
    if args.model is None:
        from bench_runner import _vit_b32

        args.model = f"hf:{_vit_b32(Path(tempfile.mkdtemp(prefix='vlmtrust-bench-')) / 'm')}"
    model = load_model(args.model)
    print(f"model: {args.model}  N={args.n}  load {os.getloadavg()[0]:.2f} (1-min)")

    def ctx() -> ProbeContext:
        return ProbeContext(limit=args.n, seed=0)

    probe = ZeroShot({"n": args.n})
    evaluate_probe(model, ZeroShot({"n": 16}), ProbeContext(limit=16))  # warm-up
    t = time.perf_counter()
    local = evaluate_probe(model, probe, ctx())
    t_local = time.perf_counter() - t
    per_sample = t_local / args.n

    t = time.perf_counter()
    ray = connect(RayOptions(num_cpus=args.workers))
    t_init = time.perf_counter() - t
    opts = RayOptions(workers=args.workers, cpus_per_worker=1)
    with RayExecutor(model.spec, model.fingerprint, options=opts) as ex:
        t = time.perf_counter()
        ex.start()
        ray.get([s.ready for s in ex._slots])
        t_pool = time.perf_counter() - t
        evaluate_probe(model, ZeroShot({"n": 16}), ProbeContext(limit=16), executor=ex)
        t = time.perf_counter()
        remote = evaluate_probe(model, probe, ctx(), executor=ex)
        t_ray = time.perf_counter() - t
        actor = ex._slots[0].actor
        t = time.perf_counter()
        for _ in range(50):
            ray.get(actor.ready.remote())
        rtt = (time.perf_counter() - t) / 50

    same = [m.value for m in local.metrics] == [m.value for m in remote.metrics]
    print(
        f"start-up: ray.init {t_init:.1f}s, {args.workers} actors loading the model {t_pool:.1f}s"
    )
    print(
        f"per sample (forward, 1 thread): {per_sample * 1000:.1f} ms; ray task round trip "
        f"{rtt * 1000:.2f} ms; batch {probe.batch_size}"
    )
    print(
        f"throughput: local 1x1 thread {args.n / t_local:.2f} img/s ({t_local:.1f}s)  "
        f"ray {args.workers}x1 thread {args.n / t_ray:.2f} img/s ({t_ray:.1f}s)  "
        f"ratio {t_local / t_ray:.2f}x (target >= 1.7x)  metrics equal: {same}"
    )
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")


if __name__ == "__main__":
    main()
