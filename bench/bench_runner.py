"""Runner overhead and cache speed-up, measured side by side in one run.

1. Overhead: ``capability/zero_shot`` over N images through the full runner (samples, safe image
   loading, batching, records streamed to JSONL with fsync, metrics with bootstrap CIs; cache off)
   vs the model's forward passes alone on the same batches of already-decoded images.
   Targets: ratio ≤ 1.3 for reference:clip, ≤ 1.05 for the ViT-B/32-size model. Printed
   twice: wall time (the target) and CPU time (this process and the decoder process), which a
   shared machine's load disturbs less; and for two ways of decoding the image files: the
   default (with ``--threads 1`` on a machine of 2 or more cores: in the decoder process,
   :mod:`vlmtrust.runner.decoder`, batches ahead of the model) and in-process
   (``VLMTRUST_DECODE_WORKER=off``), to show what the process buys here.
2. Cache: the same run twice against one fresh cache file. Target: second run ≥ 10× faster.

Usage: python bench/bench_runner.py [--model reference:clip] [--n 2000] [--threads 1]
       python bench/bench_runner.py --vit-b32 --n 500   # a CLIP of real size (random weights)

reference:clip is tiny (0.4 ms per image on 2 cores), so fixed per-image costs the baseline
leaves out (PNG decoding, records) weigh far more than with a real model; ``--vit-b32`` builds a
randomly initialised CLIP with ViT-B/32's vision tower (224 px) offline to measure that case.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="reference:clip")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--vit-b32", action="store_true", help="random CLIP of ViT-B/32 size")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (as --threads)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from vlmtrust.api import audit
    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.models.loader import load_model
    from vlmtrust.probes.capability.zero_shot import ZeroShot
    from vlmtrust.runner.cache import Cache

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="vlmtrust-bench-"))
    if args.vit_b32:
        args.model = f"hf:{_vit_b32(tmp / 'vit-b32')}"
    model = load_model(args.model)
    print(f"model: {args.model}  threads: {args.threads}  load: {os.getloadavg()[0]:.2f}")
    data = tmp / "images"
    world = SynthWorld(seed=0)
    images = []
    for i, s in enumerate(world.shapes(args.n, split="id")):
        d = data / s.attributes["shape"]
        d.mkdir(parents=True, exist_ok=True)
        s.image.save(d / f"{i:05d}.png")
        images.append((d.name, s.image.convert("RGB")))
    probe = ZeroShot()
    ctx = ProbeContext(data=str(data))
    names = probe.class_names(ctx)
    # Same batches as the runner: the folder's sample order, the probe's batch size.
    from vlmtrust.data.datasets import iter_dataset

    order = list(iter_dataset(str(data)))
    batches = [
        [s.images[0].load() for s in order[i : i + probe.batch_size]]
        for i in range(0, len(order), probe.batch_size)
    ]

    def forward_only() -> float:
        t = time.perf_counter()
        txt = model.embed_texts([probe.params.template.format(c) for c in names])
        for b in batches:
            img = model.embed_images(b)
            _ = (img @ txt.T).argmax(axis=1)
        return time.perf_counter() - t

    def runner(out: Path, cache: Cache | bool) -> float:
        t = time.perf_counter()
        audit(model, probes=["capability/zero_shot"], out=out, data=str(data), cache=cache)
        return time.perf_counter() - t

    def in_process(out: Path) -> float:
        from vlmtrust.runner import decoder

        os.environ[decoder.ENV] = "off"  # every file decoded by this process
        try:
            return runner(out, False)
        finally:
            del os.environ[decoder.ENV]

    def timed(fn: Callable[[], float]) -> tuple[float, float]:
        c = time.process_time() + _decoder_cpu()
        return fn(), time.process_time() + _decoder_cpu() - c

    forward_only()  # warm-up (thread pools, allocator)
    runner(tmp / "warm-up", False)  # first-use imports (metrics, plots) are not overhead
    wall: dict[str, list[float]] = {"fw": [], "rn": [], "np": []}
    cpu: dict[str, list[float]] = {"fw": [], "rn": [], "np": []}
    for r in range(args.repeats):  # interleaved so drifts in machine load hit all alike
        for key, fn in (
            ("fw", forward_only),
            ("rn", lambda r=r: runner(tmp / f"run{r}", False)),
            ("np", lambda r=r: in_process(tmp / f"np{r}")),
        ):
            w, c = timed(fn)
            wall[key].append(w)
            cpu[key].append(c)
    target = 1.05 if args.vit_b32 else 1.3
    from vlmtrust.runner import decoder

    print(f"decoder process used by default: {decoder.enabled()}")
    for name, t in (("wall", wall), ("cpu", cpu)):
        f, g, h = (float(np.median(t[k])) for k in ("fw", "rn", "np"))
        print(
            f"overhead ({name}): N={args.n} forward-only {f:.2f}s  runner {g:.2f}s  "
            f"ratio {g / f:.3f} (target <= {target})  decoding in-process {h:.2f}s  "
            f"ratio {h / f:.3f}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")

    cold, warm = [], []
    for r in range(args.repeats):
        cache = Cache(tmp / f"cache{r}.sqlite")
        cold.append(runner(tmp / f"c{r}a", cache))
        warm.append(runner(tmp / f"c{r}b", cache))
    c, w = float(np.median(cold)), float(np.median(warm))
    print(f"cache: first run {c:.2f}s  second run {w:.2f}s  speed-up {c / w:.1f}x (target >= 10x)")


def _decoder_cpu() -> float:
    """CPU seconds the decoder process has used so far (Linux ``/proc``; 0 elsewhere)."""
    from vlmtrust.runner import decoder

    dec = decoder._shared
    if dec is None:
        return 0.0
    try:
        fields = Path(f"/proc/{dec._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vit_b32(out: Path) -> Path:
    """reference:clip's tokenizer and text tower with a ViT-B/32 vision tower, random weights."""
    import json
    import shutil

    import torch
    from transformers import CLIPConfig, CLIPModel

    from vlmtrust.models.reference import reference_path

    src = reference_path("clip")
    out.mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(src / f, out / f)
    pre = json.loads((out / "preprocessor_config.json").read_text())
    pre["crop_size"] = {"height": 224, "width": 224}
    pre["size"] = {"shortest_edge": 224}
    (out / "preprocessor_config.json").write_text(json.dumps(pre))
    ref = json.loads((src / "config.json").read_text())
    vision = {
        "image_size": 224,
        "patch_size": 32,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
    }
    cfg = CLIPConfig(
        text_config=ref["text_config"], vision_config=vision, projection_dim=ref["projection_dim"]
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(out)
    return out


if __name__ == "__main__":
    main()
