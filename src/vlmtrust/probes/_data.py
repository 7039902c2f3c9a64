"""Where probes get their samples: the user's dataset (``--data``) or SynthWorld.

Probes never open files themselves. User data comes from the runner, the only reader of
``--data``: it opens each dataset spec once and hands it in as ``ProbeContext.datasets``;
:func:`dataset` is how a probe reaches it. Items are :class:`Sample`\\ s whose images are decoded
lazily (:func:`decode`, once per sample) and data-error markers, which the runner records.
Without ``--data`` the probes use SynthWorld, the project's procedural data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.sample import ImageRef, Sample

if TYPE_CHECKING:
    from vlmtrust.data.synthworld import SynthWorld


def dataset(ctx: ProbeContext, spec: str | None = None) -> Any:
    """The dataset ``spec`` (default: ``--data``) as the runner opened it.

    A probe driven by hand, outside the runner (``ctx.datasets`` unset), gets the data
    layer's lazy reader for the same spec.
    """
    spec = spec if spec is not None else ctx.data
    if spec is None:
        raise InputError("no dataset given; pass --data DATASET_SPEC")
    if ctx.datasets is not None:
        return ctx.datasets(spec)
    from vlmtrust.data.datasets import DataSource

    return DataSource.open(spec, limits=ctx.data_limits)


def first(items: Iterable[Any], n: int | None) -> Iterator[Any]:
    """The first ``n`` items (all when ``n`` is None)."""
    it = iter(items)
    return itertools.islice(it, n) if n is not None else it


def count(ctx: ProbeContext, n: int | None = None, spec: str | None = None) -> int:
    """How many items a probe streams from the dataset ``spec`` (default ``--data``).

    The entries are counted, not decoded: the first ``ctx.size(n)`` of them, or the first
    ``--limit`` when ``n`` is None (an unreadable entry counts: it becomes one error record).
    """
    cap = ctx.size(n) if n is not None else ctx.limit
    return sum(1 for _ in first(dataset(ctx, spec), cap))


def decode(sample: Sample, error_id: str | None = None) -> Image.Image | Any:
    """The sample's first image, decoded; a data-error marker when it is unreadable.

    The marker carries ``error_id`` (default: the sample's id).
    """
    try:
        return sample.images[0].load()
    except InputError as e:  # one bad image is one error record, not a failed run
        from vlmtrust.data.datasets import DataError

        return DataError(error_id or sample.id, str(e))


def user_samples(ctx: ProbeContext) -> Iterator[Any]:
    """The user's dataset (``Sample`` or ``DataError`` items), capped by ``--limit``."""
    return first(dataset(ctx), ctx.limit)


def class_names(ctx: ProbeContext) -> list[str]:
    """Label set of the labeled-image data in use."""
    if ctx.data is not None:
        return list(dataset(ctx).class_names())
    from vlmtrust.data.synthworld import ID_SHAPES

    return list(ID_SHAPES)


EVAL_SEED_OFFSET = 1_000_000
"""Probes draw SynthWorld from ``seed + EVAL_SEED_OFFSET`` so they never see training scenes."""

SHAPE_QUESTION = "What shape is in the image?"
COLOUR_QUESTION = "What colour is the shape?"


def world(ctx: ProbeContext, seed: int) -> SynthWorld:
    """A SynthWorld generator for ``seed`` that renders at ``ctx.image_size`` (the model's)."""
    from vlmtrust.data.synthworld import SynthWorld

    if ctx.image_size is None:
        return SynthWorld(seed=seed)
    return SynthWorld(seed=seed, image_size=min(1024, max(32, int(ctx.image_size))))


def eval_world(ctx: ProbeContext) -> Any:
    """The SynthWorld generator probes use (disjoint from the reference models' training).

    Its scenes are rendered at ``ctx.image_size`` (:func:`world`).
    """
    return world(ctx, ctx.seed + EVAL_SEED_OFFSET)


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
