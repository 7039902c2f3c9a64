"""`vlmtrust summarize`: a leaderboard of models × headline metrics across runs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import vlmtrust
from vlmtrust.cli import app
from vlmtrust.core.results import AuditLog, MetricKey, MetricResult, ModelInfo, ProbeResult, RunSpec
from vlmtrust.core.types import RiskBand

EVIL = "<script>alert(1)</script>"


def _run(
    root: Path, name: str, spec: str, acc: float, lo: float, hi: float, risk: RiskBand
) -> Path:
    log = AuditLog(
        spec=RunSpec(
            model=ModelInfo(
                spec=spec, fingerprint="f-" + name, kind="dual", capabilities=["embed"]
            ),
            probes=[],
            seed=0,
            vlmtrust_version="0",
            created="2026-12-07T12:00:00Z",
            label=EVIL,
        ),
        results=[
            ProbeResult(
                probe="capability/zero_shot",
                pillar="capability",
                version=1,
                params={},
                metrics=[
                    MetricResult(
                        key=MetricKey(metric="accuracy"),
                        value=acc,
                        ci_low=lo,
                        ci_high=hi,
                        n=100,
                        higher_is_better=True,
                        unit="%",
                        risk=risk,
                        headline=True,
                    ),
                    MetricResult(
                        key=MetricKey(metric="not_a_headline"),
                        value=1.0,
                        n=3,
                        higher_is_better=True,
                    ),
                ],
            )
        ],
    )
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(log.model_dump_json())
    return d


def test_two_runs_give_one_row_per_model_with_cis_and_bands(tmp_path: Path) -> None:
    a = _run(tmp_path, "base", "mock:dual", 0.125, 0.05, 0.25, RiskBand.HIGH)
    b = _run(tmp_path, "tecoa", f"hardened:{EVIL}", 0.75, 0.6, 0.86, RiskBand.LOW)
    res = CliRunner().invoke(app, ["summarize", str(a), str(b), "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "2 model(s) × 1 headline metric(s)" in res.output
    md = (tmp_path / "s" / "summary.md").read_text()
    html = (tmp_path / "s" / "summary.html").read_text()
    for text in (md, html):
        assert "12.5% [5.0%, 25.0%]" in text and "75.0% [60.0%, 86.0%]" in text
        assert "high" in text and "low" in text
        assert EVIL not in text and "&lt;script&gt;" in text
        assert "not_a_headline" not in text
    board = vlmtrust.summarize([a, b])
    assert [r.model for r in board.rows] == ["mock:dual", f"hardened:{EVIL}"]
    assert [c.metric for c in board.columns] == ["accuracy"]
    assert [r.cells[0].risk for r in board.rows if r.cells[0]] == [RiskBand.HIGH, RiskBand.LOW]


def test_a_missing_run_is_one_clear_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["summarize", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "nope" in res.output and "run folder" in res.output
