"""Shared training plumbing: determinism, progress bars, image tensors, file hashes."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vlmtrust.core.files import sha256_file

if TYPE_CHECKING:
    import torch

IMAGE_SIZE = 64
PATCH_SIZE = 16
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
MANIFEST = "MANIFEST.json"


def set_determinism(seed: int, threads: int = 1) -> None:
    """Seed torch/numpy, fix the thread count and ask for deterministic kernels.

    One thread by default: results are only bit-identical for a fixed thread count, and on a
    shared 2-core machine two OpenMP threads are several times slower than one.
    """
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def to_pixels(images: Sequence[Image.Image]) -> torch.Tensor:
    """Resize to 64×64 and normalise like the shipped ``CLIPImageProcessor`` (BICUBIC)."""
    import torch

    arrs = []
    for im in images:
        if im.size != (IMAGE_SIZE, IMAGE_SIZE):
            im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
        arrs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def image_processor() -> Any:
    """The PIL ``CLIPImageProcessor`` both reference models ship with."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": IMAGE_SIZE},
        resample=3,
        do_center_crop=True,
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
        do_convert_rgb=True,
    )


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def optimizer_step(model: Any, opt: Any, loss: torch.Tensor) -> float:
    """Backward, clip the gradient norm of ``model`` at 1, step ``opt``; returns the loss."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.item())


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool) -> Iterator[Any]:
    """A rich progress bar (or a no-op) yielding ``advance(n=1, **fields)``."""
    if not enabled:
        yield lambda n=1, **kw: None
        return
    from vlmtrust.core.progress import new_progress

    with new_progress(info=True) as prog:
        task = prog.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: Any) -> None:
            info = " ".join(f"{k}={v}" for k, v in fields.items())
            prog.update(task, advance=n, info=info)

        yield advance


def write_manifest(model_dir: Path) -> Path:
    """Write ``MANIFEST.json`` with the sha256 of every file (except itself and the card)."""
    files = {
        p.relative_to(model_dir).as_posix(): sha256_file(p)
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST,)
    }
    out = model_dir / MANIFEST
    out.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return out
