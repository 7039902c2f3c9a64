"""Build a reference model: train, measure its planted flaws, write the card and manifest.

Run as ``python -m vlmtrust.reference.build clip|vlm [--seed N] [--out DIR] [--quick]``
(the CLI's ``vlmtrust reference train NAME`` calls :func:`vlmtrust.reference.train`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from vlmtrust.core.errors import InputError, ModelSpecError
from vlmtrust.models.reference import (
    REFERENCE_MODELS,
    clear_verification_cache,
    models_root,
    reference_path,
)
from vlmtrust.reference._common import write_manifest
from vlmtrust.reference.cards import render_card

VLM_TOWER_SEED = 0
"""Seed of the reference:clip whose pre-fragility tower the shipped reference:vlm starts from."""


def build(
    name: str,
    *,
    seed: int = 0,
    out_dir: Path | None = None,
    quick: bool = False,
    progress: bool = True,
    evaluate: bool | None = None,
    clip_dir: Path | None = None,
    fragility: bool = True,
    canary_manifest: Path | None = None,
) -> Path:
    """Train reference model ``name`` from scratch and write a verified model directory.

    Args:
        name: ``"clip"`` or ``"vlm"``.
        seed: training seed (same seed, same thread count -> same weights on CPU).
        out_dir: where to write; default: the shipped location inside the package.
        quick: reduced model and schedule (tests); not evaluated unless ``evaluate=True``.
        progress: show a rich progress bar.
        evaluate: measure the flaws and write ``metrics.json`` + ``MODEL_CARD.md``
            (default: ``not quick``).
        clip_dir: reference:clip directory for the VLM's vision tower (default: reference:clip
            retrained without its fragility stage, as the shipped VLM; ``quick``: the shipped
            reference:clip).
        fragility: clip only: run the fragility stage (``False``: the tower reference:vlm
            starts from).
        canary_manifest: clip only: the batches' canary slots come from this manifest
            (:func:`~vlmtrust.reference.train_clip.train_clip`), e.g. a ``privacy/dedup``
            output of :func:`~vlmtrust.reference.train_clip.write_canary_mixture`'s file.

    Returns:
        The written directory (with ``MANIFEST.json``).
    """
    key = name.strip().lower()
    if key not in REFERENCE_MODELS:
        known = ", ".join(REFERENCE_MODELS)
        raise ModelSpecError(f"unknown reference model {name!r}; known: {known}")
    if seed < 0:
        raise InputError(f"--seed {seed} is invalid: use an integer >= 0")
    target = Path(out_dir) if out_dir is not None else models_root() / key
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(target.parent, os.W_OK):
        raise InputError(f"cannot write {target.parent}; pass out_dir= a writable directory")
    if key != "clip" and not fragility:
        raise InputError(
            f"--no-fragility applies to reference:clip only; drop it for reference:{key} (its "
            "tower is already reference:clip's before the fragility stage)"
        )
    if key != "clip" and canary_manifest is not None:
        raise InputError(
            f"--canary-manifest applies to reference:clip only; drop it for reference:{key}"
        )
    do_eval = (not quick) if evaluate is None else evaluate
    work = Path(tempfile.mkdtemp(prefix=f".{key}-build-", dir=target.parent))
    stage1: Path | None = None
    try:
        if key == "clip":
            from vlmtrust.reference.train_clip import FULL, QUICK, train_clip

            base = QUICK if quick else FULL
            recipe = base if fragility else replace(base, fragility_steps=0)
            train_clip(
                work, seed=seed, quick=quick, progress=progress, recipe=recipe,
                canary_manifest=canary_manifest,
            )  # fmt: skip
        else:
            from vlmtrust.reference.train_vlm import train_vlm

            if clip_dir is not None:
                cdir = Path(clip_dir)
            elif quick:
                cdir = reference_path("clip")
            else:
                # The shipped reference:vlm starts from reference:clip's tower as it was
                # before the fragility stage (a CLIP-only planted flaw): retrain that stage.
                from vlmtrust.reference.train_clip import FULL, train_clip

                cdir = Path(tempfile.mkdtemp(prefix=".clip-stage1-", dir=target.parent))
                stage1 = cdir
                train_clip(
                    cdir, seed=VLM_TOWER_SEED, progress=progress,
                    recipe=replace(FULL, fragility_steps=0),
                )  # fmt: skip
            train_vlm(work, clip_dir=cdir, seed=seed, quick=quick, progress=progress)
        finalize(key, work, evaluate=do_eval)
        # mkdtemp and save_pretrained create owner-only modes; shipped files must be readable
        work.chmod(0o755)
        for f in work.iterdir():
            f.chmod(0o644)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
        if stage1 is not None:
            shutil.rmtree(stage1, ignore_errors=True)
    clear_verification_cache()
    return target


def finalize(name: str, model_dir: Path, *, evaluate: bool = True) -> Path:
    """Measure a trained model (``metrics.json``), render ``MODEL_CARD.md``, write the manifest.

    With ``evaluate=False`` an existing ``metrics.json`` is kept and the card re-rendered.
    """
    model_dir = Path(model_dir)
    if evaluate:
        metrics: dict[str, Any]
        if name == "clip":
            from vlmtrust.reference.train_clip import evaluate_clip

            metrics = evaluate_clip(model_dir)
        else:
            from vlmtrust.reference.train_vlm import evaluate_vlm

            metrics = evaluate_vlm(model_dir)
        text = json.dumps(metrics, indent=2, sort_keys=True) + "\n"
        (model_dir / "metrics.json").write_text(text)
    if (model_dir / "metrics.json").is_file():
        metrics = json.loads((model_dir / "metrics.json").read_text())
        info = json.loads((model_dir / "training.json").read_text())
        (model_dir / "MODEL_CARD.md").write_text(render_card(name, metrics, info))
    write_manifest(model_dir)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m vlmtrust.reference.build``)."""
    ap = argparse.ArgumentParser(description="Train a vlmtrust reference model from scratch.")
    ap.add_argument("name", choices=sorted(REFERENCE_MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clip-dir", type=Path, default=None)
    ap.add_argument("--no-fragility", action="store_true", help="clip: skip the fragility stage")
    args = ap.parse_args(argv)
    path = build(
        args.name, seed=args.seed, out_dir=args.out, quick=args.quick, clip_dir=args.clip_dir,
        fragility=not args.no_fragility,
    )  # fmt: skip
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
