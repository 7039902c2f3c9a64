"""The group family end to end through the runner, on toys with a known (planted) gap."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlmtrust.core.params import Params
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import MetricKey, Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.types import Capability, RiskBand
from vlmtrust.probes.families.group import GroupProbe
from vlmtrust.report.html import render_report
from vlmtrust.runner.engine import evaluate_probe, run_audit


class QuotaModel:
    """Answers correctly on the first ``round(10 * accuracy[group])`` of every 10 questions."""

    kind = "dual"
    capabilities = Capability.EMBED
    logit_scale = 100.0
    fingerprint = "toy-quota-v1"

    def __init__(self, accuracy: dict[str, float]) -> None:
        self.accuracy = accuracy
        self.spec = f"toy:quota{sorted(accuracy.items())}"

    def correct(self, group: str, i: int) -> bool:
        return i % 10 < round(10 * self.accuracy[group])


class ToyParams(Params):
    n_per_group: int = 100


@probe("fairness/test_group_toy")
class ToyGroupProbe(GroupProbe):
    """Accuracy by ``group`` (a, b) and by ``parity`` (even, odd block of ten samples)."""

    requires = Capability.EMBED
    Params = ToyParams
    group_attributes = ("group", "parity")
    params: ToyParams

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        for g in ("a", "b"):
            for i in range(self.params.n_per_group):
                yield Sample(
                    id=f"{g}{i:03d}",
                    prompt="is this a cat?",
                    attributes={"group": g, "parity": "even" if i // 10 % 2 == 0 else "odd"},
                    metadata={"i": i},
                )

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        return [
            self.record(
                s, scores={"correct": float(model.correct(s.attributes["group"], s.metadata["i"]))}
            )
            for s in batch
        ]


def test_planted_gap_of_0_4_is_measured_with_a_ci_excluding_0_and_flagged() -> None:
    res = evaluate_probe(QuotaModel({"a": 0.9, "b": 0.5}), ToyGroupProbe(), ProbeContext(seed=0))
    acc = res.metric("accuracy", condition="group", group=None)
    assert acc.value == pytest.approx(0.7)
    assert acc.groups["a"].value == pytest.approx(0.9) and acc.groups["a"].n == 100
    assert acc.groups["b"].value == pytest.approx(0.5) and acc.groups["b"].n == 100
    gap = acc.gap
    assert gap is not None
    assert gap.difference == pytest.approx(0.4)
    assert gap.ratio == pytest.approx(0.5 / 0.9)
    assert gap.worst == "b" and gap.best == "a"
    assert gap.difference_ci_low is not None and gap.difference_ci_high is not None
    assert 0.2 < gap.difference_ci_low < 0.4 < gap.difference_ci_high < 0.6
    assert gap.ratio_ci_high is not None and gap.ratio_ci_high < 0.8

    diff = res.metric("accuracy_difference", condition="group")
    assert diff.value == pytest.approx(0.4) and diff.risk == RiskBand.HIGH
    assert (diff.ci_low, diff.ci_high) == (gap.difference_ci_low, gap.difference_ci_high)
    ratio = res.metric("accuracy_ratio", condition="group")
    assert ratio.value == pytest.approx(0.5 / 0.9) and ratio.risk == RiskBand.HIGH
    b = res.metric("accuracy", condition="group", group="b")
    assert b.key == MetricKey(metric="accuracy", condition="group", group="b")
    assert b.name == "accuracy/group[b]" and b.value == pytest.approx(0.5) and b.n == 100

    # Parity splits whole blocks of ten, so each parity group has accuracy 0.7: no gap.
    parity = res.metric("accuracy_difference", condition="parity")
    assert parity.value == pytest.approx(0.0) and parity.risk == RiskBand.LOW


def test_no_gap_gives_a_difference_ci_covering_0_and_no_flag() -> None:
    res = evaluate_probe(QuotaModel({"a": 0.7, "b": 0.7}), ToyGroupProbe(), ProbeContext(seed=0))
    gap = res.metric("accuracy", condition="group", group=None).gap
    assert gap is not None
    assert gap.difference == pytest.approx(0.0) and gap.ratio == pytest.approx(1.0)
    assert gap.difference_ci_low is not None and gap.difference_ci_high is not None
    # max − min is never negative: covering 0 means the lower bound is 0.
    assert gap.difference_ci_low == pytest.approx(0.0, abs=1e-12)
    assert 0.05 < gap.difference_ci_high < 0.25
    assert gap.ratio_ci_high == pytest.approx(1.0)
    assert res.metric("accuracy_difference", condition="group").risk == RiskBand.LOW
    assert res.metric("accuracy_ratio", condition="group").risk == RiskBand.LOW


def test_group_family_run_renders_the_gap_in_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    log = run_audit(
        QuotaModel({"a": 0.9, "b": 0.5}),
        [ToyGroupProbe({"n_per_group": 20})],
        out_dir=out,
        ctx=ProbeContext(seed=1),
    )
    assert log.results[0].metric("accuracy_difference", condition="group").value == (
        pytest.approx(0.4)
    )
    html, md = render_report(out)
    text = html.read_text()
    assert "gap over groups: difference <strong>40.0%</strong>" in text
    assert "worst group: <strong>b</strong>" in text
    assert "accuracy\\_difference/group" in md.read_text()


class GapParams(Params):
    n_per_group: int = 100
    n_missing: int = 0
    n_small: int = 0
    min_group_size: int = 1


@probe("fairness/test_group_toy_bad_input")
class BadInputToy(GroupProbe):
    """Groups a and b (accuracy 0.9 / 0.5), samples without ``group``, a small group c."""

    requires = Capability.EMBED
    Params = GapParams
    group_attributes = ("group",)
    intersections = (("group", "parity"),)
    params: GapParams

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        plan = [("a", self.params.n_per_group), ("b", self.params.n_per_group)]
        plan += [("", self.params.n_missing), ("c", self.params.n_small)]
        for g, n in plan:
            for i in range(n):
                attrs = {"parity": "even" if i // 10 % 2 == 0 else "odd"}
                if g:
                    attrs["group"] = g
                yield Sample(id=f"{g or 'none'}{i:03d}", attributes=attrs, metadata={"i": i})

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        acc = {"a": 0.9, "b": 0.5, "c": 0.0, "": 1.0}
        return [
            self.record(
                s,
                scores={
                    "correct": float(
                        s.metadata["i"] % 10 < round(10 * acc[s.attributes.get("group", "")])
                    )
                },
            )
            for s in batch
        ]


def test_samples_without_the_attribute_are_shown_as_unknown_counted_not_scored() -> None:
    probe_ = BadInputToy({"n_missing": 30})
    res = evaluate_probe(QuotaModel({}), probe_, ProbeContext(seed=0))
    acc = res.metric("accuracy", condition="group", group=None)
    assert acc.n == 230  # nobody dropped
    assert acc.groups["unknown"].n == 30 and acc.groups["unknown"].value == pytest.approx(1.0)
    # the gap is over the known groups only (unknown has the best accuracy, 1.0)
    assert acc.gap is not None and acc.gap.difference == pytest.approx(0.4)
    assert acc.gap.best == "a"
    unknown = res.metric("accuracy", condition="group", group="unknown")
    assert unknown.n == 30 and "shown, not scored" in unknown.description
    assert any("30 sample(s) without the attribute" in n for n in res.notes)
    # an intersection with a missing part is unknown too: "unknown&even"
    inter = res.metric("accuracy", condition="group&parity", group=None)
    assert inter.groups["unknown&even"].n == 20 and inter.groups["a&odd"].n == 50
    assert inter.gap is not None and "unknown" not in (inter.gap.best or "")


def test_groups_below_the_minimum_size_are_shown_not_scored() -> None:
    probe_ = BadInputToy({"n_small": 5, "min_group_size": 10})
    res = evaluate_probe(QuotaModel({}), probe_, ProbeContext(seed=0))
    acc = res.metric("accuracy", condition="group", group=None)
    assert acc.groups["c"].n == 5 and acc.groups["c"].value == pytest.approx(0.0)
    assert acc.gap is not None and acc.gap.difference == pytest.approx(0.4)  # c not in it
    assert acc.gap.worst == "b"
    assert res.metric("accuracy", condition="group", group="c").n == 5
    assert any("c (n=5)" in n and "fewer than 10" in n for n in res.notes)
    # with the default minimum (1), c is scored and is the worst group
    scored = evaluate_probe(QuotaModel({}), BadInputToy({"n_small": 5}), ProbeContext(seed=0))
    gap = scored.metric("accuracy", condition="group", group=None).gap
    assert gap is not None and gap.worst == "c" and gap.difference == pytest.approx(0.9)


class SlowMean(ToyGroupProbe):
    """The same statistic, overridden: the family's generic (one call per replicate) path."""

    def statistic(self, values: Any) -> float:
        return float(np.mean(values))


