"""fairness/projection, pbm, inlp and sfid on reference:clip, and their building blocks.

Each debiaser is fitted on SynthWorld people from the fitting world (seed + FIT_SEED_OFFSET) and
evaluated with the fairness probes on their own gallery (seed + 1,000,000): a held-out split,
checked below to share no image with the fit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.core.fair_ranking import fair_order, fair_rerank_scores
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ProbeResult
from vlmtrust.mitigations.fairness import _dual
from vlmtrust.mitigations.fairness.inlp import nullspace_projection
from vlmtrust.mitigations.fairness.projection import calibrated_projection
from vlmtrust.probes._data import EVAL_SEED_OFFSET
from vlmtrust.probes.capability.zero_shot import ZeroShot
from vlmtrust.probes.fairness.attribute_leakage import AttributeLeakageProbe
from vlmtrust.probes.fairness.retrieval_skew import RetrievalSkewProbe
from vlmtrust.runner.engine import evaluate_probe

N_GALLERY = 200
N_FIT = 200


@pytest.fixture(scope="module")
def clip(memo_clip: Any) -> Any:
    import torch

    torch.set_num_threads(2)
    return memo_clip  # shared with test_trained_debiasers.py (the same galleries)


def _harden(model: Any, name: str, tmp: Path, **params: Any) -> Any:
    mit = get_mitigation(name)({"n_fit": N_FIT, **params})
    art = mit.apply(model, MitigationContext(seed=0, out_dir=tmp / name.replace("/", "_")))
    # reload the way `--model hardened:DIR` does, around the same (memoised) base model
    import json

    payload = json.loads((art.out_dir / "wrapper.json").read_text())
    assert payload["mitigation"] == name
    return get_mitigation(name)(payload["params"]).wrap(model)


def _skew(model: Any) -> ProbeResult:
    probe = RetrievalSkewProbe({"n": N_GALLERY, "k": [10, 50]})
    return evaluate_probe(model, probe, ProbeContext(seed=0))


def _value(res: ProbeResult, metric: str, condition: str | None, step: str | None) -> Any:
    for m in res.metrics:
        if (m.key.metric, m.key.condition, m.key.step) == (metric, condition, step):
            return m
    raise AssertionError(f"no {metric} {condition} {step}")


def _zero_shot(model: Any) -> float:
    res = evaluate_probe(model, ZeroShot({"n": 200}), ProbeContext(seed=0))
    return float(_value(res, "accuracy", None, None).value)


def _excess(res: ProbeResult) -> float:
    """MaxSkew@50 over the level of a model blind to the group (the floor of a small gallery)."""
    skew = _value(res, "max_skew", "group:prior", "k=50").value
    return float(skew - _value(res, "max_skew_chance", "group:prior", "k=50").value)


@pytest.fixture(scope="module")
def base_numbers(clip: Any) -> tuple[float, float]:
    return _excess(_skew(clip)), _zero_shot(clip)


def test_fitting_gallery_is_another_draw_than_the_probes_gallery(clip: Any) -> None:
    """Different worlds: different draws (SynthWorld's scene space is finite, so a scene can
    recur in both, as it recurs within one world)."""
    from vlmtrust.data.synthworld import SynthWorld

    assert _dual.FIT_SEED_OFFSET != EVAL_SEED_OFFSET
    fit = SynthWorld(seed=0 + _dual.FIT_SEED_OFFSET).people(N_FIT, correlation=0.0, cue_prob=0.5)
    ev = SynthWorld(seed=0 + EVAL_SEED_OFFSET).people(N_GALLERY, correlation=0.0, cue_prob=0.5)
    assert not {s.id for s in fit} & {s.id for s in ev}
    same = sum(
        hashlib.sha1(a.image.tobytes()).digest() == hashlib.sha1(b.image.tobytes()).digest()
        for a, b in zip(fit, ev, strict=False)
    )
    assert same < 0.05 * N_GALLERY


def test_projection_halves_excess_maxskew_at_under_one_point_of_zero_shot(
    clip: Any, base_numbers: tuple[float, float], tmp_path: Path
) -> None:
    skew0, acc0 = base_numbers
    hardened = _harden(clip, "fairness/projection", tmp_path)
    skew1 = _excess(_skew(hardened))
    acc1 = _zero_shot(hardened)
    assert skew1 <= 0.5 * skew0, (skew0, skew1)
    assert acc1 >= acc0 - 0.01, (acc0, acc1)


def test_pbm_reranks_the_probe_and_leaves_embeddings_alone(
    clip: Any, base_numbers: tuple[float, float], tmp_path: Path
) -> None:
    skew0, _ = base_numbers
    hardened = _harden(clip, "fairness/pbm", tmp_path)
    res = _skew(hardened)
    assert _excess(res) <= 0.5 * skew0
    assert any("re-ranks retrieval" in n for n in res.notes)
    from vlmtrust.data.synthworld import SynthWorld

    imgs = [s.image for s in SynthWorld(seed=5).people(8)]
    assert np.array_equal(hardened.embed_images(imgs), clip.embed_images(imgs))
    assert hardened.fingerprint != clip.fingerprint


def test_inlp_lowers_attribute_leakage_at_a_bounded_cost(
    clip: Any, base_numbers: tuple[float, float], tmp_path: Path
) -> None:
    _, acc0 = base_numbers
    probe = {"n": N_GALLERY, "concepts": []}

    def leak(model: Any) -> float:
        res = evaluate_probe(model, AttributeLeakageProbe(probe), ProbeContext(seed=0))
        return float(_value(res, "leakage", "group", "embedding").value)

    hardened = _harden(clip, "fairness/inlp", tmp_path, iterations=3)
    before, after = leak(clip), leak(hardened)
    assert after <= before - 0.2, (before, after)
    assert _zero_shot(hardened) >= acc0 - 0.2


def test_calibrated_projection_removes_bias_and_shrinks_pairs() -> None:
    rng = np.random.default_rng(0)
    bias = rng.normal(size=(1, 6))
    pairs = rng.normal(size=(4, 6))
    p0 = calibrated_projection(bias, pairs, 0.0)
    assert np.allclose(p0 @ bias[0], 0.0)
    p = calibrated_projection(bias, pairs, 100.0)
    assert np.allclose(bias[0] @ p, 0.0, atol=1e-9)  # P0 on the left: every P t ⟂ bias
    assert np.linalg.norm(pairs @ p.T) < 0.1 * np.linalg.norm(pairs @ p0.T)


def test_inlp_stops_at_chance_and_removes_a_planted_direction() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8))
    y = np.where(x[:, 0] + 0.1 * rng.normal(size=400) > 0, "a", "b")
    res = nullspace_projection(x[:300], y[:300], x[300:], y[300:], iterations=5, tolerance=0.05)
    assert res.dev_accuracy[0] > 0.9 and res.dev_accuracy[-1] < 0.6
    assert abs((res.matrix @ np.eye(8)[0])[0]) < 0.2


def test_fair_order_equalises_every_prefix_and_keeps_group_order() -> None:
    rng = np.random.default_rng(2)
    groups = ["a"] * 30 + ["b"] * 10
    scores = rng.normal(size=(3, 40)) + np.array([1.0] * 30 + [0.0] * 10)
    order = fair_order(scores, groups)
    for row, s in zip(order, scores, strict=True):
        g = np.array(groups)[row]
        for i in range(1, 21):
            assert abs((g[:i] == "a").sum() - i / 2) <= 1
        for v in "ab":
            kept = row[g == v]
            assert np.all(np.diff(s[kept]) <= 0)  # score order within each group
    prior = fair_order(scores, groups, "prior")
    assert abs((np.array(groups)[prior[0, :20]] == "a").sum() - 15) <= 1
    assert fair_rerank_scores(scores, groups).shape == (3, 40)


def test_mitigations_refuse_unfitted_or_wrong_models(clip: Any) -> None:
    for name in ("fairness/projection", "fairness/inlp", "fairness/pbm", "fairness/sfid"):
        with pytest.raises(InputError, match="harden"):
            get_mitigation(name)().wrap(clip)
    from vlmtrust.models.mock import MockModel

    with pytest.raises(InputError, match="dual encoders"):
        get_mitigation("fairness/projection")().prepare(MockModel(), MitigationContext())
    with pytest.raises(InputError, match="one prompt per group"):
        bad = {"predictor": "zero_shot", "group_prompts": ["x"]}
        get_mitigation("fairness/pbm")(bad).wrap(clip)


def test_sfid_imputes_the_forests_dimensions_and_lowers_the_skew(
    clip: Any, base_numbers: tuple[float, float], tmp_path: Path
) -> None:
    skew0, acc0 = base_numbers
    hardened = _harden(clip, "fairness/sfid", tmp_path, trees=100)
    from vlmtrust.data.synthworld import SynthWorld

    imgs = [s.image for s in SynthWorld(seed=5).people(4)]
    raw = np.asarray(hardened.embed_images(imgs), dtype=np.float64)
    # the imputed dimensions are the same for every image, up to the renormalisation
    ratio = raw[:, hardened.dims] / hardened.values
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-4)
    assert _excess(_skew(hardened)) < skew0
    assert _zero_shot(hardened) >= acc0 - 0.03


def test_fit_on_user_data_needs_two_values_of_the_attribute(tmp_path: Path) -> None:
    import json

    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.models.mock import MockModel

    lines = []
    for i, s in enumerate(SynthWorld(seed=9).people(12, cue_prob=0.5)):
        s.image.save(tmp_path / f"{i}.png")
        attrs = {"group": s.attributes["group"], "occupation": s.attributes["occupation"]}
        lines.append(json.dumps({"id": f"p{i}", "image": f"{i}.png", "attributes": attrs}))
    (tmp_path / "people.jsonl").write_text("\n".join(lines) + "\n")
    ctx = MitigationContext(data=str(tmp_path / "people.jsonl"), out_dir=tmp_path / "out")
    model = MockModel("dual")
    fit = _dual.fit_gallery(model, ctx, 12, need=["group"], name="t")
    assert len(fit.embeddings) == 12 and set(fit.values("group")) == {"round", "angular"}
    with pytest.raises(InputError, match="attribute 'gender'.*manifest"):
        get_mitigation("fairness/inlp")({"attribute": "gender"}).prepare(model, ctx)
