"""The group family end to end through the runner, on toys with a known (planted) gap."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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