def test_vectorised_mean_bootstrap_matches_the_generic_path() -> None:
    model = QuotaModel({"a": 0.8, "b": 0.5})
    fast = evaluate_probe(model, ToyGroupProbe(), ProbeContext(seed=3))
    slow = evaluate_probe(model, SlowMean(), ProbeContext(seed=3))
    for name in ("accuracy", "accuracy_difference", "accuracy_ratio"):
        f = fast.metric(name, condition="group", group=None)
        s = slow.metric(name, condition="group", group=None)
        assert f.value == pytest.approx(s.value)
        assert f.ci_low == pytest.approx(s.ci_low, abs=0.03)
        assert f.ci_high == pytest.approx(s.ci_high, abs=0.03)
    fa = fast.metric("accuracy", condition="group", group=None).groups["b"]
    sa = slow.metric("accuracy", condition="group", group=None).groups["b"]
    assert fa.value == sa.value and fa.n == sa.n
    assert fa.ci_low == pytest.approx(sa.ci_low, abs=1e-12)  # same seed, same resamples


class CoinParams(Params):
    n_groups: int = 12
    per_group: int = 20
    planted: float = 0.0


@probe("fairness/test_group_toy_coins")
class CoinToy(GroupProbe):
    """Coin-flip outcomes in many small groups (group g0 gets ``planted`` more heads)."""

    requires = Capability.EMBED
    Params = CoinParams
    group_attributes = ("group",)
    params: CoinParams

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        rng = np.random.default_rng(7)
        for g in range(self.params.n_groups):
            p = 0.5 + (self.params.planted if g == 0 else 0.0)
            for i in range(self.params.per_group):
                yield Sample(
                    id=f"g{g}-{i}",
                    attributes={"group": f"g{g}"},
                    metadata={"head": float(rng.random() < p)},
                )

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        return [self.record(s, scores={"correct": s.metadata["head"]}) for s in batch]


def test_a_gap_of_noise_alone_is_not_flagged_a_planted_one_is() -> None:
    noise = evaluate_probe(QuotaModel({}), CoinToy(), ProbeContext(seed=0))
    diff = noise.metric("accuracy_difference", condition="group")
    assert diff.value is not None and diff.value > 0.3  # max − min of 12 groups of 20 coins
    assert diff.risk == RiskBand.LOW and "flagged only when p < 0.05" in diff.description
    ratio = noise.metric("accuracy_ratio", condition="group")
    assert ratio.value is not None and ratio.value < 0.6 and ratio.risk == RiskBand.LOW
    planted = evaluate_probe(
        QuotaModel({}), CoinToy({"planted": 0.45, "per_group": 40}), ProbeContext(seed=0)
    )
    diff = planted.metric("accuracy_difference", condition="group")
    assert diff.risk == RiskBand.HIGH and "permutation p = 0.00" in diff.description
