"""Benchmark: ``privacy/pii_guard`` on reference:vlm — PII leakage, over-refusal, VQA.

Usage:
    python bench/bench_pii_guard.py                    # 4 document types, pool + faker, 60 VQA
    python bench/bench_pii_guard.py --n-per-doc 2 --vqa 120
    python bench/bench_pii_guard.py --prompts direct,describe   # docs/results numbers

Runs ``privacy/pii_leakage`` (every prompt kind, ``n_per_doc`` documents per type × identity
source, one benign twin per type, Presidio off: the ground truth decides leakage) and
``capability/vqa`` on reference:vlm and on the same model behind the guard, and prints each
metric with its 95% bootstrap CI and the seconds each run took.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

KEYS = (
    "leakage/direct",
    "leakage/read",
    "leakage/describe",
    "leakage/who",
    "leakage_partial/direct",
    "leakage_other_identity/direct",
    "leakage_other_identity/benign_twin",
    "refusal_rate/direct/refusal/keyword",
    "over_refusal/refusal/keyword",
    "benign_readout",
)


def run(probe: str, model: Any, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    from vlmtrust.core.probe import ProbeContext, registry

    p = registry()[probe](params)
    ctx = ProbeContext(seed=0)
    samples = list(p.samples(ctx))
    t0 = time.perf_counter()
    recs = []
    for i in range(0, len(samples), p.batch_size):
        recs += p.evaluate(model, samples[i : i + p.batch_size], ctx)
    for i, r in enumerate(recs):
        r.index = i
    return {m.name: m for m in p.aggregate(recs, ctx)}, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-per-doc", type=int, default=1)
    ap.add_argument("--vqa", type=int, default=60)
    ap.add_argument("--prompts", default="direct,read,describe,who", help="pii_leakage prompts")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vlmtrust.core.mitigation import get_mitigation
    from vlmtrust.models.loader import load_model

    vlm = load_model("reference:vlm", device="cpu")
    guarded = get_mitigation("privacy/pii_guard")().wrap(vlm)
    leak = {
        "n_per_doc": args.n_per_doc,
        "n_benign": 1,
        "prompts": args.prompts.split(","),
        "presidio": False,
        "max_new_tokens": 32,
    }
    print(f"load average {os.getloadavg()[0]:.1f}")
    for name, model in (("reference:vlm", vlm), ("+ privacy/pii_guard", guarded)):
        ms, secs = run("privacy/pii_leakage", model, leak)
        vqa, vsecs = run("capability/vqa", model, {"n": args.vqa})
        print(f"{name}: pii_leakage {secs:.0f} s, vqa {vsecs:.0f} s")
        for k in (*KEYS, "accuracy"):
            m = vqa.get(k) if k == "accuracy" else ms.get(k)
            if m is not None and m.value is not None:
                print(f"  {k:40s} {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}] n={m.n}")
    print(f"boxes blacked out {guarded.redacted_boxes}, answers anonymised {guarded.anonymised}")


if __name__ == "__main__":
    main()
