"""Engine PGD vs ART's ProjectedGradientDescentPyTorch on the same model, batch and protocol.

Protocol (issue 4): L∞, same ε, step ε/4, same iterations, no random start; zero-shot
cross-entropy on reference:clip (or a tiny random CLIP when the reference model is not
shipped yet). Prints both robust accuracies, their difference (must be within 2 points) and the
time ratio ART / engine measured side by side in this run (target ≥ 2×). The engine is timed
twice: with the identical fixed-iteration protocol, and with its per-sample early stop (how
``robustness/adversarial`` runs it: a sample stops once misclassified).

``--ablate`` also times the engine (fixed iterations, 2/255) with each CPU rewrite of
``vlmtrust.attacks.fastpath`` switched off in turn, side by side with all of them on.

Run: ``python bench/bench_pgd.py [--n 256] [--steps 10] [--threads 1] [--ablate]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _model(spec: str | None) -> tuple[object, str]:
    from vlmtrust.models.loader import load_model

    if spec:
        return load_model(spec), spec
    import vlmtrust

    if (Path(vlmtrust.__file__).parent / "reference" / "models" / "clip").is_dir():
        return load_model("reference:clip"), "reference:clip"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_tiny_clip  # type: ignore[import-not-found]

    d = Path(tempfile.mkdtemp()) / "tiny_clip"
    build_tiny_clip(d)
    return load_model(f"hf:{d}"), "tiny random CLIP (reference:clip not shipped yet)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="dual encoder spec (default reference:clip)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", default="1,2,4", help="budgets in 1/255 units")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (best of)")
    ap.add_argument("--ablate", action="store_true", help="time each fast-path rewrite's share")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from vlmtrust.attacks.pgd import AttackConfig, art_pgd_attack, attack, zero_shot_ce
    from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld

    model, name = _model(args.model)
    world = SynthWorld(seed=4242)
    samples = world.shapes(args.n)
    classes = list(ID_SHAPES)
    y = torch.tensor([classes.index(str(s.attributes["shape"])) for s in samples])
    x = model.to_pixels([s.image for s in samples])  # type: ignore[attr-defined]
    text = model.text_features([f"a photo of a {c}" for c in classes])  # type: ignore[attr-defined]
    scale = float(model.logit_scale)  # type: ignore[attr-defined]

    def acc(px: torch.Tensor) -> float:
        with torch.no_grad():
            pred = (model.image_features(px) @ text.T).argmax(1)  # type: ignore[attr-defined]
        return float((pred == y).float().mean())

    def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        best, out = float("inf"), torch.empty(0)
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        return out, best

    print(f"model: {name}; n={args.n}; steps={args.steps}; threads={args.threads}")
    print(f"clean accuracy: {acc(x):.4f}")
    header = (
        f"{'eps':>8} {'engine':>8} {'ART':>8} {'diff':>7} {'t_eng':>8} {'t_eng_es':>8} "
        f"{'t_ART':>8} {'ART/eng':>8} {'ART/eng_es':>10}"
    )
    print(header)
    worst = 0.0
    totals = [0.0, 0.0, 0.0]
    for e in (float(v) for v in args.eps.split(",")):
        eps = e / 255
        cfg = AttackConfig(
            eps=eps, step=eps / 4, steps=args.steps, random_start=False, keep_best=False
        )
        es_cfg = AttackConfig(
            eps=eps, step=eps / 4, steps=args.steps, random_start=False, early_stop=True
        )
        obj = zero_shot_ce(model, text, y, scale)
        ours, t_eng = timed(lambda: attack(obj, x, cfg).pixels)  # noqa: B023
        ours_es, t_es = timed(lambda: attack(obj, x, es_cfg).pixels)  # noqa: B023
        theirs, t_art = timed(
            lambda: art_pgd_attack(model, text, scale, x, y, cfg, batch_size=args.n)  # noqa: B023
        )
        a_eng, a_es, a_art = acc(ours), acc(ours_es), acc(theirs)
        diff = 100 * (a_eng - a_art)
        worst = max(worst, abs(diff), abs(100 * (a_es - a_art)))
        totals = [t + d for t, d in zip(totals, (t_eng, t_es, t_art), strict=True)]
        print(
            f"{e:>6g}/255 {a_eng:8.4f} {a_art:8.4f} {diff:+6.2f}p {t_eng:8.3f} {t_es:8.3f} "
            f"{t_art:8.3f} {t_art / t_eng:7.2f}x {t_art / t_es:9.2f}x"
        )
        if abs(a_es - a_eng) > 0:
            print(f"{'':>10} (engine with early stop: robust accuracy {a_es:.4f})")
    print(
        f"max |engine − ART| = {worst:.2f} points (must be ≤ 2): {'OK' if worst <= 2 else 'FAIL'}"
    )
    if args.ablate:
        from vlmtrust.attacks import fastpath

        cfg = AttackConfig(
            eps=2 / 255, step=0.5 / 255, steps=args.steps, random_start=False, keep_best=False
        )
        obj = zero_shot_ce(model, text, y, scale)
        base = timed(lambda: attack(obj, x, cfg).pixels)[1]
        print(f"\nablation at 2/255, fixed iterations: all rewrites on {base:.3f}s")
        for name in list(fastpath.ENABLED):
            fastpath.ENABLED[name] = False
            try:
                t_off = timed(lambda: attack(obj, x, cfg).pixels)[1]  # noqa: B023
            finally:
                fastpath.ENABLED[name] = True
            print(f"  without {name:<20} {t_off:.3f}s  ({t_off / base:.2f}x the time)")
        fastpath.ENABLED.update(dict.fromkeys(fastpath.ENABLED, False))
        try:
            t_none = timed(lambda: attack(obj, x, cfg).pixels)[1]
        finally:
            fastpath.ENABLED.update(dict.fromkeys(fastpath.ENABLED, True))
        print(f"  without any rewrite         {t_none:.3f}s  ({t_none / base:.2f}x the time)")
    fixed, es = totals[2] / totals[0], totals[2] / totals[1]
    print(
        f"speed ART/engine over all ε: {fixed:.2f}x (fixed iterations), {es:.2f}x (early stop, "
        f"as the probe runs it); target ≥ 2x at fixed iterations: {'OK' if fixed >= 2 else 'BELOW'}"
    )


if __name__ == "__main__":
    main()
