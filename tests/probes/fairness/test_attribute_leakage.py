"""fairness/attribute_leakage: the metric, small and unknown groups, reference:clip's leakage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fair_toys import (
    Shuffled,
    ref_clip_fixture,  # noqa: F401  (the session fixture ref_clip)
    seeing,
)

from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ProbeResult
from vlmtrust.core.types import RiskBand
from vlmtrust.data.synthworld import SynthWorld
from vlmtrust.models.mock import MockModel
from vlmtrust.probes.fairness.attribute_leakage import (
    AttributeLeakageProbe,
    balanced_accuracy,
    balanced_accuracy_replicates,
)
from vlmtrust.runner.engine import evaluate_probe


def run(model: Any, params: dict[str, Any] | None = None, **ctx: Any) -> ProbeResult:
    probe_ = AttributeLeakageProbe({"n": 300, **(params or {})})
    return evaluate_probe(model, probe_, ProbeContext(**ctx))


def test_balanced_accuracy_equals_sklearn() -> None:
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    for _ in range(10):
        y = rng.integers(0, 3, 50)
        p = np.where(rng.random(50) < 0.5, y, rng.integers(0, 3, 50))
        assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))


def test_vectorised_bootstrap_equals_the_generic_one() -> None:
    from vlmtrust.core.stats import bootstrap_replicates

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 120)
    p = np.where(rng.random(120) < 0.7, y, rng.integers(0, 3, 120))
    fast = balanced_accuracy_replicates(y, p, seed=5)
    slow = bootstrap_replicates(balanced_accuracy, y, p, seed=5)
    np.testing.assert_allclose(fast, slow, atol=1e-12)  # same seed, same resamples


def test_detects_reference_clip_group_leakage(ref_clip: Any) -> None:
    res = run(ref_clip)
    emb = res.metric("leakage", condition="group", step="embedding")
    assert emb.headline and emb.risk == RiskBand.HIGH and emb.ci_low > 0.4  # visible in pixels
    scores = res.metric("leakage", condition="group", step="concept_scores")
    # the planted shortcut: neutral-query scores alone tell the group
    assert scores.risk == RiskBand.HIGH and scores.ci_low is not None and scores.ci_low > 0.2
    bal = res.metric("balanced_accuracy", condition="group", step="concept_scores")
    assert set(bal.groups) == {"round", "angular"} and bal.gap is None


@pytest.mark.parametrize("control", ["random", "shuffled", "group_blind"])
def test_quiet_on_models_that_cannot_see_the_group(ref_clip: Any, control: str) -> None:
    model = {
        "random": lambda: MockModel("dual", dim=32),
        "shuffled": lambda: Shuffled(ref_clip),
        "group_blind": lambda: seeing(),
    }[control]()
    res = run(model)
    for feat in ("embedding", "concept_scores"):
        m = res.metric("leakage", condition="group", step=feat)
        assert m.value is not None and m.value < 0.08, (control, feat, m.value)
        assert m.ci_low is not None and m.ci_low < 0.02, (control, feat)
    assert res.metric("leakage", condition="group", step="embedding").risk == RiskBand.LOW


def test_small_and_unknown_values_are_shown_not_used(tmp_path: Path) -> None:
    lines = []
    for i, s in enumerate(SynthWorld(seed=3).people(64)):
        s.image.save(tmp_path / f"{i}.png")
        attrs = {"group": s.attributes["group"]}
        if i < 4:
            attrs = {"group": "rare"}
        elif i < 10:
            attrs = {}
        lines.append(json.dumps({"image": f"{i}.png", "attributes": attrs}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    res = run(MockModel("dual"), data=str(tmp_path / "m.jsonl"))
    bal = res.metric("balanced_accuracy", condition="group", step="embedding")
    assert bal.n == 54  # round + angular
    assert bal.groups["rare"].value is None and bal.groups["rare"].n == 4
    assert bal.groups["unknown"].value is None and bal.groups["unknown"].n == 6
    assert any("rare (n=4)" in n and "unknown (n=6)" in n for n in res.notes)
    with pytest.raises(InputError, match="concepts is empty|folds"):
        AttributeLeakageProbe({"folds": 1})
    only = run(MockModel("dual"), {"concepts": []}, data=str(tmp_path / "m.jsonl"))
    assert not only.metrics_where(step="concept_scores")
