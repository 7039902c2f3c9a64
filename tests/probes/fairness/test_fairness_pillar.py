"""The dual-encoder fairness probes as a pillar: registered, in the default audit, scorecard."""

from __future__ import annotations

from pathlib import Path

from vlmtrust.api import select_probes
from vlmtrust.core.probe import ProbeContext, registry
from vlmtrust.core.types import Pillar
from vlmtrust.models.mock import MockModel
from vlmtrust.report.html import render_report
from vlmtrust.runner.engine import run_audit

PROBES = (
    "fairness/retrieval_skew",
    "fairness/zero_shot_groups",
    "fairness/embedding_bias",
    "fairness/attribute_leakage",
)


def test_registered_as_fairness_probes_and_in_the_default_dual_audit() -> None:
    reg = registry()
    for name in PROBES:
        assert name in reg and reg[name].pillar == Pillar.FAIRNESS, name
    dual = {p.name for p in select_probes(MockModel("dual"))}
    assert set(PROBES) <= dual
    generative = {p.name for p in select_probes(MockModel("generative"))}
    assert not set(PROBES) & generative


def test_scorecard_fairness_column_is_filled(tmp_path: Path) -> None:
    out = tmp_path / "run"
    probes = [
        cls({"n": 120})
        for name, cls in registry().items()
        if name in PROBES and name != "fairness/retrieval_skew"
    ]
    probes.append(registry()["fairness/retrieval_skew"]({"n": 120, "k": [10, 30, 60]}))
    log = run_audit(MockModel("dual"), probes, out_dir=out, ctx=ProbeContext(seed=0))
    assert all(r.n_errors == 0 and r.metrics for r in log.results)
    heads = {(r.probe, m.name) for r in log.results for m in r.metrics if m.headline}
    assert ("fairness/retrieval_skew", "max_skew/group:prior/k=30") in heads
    assert ("fairness/zero_shot_groups", "accuracy_difference/group") in heads
    assert ("fairness/embedding_bias", "weat_effect_size/image_targets") in heads
    assert ("fairness/attribute_leakage", "leakage/group/embedding") in heads
    _, md = render_report(out)
    row = next(line for line in md.read_text().splitlines() if line.startswith("| fairness"))
    assert "not audited" not in row and "no headline metric" not in row
    assert "max\\_skew/group:prior/k=30" in row and "leakage/group/embedding" in row
