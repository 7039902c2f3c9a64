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


def labeled_images(ctx: ProbeContext, n: int, *, purpose: str) -> Iterator[Any]:
    """Labeled images (``Sample.target`` = class name)."""
    if ctx.data is not None:
        yield from user_samples(ctx)
        return
    from vlmtrust.data.synthworld import SynthWorld

    world = SynthWorld(seed=ctx.seed)
    for i, s in enumerate(world.shapes(ctx.size(n), split="id", stream=purpose)):
        yield Sample(
            id=f"{purpose}-{i:05d}",
            images=(ImageRef.from_image(s.image, label=f"synthworld:{purpose}:{i}"),),
            prompt=None,
            target=s.attributes["shape"],
            attributes={"label": s.attributes["shape"], "colour": s.attributes["colour"]},
        )


def vqa_samples(ctx: ProbeContext, n: int) -> Iterator[Any]:
    """Questions with short expected answers."""
    if ctx.data is not None:
        yield from user_samples(ctx)
        return
    from vlmtrust.data.synthworld import SynthWorld

    world = SynthWorld(seed=ctx.seed)
    for i, q in enumerate(world.vqa(ctx.size(n), stream="vqa")):
        yield Sample(
            id=f"vqa-{i:05d}",
            images=(ImageRef.from_image(q.image, label=f"synthworld:vqa:{i}"),),
            prompt=q.question,
            target=q.answer,
            attributes={"question": q.kind},
        )
