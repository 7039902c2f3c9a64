"""Benchmark: privacy training mitigations on reference:clip, measured by the privacy probes.

Usage:
    python bench/bench_privacy_train.py advreg [--lams 0,1,3,10] [--steps 60] [--members 128]
        privacy/adversarial_regularization's privacy–utility curve over λ: membership AUC of
        the fine-tuning candidates from privacy/membership_inference (threshold attack, with
        its 95% CI) against zero-shot shape accuracy; λ = 0 is the plain fine-tune (control).
    python bench/bench_privacy_train.py dedup [--full]
        dedup → retrain, end to end: write reference:clip's canary mixture (each member
        repeated in the batches), run privacy/dedup on it, retrain from the original and from
        the deduplicated manifest (the quick recipe unless --full) and measure the canary
        membership AUC (privacy/membership_inference) and memorisation (privacy/memorization's
        population precision gap and exposure gap) of both.

Everything on CPU with ``torch.set_num_threads(--threads)``; times are this machine's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _metric(res: Any, name: str, **kw: Any) -> str:
    m = res.metric(name, **kw)
    if m.value is None:
        return "–"
    ci = f" [{m.ci_low:.2f}, {m.ci_high:.2f}]" if m.ci_low is not None else ""
    return f"{m.value:.3f}{ci}"


def candidate_samples(members: Any, held: Any) -> list[Any]:
    """Members (1) and held-out pairs (0) as ``--data`` samples of the membership probe."""
    from vlmtrust.core.sample import ImageRef, Sample

    out = []
    for tag, (ims, caps) in (("1", members), ("0", held)):
        for k, (im, cap) in enumerate(zip(ims, caps, strict=True)):
            out.append(
                Sample(
                    id=f"{tag}-{k}", images=(ImageRef.from_image(im, label=f"{tag}-{k}"),),
                    attributes={"member": tag}, metadata={"caption": cap},
                )
            )  # fmt: skip
    return out


def advreg(
    model: Any, lams: list[float], steps: int, members: int, lr: float, attack_steps: int
) -> None:
    from vlmtrust.core.mitigation import MitigationContext
    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.mitigations.privacy.adversarial_regularization import (
        AdvRegParams,
        advreg_candidates,
        run_adversarial_regularization,
    )
    from vlmtrust.probes.privacy.membership_inference import MembershipInferenceProbe
    from vlmtrust.runner.engine import evaluate_probe

    print(
        "| λ | membership AUC (probe, 95% CI) | calibrated AUC | attack AUC (train) "
        "| zero-shot acc before → after | s |"
    )
    print("|---|---|---|---|---|---|")
    for lam in lams:
        p = AdvRegParams(
            lam=lam, steps=steps, n_members=members, n_reference=members,
            n_non_members=members, lr=lr, attack_steps=attack_steps, batch_size=16,
        )  # fmt: skip
        t0 = time.perf_counter()
        tuned, s = run_adversarial_regularization(model, MitigationContext(seed=0), p)
        secs = time.perf_counter() - t0
        m, _, h = advreg_candidates(p, MitigationContext(seed=0))
        items = candidate_samples(m, h)
        ctx = ProbeContext(data="memory:advreg", datasets=lambda spec, items=items: items)
        fpr = max(0.01, 1.0 / members)  # the probe refuses a rate the held-out set cannot give
        res = evaluate_probe(tuned, MembershipInferenceProbe({"fprs": [fpr]}), ctx)
        acc = f"{s['zero_shot_accuracy_before']:.3f} → {s['zero_shot_accuracy_after']:.3f}"
        print(
            f"| {lam:g} | {_metric(res, 'auc')} | {s['membership_auc_calibrated']:.3f} | "
            f"{s['attack_auc_train']:.3f} | {acc} | {secs:.0f} |",
            flush=True,
        )


def canary_privacy(model_dir: Path) -> dict[str, str]:
    """Canary membership AUC and memorisation of a reference:clip-style model folder."""
    from vlmtrust.models.loader import load_model
    from vlmtrust.probes.privacy.membership_inference import MembershipInferenceProbe
    from vlmtrust.probes.privacy.memorization import MemorizationProbe
    from vlmtrust.runner.engine import evaluate_probe

    model = load_model(f"hf:{model_dir}", device="cpu")
    mi = evaluate_probe(model, MembershipInferenceProbe({"fprs": [0.01], "non_members": 200}))
    mem = evaluate_probe(model, MemorizationProbe())
    return {
        "auc": _metric(mi, "auc"),
        "ppg": _metric(mem, "ppg"),
        "exposure_gap": _metric(mem, "exposure_gap"),
    }


def dedup(full: bool, seed: int) -> None:
    import json

    from vlmtrust.core.mitigation import MitigationContext, get_mitigation
    from vlmtrust.reference.train_clip import FULL, QUICK, train_clip, write_canary_mixture

    recipe = FULL if full else QUICK
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mix = write_canary_mixture(work / "mix", recipe)
        t0 = time.perf_counter()
        art = get_mitigation("privacy/dedup")({}).apply(
            None, MitigationContext(data=str(mix), out_dir=work / "dedup")
        )
        dd_s = time.perf_counter() - t0
        kept = work / "dedup" / "manifest.jsonl"
        n_in = sum(1 for _ in mix.open())
        n_out = sum(1 for _ in kept.open())
        print(f"dedup: {n_in} canary records → {n_out} kept in {dd_s:.1f} s; {art.summary}")
        rows = {}
        for name, manifest in (("before (repeated)", mix), ("after dedup", kept)):
            t0 = time.perf_counter()
            out = train_clip(
                work / name.split()[0], seed=seed, progress=False, recipe=recipe,
                canary_manifest=manifest,
            )  # fmt: skip
            info = json.loads((out / "training.json").read_text())["canary_manifest"]
            rows[name] = {**canary_privacy(out), "s": f"{time.perf_counter() - t0:.0f}", **info}
        print(
            "| training mixture | canary records | membership AUC (95% CI) | PPG | "
            "exposure gap (bits) | s |"
        )
        print("|---|---|---|---|---|---|")
        for name, r in rows.items():
            print(
                f"| {name} | {r['records']} ({r['distinct']} distinct) | {r['auc']} | "
                f"{r['ppg']} | {r['exposure_gap']} | {r['s']} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["advreg", "dedup"])
    ap.add_argument("--lams", default="0,1,3,10")
    ap.add_argument("--attack-steps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--members", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.what == "advreg":
        from vlmtrust.models.loader import load_model

        model = load_model("reference:clip", device="cpu")
        lams = [float(x) for x in a.lams.split(",")]
        advreg(model, lams, a.steps, a.members, a.lr, a.attack_steps)
    else:
        dedup(a.full, a.seed)


if __name__ == "__main__":
    main()
