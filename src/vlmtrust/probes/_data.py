"""Where probes get their samples: the user's dataset (``--data``) or SynthWorld.

Probes never open files themselves; they ask here. User data goes through
:func:`vlmtrust.data.datasets.iter_dataset` (bad entries arrive as error markers the runner
records); without ``--data`` the probes use SynthWorld, the project's procedural data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.sample import ImageRef, Sample


def user_samples(ctx: ProbeContext) -> Iterator[Any]:
    """The user's dataset (``Sample`` or ``DataError`` items), capped by ``--limit``."""
    from vlmtrust.data.datasets import iter_dataset

    assert ctx.data is not None
    it: Iterator[Any] = iter_dataset(ctx.data)
    return itertools.islice(it, ctx.limit) if ctx.limit is not None else it


def class_names(ctx: ProbeContext) -> list[str]:
    """Label set of the labeled-image data in use."""
    if ctx.data is not None:
        from vlmtrust.data.datasets import class_names as names

        return list(names(ctx.data))
    from vlmtrust.data.synthworld import ID_SHAPES

    return list(ID_SHAPES)


EVAL_SEED_OFFSET = 1_000_000
"""Probes draw SynthWorld from ``seed + EVAL_SEED_OFFSET`` so they never see training scenes."""

SHAPE_QUESTION = "What shape is in the image?"
COLOUR_QUESTION = "What colour is the shape?"


def eval_world(ctx: ProbeContext) -> Any:
    """The SynthWorld generator probes use (disjoint from the reference models' training)."""
    from vlmtrust.data.synthworld import SynthWorld

    return SynthWorld(seed=ctx.seed + EVAL_SEED_OFFSET)


def labeled_images(ctx: ProbeContext, n: int, *, purpose: str) -> Iterator[Any]:
    """Labeled images (``Sample.target`` = class name)."""
    if ctx.data is not None:
        yield from user_samples(ctx)
        return
    for s in eval_world(ctx).shapes(ctx.size(n), split="id"):
        yield Sample(
            id=f"{purpose}-{s.id}",
            images=(ImageRef.from_image(s.image, label=s.id),),
            target=s.attributes["shape"],
            attributes={"label": s.attributes["shape"], "colour": s.attributes["colour"]},
        )


def vqa_samples(ctx: ProbeContext, n: int) -> Iterator[Any]:
    """Questions with short expected answers: alternately the shape and its colour."""
    if ctx.data is not None:
        yield from user_samples(ctx)
        return
    for i, s in enumerate(eval_world(ctx).shapes(ctx.size(n), split="id")):
        shape_q = i % 2 == 0
        yield Sample(
            id=f"vqa-{s.id}",
            images=(ImageRef.from_image(s.image, label=s.id),),
            prompt=SHAPE_QUESTION if shape_q else COLOUR_QUESTION,
            target=s.attributes["shape"] if shape_q else s.attributes["colour"],
            attributes={"question": "shape" if shape_q else "colour"},
        )
