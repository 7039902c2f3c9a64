"""``robustness/in_context`` on reference:vlm: style-shift VQA before and after, both layouts.

Measures ``robustness/style_shift`` (generative: the shape question, ``--n`` scenes, severity
``--severity``, probe seed ``--seed``) on the unwrapped model and on the wrapper in each layout
(``multi_image``: the k example images and the query as separate images; ``composite``: one grid
image), on the same scenes. Prints one JSON object: per variant the clean and mean style
accuracy with 95% bootstrap CIs, and the paired difference to the unwrapped model (mean style
accuracy; bootstrap over clean scenes, every style of a scene resampled together).
``--interleaved`` adds :mod:`bench_in_context_interleaved`'s fine-tune (a copy of reference:vlm
trained on in-context episodes, in a temporary directory) and the same measurement on that copy
without and with the wrapper. Not part of the tests.

Usage: ``python bench/bench_in_context.py [--k 3] [--n 24] [--interleaved]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmtrust.core.mitigation import get_mitigation
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.core.results import Record
from vlmtrust.core.stats import bootstrap_ci
from vlmtrust.runner.engine import RecordWriter, evaluate_probe


def style_records(model: Any, n: int, severity: int, seed: int, tmp: Path) -> list[Record]:
    """``robustness/style_shift``'s records of ``model`` (every style at ``severity``)."""
    path = tmp / f"records-{time.monotonic_ns()}.jsonl"
    writer = RecordWriter(path)
    probe = get_probe("robustness/style_shift")({"n": n, "severities": [severity]})
    evaluate_probe(model, probe, ProbeContext(seed=seed), writer=writer)
    writer.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Record.model_validate_json(line) for line in lines]


def per_scene(records: Sequence[Record]) -> tuple[dict[str, float], dict[str, float]]:
    """``(clean, mean style)`` correctness per clean scene (``base`` attribute)."""
    clean: dict[str, float] = {}
    styled: dict[str, list[float]] = defaultdict(list)
    for r in records:
        ok = float(r.scores.get("correct") or 0.0)
        if r.attributes["style"] == "none":
            clean[r.attributes["base"]] = ok
        else:
            styled[r.attributes["base"]].append(ok)
    return clean, {k: statistics.mean(v) for k, v in styled.items()}


def _mean(x: Any) -> float:
    return float(np.mean(x))


def summary(records: Sequence[Record], before: Sequence[Record] | None = None) -> dict[str, Any]:
    """Clean and mean style accuracy with CIs; with ``before``, the paired style difference."""
    clean, styled = per_scene(records)
    keys = sorted(styled)
    out: dict[str, Any] = {}
    for name, values in (("clean", clean), ("mean_style", styled)):
        v = [values[k] for k in keys]
        lo, hi = bootstrap_ci(_mean, v)
        out[name] = {"value": round(_mean(v), 3), "ci": [round(lo or 0, 3), round(hi or 0, 3)]}
    if before is not None:
        _, base = per_scene(before)
        diff = [styled[k] - base[k] for k in keys]
        lo, hi = bootstrap_ci(_mean, diff)
        out["paired_style_gain"] = {
            "value": round(_mean(diff), 3),
            "ci": [round(lo or 0, 3), round(hi or 0, 3)],
        }
    return out


def before_after(
    model: Any, params: dict[str, Any], layouts: Sequence[str], a: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """``model`` unwrapped and wrapped in each layout, on the same style-shift scenes."""
    before = style_records(model, a.n, a.severity, a.seed, tmp)
    out: dict[str, Any] = {"unwrapped": summary(before)}
    for layout in layouts:
        wrapped = get_mitigation("robustness/in_context")({**params, "layout": layout}).wrap(model)
        out[layout] = summary(style_records(wrapped, a.n, a.severity, a.seed, tmp), before)
    return out


def main() -> None:
    import torch

    from vlmtrust.models.loader import load_model

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=3, help="examples per request")
    ap.add_argument("--n", type=int, default=24, help="clean scenes (each in every style)")
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="probe seed")
    ap.add_argument("--params", default="{}", help="JSON parameters of the wrapper")
    ap.add_argument("--interleaved", action="store_true", help="also the fine-tuned copy")
    ap.add_argument("--steps", type=int, default=600, help="fine-tune steps (--interleaved)")
    a = ap.parse_args()
    params = {"k": a.k, **json.loads(a.params)}
    report: dict[str, Any] = {"params": params, "n": a.n, "severity": a.severity, "seed": a.seed}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        t0 = time.perf_counter()
        ref = load_model("reference:vlm", device="cpu")
        report["reference:vlm"] = before_after(ref, params, ("multi_image", "composite"), a, tmp)
        report["reference_seconds"] = round(time.perf_counter() - t0, 1)
        if a.interleaved:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_in_context_interleaved import finetune_copy

            t0 = time.perf_counter()
            copy_dir, train_info = finetune_copy(tmp / "copy", k=a.k, steps=a.steps)
            report["finetune"] = {**train_info, "seconds": round(time.perf_counter() - t0, 1)}
            copy = load_model(f"hf:{copy_dir}", device="cpu")
            report["interleaved_copy"] = before_after(copy, params, ("multi_image",), a, tmp)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
