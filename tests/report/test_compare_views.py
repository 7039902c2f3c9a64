"""Compare in a terminal and a CI log, metric directions, compare plots, the multi-model view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.results import MetricResult, ProbeResult
from vlmtrust.core.types import Pillar, RiskBand
from vlmtrust.report.html import render_report


def test_directions_and_significance() -> None:
    from vlmtrust.report.diff import assess_change

    # a descriptive number (mean confidence) is never better or worse
    assert assess_change("none", None, (0.8, 0.75, 0.85), (0.6, 0.55, 0.65)).change == (
        "no direction"
    )
    # overconfidence −10.9% → −8.9%, CIs overlapping the change: not "worsened"
    got = assess_change("target", 0.0, (-0.109, -0.14, -0.08), (-0.089, -0.12, -0.06))
    assert got.change == "no significant change"
    # much closer to calibrated, significantly: improved (though the value went up)
    got = assess_change("target", 0.0, (-0.30, -0.34, -0.26), (-0.05, -0.09, -0.01))
    assert got.change == "improved"
    # a change inside the CIs of a higher-is-better metric
    got = assess_change("higher", None, (0.70, 0.60, 0.80), (0.68, 0.58, 0.78))
    assert got.change == "no significant change"
    assert assess_change("higher", None, (0.125, 0.06, 0.22), (0.75, 0.64, 0.84)).change == (
        "improved"
    )


def test_cli_compare_leads_with_summary_warns_fits_80_columns_and_plots(
    tmp_path: Path, kit: Any
) -> None:
    a = kit.write_run(tmp_path / "before", kit.make_log(evil=False))
    after = kit.make_log(robust_acc=0.75, robust_ci=(0.64, 0.84), evil=False)
    after.results[0].params["steps"] = 50
    b = kit.write_run(tmp_path / "after", after)
    res = CliRunner().invoke(app, ["compare", str(a), str(b)], terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if str(tmp_path) not in x]  # not the paths
    assert all(len(line) <= 80 for line in lines), [x for x in lines if len(x) > 80]
    assert "…" not in "\n".join(lines)
    summary = next(i for i, x in enumerate(lines) if "metrics compared" in x)
    warn = next(i for i, x in enumerate(lines) if "steps" in x)
    first_metric = next(i for i, x in enumerate(lines) if "robust_accuracy" in x)
    assert summary < warn < first_metric
    assert "robustness/pgd" in res.output  # whole, not cut
    # compare.html overlays the before/after plots of each probe that has them
    html = (b / "compare.html").read_text(encoding="utf-8")
    assert html.count('<figure class="plot"') >= 2 and "<svg" in html
    assert "Accuracy vs PGD budget" in html


def _probe(name: str, metrics: list[MetricResult]) -> ProbeResult:
    return ProbeResult(probe=name, pillar=Pillar.ROBUSTNESS, version=1, params={}, metrics=metrics)


def test_scorecard_card_and_probe_list_agree(tmp_path: Path, kit: Any) -> None:
    log = kit.make_log(evil=False)
    pr = log.results[0]
    # the headline metric is low risk, another metric of the same probe is high
    extra = MetricResult(
        name="robust_accuracy@8/255",
        value=0.02,
        ci_low=0.01,
        ci_high=0.05,
        n=200,
        higher_is_better=True,
        unit="%",
        risk=RiskBand.HIGH,
    )
    metrics = [
        m.model_copy(update={"risk": RiskBand.MODERATE}) if m.headline else m for m in pr.metrics
    ]
    log.results[0] = pr.model_copy(update={"metrics": [*metrics, extra]})
    run = kit.write_run(tmp_path / "run", log)
    _, md_path = render_report(run)
    md = md_path.read_text(encoding="utf-8")
    card = next(x for x in md.splitlines() if x.startswith("| robustness |"))
    assert f"{pr.probe} 🔴 high" in card
    assert f"### {pr.probe} — 🔴 high" in md


def test_multi_model_view_shows_per_probe_movement(tmp_path: Path, kit: Any) -> None:
    parent = kit.write_parent(
        tmp_path / "p",
        {
            "clip": kit.make_log(evil=False),
            "tecoa": kit.make_log(robust_acc=0.75, robust_ci=(0.64, 0.84), evil=False),
        },
    )
    _, md_path = render_report(parent)
    md = md_path.read_text(encoding="utf-8")
    assert "### Probes by model" in md
    part = md[md.index("### Probes by model") :]
    assert "8.0% [5.0%, 12.0%]" in part and "75.0% [64.0%, 84.0%]" in part
    assert "improved +67.0 pp" in part


def test_summary_in_a_ci_log_is_one_line_per_metric(tmp_path: Path, kit: Any) -> None:
    from vlmtrust.cli import _print_summary

    log = kit.make_log(evil=False)
    long = "robustness/adversarial_transfer_with_a_long_name"
    log.results[0] = log.results[0].model_copy(update={"probe": long})
    res_lines: list[str] = []
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _print_summary(log)
    res_lines = buf.getvalue().splitlines()
    line = next(x for x in res_lines if long in x)
    assert "robust_accuracy@4/255" in line and "[0.050, 0.120]" in line and "risk high" in line
