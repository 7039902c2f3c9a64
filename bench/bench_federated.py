"""Benchmark: federated fine-tuning of reference:clip's image projection head (Flower).

Usage:
    python bench/bench_federated.py                        # K=5, 20 rounds, α ∈ {0.1, 0.5, ∞}
    python bench/bench_federated.py --rounds 10 --clients 10

Task: zero-shot shape classification on SynthWorld under Gaussian noise (severity 5), where the
shipped head is weak; only the image projection head trains, on frozen pooled features.
FedAvg and FedProx (Flower's strategies, in-process) over a Dirichlet(α) split by class,
against centralised fine-tuning of the same head with the same budget (rounds × local
epochs over the union). In round 3 client 1 crashes half-way through its local training: the
round completes with the others and the table says so. Needs pip install 'vlmtrust[federated]'.

Membership inference (``vlmtrust.federated.membership``, the privacy/membership_inference
probe's cosine-threshold attack, its headline, and its loss attack φ): AUC [95% bootstrap CI]
of the federated head and of the centralised one, members = the 300 training images the
clients fine-tuned on, non-members = the 150 held-out ones. DP-FedAvg rows (FedAvg, α = 0.5;
extra privacy-train = opacus): each client runs DP-SGD calibrated to ``--dp-epsilons`` over
the run (δ = 1e-5); ``inf`` is the non-private control.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--alphas", default="0.1,0.5,inf")
    ap.add_argument("--dp-epsilons", default="inf,8", help="DP-FedAvg ε targets ('' = none)")
    args = ap.parse_args()

    from vlmtrust.federated.fedtune import clip_head_task, federated_finetune
    from vlmtrust.federated.membership import federated_membership
    from vlmtrust.models.loader import load_model

    task = clip_head_task(load_model("reference:clip"))
    print(
        f"reference:clip head, {len(task.train_y)} train / {len(task.test_y)} test images, "
        f"K={args.clients}, {args.rounds} rounds x 1 local epoch; crash: round 3, client 1"
    )
    print(
        f"{'alpha':>6} {'strategy':<8} {'initial':>8} {'final':>7} {'central':>8} "
        f"{'rounds to 95%':>14} {'KB/round':>9} {'MIA thr fed':>20} {'thr central':>20} "
        f"{'MIA loss fed':>20} {'loss central':>20} {'s':>6}  crashes"
    )
    for a in (float(x) for x in args.alphas.split(",")):
        for strategy in ("fedavg", "fedprox"):
            t = time.perf_counter()
            r = federated_finetune(
                task, n_clients=args.clients, alpha=a, strategy=strategy,  # type: ignore[arg-type]
                rounds=args.rounds, crash={3: [1]},
            )  # fmt: skip
            m = federated_membership(task, r)
            reached = r.rounds_to(0.95)
            crashes = ", ".join(
                f"round {rd}: client {c} ({len(r.rounds[rd - 1].completed)} others completed)"
                for rd, c in r.crashes
            )
            print(
                f"{'∞' if math.isinf(a) else a:>6} {strategy:<8} {r.initial:>8.3f} "
                f"{r.final:>7.3f} {r.centralised:>8.3f} "
                f"{'never' if reached is None else reached:>14} {r.bytes_per_round / 1e3:>9.0f} "
                f"{_aucs(m)} {time.perf_counter() - t:>6.1f}  {crashes}"
            )
    eps_list = [float(x) for x in args.dp_epsilons.split(",") if x.strip()]
    if not eps_list:
        return
    print("\nDP-FedAvg (FedAvg, alpha 0.5, per-client DP-SGD, clip 1.0, delta 1e-5)")
    print(
        f"{'target eps':>10} {'final':>7} {'central':>8} {'MIA thr fed':>20} "
        f"{'thr central':>20} {'MIA loss fed':>20} {'loss central':>20} {'noise sigma':>12} "
        f"{'eps spent per client':<40} {'s':>6}"
    )
    for eps in eps_list:
        t = time.perf_counter()
        r = federated_finetune(
            task, n_clients=args.clients, alpha=0.5, rounds=args.rounds, crash={3: [1]},
            dp_epsilon=None if math.isinf(eps) else eps, dp_delta=1e-5,
        )  # fmt: skip
        m = federated_membership(task, r)
        sig = (
            "-"
            if r.dp is None
            else f"{min(r.dp.noise_multipliers.values()):.2f}-"
            + (f"{max(r.dp.noise_multipliers.values()):.2f}")
        )
        spent = ", ".join(f"{v:.2f}" for v in r.epsilon.values()) or "-"
        print(
            f"{'∞' if math.isinf(eps) else eps:>10} {r.final:>7.3f} {r.centralised:>8.3f} "
            f"{_aucs(m)} {sig:>12} "
            f"{spent:<40} {time.perf_counter() - t:>6.1f}"
        )


def _aucs(m: Any) -> str:
    """Threshold and loss attack AUCs of the federated and the centralised head."""
    return " ".join(
        f"{_auc(side.get('auc', attack)):>20}"
        for attack in ("threshold", "loss")
        for side in (m.federated, m.centralised)
    )


def _auc(m: object) -> str:
    v, lo, hi = (getattr(m, k) for k in ("value", "ci_low", "ci_high"))
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


if __name__ == "__main__":
    main()
