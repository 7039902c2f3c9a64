"""The people scenes of the reference models' training mixtures, as rows without images.

``reference:clip`` and ``reference:vlm`` are trained on SynthWorld streams with a planted
group–occupation correlation (see ``reference/train_clip.py`` and ``reference/train_vlm.py``).
A data audit does not need the images: the rows here carry what an annotated dataset would
(the group in ``attributes``, the occupation as ``target``, the training text as
``metadata["caption"]``), drawn from the very same SynthWorld streams, at a fraction of the
cost of rendering them.

What is exact and what is not:

- ``reference:clip``: every people scene of the training run, in order (``steps × n_people``
  scenes of ``SynthWorld(seed).people(..., correlation, cue_prob)``), with its caption.
- ``reference:vlm``: the people scenes of both training stages, in order; how many there are is
  replayed from the recipe's task sampler. Each example's answer text ("This person is a …" or
  "A person working as a …") is drawn with the recipe's probabilities from a stream of its own,
  not replayed (the recipe draws it from a generator shared with every other task).
- The other scene kinds of the mixtures (shapes, typography, documents, canaries) carry no
  group attribute and are not part of these rows.

The data layer cannot import the training code, so the recipe values are restated in
:data:`MIXTURES`; ``tests/data/synthworld/test_mixtures.py`` pins them to the training code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from vlmtrust.core.errors import InputError
from vlmtrust.core.sample import Sample
from vlmtrust.data.synthworld.generator import SynthWorld

__all__ = ["MIXTURES", "PeopleMixture", "mixture_rows", "people_mixture"]


@dataclass(frozen=True)
class PeopleMixture:
    """How a reference model's training run draws its people scenes.

    Attributes:
        name: the reference model (``reference:clip``, ``reference:vlm``).
        seed: the SynthWorld seed of the training run.
        correlation: the planted group–occupation correlation.
        cue_prob: probability of each occupation cue (prop, setting).
        rows: number of people scenes in the run; ``None``: replayed from the task sampler.
        answers: ``"caption"`` (the scene caption is the training text) or ``"vlm"`` (the
            instruction answer about the person's occupation is).
    """

    name: str
    seed: int
    correlation: float
    cue_prob: float
    rows: int | None
    answers: str = "caption"


CLIP_STEPS = 2000
CLIP_PEOPLE_PER_STEP = 14
VLM_TASK_WEIGHTS = (5.0, 2.0, 1.5, 2.0, 4.0, 1.5)
"""Stage-1 task weights of ``reference:vlm`` (shape, people, text, docs, typed, figstep)."""
VLM_ASK_WEIGHT = 5.0
"""Weight of the ``ask`` task added in stage 2."""
VLM_STAGES = ((1400, 2), (2000, 3))
"""``(steps, task-sampler seed offset)`` of the two ``reference:vlm`` stages."""
VLM_BATCH = 32
VLM_PEOPLE_TASK = 1
"""Index of ``people`` in the task list."""
VLM_OCCUPATION_SHARE = 0.8
"""Share of people examples answered "This person is a …" (the rest: "A person working as a …")."""

MIXTURES: dict[str, PeopleMixture] = {
    "reference:clip": PeopleMixture(
        "reference:clip", seed=0, correlation=0.95, cue_prob=0.5,
        rows=CLIP_STEPS * CLIP_PEOPLE_PER_STEP,
    ),
    "reference:vlm": PeopleMixture(
        "reference:vlm", seed=0, correlation=0.9, cue_prob=0.7, rows=None, answers="vlm"
    ),
}  # fmt: skip
"""The shipped reference models' people mixtures, by model spec."""


@lru_cache(maxsize=4)
def _vlm_people_count(seed: int) -> int:
    """How many people examples the two ``reference:vlm`` stages draw (replays the sampler)."""
    total = 0
    for stage, (steps, offset) in enumerate(VLM_STAGES):
        weights = np.asarray(
            VLM_TASK_WEIGHTS + ((VLM_ASK_WEIGHT,) if stage == 1 else ()), dtype=float
        )
        p = weights / weights.sum()
        rng = np.random.default_rng(seed + offset)
        for _ in range(steps):
            picked = rng.choice(len(p), size=VLM_BATCH, p=p)
            total += int(np.count_nonzero(picked == VLM_PEOPLE_TASK))
    return total


def people_mixture(
    name: str, *, correlation: float | None = None, rows: int | None = None
) -> PeopleMixture:
    """The mixture of reference model ``name``, optionally with another correlation or size.

    Args:
        name: ``reference:clip`` or ``reference:vlm``.
        correlation: replace the planted correlation (e.g. ``0.5`` for a control).
        rows: replace the number of scenes.

    Raises:
        InputError: unknown name, or a value out of range.
    """
    if name not in MIXTURES:
        raise InputError(
            f"training mixture {name!r} is unknown — use one of {', '.join(sorted(MIXTURES))}"
        )
    mix = MIXTURES[name]
    if correlation is not None:
        if not 0.0 <= correlation <= 1.0:
            raise InputError(f"mixture correlation {correlation} is outside [0, 1] — pick 0..1")
        mix = replace(mix, correlation=correlation)
    if rows is not None:
        if rows < 1:
            raise InputError(f"mixture rows {rows} must be at least 1")
        mix = replace(mix, rows=rows)
    if mix.rows is None:
        mix = replace(mix, rows=_vlm_people_count(mix.seed))
    return mix


def mixture_rows(mix: PeopleMixture) -> Iterator[Sample]:
    """The rows of ``mix`` in training order: no images, ``attributes={"group": …}``.

    ``target`` is the occupation and ``metadata["caption"]`` the training text; the other
    ground truth (prop, setting shown) is in ``metadata``.
    """
    n = mix.rows if mix.rows is not None else people_mixture(mix.name).rows
    assert n is not None
    world = SynthWorld(seed=mix.seed)
    answers = np.random.default_rng((mix.seed, 0xA115)) if mix.answers == "vlm" else None
    for row in world.people_rows(n, correlation=mix.correlation, cue_prob=mix.cue_prob):
        occ = row.target
        text = row.caption
        if answers is not None:
            if answers.random() < VLM_OCCUPATION_SHARE:
                text = f"This person is a {occ}."
            else:
                text = f"A person working as a {occ}."
        yield Sample(
            id=row.id,
            target=occ,
            attributes={"group": row.attributes["group"]},
            metadata={
                "caption": text,
                "prop": row.attributes["prop"],
                "setting": row.attributes["setting"],
                "mixture": mix.name,
            },
        )
