"""fairness/embedding_bias: WEAT formulas, bad input, reference:clip's planted association."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fair_toys import (
    Shuffled,
    ref_clip_fixture,  # noqa: F401  (the session fixture ref_clip)
)

from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ProbeResult
from vlmtrust.core.types import RiskBand
from vlmtrust.data.synthworld import SynthWorld
from vlmtrust.models.mock import MockModel
from vlmtrust.probes.fairness.embedding_bias import (
    EmbeddingBiasProbe,
    permutation_p_value,
    weat_effect_size,
)
from vlmtrust.runner.engine import evaluate_probe


def run(model: Any, params: dict[str, Any] | None = None, **ctx: Any) -> ProbeResult:
    probe_ = EmbeddingBiasProbe({"n": 300, "n_permutations": 500, **(params or {})})
    return evaluate_probe(model, probe_, ProbeContext(**ctx))


def test_weat_effect_size_and_exact_permutation_p_value() -> None:
    sx, sy = np.array([0.3, 0.2, 0.1]), np.array([0.0, -0.1, -0.2])
    pooled = np.concatenate([sx, sy])
    assert weat_effect_size(sx, sy) == pytest.approx((0.2 - -0.1) / np.std(pooled, ddof=1))
    # all 20 relabellings enumerated: only the observed split and its mirror reach |d|
    d_all = []
    for c in itertools.combinations(range(6), 3):
        x = pooled[list(c)]
        y = np.delete(pooled, list(c))
        d_all.append(abs(weat_effect_size(x, y)))
    expected = (sum(d >= weat_effect_size(sx, sy) - 1e-12 for d in d_all) + 1) / 21
    p = permutation_p_value(pooled, 3, np.random.default_rng(0))
    assert p == pytest.approx(expected) and p == pytest.approx(3 / 21)
    # sampled relabellings when there are too many to enumerate
    rng = np.random.default_rng(1)
    null = rng.normal(size=400)
    assert permutation_p_value(null, 200, rng, n_permutations=999) > 0.05
    with pytest.raises(ValueError):
        weat_effect_size([0.1, 0.1], [0.1])


def test_detects_reference_clip_group_concept_association(ref_clip: Any) -> None:
    res = run(ref_clip)
    # a = round, b = angular (first appearance); X = doctor, builder, pilot (skewed to round)
    img = res.metric("weat_effect_size", condition="image_targets")
    assert img.headline and img.risk == RiskBand.HIGH
    assert img.ci_low is not None and img.ci_low > 1.0  # round images nearer the X concepts
    assert res.metric("weat_p_value", condition="image_targets").value < 0.01
    txt = res.metric("weat_effect_size", condition="text_targets")
    assert txt.ci_low is not None and txt.ci_low > 1.0
    assert res.metric("weat_p_value", condition="text_targets").value < 0.01
    bd = res.metric("bias_distance", condition="group")
    chance = res.metric("bias_distance_chance", condition="group").value
    assert bd.ci_low is not None and chance is not None and bd.ci_low > 3 * chance
    assert res.metric("bias_distance_p_value", condition="group").value < 0.01
    for occ in ("doctor", "builder", "pilot"):
        assert bd.groups[occ].value > 0.03, occ  # nearer the round images
    for occ in ("chef", "teacher", "farmer"):
        assert bd.groups[occ].value < -0.03, occ
    pol = res.metric("polarity", condition="group")
    assert all(
        np.sign(pol.groups[c].value) == np.sign(bd.groups[c].value)
        for c in ("doctor", "builder", "pilot", "chef", "teacher", "farmer")
    )
    assert res.plots and res.plots[0].kind == "bar"


@pytest.mark.parametrize("control", ["random", "shuffled"])
def test_quiet_on_models_that_cannot_see_the_group(ref_clip: Any, control: str) -> None:
    model = MockModel("dual", dim=32) if control == "random" else Shuffled(ref_clip)
    res = run(model)
    d = res.metric("weat_effect_size", condition="image_targets")
    assert d.value is not None and abs(d.value) < 0.3, (control, d.value)
    assert d.ci_low is not None and d.ci_low < 0 < d.ci_high, control
    for cond in ("image_targets", "text_targets"):
        # 30 correlated sentences: |d| of a blind model can be large, its p-value is not small
        assert res.metric("weat_p_value", condition=cond).value > 0.05, (control, cond)
        assert res.metric("weat_effect_size", condition=cond).risk == RiskBand.LOW
    assert res.metric("bias_distance_p_value", condition="group").value > 0.05
    bd = res.metric("bias_distance", condition="group").value
    chance = res.metric("bias_distance_chance", condition="group").value
    assert bd is not None and chance is not None and bd < 2 * chance


def test_bad_input_is_one_line_each(tmp_path: Path) -> None:
    for params, msg in (
        ({"values": ["round"]}, "must name two different values"),
        ({"concepts_x": []}, "concepts is empty"),
        ({"templates": ["a photo"]}, "no '{}' placeholder"),
    ):
        with pytest.raises(InputError, match=msg):
            EmbeddingBiasProbe(params)
    with pytest.raises(InputError, match="has 6 values"):
        EmbeddingBiasProbe({"attribute": "occupation"}).samples(ProbeContext())
    with pytest.raises(InputError, match="no image has group='square'"):
        EmbeddingBiasProbe({"values": ["round", "square"]}).samples(ProbeContext())


def test_other_values_and_unknown_are_counted_not_used(tmp_path: Path) -> None:
    lines = []
    for i, s in enumerate(SynthWorld(seed=2).people(40)):
        s.image.save(tmp_path / f"{i}.png")
        group = ["round", "angular", "other", ""][i % 4]
        attrs = {"group": group} if group else {}
        lines.append(json.dumps({"image": f"{i}.png", "attributes": attrs}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    data = str(tmp_path / "m.jsonl")
    res = run(MockModel("dual"), {"values": ["round", "angular"]}, data=data)
    share = res.metric("share", condition="group")
    assert share.n == 40 and share.groups["unknown"].n == 10 and share.groups["other"].n == 10
    assert res.metric("weat_effect_size", condition="image_targets").n == 20
    assert any("20 image(s) neither round nor angular (10 'unknown')" in n for n in res.notes)


def test_text_target_p_value_shuffles_image_labels_not_sentences(ref_clip: Any) -> None:
    """SEAT's relabelling of the sentences calls a random image split significant."""
    from helpers import run_probe

    sentence_p = []
    for seed in (0, 1, 2):
        model = Shuffled(ref_clip, seed=seed)  # blind to the group
        probe_, recs = run_probe(EmbeddingBiasProbe({"n": 300, "n_permutations": 500}), model)
        res = {m.name: m for m in probe_.aggregate(recs, ProbeContext())}
        assert res["weat_p_value/text_targets"].value > 0.05, seed
        data = probe_._data(recs)
        assert data is not None
        s_all = data.cos[data.in_a].mean(axis=0) - data.cos[~data.in_a].mean(axis=0)
        n_t = len(probe_.params.templates)
        s = np.concatenate([s_all[: 3 * n_t], s_all[3 * n_t : 6 * n_t]])  # X then Y sentences
        sentence_p.append(
            permutation_p_value(s, 3 * n_t, np.random.default_rng(0), n_permutations=500)
        )
    assert min(sentence_p) < 0.01  # what the sentence relabelling would have flagged
