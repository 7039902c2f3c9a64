"""Runner overhead and cache speed-up, measured side by side in one run.

1. Overhead: ``capability/zero_shot`` over N images through the full runner (samples, safe image
   loading, batching, records streamed to JSONL with fsync, metrics with bootstrap CIs; cache off)
   vs the model's forward passes alone on the same batches of already-decoded images.
   Target: ratio ≤ 1.15.
2. Cache: the same run twice against one fresh cache file. Target: second run ≥ 10× faster.

Usage: python bench/bench_runner.py [--model reference:clip] [--n 2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="reference:clip")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import torch

    from vlmtrust.api import audit
    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.models.base import load_model
    from vlmtrust.probes.capability.zero_shot import ZeroShot
    from vlmtrust.runner.cache import Cache

    torch.set_num_threads(2)
    model = load_model(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="vlmtrust-bench-"))
    data = tmp / "images"
    world = SynthWorld(seed=0)
    images = []
    for i, s in enumerate(world.shapes(args.n, split="id")):
        d = data / s.attributes["shape"]
        d.mkdir(parents=True, exist_ok=True)
        s.image.save(d / f"{i:05d}.png")
        images.append((d.name, s.image.convert("RGB")))
    probe = ZeroShot()
    ctx = ProbeContext(data=str(data))
    names = probe.class_names(ctx)
    # Same batches as the runner: the folder's sample order, the probe's batch size.
    from vlmtrust.data.datasets import iter_dataset

    order = list(iter_dataset(str(data)))
    batches = [
        [s.images[0].load() for s in order[i : i + probe.batch_size]]
        for i in range(0, len(order), probe.batch_size)
    ]

    def forward_only() -> float:
        t = time.perf_counter()
        txt = model.embed_texts([probe.params.template.format(c) for c in names])
        for b in batches:
            img = model.embed_images(b)
            _ = (img @ txt.T).argmax(axis=1)
        return time.perf_counter() - t

    def runner(out: Path, cache: Cache | bool) -> float:
        t = time.perf_counter()
        audit(model, probes=["capability/zero_shot"], out=out, data=str(data), cache=cache)
        return time.perf_counter() - t

    forward_only()  # warm-up (thread pools, allocator)
    fw, rn = [], []
    for r in range(args.repeats):  # interleaved so drifts in machine load hit both alike
        fw.append(forward_only())
        rn.append(runner(tmp / f"run{r}", False))
    f, g = float(np.median(fw)), float(np.median(rn))
    print(
        f"overhead: N={args.n} forward-only {f:.2f}s  runner {g:.2f}s  ratio {g / f:.3f} "
        f"(target <= 1.15)"
    )

    cold, warm = [], []
    for r in range(args.repeats):
        cache = Cache(tmp / f"cache{r}.sqlite")
        cold.append(runner(tmp / f"c{r}a", cache))
        warm.append(runner(tmp / f"c{r}b", cache))
    c, w = float(np.median(cold)), float(np.median(warm))
    print(f"cache: first run {c:.2f}s  second run {w:.2f}s  speed-up {c / w:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
