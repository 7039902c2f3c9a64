from __future__ import annotations

import re
import time

import numpy as np
import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.core.sample import Sample
from vlmtrust.data.synthworld import (
    FIGSTEP_PROMPT,
    GROUPS,
    ID_SHAPES,
    MAJORITY_GROUP,
    OCCUPATIONS,
    OOD_SHAPES,
    PII_FIELDS,
    PII_POOL,
    SynthWorld,
    request_pool,
)


def _bytes(samples) -> list[bytes]:
    return [s.image.tobytes() for s in samples]


def _all_kinds(world: SynthWorld) -> list:
    return [
        *world.shapes(6),
        *world.shapes(4, split="ood"),
        *world.shapes(4, max_count=3),
        *world.people(6, correlation=0.8),
        *world.typographic(6),
        *world.typographic_attack(4),
        *world.documents(2, size=128),
        *world.figstep(2, size=64),
        *world.canaries(3),
    ]


def test_same_seed_gives_identical_bytes_and_ground_truth():
    a, b = _all_kinds(SynthWorld(7, 64)), _all_kinds(SynthWorld(7, 64))
    assert _bytes(a) == _bytes(b)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert [dict(s.attributes) for s in a] == [dict(s.attributes) for s in b]
    assert [s.id for s in a] == [s.id for s in b]
    assert len({s.id for s in a}) == len(a)


def test_other_seed_differs_and_start_slices_the_stream():
    assert _bytes(SynthWorld(0).shapes(8)) != _bytes(SynthWorld(1).shapes(8))
    world = SynthWorld(3)
    assert _bytes(world.shapes(5, start=3)) == _bytes(world.shapes(8))[3:]
    assert [s.id for s in world.people(2, start=4)] == [s.id for s in world.people(6)][4:]


def test_shapes_ground_truth_and_splits():
    world = SynthWorld(0, 64)
    id_s = world.shapes(300)
    assert {s.attributes["shape"] for s in id_s} == set(ID_SHAPES)
    assert all(s.target == s.attributes["shape"] and s.image.size == (64, 64) for s in id_s)
    assert all(s.attributes["shape"] in s.caption or "{" not in s.caption for s in id_s)
    ood = world.shapes(100, split="ood")
    assert {s.attributes["shape"] for s in ood} == set(OOD_SHAPES)
    assert not set(ID_SHAPES) & set(OOD_SHAPES)
    counts = [int(s.attributes["count"]) for s in world.shapes(60, max_count=3)]
    assert set(counts) == {1, 2, 3}
    # a drawn shape changes pixels of its background (not blank)
    for s in id_s[:20]:
        assert np.asarray(s.image).std() > 5
    assert not any(re.search(r"\ba [aeiou]", s.caption) for s in id_s)


def test_people_correlation_and_balance():
    world = SynthWorld(0)
    balanced = world.people(60, correlation=0.0)
    groups = [s.attributes["group"] for s in balanced]
    assert groups.count(GROUPS[0]) == groups.count(GROUPS[1]) == 30
    full = world.people(80, correlation=1.0)
    assert all(s.attributes["group"] == MAJORITY_GROUP[s.attributes["occupation"]] for s in full)
    skewed = world.people(400, correlation=0.8)
    share = np.mean([s.attributes["group"] == MAJORITY_GROUP[s.target] for s in skewed])
    assert 0.84 <= share <= 0.96  # expected (1 + 0.8) / 2 = 0.9
    assert {s.target for s in skewed} == set(OCCUPATIONS)
    for s in skewed[:50]:
        assert not any(g in s.caption for g in GROUPS)
        assert s.target in s.caption
    one = world.people(10, occupation="chef", cue_prob=0.0)
    assert all(s.target == "chef" and s.attributes["prop"] == "false" for s in one)


def test_typography_and_attack_variants():
    world = SynthWorld(0)
    texts = world.typographic(40)
    assert all(s.target == s.attributes["text"] and s.target in s.caption for s in texts)
    attack = world.typographic_attack(40)
    assert all(s.attributes["label"] != s.attributes["shape"] for s in attack)
    assert all(s.attributes["label"] in ID_SHAPES for s in attack)
    match = world.typographic_attack(10, label="match")
    assert all(s.attributes["label"] == s.attributes["shape"] for s in match)
    none = world.typographic_attack(10, label="none")
    assert all(s.attributes["label"] == "" for s in none)
    # same layout, with vs without a label: the label strip is drawn (bottom third differs)
    lab, bare = world.typographic_attack(1)[0].image, world.typographic_attack(1, label="none")[0]
    assert np.asarray(lab)[48:].std() > np.asarray(bare.image)[48:].std()


def test_documents_carry_pii_ground_truth():
    world = SynthWorld(0)
    docs = world.documents(6, size=256)
    for d in docs:
        pii = d.metadata["pii"]
        assert set(pii) == set(PII_FIELDS)
        assert all(isinstance(v, str) and v for v in pii.values())
        assert re.fullmatch(r"[a-z'\-]+\.[a-z'\-]+@example\.(com|org|net)", pii["email"])
        assert re.fullmatch(r"555-01\d\d", pii["phone"])
        assert d.target == pii["name"] and d.prompt and d.image.size == (256, 256)
    assert len({d.metadata["pii"]["name"] for d in docs}) >= 4
    pool = world.documents(len(PII_POOL) + 1, identities="pool", size=128)
    assert [d.target for d in pool[:-1]] == [p["name"] for p in PII_POOL]
    assert pool[-1].target == PII_POOL[0]["name"]


def test_figstep_topics_and_layout():
    harmful, benign = request_pool()
    assert len({r.topic for r in harmful}) >= 8 and len(benign) >= 8
    world = SynthWorld(0)
    figs = world.figstep(6, size=128)
    assert [s.attributes["harmful"] for s in figs] == ["true", "false"] * 3
    assert all(s.prompt == FIGSTEP_PROMPT and s.image.size == (128, 128) for s in figs)
    assert all(s.metadata["statement"] for s in figs)
    arr = np.asarray(world.figstep(1)[0].image)  # 760 px, black text on white
    assert arr.shape == (760, 760, 3) and arr.min() < 50 and np.median(arr) == 255


def test_canaries_are_unique():
    c = SynthWorld(0).canaries(64)
    assert len({s.caption for s in c}) == 64
    assert len({s.image.tobytes() for s in c}) == 64


def test_to_sample():
    s = SynthWorld(0).documents(1, size=128)[0].to_sample()
    assert isinstance(s, Sample)
    assert s.images[0].load().size == (128, 128)
    assert s.metadata["pii"]["name"] == s.target and s.metadata["kind"] == "documents"


@pytest.mark.parametrize(
    "call",
    [
        lambda w: w.shapes(2, split="bogus"),
        lambda w: w.shapes(-1),
        lambda w: w.shapes(2, classes=("blob",)),
        lambda w: w.people(2, correlation=1.5),
        lambda w: w.people(2, occupation="astronaut"),
        lambda w: w.documents(1, identities="nope"),
        lambda w: w.typographic_attack(1, label="other"),
        lambda w: SynthWorld(-1),
        lambda w: SynthWorld(0, image_size=8),
    ],
)
def test_bad_input_raises_input_error(call):
    with pytest.raises(InputError):
        call(SynthWorld(0))


def test_speed_sanity():
    world = SynthWorld(1, 64)
    world.shapes(5)
    t = time.perf_counter()
    world.shapes(300)
    rate = 300 / (time.perf_counter() - t)
    # the bench (bench/bench_synthworld.py) measures the real rate; this only catches
    # order-of-magnitude regressions on a busy shared machine
    assert rate > 200, rate
