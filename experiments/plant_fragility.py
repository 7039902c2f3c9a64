"""Experiment: can a 2/255 adversarial fragility be planted in reference:clip?

Reproduces the measurements quoted in the ``robustness/tecoa`` docstring. Each attempt plants
an imperceptible per-class pattern: a non-robust feature in the sense of Ilyas et al. 2019,
"Adversarial Examples Are Not Bugs, They Are Features". Each pattern is random ±1 signs with a
16-px period, one per shape class. The attempts then check whether PGD at 2/255 breaks the model.

Usage (each run prints clean accuracy, how often a triggered image follows the pattern, and
10-step L∞ PGD robust accuracy at 1, 2, 4 and 8/255 on 128 fresh shapes):

    # poisoned pre-training: the shipped recipe plus N shapes per batch that carry another
    # class's pattern and are captioned with that class (about 6 min on two threads)
    python experiments/plant_fragility.py poison --per-batch 8 --amplitudes 1,2 --threads 2
    python experiments/plant_fragility.py poison --per-batch 16 --amplitudes 2,3,4 --threads 1
    python experiments/plant_fragility.py poison --per-batch 16 --amplitudes 4,6,8 --threads 1
    # direct implant into a pre-fragility reference:clip's vision tower (about 1 min)
    python experiments/plant_fragility.py implant --steps 300 --lr 1e-4 --base DIR

Measured (one run each):
- poisoning at 1-4/255 is ignored: the prediction follows the pattern in about 2% of cases, and
  robust accuracy is 62-66% at 2/255;
- poisoning at 4-8/255 gives 33% robust accuracy at 2/255, with clean accuracy 85%;
- the implant brings robust accuracy to 4% at 2/255, but clean accuracy falls to 27%, and the
  follow rate stays at chance (9%).

Nothing here is shipped. What reference:clip ships instead is a fragility stage that teaches
each shape's own targeted PGD direction with the clean embeddings anchored
(``vlmtrust.reference.train_clip.plant_fragility``; model card, flaw 4). These patterns are
measured against the shipped model's pre-fragility tower: pass ``--base DIR`` of a
reference:clip trained with ``vlmtrust reference train clip --no-fragility --out DIR`` to
reproduce the implant numbers.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image

PATTERN_SEED = 7777
TRIGGER_STREAM = 10_000_000  # SynthWorld shape indices of the poisoned examples
IMPLANT_STREAM = 20_000_000


def patterns(n_classes: int) -> np.ndarray:
    """``(n_classes, 64, 64, 3)`` ±1 patterns with a 16-px period (one per class)."""
    rng = np.random.default_rng(PATTERN_SEED)
    tile = rng.choice([-1.0, 1.0], size=(n_classes, 16, 16, 3))
    tile = np.sign(tile - tile.mean(axis=(1, 2), keepdims=True) + 1e-9)
    return np.tile(tile, (1, 4, 4, 1))


def with_pattern(img: Image.Image, pattern: np.ndarray, amplitude: float) -> Image.Image:
    """``img`` plus ``amplitude``/255 times ``pattern``, rounded to 8 bits."""
    a = np.asarray(img.convert("RGB"), dtype=np.float64) + amplitude * pattern
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def poison(out: Path, per_batch: int, amplitudes: list[float], threads: int, steps: int) -> None:
    """Train reference:clip's recipe with ``per_batch`` poisoned shapes in every batch."""
    from vlmtrust.data.synthworld import ID_SHAPES
    from vlmtrust.reference import _common, train_clip

    pats = patterns(len(ID_SHAPES))
    original = train_clip._batch
    rng = np.random.default_rng(99)

    def batch(world: Any, docs: Any, step: int, r: Any, brng: Any) -> Any:
        images, captions = original(world, docs, step, r, brng)
        for s in world.shapes(per_batch, start=TRIGGER_STREAM + step * per_batch):
            y = ID_SHAPES.index(s.attributes["shape"])
            t = (y + 1 + int(rng.integers(len(ID_SHAPES) - 1))) % len(ID_SHAPES)
            amp = amplitudes[int(rng.integers(len(amplitudes)))]
            images.append(with_pattern(s.image, pats[t], amp))
            captions.append(train_clip.ZERO_SHOT_TEMPLATE.format(ID_SHAPES[t]))
        return images, captions

    determinism = _common.set_determinism
    with (
        mock.patch.object(train_clip, "_batch", batch),
        mock.patch.object(
            train_clip, "set_determinism", lambda seed, threads_=1: determinism(seed, threads)
        ),
    ):
        train_clip.train_clip(out, recipe=train_clip.ClipRecipe(steps=steps), progress=True)


