"""SynthWorld generation speed at the training resolution (64 px), one core.

Prints images/s per scene kind and the ratio to the 1,000 images/s target (issue 3), measured
in one run. Usage: ``python bench/bench_synthworld.py [N]``.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from vlmtrust.data.synthworld import SynthWorld  # noqa: E402

TARGET = 1000.0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    world = SynthWorld(seed=0, image_size=64)
    world.shapes(10)  # warm caches (fonts, textures)
    world.typographic(10)
    kinds = {
        "shapes": lambda k: world.shapes(k),
        "shapes_ood": lambda k: world.shapes(k, split="ood"),
        "people": lambda k: world.people(k, correlation=0.9, cue_prob=0.7),
        "typographic": lambda k: world.typographic(k),
        "typographic_attack": lambda k: world.typographic_attack(k),
        "canaries": lambda k: world.canaries(k),
    }
    total_n, total_t = 0, 0.0
    for name, fn in kinds.items():
        t = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t
        total_n += n
        total_t += dt
        print(f"{name:20s} {n / dt:9.0f} images/s  ratio to target {n / dt / TARGET:5.2f}")
    mix = total_n / total_t
    print(f"{'all (equal mix)':20s} {mix:9.0f} images/s  ratio to target {mix / TARGET:5.2f}")
    t = time.perf_counter()
    world.documents(100)
    print(f"{'documents (256 px)':20s} {100 / (time.perf_counter() - t):9.0f} images/s")
    t = time.perf_counter()
    world.figstep(20)
    print(f"{'figstep (760 px)':20s} {20 / (time.perf_counter() - t):9.0f} images/s")


if __name__ == "__main__":
    main()
