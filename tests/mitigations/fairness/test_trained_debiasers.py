"""fairness/prompt_array, dear and resample on reference:clip, and the trained-debiaser protocol.

Each debiaser trains briefly (few epochs) on the fitting world (seed + FIT_SEED_OFFSET), picks
its checkpoint on the validation part of that world, and is measured by the fairness probes on
their own world (seed + 1,000,000), against the same probes on the base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ProbeResult
from vlmtrust.mitigations.fairness import _trained
from vlmtrust.mitigations.fairness.prompt_array import (
    _standardise,
    prefixed_text_features,
    query_top_skew,
    separability,
    top_skew,
)
from vlmtrust.mitigations.fairness.resample import cluster_weights
from vlmtrust.probes.capability.zero_shot import ZeroShot
from vlmtrust.probes.fairness.retrieval_skew import RetrievalSkewProbe
from vlmtrust.runner.engine import evaluate_probe

N = 200


def _value(res: ProbeResult, metric: str, condition: str | None, step: str | None) -> float:
    for m in res.metrics:
        if (m.key.metric, m.key.condition, m.key.step) == (metric, condition, step):
            return float(m.value)
    raise AssertionError(f"no {metric} {condition} {step}")


def _excess_skew(model: Any) -> float:
    """MaxSkew@50 (group vs prior) over the level of a model blind to the group."""
    res = evaluate_probe(model, RetrievalSkewProbe({"n": N, "k": [10, 50]}), ProbeContext(seed=0))
    skew = _value(res, "max_skew", "group:prior", "k=50")
    return skew - _value(res, "max_skew_chance", "group:prior", "k=50")


def _zero_shot(model: Any) -> float:
    res = evaluate_probe(model, ZeroShot({"n": N}), ProbeContext(seed=0))
    return _value(res, "accuracy", None, None)


def _harden(model: Any, name: str, tmp: Path, **params: Any) -> Any:
    """Fit, write wrapper.json, and load it back the way ``--model hardened:DIR`` does."""
    mit = get_mitigation(name)({"n_fit": N, **params})
    art = mit.apply(model, MitigationContext(seed=0, out_dir=tmp / name.replace("/", "_")))
    payload = json.loads((art.out_dir / "wrapper.json").read_text())
    assert payload["mitigation"] == name and payload["params"]["selected_epoch"] >= 1
    assert len(payload["params"]["validation"]) == params.get("epochs", 1)
    return get_mitigation(name)(payload["params"]).wrap(model)


@pytest.fixture(scope="module")
def clip(memo_clip: Any) -> Any:
    import torch

    torch.set_num_threads(1)  # tiny tensors: one thread is fastest on a shared machine
    return memo_clip


@pytest.fixture(scope="module")
def base(clip: Any) -> dict[str, float]:
    return {"skew": _excess_skew(clip), "acc": _zero_shot(clip)}


def test_prompt_array_lowers_maxskew_and_keeps_zero_shot(
    clip: Any, base: dict[str, float], tmp_path: Path
) -> None:
    """Berg et al.'s joint adversary (lowers the skew in this setting, not over 5 seeds)."""
    hardened = _harden(
        clip,
        "fairness/prompt_array",
        tmp_path,
        adversary="joint",
        epochs=6,
        steps_per_epoch=8,
        anchors=16,
        lr=0.03,
    )
    texts = ["a photo of a doctor", "a photo of a person"]
    assert not np.allclose(hardened.embed_texts(texts), clip.embed_texts(texts))
    skew = _excess_skew(hardened)
    assert skew <= 0.8 * base["skew"], (base["skew"], skew)
    assert _zero_shot(hardened) >= base["acc"] - 0.03


def test_prompt_array_topk_on_the_probe_queries_lowers_maxskew(
    clip: Any, base: dict[str, float], tmp_path: Path
) -> None:
    """The default top-share adversary fitted on retrieval_skew's own queries, measured on
    the probe's held-out images: excess MaxSkew@50 0.287 -> 0.174 (0.61x) when measured, zero-shot
    unchanged. It needs 400 fitting images here (at 200 the top 8% of 140 training images is
    too few to learn from: 1.08x)."""
    hardened = _harden(
        clip, "fairness/prompt_array", tmp_path, queries="probe", epochs=8, n_fit=400
    )
    skew = _excess_skew(hardened)
    assert skew <= 0.75 * base["skew"], (base["skew"], skew)
    assert _zero_shot(hardened) >= base["acc"] - 0.02


def test_top_skew_is_zero_for_a_group_blind_top_and_reads_rankings() -> None:
    import torch

    g = torch.arange(200) % 2
    blind = torch.arange(200, dtype=torch.float32)[:, None]  # groups alternate down the ranking
    assert float(top_skew(_standardise(blind), g, 2, 0.1, 0.05)) < 1e-3
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    z[:, 0] += 3.0 * g  # one group fills column 0's top
    skew = top_skew(_standardise(z), g, 2, 0.1, 0.05)
    moved = top_skew(_standardise(z * 4.0 - 2.0), g, 2, 0.1, 0.05)
    assert float(skew) > 0.2 and torch.isclose(skew, moved, atol=1e-5)
    sims = z.double().numpy()
    labels = np.array(["a", "b"])[g.numpy()]
    assert query_top_skew(sims[:, [0]], labels, 0.1) == pytest.approx(np.log(2.0))
    assert query_top_skew(np.arange(200.0)[:, None], labels, 0.1) == pytest.approx(0.0)