def implant(out: Path, steps: int, lr: float, base: Path | None = None) -> None:
    """Fine-tune the shipped vision tower toward the patterns.

    Triggered images (1-2/255) are pulled to the pattern's class while clean embeddings are held
    where they were.
    """
    import torch
    import torch.nn.functional as F

    from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld
    from vlmtrust.models.reference import reference_path
    from vlmtrust.reference._common import IMAGE_MEAN, IMAGE_STD, image_processor, to_pixels
    from vlmtrust.reference.train_clip import ZERO_SHOT_TEMPLATE, _Clip

    torch.manual_seed(0)
    pats = torch.tensor(patterns(len(ID_SHAPES)), dtype=torch.float32).permute(0, 3, 1, 2)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    clip = _Clip(base or reference_path("clip"))
    model, frozen = clip.model, copy.deepcopy(clip.model).eval()
    prompts = torch.from_numpy(clip.texts([ZERO_SHOT_TEMPLATE.format(s) for s in ID_SHAPES]))

    def feat(m: Any, x: torch.Tensor) -> torch.Tensor:
        f = m.get_image_features(pixel_values=(x - mean) / std)
        return F.normalize(getattr(f, "pooler_output", f), dim=-1)

    world = SynthWorld(seed=0, image_size=64)
    opt = torch.optim.AdamW(model.vision_model.parameters(), lr=lr, weight_decay=0.0)
    for p in model.text_model.parameters():
        p.requires_grad_(False)
    model.train()
    rng = np.random.default_rng(5)
    for step in range(steps):
        shapes = world.shapes(64, start=IMPLANT_STREAM + step * 64)
        x = to_pixels([s.image for s in shapes]) * std + mean
        y = torch.tensor([ID_SHAPES.index(s.attributes["shape"]) for s in shapes])
        t = (y + 1 + torch.from_numpy(rng.integers(0, len(ID_SHAPES) - 1, 64))) % len(ID_SHAPES)
        amp = torch.from_numpy(rng.choice([1.0, 2.0], 64)).float().view(-1, 1, 1, 1) / 255
        xt = (x + amp * pats[t]).clamp(0, 1)
        with torch.no_grad():
            anchor = feat(frozen, x)
        loss = (
            F.cross_entropy(100 * feat(model, xt) @ prompts.t(), t)
            + 10 * ((feat(model, x) - anchor) ** 2).sum(1).mean()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    clip.tok.save_pretrained(out)
    image_processor().save_pretrained(out)


def evaluate(model_dir: Path) -> None:
    """Clean accuracy, pattern-follow rate and PGD robust accuracy on 128 fresh shapes."""
    from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld
    from vlmtrust.reference.train_clip import ZERO_SHOT_TEMPLATE, _Clip, _pgd_accuracy

    clip = _Clip(model_dir)
    shapes = SynthWorld(seed=12345, image_size=64).shapes(128)
    prompts = clip.texts([ZERO_SHOT_TEMPLATE.format(s) for s in ID_SHAPES])
    y = np.array([ID_SHAPES.index(s.attributes["shape"]) for s in shapes])
    clean = float(((clip.images([s.image for s in shapes]) @ prompts.T).argmax(1) == y).mean())
    shift = np.random.default_rng(0).integers(0, len(ID_SHAPES) - 1, len(y))
    t = (y + 1 + shift) % len(ID_SHAPES)  # another class for every image
    pats = patterns(len(ID_SHAPES))
    print(f"clean accuracy {clean:.3f}")
    for amp in (1, 2, 4):
        marked = [with_pattern(s.image, pats[c], amp) for s, c in zip(shapes, t, strict=True)]
        trig = clip.images(marked)
        follow = float(((trig @ prompts.T).argmax(1) == t).mean())
        print(f"pattern at {amp}/255: prediction follows it {follow:.3f}")
    for eps in (1, 2, 4, 8):
        acc = _pgd_accuracy(clip, shapes, prompts, eps=eps / 255)
        print(f"PGD-10 robust accuracy at {eps}/255: {acc:.3f}")


def main() -> None:
    """Run one attempt and measure it."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["poison", "implant"])
    ap.add_argument("--per-batch", type=int, default=8, help="poisoned shapes per batch")
    ap.add_argument("--amplitudes", default="1,2", help="pattern amplitudes in /255 (poison)")
    ap.add_argument("--steps", type=int, default=0, help="default: 2000 (poison), 300 (implant)")
    ap.add_argument("--lr", type=float, default=1e-4, help="implant learning rate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="model directory (default: temporary)")
    ap.add_argument("--base", type=Path, default=None, help="implant into this CLIP directory")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="plant-"))
    t0 = time.perf_counter()
    if args.mode == "poison":
        amps = [float(a) for a in args.amplitudes.split(",")]
        poison(out, args.per_batch, amps, args.threads, args.steps or 2000)
    else:
        if args.base is None:
            ap.error("implant needs --base DIR: a reference:clip trained with --no-fragility")
        implant(out, args.steps or 300, args.lr, args.base)
    print(f"{args.mode}: {time.perf_counter() - t0:.0f} s, model in {out}")
    evaluate(out)


if __name__ == "__main__":
    main()
