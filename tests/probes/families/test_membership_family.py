"""The membership family end to end through the runner, and its metric functions by hand."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from vlmtrust.core.metrics import auc, clopper_pearson, roc_point_at_fpr, tpr_at_fpr
from vlmtrust.core.params import Params
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.types import Capability, RiskBand
from vlmtrust.probes.families.membership import MembershipProbe
from vlmtrust.runner.engine import evaluate_probe


class RecallModel:
    """Scores a candidate ``strength`` higher when it was trained on it, plus seeded noise."""

    kind = "dual"
    capabilities = Capability.EMBED
    logit_scale = 100.0

    def __init__(self, trained_on: set[str], strength: float) -> None:
        self.trained_on = trained_on
        self.strength = strength
        self.spec = f"toy:recall@{strength}"
        self.fingerprint = f"toy-recall-{strength}"

    def score(self, sample_id: str) -> float:
        seed = int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "little")
        noise = np.random.default_rng(seed).uniform(0, 1)
        return self.strength * (sample_id in self.trained_on) + float(noise)


class ToyParams(Params):
    n: int = 200
    confounded: bool = False
    """Members are brighter images: a model-free score tells the splits apart."""


def member_ids(n: int) -> set[str]:
    return {f"m{i:04d}" for i in range(n)}


@probe("privacy/test_membership_toy")
class ToyMembershipProbe(MembershipProbe):
    requires = Capability.EMBED
    Params = ToyParams
    model_free_key = "brightness"
    params: ToyParams

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        rng = ctx.rng("brightness")
        for member, prefix in (("1", "m"), ("0", "x")):
            for i in range(self.params.n):
                shift = 0.5 if self.params.confounded and member == "1" else 0.0
                yield Sample(
                    id=f"{prefix}{i:04d}",
                    attributes={"member": member},
                    metadata={"brightness": float(rng.uniform(0, 1)) + shift},
                )

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        return [
            self.record(
                s,
                scores={"score": model.score(s.id), "brightness": s.metadata["brightness"]},
            )
            for s in batch
        ]


def run(strength: float, **params: Any) -> Any:
    model = RecallModel(member_ids(params.get("n", 200)), strength)
    return evaluate_probe(model, ToyMembershipProbe(params), ProbeContext(seed=0))


def test_separable_toy_has_auc_1_and_full_tpr_at_low_fpr() -> None:
    res = run(strength=2.0)
    a = res.metric("auc")
    assert a.value == pytest.approx(1.0) and a.n == 400
    assert a.ci_low == pytest.approx(1.0) and a.risk == RiskBand.HIGH
    low = res.metric("tpr_at_fpr", step="fpr=0.1%")
    assert low.name == "tpr_at_fpr/fpr=0.1%"
    assert low.value == pytest.approx(1.0) and low.n == 200
    # Exact interval for 200 of 200: the lower bound is (alpha/2)^(1/n).
    assert low.ci_low == pytest.approx(0.025 ** (1 / 200)) and low.ci_high == 1.0
    assert res.metric("tpr_at_fpr", step="fpr=1%").value == pytest.approx(1.0)
    assert [p.kind for p in res.plots] == ["roc"]
    roc = res.plots[0].series[0]
    assert roc.x[0] == 0.0 and roc.y[0] == 0.0 and roc.x[-1] == 1.0 and roc.y[-1] == 1.0
    assert "confounded" not in a.description


def test_random_toy_has_auc_ci_covering_one_half() -> None:
    res = run(strength=0.0)
    a = res.metric("auc")
    assert a.ci_low is not None and a.ci_high is not None
    assert a.ci_low < 0.5 < a.ci_high and abs(a.value - 0.5) < 0.08  # type: ignore[operator]
    low = res.metric("tpr_at_fpr", step="fpr=1%")
    assert low.value is not None and low.value < 0.1
    assert low.ci_low is not None and low.ci_low <= 0.01
    free = res.metric("auc", condition="model_free")
    assert free.risk == RiskBand.LOW


def test_confounded_split_is_noted() -> None:
    res = run(strength=0.0, confounded=True)
    free = res.metric("auc", condition="model_free")
    assert free.value is not None and free.value > 0.7 and free.risk == RiskBand.HIGH
    assert "split confounded" in res.metric("auc").description
    assert any(n.startswith("split confounded") for n in res.notes)  # the runner shows it
    assert not any("confounded" in n for n in run(strength=0.0).notes)
    probe_ = ToyMembershipProbe({"confounded": True})

    def recs(n: int) -> list[Record]:
        return [
            Record(
                sample_id=f"r{i}",
                index=i,
                attributes={"member": str(i % 2)},
                scores={"brightness": float(i % 2)},
            )
            for i in range(n)
        ]

    # Perfect separation of one member and one non-member is no evidence (p = 1): not flagged.
    assert probe_.confounded(recs(2)) is None
    # Of ten, it is (Mann-Whitney p < 0.05).
    assert probe_.confounded(recs(10)) == 1.0
    assert probe_.notes(recs(10), ProbeContext())[0].startswith("split confounded")


def test_tpr_at_1pct_fpr_by_hand() -> None:
    # 100 non-members scored 0..99; members 98.5, 150, 160 and 50. At FPR <= 1% one
    # non-member may be flagged: the threshold 98.5 flags the non-member 99 and catches 3 of 4.
    y = [0] * 100 + [1] * 4
    s = [*range(100), 98.5, 150, 160, 50]
    assert tpr_at_fpr(y, s, fpr=0.01) == 0.75
    p = roc_point_at_fpr(y, s, fpr=0.01)
    assert (p.true_positives, p.positives, p.negatives) == (3, 4, 100)
    assert (p.false_positives, p.threshold) == (1, 98.5)
    # At 0.1% FPR no non-member may be flagged: threshold 150 catches 2.
    assert tpr_at_fpr(y, s, fpr=0.001) == 0.5
    lo, hi = clopper_pearson(3, 4)
    assert lo == pytest.approx(0.194120, abs=1e-6) and hi == pytest.approx(0.975**0.25)
    # AUC: 98.5 beats 99 non-members, 150 and 160 all 100, 50 beats 0..49 and ties 50 (½).
    assert auc(y, s) == pytest.approx((99 + 200 + 50.5) / 400)


def test_metric_functions_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr([0, 1], [0.1, 0.2], fpr=1.5)


def test_membership_roc_is_drawn_on_a_log_fpr_axis() -> None:
    from vlmtrust.report.plots import plot_to_svg

    res = run(strength=0.5)
    roc = res.plots[0]
    assert min(x for x in roc.series[0].x if x > 0) < 0.01  # type: ignore[operator]
    svg = plot_to_svg(roc)
    assert "non-members flagged) (log scale)" in svg
    assert 'id="reference_diagonal"' in svg and 'id="series_s0"' in svg
