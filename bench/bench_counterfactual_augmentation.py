"""``fairness/counterfactual_augmentation`` on reference:vlm against the issue's target.

Fine-tunes reference:vlm with the mitigation's defaults (training sets from
``seed + TRAIN_SEED_OFFSET``) and measures on the probes' held-out world (``seed + 1,000,000``):
``fairness/counterfactual`` (flip rate over its 5 prompts, and the job question alone — the
occupation-by-group gap), ``fairness/generation_bias`` (Cramér's V of job answer × group) and
``capability/vqa``, and the share of held-out people with both occupation cues whose job
answer names their occupation (``job_accuracy_with_cues``: a debiaser must keep those), for
the base model, the fine-tuned one, ``fairness/self_debias`` alone and ``fairness/self_debias``
stacked on the fine-tuned model. The training leaves out every set that shares an image with
these measurements (``held_out`` = ``--n-sets``). CIs are the probes' 95% bootstrap intervals.
Prints one JSON object. Not part of the tests.

Usage: ``python bench/bench_counterfactual_augmentation.py [--seed 0] [--n-sets 24]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.mitigations.fairness.counterfactual_augmentation import _probe_metrics
from vlmtrust.models.loader import load_model

JOB = "What is this person's job?"
KEYS = (
    "flip_rate",
    "flip_rate/job",
    "flip_rate/describe",
    "cramers_v/job",
    "independence_score",
    "accuracy",
)


def cued_job_accuracy(model: Any, n: int, seed: int) -> dict[str, Any]:
    """Share of ``n`` held-out people with both cues whose job answer names their occupation.

    The images are ``fairness/generation_bias``'s at ``cue_prob=1`` (the image decides the
    answer): a debiaser that answers "unclear" to every question about a person loses here.
    """
    from vlmtrust.core.model import GenerateRequest, generate_sync
    from vlmtrust.core.probe import ProbeContext, registry
    from vlmtrust.data.synthworld import OCCUPATIONS
    from vlmtrust.probes.fairness._generative import parse_answer

    pr = registry()["fairness/generation_bias"]({"n": n, "cue_prob": 1.0})
    samples = list(pr.samples(ProbeContext(seed=seed)))
    reqs = [GenerateRequest(JOB, images=(s.pil_images()[0],), max_new_tokens=40) for s in samples]
    gens = generate_sync(model, reqs)
    hits = [
        float(g.ok and parse_answer(g.text, OCCUPATIONS) == s.attributes["occupation"])
        for g, s in zip(gens, samples, strict=True)
    ]
    return {"value": float(np.mean(hits)), "n": len(hits)}


def measure(model: Any, n_sets: int, seed: int) -> dict[str, Any]:
    """The fairness and VQA numbers of one model."""
    out: dict[str, Any] = {"job_accuracy_with_cues": cued_job_accuracy(model, 2 * n_sets, seed)}
    out.update(_probe_metrics("fairness/counterfactual", model, {"n_sets": n_sets}, seed))
    out.update(_probe_metrics("fairness/generation_bias", model, {"n": 2 * n_sets}, seed))
    out.update(_probe_metrics("capability/vqa", model, {"n": 4 * n_sets}, seed))
    return {k: out[k] for k in (*KEYS, "job_accuracy_with_cues") if k in out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-sets", type=int, default=24)
    ap.add_argument("--params", default="{}", help="JSON parameters of the mitigation")
    a = ap.parse_args()
    base = load_model("reference:vlm", device="cpu")
    res: dict[str, Any] = {"seed": a.seed, "n_sets": a.n_sets}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mit = get_mitigation("fairness/counterfactual_augmentation")(
            {"held_out": a.n_sets, **json.loads(a.params), "evaluate": False}
        )
        art = mit.apply(base, MitigationContext(out_dir=Path(tmp) / "cfa", seed=a.seed))
        res["train_seconds"] = round(time.perf_counter() - t0, 1)
        res["training"] = art.summary["training"]
        res["training_set"] = art.summary["training_set"]
        tuned = load_model(art.spec, device="cpu")
        sd = get_mitigation("fairness/self_debias")({})
        res["base"] = measure(base, a.n_sets, a.seed)
        res["counterfactual_augmentation"] = measure(tuned, a.n_sets, a.seed)
        res["self_debias"] = measure(sd.wrap(base), a.n_sets, a.seed)
        res["counterfactual_augmentation+self_debias"] = measure(sd.wrap(tuned), a.n_sets, a.seed)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
