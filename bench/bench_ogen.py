"""``robustness/ogen`` on reference:clip: OOD AUROC on held-out shapes and zero-shot accuracy.

For each seed, trains the adapter twice with the mitigation's defaults — plain fine-tuning
(``synthesis=false``) and OGEN (``synthesis=true``) — on SynthWorld ID shapes from the
mitigation's training stream, and measures the base model and both adapters with
``robustness/ood_detection`` (ID shapes vs the held-out shapes, which no training sees; AUROC
of MCM, MaxLogit, Energy) and ``capability/zero_shot``, all at the same probe seed. Prints one
JSON object (per seed and the mean ± sd over seeds). Not part of the tests.

Usage: ``python bench/bench_ogen.py [--seeds 0 1 2 3 4] [--n 200] [--params '{...}']``.
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

KEYS = ("auroc/mcm", "auroc/max_logit", "auroc/energy", "fpr95/mcm")


def measure(model: Any, n: int, seed: int) -> dict[str, float]:
    """OOD AUROCs (ID vs held-out shapes) and zero-shot accuracy of one model."""
    ctx = ProbeContext(seed=seed)
    ood = evaluate_probe(model, get_probe("robustness/ood_detection")({"n_id": n, "n_ood": n}), ctx)
    zs = evaluate_probe(model, get_probe("capability/zero_shot")({"n": n}), ctx)
    out = {k: float(ood.metric(k).value or 0.0) for k in KEYS}
    out["zero_shot_accuracy"] = float(zs.metric("accuracy").value or 0.0)
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=200, help="ID and OOD images per probe")
    ap.add_argument("--params", default="{}", help="JSON parameters of the mitigation")
    a = ap.parse_args()
    base = load_model("reference:clip", device="cpu")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            row: dict[str, Any] = {"seed": seed, "base": measure(base, a.n, seed)}
            for label, synthesis in (("plain", False), ("ogen", True)):
                t0 = time.perf_counter()
                art = get_mitigation("robustness/ogen")(
                    {**json.loads(a.params), "synthesis": synthesis}
                ).apply(base, MitigationContext(out_dir=Path(tmp) / f"{label}{seed}", seed=seed))
                row[f"{label}_train_seconds"] = round(time.perf_counter() - t0, 1)
                row[label] = measure(load_model(art.spec), a.n, seed)
            rows.append(row)
    summary = {
        label: {
            k: f"{statistics.mean(r[label][k] for r in rows):.3f} ± "
            f"{statistics.stdev(r[label][k] for r in rows) if len(rows) > 1 else 0.0:.3f}"
            for k in (*KEYS, "zero_shot_accuracy")
        }
        for label in ("base", "plain", "ogen")
    }
    print(json.dumps({"n": a.n, "params": json.loads(a.params), "seeds": rows, "mean_sd": summary},
                     indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
