"""Runs written by schema v1 (flat metric names) still render and compare with v2 runs.

The v1 run directory is written by hand as JSON, the way the previous release wrote it: no
``key`` and no ``gap`` in metrics, ``schema_version: 1``. The CLI is driven through typer's
``CliRunner``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.results import (
    SCHEMA_VERSION,
    AuditLog,
    GroupGap,
    GroupValue,
    MetricKey,
    MetricResult,
    ProbeResult,
    RunSpec,
)
from vlmtrust.core.types import Pillar
from vlmtrust.report.compare import compare_logs
from vlmtrust.report.markdown import md_escape
from vlmtrust.report.rundir import load_log

runner = CliRunner()

URL_JUDGE = "llm:openai:m@http://host/v1#harm"

SPEC_V1: dict[str, Any] = {
    "model": {
        "spec": "reference:vlm",
        "fingerprint": "fp-v1",
        "kind": "generative",
        "capabilities": ["generate"],
    },
    "probes": [{"name": "safety/figstep", "version": 1, "params": {}}],
    "seed": 0,
    "vlmtrust_version": "0.1.0",
    "git_sha": None,
    "created": "2026-01-01T00:00:00Z",
    "label": "v1 run",
}


def _v1_metric(name: str, value: float, lo: float, hi: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "n": 100,
        "higher_is_better": False,
        "description": "",
        "unit": "%",
        "groups": {},
        "group_by": None,
        "thresholds": None,
        "risk": None,
        "headline": False,
        **extra,
    }


def write_v1_run(path: Path) -> Path:
    """A v1 run directory: ``results.json`` with flat names, ``spec.json``, ``samples/``."""
    metrics = [
        _v1_metric("asr/figstep/refusal/keyword", 0.60, 0.50, 0.70, headline=True),
        _v1_metric(f"asr/figstep/{URL_JUDGE}", 0.55, 0.45, 0.65),
        _v1_metric(
            "asr/typed/refusal/keyword",
            0.30,
            0.20,
            0.40,
            groups={
                "weapons": {"value": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 50},
                "drugs": {"value": 0.1, "ci_low": 0.0, "ci_high": 0.2, "n": 50},
            },
            group_by="topic",
        ),
        _v1_metric("over_refusal/refusal/keyword", 0.10, 0.05, 0.15),
    ]
    log = {
        "schema_version": 1,
        "spec": SPEC_V1,
        "results": [
            {
                "probe": "safety/figstep",
                "pillar": "safety",
                "version": 1,
                "description": "",
                "params": {},
                "metrics": metrics,
                "plots": [],
                "examples": [],
                "n_samples": 100,
                "n_errors": 0,
                "errors": [],
                "seconds": 1.0,
                "notes": [],
            }
        ],
        "seconds": 1.0,
    }
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(log, indent=2))
    (path / "spec.json").write_text(json.dumps(SPEC_V1, indent=2))
    (path / "samples").mkdir()
    (path / "samples" / "safety__figstep.jsonl").write_text("")
    return path


def write_v2_run(path: Path) -> Path:
    """The same probe re-run under schema v2: structured keys, one metric only in v2."""
    spec = RunSpec.model_validate({**SPEC_V1, "label": "v2 run"})

    def m(key: MetricKey, value: float, lo: float, hi: float, **kw: Any) -> MetricResult:
        return MetricResult(
            key=key,
            value=value,
            ci_low=lo,
            ci_high=hi,
            n=100,
            higher_is_better=False,
            unit="%",
            **kw,
        )

    metrics = [
        m(MetricKey(metric="asr", condition="figstep", judge="refusal/keyword"), 0.20, 0.12, 0.28),
        m(MetricKey(metric="asr", condition="figstep", judge=URL_JUDGE), 0.50, 0.40, 0.60),
        m(
            MetricKey(metric="asr", condition="typed", judge="refusal/keyword"),
            0.25,
            0.15,
            0.35,
            groups={
                "weapons": GroupValue(value=0.4, ci_low=0.25, ci_high=0.55, n=50),
                "drugs": GroupValue(value=0.1, ci_low=0.0, ci_high=0.2, n=50),
            },
            group_by="topic",
            gap=GroupGap(
                difference=0.3,
                difference_ci_low=0.1,
                difference_ci_high=0.5,
                ratio=0.25,
                ratio_ci_low=0.0,
                ratio_ci_high=0.6,
                best="drugs",
                worst="weapons",
            ),
        ),
        m(MetricKey(metric="over_refusal", judge="refusal/keyword"), 0.12, 0.07, 0.17),
        m(MetricKey(metric="lift", condition="figstep", judge="refusal/keyword"), 0.1, 0.0, 0.2),
    ]
    log = AuditLog(
        spec=spec,
        results=[
            ProbeResult(
                probe="safety/figstep",
                pillar=Pillar.SAFETY,
                version=1,
                params={},
                metrics=metrics,
                n_samples=100,
            )
        ],
    )
    path.mkdir(parents=True)
    (path / "results.json").write_text(log.model_dump_json(indent=2))
    (path / "spec.json").write_text(spec.model_dump_json(indent=2))
    (path / "samples").mkdir()
    return path


def test_v1_run_renders_through_the_cli(tmp_path: Path) -> None:
    v1 = write_v1_run(tmp_path / "v1")
    res = runner.invoke(app, ["report", str(v1)])
    assert res.exit_code == 0, res.output
    html = (v1 / "report.html").read_text()
    md = (v1 / "report.md").read_text()
    for name in ("asr/figstep/refusal/keyword", "asr/typed/refusal/keyword", "over_refusal"):
        assert name in html
        assert md_escape(name) in md
    # The URL in a judge name is text, escaped one way; never a link.
    assert "asr/figstep/llm:openai:m@http://host/v1#harm" in html
    assert 'href="http://host' not in html
    assert r"asr/figstep/llm:openai:m@http://host/v1\#harm" in md
    # v1 groups render; a v1 metric has no gap, so none is shown.
    assert "weapons" in html and "by topic" in md
    assert "gap over groups" not in html and "gap: difference" not in md
    upgraded = load_log(v1 / "results.json")
    assert upgraded.schema_version == SCHEMA_VERSION
    key = upgraded.results[0].metrics[0].key
    assert key == MetricKey(metric="asr/figstep/refusal/keyword")


def test_v2_report_shows_key_fields_and_the_group_gap(tmp_path: Path) -> None:
    v2 = write_v2_run(tmp_path / "v2")
    res = runner.invoke(app, ["report", str(v2)])
    assert res.exit_code == 0, res.output
    html = (v2 / "report.html").read_text()
    md = (v2 / "report.md").read_text()
    assert (
        "gap over groups: difference <strong>30.0%</strong> [10.0%, 50.0%]"
        " · ratio <strong>0.250</strong> [0, 0.600] · worst group: <strong>weapons</strong>"
    ) in html
    assert (
        "gap: difference **30.0%** [10.0%, 50.0%], ratio **0.250** [0, 0.600],"
        " worst group **weapons**"
    ) in md
    assert "condition: <code>figstep</code> · judge: <code>refusal/keyword</code>" in html
    assert "judge: llm:openai:m@http://host/v1\\#harm" in md
    assert 'href="http://host' not in html


def test_compare_v1_with_v2_matches_metrics_by_name(tmp_path: Path) -> None:
    v1 = write_v1_run(tmp_path / "v1")
    v2 = write_v2_run(tmp_path / "v2")
    res = runner.invoke(app, ["compare", str(v1), str(v2)])
    assert res.exit_code == 0, res.output
    deltas = compare_logs(load_log(v1 / "results.json"), load_log(v2 / "results.json"))
    by_name = {d.metric: d for d in deltas}
    assert {d.metric for d in deltas if d.presence == "both"} == {
        "asr/figstep/refusal/keyword",
        f"asr/figstep/{URL_JUDGE}",
        "asr/typed/refusal/keyword",
        "over_refusal/refusal/keyword",
    }
    assert [d.metric for d in deltas if d.presence == "only_b"] == ["lift/figstep/refusal/keyword"]
    d = by_name["asr/figstep/refusal/keyword"]
    assert d.delta is not None and abs(d.delta - (-0.4)) < 1e-12
    assert d.change == "improved" and d.significant
    worse = by_name["over_refusal/refusal/keyword"]
    assert worse.change == "worsened" and not worse.significant
    md = (v2 / "compare.md").read_text()
    assert "over\\_refusal/refusal/keyword ↓ |" in md
    assert "asr/figstep/refusal/keyword ↓ | 60.0% | [50.0%, 70.0%] | 20.0% |" in md
    assert "−40.0 pp" in md
    html = (v2 / "compare.html").read_text()
    assert "asr/figstep/refusal/keyword" in html and 'href="http://host' not in html
