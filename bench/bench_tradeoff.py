"""Bias versus accuracy of the dual-encoder debiasers on one trade-off plot.

Every debiaser (``fairness/projection`` from images and from prompts, ``fairness/pbm`` with a
linear and a zero-shot group predictor, ``fairness/inlp`` at several round counts,
``fairness/sfid`` at two sizes, ``fairness/bendvlm``; the trained ``fairness/prompt_array``,
``fairness/dear`` and ``fairness/resample`` over ``--seeds`` training seeds) is fitted
on SynthWorld people from the fitting world (``seed + FIT_SEED_OFFSET``) and evaluated with
the probes at their defaults on their own worlds (``seed + 1,000,000``): bias =
``fairness/retrieval_skew`` MaxSkew@50 of the group against the prior (600-image gallery, CI
over queries); accuracy = ``capability/zero_shot`` (200 SynthWorld shapes, CI over images);
and, since PBM leaves zero-shot alone and changes only rankings, retrieval precision@50 of
the occupation queries (share of the top 50 showing the queried occupation). Prints a table
and writes ``tradeoff.png`` (matplotlib, DejaVu Sans) into ``--out``. Not part of the tests.

A trained debiaser is fitted once per training seed ``s`` (fitting world ``seed + s +
FIT_SEED_OFFSET``; its checkpoint chosen on that world's validation part) and every fit is
evaluated on the same evaluation world as the base model: the table gives the mean over seeds
and the paired 95% interval (paired t over seeds) of hardened − base; the plot places it at
base + mean difference with that interval.

Usage: ``python bench/bench_tradeoff.py [--out bench-out] [--model reference:clip] [--only sfid]
[--seeds 5]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlmtrust.core.fair_ranking import fair_order
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ProbeResult
from vlmtrust.data.synthworld import OCCUPATIONS, SynthWorld
from vlmtrust.mitigations.fairness._dual import FIT_SEED_OFFSET
from vlmtrust.mitigations.fairness._trained import paired_interval
from vlmtrust.models.loader import load_model
from vlmtrust.probes._data import EVAL_SEED_OFFSET
from vlmtrust.probes.capability.zero_shot import ZeroShot
from vlmtrust.probes.fairness.retrieval_skew import RetrievalSkewProbe
from vlmtrust.runner.engine import evaluate_probe

VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("projection (images, λ=10)", "fairness/projection", {}),
    ("projection (images, λ=0)", "fairness/projection", {"lam": 0.0}),
    ("projection (images, 3 dirs)", "fairness/projection", {"n_directions": 3}),
    ("projection (prompts, λ=10)", "fairness/projection", {"source": "prompts"}),
    ("pbm (linear)", "fairness/pbm", {}),
    ("pbm (zero-shot)", "fairness/pbm", {"predictor": "zero_shot"}),
    ("inlp (1 round)", "fairness/inlp", {"iterations": 1}),
    ("inlp (3 rounds)", "fairness/inlp", {"iterations": 3}),
    ("inlp (≤10 rounds)", "fairness/inlp", {}),
    ("sfid (16 dims)", "fairness/sfid", {}),
    ("sfid (32 dims)", "fairness/sfid", {"n_features": 32}),
    ("bendvlm", "fairness/bendvlm", {}),
]

TRAINED: list[tuple[str, str, dict[str, Any]]] = [
    ("prompt_array", "fairness/prompt_array", {}),
    ("prompt_array (probe queries)", "fairness/prompt_array", {"queries": "probe"}),
    ("prompt_array (joint, Berg)", "fairness/prompt_array", {"adversary": "joint"}),
    ("dear", "fairness/dear", {}),
    ("resample", "fairness/resample", {}),
]
"""Trained debiasers (defaults; the prompt array also fitted on the probe's own queries and with
Berg et al.'s joint adversary), each fitted over ``--seeds`` training seeds."""


class Memo:
    """A model with image embeddings memoised by pixel content (each image embedded once)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self._img: dict[bytes, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        keys = [hashlib.sha1(im.tobytes() + repr(im.size).encode()).digest() for im in images]
        todo = [i for i, k in enumerate(keys) if k not in self._img]
        if todo:
            for i, e in zip(todo, self.base.embed_images([images[i] for i in todo]), strict=True):
                self._img[keys[i]] = np.asarray(e)
        return np.stack([self._img[k] for k in keys])


def metric(res: ProbeResult, name: str, condition: str | None, step: str | None) -> Any:
    """The metric of ``res`` with this key."""
    for m in res.metrics:
        if (m.key.metric, m.key.condition, m.key.step) == (name, condition, step):
            return m
    raise KeyError(f"{res.probe}: no {name} {condition} {step}")


def precision_at(model: Any, seed: int, k: int = 50) -> float:
    """Mean share of the top k (re-ranked for PBM) showing the queried occupation."""
    ppl = SynthWorld(seed=seed + EVAL_SEED_OFFSET).people(600, correlation=0.0, cue_prob=0.5)
    images = [s.image for s in ppl]
    occ = np.asarray([s.attributes["occupation"] for s in ppl])
    img = np.asarray(model.embed_images(images), dtype=np.float64)
    txt = np.asarray(model.embed_texts([f"a photo of a {o}" for o in OCCUPATIONS]))
    scores = txt @ img.T
    if callable(getattr(model, "rank_groups", None)):
        order = fair_order(scores, model.rank_groups(images), model.rank_target)
    else:
        order = np.argsort(-scores, axis=1, kind="stable")
    return float(np.mean([np.mean(occ[order[i, :k]] == o) for i, o in enumerate(OCCUPATIONS)]))


def evaluate(model: Any, seed: int) -> dict[str, float]:
    """MaxSkew@50 (CI), its blind level, zero-shot accuracy (CI) and precision@50."""
    ctx = ProbeContext(seed=seed)
    skew = evaluate_probe(model, RetrievalSkewProbe(), ctx)
    zs = evaluate_probe(model, ZeroShot(), ctx)
    ms = metric(skew, "max_skew", "group:prior", "k=50")
    acc = metric(zs, "accuracy", None, None)
    return {
        "max_skew": ms.value,
        "max_skew_lo": ms.ci_low,
        "max_skew_hi": ms.ci_high,
        "chance": metric(skew, "max_skew_chance", "group:prior", "k=50").value,
        "accuracy": acc.value,
        "accuracy_lo": acc.ci_low,
        "accuracy_hi": acc.ci_high,
        "precision": precision_at(model, seed),
    }


def plot(rows: list[tuple[str, dict[str, float]]], out: Path) -> Path:
    """The trade-off plot: MaxSkew@50 (y, CI bars) against zero-shot accuracy (x, CI bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.family"] = "DejaVu Sans"
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    markers = "os^vDPX*<>h"
    for i, (name, r) in enumerate(rows):
        ax.errorbar(
            r["accuracy"] * 100,
            r["max_skew"],
            xerr=[
                [(r["accuracy"] - r["accuracy_lo"]) * 100],
                [(r["accuracy_hi"] - r["accuracy"]) * 100],
            ],
            yerr=[[r["max_skew"] - r["max_skew_lo"]], [r["max_skew_hi"] - r["max_skew"]]],
            fmt=markers[i % len(markers)],
            markersize=9 if i == 0 else 6,
            mfc="none" if i == 0 else None,
            capsize=3,
            label=f"{name}",
        )
    ax.axhline(rows[0][1]["chance"], color="grey", ls="--", lw=1, label="blind to group (chance)")
    ax.set_xlabel("capability/zero_shot accuracy (%, 95% CI)")
    ax.set_ylabel("retrieval_skew MaxSkew@50, group vs prior (95% CI)")
    ax.set_title("Dual-encoder debiasers on reference:clip: bias vs accuracy")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tradeoff.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def harden(base: Any, name: str, params: dict[str, Any], seed: int, tmp: Path) -> Any:
    """Fit ``name`` with ``params`` at training seed ``seed``; reload it as ``--model`` does."""
    ctx = MitigationContext(seed=seed, out_dir=tmp)
    art = get_mitigation(name)(params).apply(base, ctx)
    payload = json.loads((art.out_dir / "wrapper.json").read_text())
    return get_mitigation(name)(payload["params"]).wrap(base), payload["params"]


def over_seeds(
    base: Any, b: dict[str, float], name: str, params: dict[str, Any], args: Any, tmp: Path
) -> tuple[dict[str, float], str]:
    """Mean over training seeds with paired 95% intervals of the difference to ``b``."""
    runs, epochs = [], []
    for s in range(args.seeds):
        model, fitted = harden(
            base, name, params, args.seed + s, tmp / f"{name}-{s}".replace("/", "_")
        )
        runs.append(evaluate(model, args.seed))
        epochs.append(fitted.get("selected_epoch"))
    row: dict[str, float] = {"chance": b["chance"], "seeds": float(len(runs))}
    for key in ("max_skew", "accuracy", "precision"):
        iv = paired_interval([b[key]] * len(runs), [r[key] for r in runs])
        row[key] = b[key] + iv.mean
        row[f"{key}_lo"] = b[key] + iv.low
        row[f"{key}_hi"] = b[key] + iv.high
        row[f"{key}_diff"] = iv.mean
    return row, f"selected epochs per seed {epochs}"


def main() -> None:
    """Fit every variant, evaluate, print the table, write the plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out", help="folder for tradeoff.png / .json")
    ap.add_argument("--model", default="reference:clip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="run only the variants whose label has this")
    ap.add_argument("--seeds", type=int, default=5, help="training seeds per trained debiaser")
    ap.add_argument("--skip", choices=["", "fixed", "trained"], default="", help="leave a kind out")
    ap.add_argument("--set", default="", help="LABEL:KEY=INT overrides a trained default")
    ap.add_argument(
        "--merge", nargs="*", default=[], help="tradeoff.json files of other runs to plot too"
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = Memo(load_model(args.model))
    print(
        f"fit world seed {args.seed + FIT_SEED_OFFSET}, evaluation world seed "
        f"{args.seed + EVAL_SEED_OFFSET} (disjoint draws)"
    )
    rows = [("none", evaluate(base, args.seed))]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, name, params) in enumerate(VARIANTS):
            if args.only not in label or args.skip == "fixed":
                continue
            ctx = MitigationContext(seed=args.seed, out_dir=Path(tmp) / str(i))
            mit = get_mitigation(name)(params)
            art = mit.apply(base, ctx)
            payload = json.loads((art.out_dir / "wrapper.json").read_text())
            model = get_mitigation(name)(payload["params"]).wrap(base)
            rows.append((label, evaluate(model, args.seed)))
        b = rows[0][1]
        notes = []
        for label, name, params in TRAINED:
            if args.only not in label or args.skip == "trained":
                continue
            if args.set.startswith(f"{label}:"):
                key, value = args.set.split(":", 1)[1].split("=")
                params = {**params, key: int(value)}
                label = f"{label} ({key}={value})"
            row, note = over_seeds(base, b, name, params, args, Path(tmp))
            rows.append((f"{label} ({args.seeds} seeds)", row))
            notes.append(f"{label}: {note}")
            print(label, json.dumps(row), note, flush=True)
    for extra in args.merge:
        rows += [(k, v) for k, v in json.loads(Path(extra).read_text()).items() if k != "none"]
    print(
        f"{'debiaser':30s} {'MaxSkew@50 [95% CI]':>24s} {'Δ%':>6s} {'zero-shot [95% CI]':>22s}"
        f" {'cost pt':>7s} {'prec@50':>7s}"
    )
    for label, r in rows:
        drop = 100 * (1 - r["max_skew"] / b["max_skew"])
        print(
            f"{label:30s} {r['max_skew']:.3f} [{r['max_skew_lo']:.3f}, {r['max_skew_hi']:.3f}]"
            f"     {drop:5.1f} {100 * r['accuracy']:6.1f} [{100 * r['accuracy_lo']:.1f}, "
            f"{100 * r['accuracy_hi']:.1f}] {100 * (b['accuracy'] - r['accuracy']):7.1f} "
            f"{r['precision']:7.3f}"
        )
    print(f"blind-to-group MaxSkew@50 (chance level): {b['chance']:.3f}")
    trained = [(label, r) for label, r in rows if "seeds" in r]
    if trained:
        print("trained debiasers: mean over seeds, hardened − base [paired 95% CI, t over seeds]")
        for label, r in trained:
            ds = [r[k] - b["max_skew"] for k in ("max_skew_diff", "max_skew_lo", "max_skew_hi")]
            ds[0] = r["max_skew_diff"]
            da = [100 * (r[k] - b["accuracy"]) for k in ("accuracy_lo", "accuracy_hi")]
            print(
                f"{label:30s} ΔMaxSkew@50 {ds[0]:+.3f} [{ds[1]:+.3f}, {ds[2]:+.3f}]  "
                f"Δzero-shot {100 * r['accuracy_diff']:+.1f} pt [{da[0]:+.1f}, {da[1]:+.1f}]  "
                f"Δprec@50 {r['precision_diff']:+.3f}"
            )
        for n in notes:
            print(n)
    out = Path(args.out)
    path = plot(rows, out)
    (out / "tradeoff.json").write_text(json.dumps(dict(rows), indent=2) + "\n")
    print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
