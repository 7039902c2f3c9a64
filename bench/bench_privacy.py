"""The privacy probes' cheap attacks (no reference models) on reference:clip's candidates.

1. End to end: ``privacy/membership_inference`` (cosine and loss threshold attacks and the
   confound check on 32 + 1,000 canaries) and ``privacy/memorization`` (déjà vu over 1,000
   public images, alignment gap, exposure over 6,840 codes) through the runner, cache off.
   Target: each ≤ 20 s.
2. Batched vs per-sample scoring, side by side: the membership probe's ``evaluate`` on the same
   ``--n`` candidates in batches of 128 and one candidate at a time; the ratio is per-sample
   time over batched time.

One torch thread by default: on a shared 2-core machine two threads oversubscribe the cores
and every timing grows several-fold (``--threads 2`` to compare).

Usage: python bench/bench_privacy.py [--n 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256, help="candidates of the side-by-side timing")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()

    import torch

    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.models.loader import load_model
    from vlmtrust.probes.privacy.membership_inference import MembershipInferenceProbe
    from vlmtrust.probes.privacy.memorization import MemorizationProbe
    from vlmtrust.runner.engine import evaluate_probe

    torch.set_num_threads(args.threads)
    model = load_model("reference:clip", device="cpu")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model: reference:clip, torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} cores, load average {load:.1f}"
    )
    for probe in (MembershipInferenceProbe(), MemorizationProbe()):
        t0 = time.perf_counter()
        res = evaluate_probe(model, probe, ProbeContext())
        took = time.perf_counter() - t0
        head = ", ".join(
            f"{m.name} {m.value:.3f}" for m in res.metrics if m.headline and m.value is not None
        )
        verdict = "ok" if took <= 20 else "SLOW"
        print(f"{probe.name}: {res.n_samples} samples in {took:.1f} s ({verdict}, target <= 20 s)")
        print(f"  {head}")

    ctx = ProbeContext()
    probe = MembershipInferenceProbe()
    items = probe._items(ctx)[: args.n]
    for s in items:
        s.images[0].load()
    probe.evaluate(model, items[:8], ctx)  # warm-up: distractor embeddings, first forward
    t0 = time.perf_counter()
    for i in range(0, len(items), 128):
        probe.evaluate(model, items[i : i + 128], ctx)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in items:
        probe.evaluate(model, [s], ctx)
    single = time.perf_counter() - t0
    print(
        f"scoring {len(items)} candidates: batched {batched:.2f} s, per-sample {single:.2f} s, "
        f"ratio {single / batched:.1f}x"
    )


if __name__ == "__main__":
    main()
