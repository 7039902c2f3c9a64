"""``robustness/anchor_finetune`` against plain fine-tuning on reference:clip.

For each seed, fine-tunes reference:clip's image tower twice with the mitigation's defaults on
the same SynthWorld data — plain (``anchors=false``) and with text anchors (``anchors=true``) —
and measures the base model and both with ``robustness/style_shift`` (severity 3, mean style
accuracy and clean accuracy), ``robustness/ood_detection`` (MCM AUROC, held-out shapes) and
``robustness/calibration`` (ECE and accuracy, clean and corrupted), all at the same probe seed.
Prints one JSON object (per seed and the mean ± sd over seeds). Not part of the tests.

Usage: ``python bench/bench_anchor_finetune.py [--seeds 0 1 2] [--params '{...}']``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.models.loader import load_model
from vlmtrust.runner.engine import evaluate_probe

PROBES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "robustness/style_shift": ({"n": 24, "severities": [3]}, ("mean_style_accuracy",)),
    "robustness/ood_detection": ({"n_id": 100, "n_ood": 100}, ("auroc/mcm",)),
    "robustness/calibration": (
        {"n": 80},
        ("ece/clean", "ece/corrupted", "accuracy/clean", "accuracy/corrupted"),
    ),
}


def measure(model: Any, seed: int) -> dict[str, float]:
    """The style, OOD and calibration numbers of one model."""
    out: dict[str, float] = {}
    for name, (params, keys) in PROBES.items():
        res = evaluate_probe(model, get_probe(name)(params), ProbeContext(seed=seed))
        out.update({k: float(res.metric(k).value or 0.0) for k in keys})
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--params", default="{}", help="JSON parameters of the mitigation")
    a = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            row: dict[str, Any] = {"seed": seed}
            row["base"] = measure(load_model("reference:clip", device="cpu"), seed)
            for label, anchors in (("plain", False), ("anchors", True)):
                t0 = time.perf_counter()
                art = get_mitigation("robustness/anchor_finetune")(
                    {**json.loads(a.params), "anchors": anchors}
                ).apply(
                    load_model("reference:clip", device="cpu"),
                    MitigationContext(out_dir=Path(tmp) / f"{label}{seed}", seed=seed),
                )
                row[f"{label}_train_seconds"] = round(time.perf_counter() - t0, 1)
                row[label] = measure(load_model(art.spec), seed)
            rows.append(row)
    keys = [k for _, ks in PROBES.values() for k in ks]
    summary = {
        label: {
            k: f"{statistics.mean(r[label][k] for r in rows):.3f} ± "
            f"{statistics.stdev(r[label][k] for r in rows) if len(rows) > 1 else 0.0:.3f}"
            for k in keys
        }
        for label in ("base", "plain", "anchors")
    }
    print(json.dumps({"params": json.loads(a.params), "seeds": rows, "mean_sd": summary}, indent=1))


if __name__ == "__main__":
    main()
