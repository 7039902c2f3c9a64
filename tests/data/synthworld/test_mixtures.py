"""The image-free people rows and the reference mixtures match the training code they restate."""

import inspect
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.data.synthworld import SynthWorld
from vlmtrust.data.synthworld import mixtures as mx
from vlmtrust.reference import train_clip, train_vlm

MODELS = Path(train_clip.__file__).parent / "models"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"correlation": 0.95, "cue_prob": 0.5},
        {"correlation": 0.0},
        {"correlation": 0.9, "cue_prob": 0.7, "start": 33},
        {"occupation": "pilot", "cue_prob": 0.2},
    ],
)
def test_people_rows_are_people_without_images(kwargs):
    world = SynthWorld(seed=4)
    with_images = world.people(60, **kwargs)
    rows = list(world.people_rows(60, **kwargs))
    assert [(r.id, r.caption, dict(r.attributes), r.target) for r in rows] == [
        (s.id, s.caption, dict(s.attributes), s.target) for s in with_images
    ]
    assert rows[0].to_sample().images == ()


def test_people_rows_check_their_arguments():
    with pytest.raises(InputError, match="correlation"):
        next(SynthWorld(0).people_rows(3, correlation=2.0))


def test_clip_mixture_restates_the_recipe_and_the_shipped_run():
    mix = mx.MIXTURES["reference:clip"]
    assert (
        train_clip.FULL.steps,
        train_clip.FULL.n_people,
    ) == (mx.CLIP_STEPS, mx.CLIP_PEOPLE_PER_STEP)
    assert (mix.correlation, mix.cue_prob) == (
        train_clip.PEOPLE_CORRELATION,
        train_clip.PEOPLE_CUE_PROB,
    )
    shipped = json.loads((MODELS / "clip" / "training.json").read_text())
    assert shipped["seed"] == mix.seed and not shipped["quick"]
    assert shipped["people"] == {"correlation": mix.correlation, "cue_prob": mix.cue_prob}
    assert shipped["recipe"]["steps"] * shipped["recipe"]["n_people"] == mix.rows


def test_clip_mixture_rows_are_the_training_batches_people():
    """Step k of train_clip._batch draws people(n_people, start=k * n_people)."""
    mix = mx.people_mixture("reference:clip")
    world = SynthWorld(seed=mix.seed)
    n = train_clip.FULL.n_people
    rows = list(itertools.islice(mx.mixture_rows(mix), 3 * n))
    drawn = world.people(n, correlation=mix.correlation, cue_prob=mix.cue_prob, start=2 * n)
    assert [r.id for r in rows[2 * n :]] == [s.id for s in drawn]
    assert [r.metadata["caption"] for r in rows[2 * n :]] == [s.caption for s in drawn]
    assert [r.attributes["group"] for r in rows[2 * n :]] == [s.attributes["group"] for s in drawn]
    assert [r.target for r in rows[2 * n :]] == [s.target for s in drawn]
    assert all(r.images == () for r in rows)


def test_vlm_mixture_restates_the_recipe_and_replays_its_sampler():
    r = train_vlm.FULL
    assert train_vlm.TASKS[mx.VLM_PEOPLE_TASK] == "people"
    assert (
        r.w_shape,
        r.w_people,
        r.w_text,
        r.w_docs,
        r.w_typed,
        r.w_figstep,
    ) == mx.VLM_TASK_WEIGHTS
    assert r.w_ask == mx.VLM_ASK_WEIGHT and r.batch_size == mx.VLM_BATCH
    assert [s for s, _ in mx.VLM_STAGES] == [r.steps, r.content_steps]
    source = inspect.getsource(train_vlm.train_vlm)
    for _, offset in mx.VLM_STAGES:  # the task samplers' seeds
        assert f"seed=seed + {offset}," in source
    assert "task_rng.choice(len(tasks), size=batch_size, p=p_task)" in inspect.getsource(
        train_vlm._run_stage
    )
    mix = mx.people_mixture("reference:vlm")
    assert (mix.correlation, mix.cue_prob) == (
        train_vlm.PEOPLE_CORRELATION,
        train_vlm.PEOPLE_CUE_PROB,
    )
    shipped = json.loads((MODELS / "vlm" / "training.json").read_text())
    assert shipped["seed"] == mix.seed and not shipped["quick"]
    assert shipped["people"] == {"correlation": mix.correlation, "cue_prob": mix.cue_prob}
    # expected people share: 2/16 of stage 1, 2/21 of stage 2
    expected = r.steps * r.batch_size * 2 / 16 + r.content_steps * r.batch_size * 2 / 21
    assert mix.rows is not None and abs(mix.rows - expected) < 4 * np.sqrt(expected)


def test_vlm_rows_use_the_recipe_answers():
    mix = mx.people_mixture("reference:vlm", rows=400)
    rows = list(mx.mixture_rows(mix))
    texts = [r.metadata["caption"] for r in rows]
    asked = sum(t.startswith("This person is a ") for t in texts)
    assert all(t.endswith(f"{r.target}.") for t, r in zip(texts, rows, strict=True))
    assert 0.7 < asked / len(rows) < 0.9


def test_mixture_overrides_are_checked():
    assert mx.people_mixture("reference:clip", correlation=0.5).correlation == 0.5
    assert mx.people_mixture("reference:clip", rows=10).rows == 10
    with pytest.raises(InputError, match="unknown"):
        mx.people_mixture("reference:other")
    with pytest.raises(InputError, match="outside"):
        mx.people_mixture("reference:clip", correlation=1.5)