def test_the_adversary_reads_rankings_not_shifts() -> None:
    """A shift or scale of a query's similarities changes no ranking and no separability."""
    import torch

    torch.manual_seed(0)
    g = torch.arange(64) % 2
    z = torch.randn(64, 3)
    z[:, 0] += 2.0 * g  # column 0 depends on the group, 1 and 2 do not
    base = separability(_standardise(z), g, 2)
    moved = separability(_standardise(z * torch.tensor([3.0, 0.5, 1.0]) + 7.0), g, 2)
    assert torch.isclose(base, moved, atol=1e-6)
    assert float(separability(_standardise(z[:, 1:]), g, 2)) < 0.1 < float(base) * 3


def test_an_empty_prompt_is_the_text_tower_itself(clip: Any) -> None:
    import torch

    texts = ["a photo of a doctor", "a person", "a photo of a friendly person"]
    out = prefixed_text_features(clip, texts, torch.zeros(0, 128))
    assert np.allclose(out.detach().numpy(), clip.embed_texts(texts), atol=1e-6)


def test_dear_lowers_maxskew_and_keeps_zero_shot(
    clip: Any, base: dict[str, float], tmp_path: Path
) -> None:
    """The residual fools its adversary: retrieval skew falls; a fresh linear probe on the
    evaluation gallery (attribute_leakage) still decodes the group, so that is not asserted."""
    hardened = _harden(clip, "fairness/dear", tmp_path, epochs=8)
    skew = _excess_skew(hardened)
    assert skew <= 0.8 * base["skew"], (base["skew"], skew)
    assert _zero_shot(hardened) >= base["acc"] - 0.03


def test_resample_lowers_maxskew_and_keeps_zero_shot(
    clip: Any, base: dict[str, float], tmp_path: Path
) -> None:
    hardened = _harden(clip, "fairness/resample", tmp_path, epochs=6)
    assert _excess_skew(hardened) < base["skew"]
    assert _zero_shot(hardened) >= base["acc"] - 0.03


def test_selection_takes_only_a_validation_split(clip: Any) -> None:
    """The evaluation gallery (or anything but split_fit's validation part) cannot select."""
    with pytest.raises(TypeError, match="split_fit"):
        _trained.ValidationSplit(np.zeros((2, 2)), np.array(["a", "b"]), np.array(["x", "y"]))
    ctx = MitigationContext(seed=0)
    train, val = _trained.split_fit(clip, ctx, 40, "group", "occupation", 0.5, name="t")
    assert len(val) == 20 and len(train.x) == 20
    from vlmtrust.probes.fairness._common import people

    evaluation = people(ProbeContext(seed=0), 8)
    for wrong in (train, evaluation, val.x):
        with pytest.raises(TypeError, match="evaluation split is never used"):
            _trained.select_checkpoint(
                [1], wrong, lambda c, v: (0.0, 1.0), base_accuracy=1.0, max_drop=0.0
            )  # type: ignore[arg-type]
    # lowest bias among the accurate enough; all too inaccurate: the most accurate
    scores = {0: (0.3, 0.90), 1: (0.1, 0.70), 2: (0.2, 0.89)}
    sel = _trained.select_checkpoint(
        [0, 1, 2], val, lambda c, v: scores[c], base_accuracy=0.9, max_drop=0.02
    )
    assert sel.chosen == 2 and sel.scores[1] == (0.1, 0.7)
    sel = _trained.select_checkpoint(
        [0, 1, 2], val, lambda c, v: scores[c], base_accuracy=1.0, max_drop=0.0
    )
    assert sel.chosen == 0


def test_paired_interval_is_a_paired_t_over_seeds() -> None:
    base = [0.30, 0.28, 0.31, 0.29, 0.30]
    hard = [0.15, 0.14, 0.16, 0.15, 0.13]
    iv = _trained.paired_interval(base, hard)
    d = np.subtract(hard, base)
    assert iv.n == 5 and iv.mean == pytest.approx(d.mean())
    assert iv.low < iv.mean < iv.high < 0
    # 2.776 = t(0.975, 4)
    assert iv.high - iv.mean == pytest.approx(2.776 * d.std(ddof=1) / np.sqrt(5), rel=1e-3)
    with pytest.raises(InputError, match="each seed for both"):
        _trained.paired_interval([0.1], [0.2])


def test_cluster_weights_favour_the_clusters_that_fail() -> None:
    assign = np.array([0, 0, 1, 1, 2])
    correct = np.array([True, True, False, True, False])
    w, acc = cluster_weights(assign, correct, 4, 2.0)
    assert np.allclose(acc[:3], [1.0, 0.5, 0.0]) and np.isnan(acc[3])
    assert w.mean() == pytest.approx(1.0) and w[4] > w[2] > w[0]


def test_trained_debiasers_refuse_unfitted_or_wrong_models(clip: Any) -> None:
    from vlmtrust.models.mock import MockModel

    for name in ("fairness/prompt_array", "fairness/dear", "fairness/resample"):
        with pytest.raises(InputError, match="harden"):
            get_mitigation(name)().wrap(clip)
        with pytest.raises(InputError, match="dual encoders"):
            get_mitigation(name)().prepare(MockModel(), MitigationContext())
    with pytest.raises(InputError, match="CLIP-style text tower"):
        get_mitigation("fairness/prompt_array")().prepare(MockModel("dual"), MitigationContext())
