"""SynthWorld counterfactual sets: members differ only in the group, only where the figure is."""

from __future__ import annotations

import numpy as np
import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.data.synthworld import GROUPS, SynthWorld


def _diff_mask(a, b) -> np.ndarray:
    return np.any(np.asarray(a.image) != np.asarray(b.image), axis=-1)


@pytest.mark.parametrize("size", [64, 96])
@pytest.mark.parametrize("cue_prob", [0.0, 1.0])
def test_members_differ_only_in_the_group_and_only_inside_the_figure(size, cue_prob):
    sets = SynthWorld(seed=3, image_size=size).counterfactual_people(12, cue_prob=cue_prob)
    assert len(sets) == 12
    s = size / 64.0
    for members in sets:
        assert [m.attributes["group"] for m in members] == list(GROUPS)
        rest = [{k: v for k, v in m.attributes.items() if k != "group"} for m in members]
        assert all(r == rest[0] for r in rest)
        assert len({m.caption for m in members}) == 1 and len({m.target for m in members}) == 1
        assert rest[0]["prop"] == rest[0]["setting"] == str(cue_prob == 1.0).lower()
        diff = _diff_mask(members[0], members[1])
        assert diff.any()  # the group is visible
        ys, xs = np.nonzero(diff)
        # The figure's footprint: centre x in 22..30 (64-px units), arms reach ±14 px, the
        # head top is at y >= 9.5 and the feet at y = 60 (plus line width).
        assert xs.min() >= 7 * s and xs.max() <= 45 * s, (xs.min(), xs.max())
        assert ys.min() >= 8 * s and ys.max() <= 62 * s, (ys.min(), ys.max())
        assert xs.max() - xs.min() <= 31 * s


def test_the_scene_randomness_is_shared_across_the_set_but_not_across_sets():
    sets = SynthWorld(seed=0).counterfactual_people(20)
    # Different sets put the figure at different places (the scene stream is per set) ...
    left_edges = {int(np.nonzero(_diff_mask(*ms))[1].min()) for ms in sets}
    assert len(left_edges) >= 3
    # ... and the same seed and arguments give the same bytes, sets and ids.
    again = SynthWorld(seed=0).counterfactual_people(20)
    assert [[m.id for m in ms] for ms in again] == [[m.id for m in ms] for ms in sets]
    assert [np.asarray(ms[1].image).tobytes() for ms in again] == [
        np.asarray(ms[1].image).tobytes() for ms in sets
    ]
    # start slices the stream; ids are unique
    tail = SynthWorld(seed=0).counterfactual_people(5, start=15)
    assert [ms[0].id for ms in tail] == [ms[0].id for ms in sets[15:]]
    ids = [m.id for ms in sets for m in ms]
    assert len(ids) == len(set(ids))
    assert all(m.attributes["counterfactual_set"] == ms[0].attributes["counterfactual_set"]
               for ms in sets for m in ms)  # fmt: skip


def test_group_order_and_occupation_are_honoured():
    sets = SynthWorld(seed=1).counterfactual_people(
        4, groups=("angular", "round"), occupation="chef"
    )
    assert all([m.attributes["group"] for m in ms] == ["angular", "round"] for ms in sets)
    assert {m.attributes["occupation"] for ms in sets for m in ms} == {"chef"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"groups": ("round",)},
        {"groups": ("round", "round")},
        {"groups": ("round", "oval")},
        {"cue_prob": 1.5},
        {"occupation": "astronaut"},
    ],
)
def test_bad_input_is_one_clear_line(kwargs):
    with pytest.raises(InputError, match="counterfactual_people"):
        SynthWorld(seed=0).counterfactual_people(2, **kwargs)
