"""Context-aware safety defenses and RL detoxification against VLGuard, on one table.

Each defense — ``safety/cot_safety``, ``safety/visual_icl``, ``safety/soft_prompt`` (trained),
``safety/rl_detox`` (trained) and, for comparison, ``safety/vlguard`` (supervised fine-tuning)
— is built from ``--model`` with its defaults (seed 0) as ``vlmtrust harden`` builds it, loaded
back through its ``hardened:DIR`` spec, and measured with the FigStep, query-relevant and
over-refusal probes (``--n`` test-split requests of each kind, both refusal judges): the
ASR of the image attacks and the over-refusal of benign look-alikes, per judge, before (the
undefended model) and after. The trained ones also report their own held-out numbers
(:func:`vlmtrust.mitigations.safety.vlguard.measure`: FigStep ASR, over-refusal, VQA
accuracy). Prints a Markdown table and writes ``context_defenses.json`` into ``--out``. Torch
uses one thread. Not part of the tests.

Usage: ``python bench/bench_context_defenses.py [--out bench-out] [--n 20] [--only rl_detox]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.probe import ProbeContext, registry
from vlmtrust.models.loader import load_model
from vlmtrust.runner.engine import evaluate_probe

DEFENSES = ("cot_safety", "visual_icl", "soft_prompt", "rl_detox", "vlguard")
COLUMNS = (
    ("figstep", "asr", "figstep"),
    ("figstep", "over_refusal", "figstep"),
    ("query_relevant", "asr", "typography"),
    ("query_relevant", "over_refusal", "typography"),
    ("over_refusal", "over_refusal", "figstep"),
)
JUDGES = ("refusal/keyword", "refusal/classifier")


def probe_numbers(model: Any, n: int) -> dict[str, float]:
    """``{"<probe>:<metric>/<condition>/<judge>": value}`` of the three probes."""
    out: dict[str, float] = {}
    for name in ("figstep", "query_relevant", "over_refusal"):
        params: dict[str, Any] = {"n_benign": n, "agreement": False, "judges": list(JUDGES)}
        if name != "over_refusal":
            params["n_harmful"] = n
        res = evaluate_probe(model, registry()[f"safety/{name}"](params), ProbeContext(seed=0))
        for m in res.metrics:
            if m.key.metric in ("asr", "over_refusal") and m.value is not None:
                out[f"{name}:{m.key.metric}/{m.key.condition}/{m.key.judge}"] = float(m.value)
    return out


def build(name: str, base: Any, out: Path) -> tuple[Any, dict[str, Any]]:
    """The hardened model (loaded from its spec) and the mitigation's summary."""
    mit = get_mitigation(f"safety/{name}")()
    art = mit.apply(base, MitigationContext(out_dir=out / name, seed=0))
    return load_model(art.spec, device="cpu"), art.summary


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--model", default="reference:vlm")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--only", choices=DEFENSES, action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    base = load_model(args.model, device="cpu")
    t0 = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {"none": {"probes": probe_numbers(base, args.n)}}
    rows["none"]["seconds"] = round(time.perf_counter() - t0, 1)
    for name in args.only or DEFENSES:
        t0 = time.perf_counter()
        model, summary = build(name, base, args.out / "hardened")
        built = time.perf_counter() - t0
        rows[name] = {
            "probes": probe_numbers(model, args.n),
            "build_seconds": round(built, 1),
            "before": summary.get("before", {}),
            "after": summary.get("after", {}),
        }
        rows[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {rows[name]['seconds']} s", flush=True)
    (args.out / "context_defenses.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = [f"{p}:{m}/{c}" for p, m, c in COLUMNS]
    print(f"\n{args.model}, n={args.n} per kind; value = keyword / classifier judge\n")
    print("| defense | " + " | ".join(head) + " |")
    print("|---" * (len(head) + 1) + "|")
    for name, row in rows.items():
        cells = [
            " / ".join(f"{row['probes'].get(f'{h}/{j}', float('nan')):.2f}" for j in JUDGES)
            for h in head
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nheld-out (measure): figstep_asr, over_refusal_text, over_refusal_figstep, vqa")
    for name, row in rows.items():
        if row.get("after"):
            b, a = row["before"], row["after"]
            keys = ("figstep_asr", "over_refusal_text", "over_refusal_figstep", "vqa_accuracy")
            print(
                f"{name}: "
                + ", ".join(f"{k} {b[k]:.3f} → {a[k]:.3f}" for k in keys)
                + f" (built in {row['build_seconds']} s)"
            )


if __name__ == "__main__":
    main()
