"""Benchmark: ``privacy/dp_finetune`` — DP-SGD step time vs a non-private step, and an ε sweep.

Usage:
    python bench/bench_dp.py                      # step time, Opacus DP-SGD vs plain, ratio
    python bench/bench_dp.py --sweep              # ε ∈ {1, 3, 8, ∞} on reference:clip: the
                                                  # accountant's ε, membership AUROC of the
                                                  # fine-tuning candidates, ε_lb, accuracy
    python bench/bench_dp.py --sweep --eps 8,inf --steps 60 --members 64

Same model (reference:clip), data (SynthWorld canaries) and expected batch in one run, on this
machine, with ``torch.set_num_threads(--threads)``. The step time includes the public bank's
forward pass (both runs do it).
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def step_times(model: object, steps: int, batch: int, n: int) -> None:
    import numpy as np

    from vlmtrust.mitigations.privacy.dp_finetune import (
        MEMBER_START,
        PUBLIC_START,
        DPConfig,
        _canaries,
        dp_finetune,
    )
    from vlmtrust.mitigations.robustness._advtrain import clone_dual

    ims, caps = _canaries(MEMBER_START, n)
    bi, bc = _canaries(PUBLIC_START, 64)
    out = {}
    for eps in (math.inf, 8.0):
        twin = clone_dual(model)
        cfg = DPConfig(epsilon=eps, steps=steps + 2, batch_size=batch)
        log = dp_finetune(twin, twin.to_pixels(ims), caps, twin.to_pixels(bi), bc, cfg)
        out[eps] = float(np.median(log.step_seconds[2:]))  # the first steps warm up
    print(
        f"step time (median of {steps}, expected batch {batch}): non-private "
        f"{out[math.inf] * 1e3:.0f} ms, DP-SGD {out[8.0] * 1e3:.0f} ms, "
        f"ratio {out[8.0] / out[math.inf]:.2f}x (aim ≤ 3x)"
    )


def sweep(model: object, eps_list: list[float], steps: int, members: int, lr: float) -> None:
    from vlmtrust.core.mitigation import MitigationContext
    from vlmtrust.mitigations.privacy.dp_finetune import DPFinetuneParams, run_dp_finetune

    print(
        "| target ε | accountant ε (δ=1e-5) | ε_lb (95%) | AUROC before | AUROC after "
        "| calibrated AUROC | zero-shot acc before → after | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for eps in eps_list:
        p = DPFinetuneParams(
            epsilon=eps, steps=steps, n_members=members, n_non_members=members, lr=lr
        )
        t0 = time.perf_counter()
        _, s = run_dp_finetune(model, MitigationContext(seed=0), p)
        acc = f"{s['zero_shot_accuracy_before']:.3f} → {s['zero_shot_accuracy_after']:.3f}"
        e = s["privacy"]["epsilon"]
        print(
            f"| {eps:g} | {'∞' if e is None else f'{e:.2f}'} | "
            f"{s['epsilon_lower_bound']['epsilon_lb']:.2f} | {s['membership_auc_before']:.3f} | "
            f"{s['membership_auc']:.3f} | {s['membership_auc_calibrated']:.3f} | {acc} | "
            f"{time.perf_counter() - t0:.0f} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--eps", default="1,3,8,inf")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--members", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    from vlmtrust.models.loader import load_model

    torch.set_num_threads(a.threads)
    model = load_model("reference:clip", device="cpu")
    if a.sweep:
        sweep(model, [float(x) for x in a.eps.split(",")], a.steps, a.members, a.lr)
    else:
        step_times(model, 8, a.batch, 128)


if __name__ == "__main__":
    main()
