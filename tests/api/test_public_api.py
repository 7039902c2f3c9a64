"""The Python API mirrors the CLI: harden, compare, report, load_run, tables, look-ups."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vlmtrust
from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.results import (
    AuditLog,
    GroupValue,
    MetricKey,
    MetricResult,
    ModelInfo,
    ProbeResult,
    RunSpec,
)
from vlmtrust.core.types import RiskBand

API = ("audit", "harden", "compare", "report", "summarize", "load_run", "load_model", "AuditLog")


def test_the_api_is_listed_and_resolves():
    for name in API:
        assert name in vlmtrust.__all__ and name in dir(vlmtrust)
        assert callable(getattr(vlmtrust, name))


def test_import_stays_light():
    code = (
        "import sys, time; t = time.perf_counter(); import vlmtrust; dt = time.perf_counter() - t;"
        "heavy = [m for m in ('pandas', 'pydantic', 'torch', 'vlmtrust.api') if m in sys.modules];"
        "assert not heavy, heavy; print(dt)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 0.2


def _log() -> AuditLog:
    spec = RunSpec(
        model=ModelInfo(spec="mock:dual", fingerprint="f", kind="dual", capabilities=["embed"]),
        probes=[],
        seed=0,
        vlmtrust_version="0",
        created="now",
    )
    acc = MetricResult(
        key=MetricKey(metric="accuracy"),
        value=0.5,
        ci_low=0.4,
        ci_high=0.6,
        n=100,
        higher_is_better=True,
        risk=RiskBand.MODERATE,
        headline=True,
        groups={"a": GroupValue(value=0.7, n=50), "b": GroupValue(value=0.3, n=50)},
    )
    skew = MetricResult(
        key=MetricKey(metric="skew", group="women"), value=0.1, n=40, higher_is_better=False
    )
    asr = MetricResult(key=MetricKey(metric="accuracy"), value=0.9, n=10, higher_is_better=True)
    return AuditLog(
        spec=spec,
        results=[
            ProbeResult(
                probe="capability/zero_shot",
                pillar="capability",
                version=1,
                params={},
                metrics=[acc, skew],
            ),
            ProbeResult(
                probe="robustness/other", pillar="robustness", version=1, params={}, metrics=[asr]
            ),
        ],
    )


def test_to_dataframe_has_one_row_per_metric():
    df = _log().to_dataframe()
    assert list(df.columns)[:10] == [
        "model",
        "probe",
        "pillar",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "group",
        "risk",
    ]
    assert len(df) == 3
    first = df.iloc[0]
    assert (first["model"], first["probe"], first["pillar"]) == (
        "mock:dual",
        "capability/zero_shot",
        "capability",
    )
    assert (first["value"], first["ci_low"], first["ci_high"], first["n"]) == (0.5, 0.4, 0.6, 100)
    assert first["risk"] == "moderate"
    assert df.iloc[1]["group"] == "women" and df.iloc[1]["metric"] == "skew[women]"
    with_groups = _log().to_dataframe(groups=True)
    assert len(with_groups) == 5
    assert set(with_groups["group"].dropna()) == {"a", "b", "women"}


def test_to_csv_round_trips(tmp_path):
    path = _log().to_csv(tmp_path / "m.csv")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and rows[0]["metric"] == "accuracy" and rows[0]["ci_high"] == "0.6"
    assert rows[2]["risk"] == ""  # None is an empty cell


def test_metric_lookups_name_the_valid_ones():
    log = _log()
    with pytest.raises(KeyError, match=r"Did you mean 'accuracy'\?.*Valid: accuracy, skew"):
        log.result("capability/zero_shot").metric("acurracy")
    with pytest.raises(KeyError, match=r"Did you mean 'capability/zero_shot'"):
        log.result("capability/zero_shoot")
    with pytest.raises(KeyError, match="several probes.*probe="):
        log.metric("accuracy")
    assert log.metric("accuracy", probe="robustness/other").value == 0.9
    assert log.metric("skew[women]").value == 0.1
    with pytest.raises(KeyError, match=r"Did you mean 'skew\[women\]'"):
        log.metric("skew[wmen]")
    # the message reads as a sentence, not a quoted repr
    try:
        log.metric("nope")
    except KeyError as e:
        assert str(e).startswith("no metric 'nope'")


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api") / "run"
    vlmtrust.audit("mock:dual", probes=["capability/zero_shot"], out=out, limit=8, cache=False)
    return out


def test_load_run_reads_a_folder_and_latest(mock_run, tmp_path, monkeypatch):
    log = vlmtrust.load_run(mock_run)
    assert isinstance(log, AuditLog) and log.result("capability/zero_shot").metrics
    assert log.to_dataframe()["metric"].tolist() == ["accuracy"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no vlmtrust-runs/latest"):
        vlmtrust.load_run("latest")
    runs = Path("vlmtrust-runs")
    runs.mkdir()
    shutil.copytree(mock_run, runs / "r1")
    from vlmtrust.runner.outdir import point_latest

    point_latest(runs / "r1", root=runs)
    latest = vlmtrust.load_run()
    assert isinstance(latest, AuditLog) and latest.spec.model.spec == "mock:dual"
    with pytest.raises(InputError, match="not a run folder"):
        vlmtrust.load_run(tmp_path / "missing")


def test_report_and_compare(mock_run, tmp_path):
    html, md = vlmtrust.report(mock_run)
    assert html.is_file() and md.is_file()
    after = tmp_path / "after"
    shutil.copytree(mock_run, after)
    cmp = vlmtrust.compare(mock_run, after)
    assert cmp.html is not None and cmp.html.is_file()
    (delta,) = cmp.deltas
    assert delta.metric == "accuracy" and delta.delta == 0.0
    df = cmp.to_dataframe()
    assert df.iloc[0]["run"] == "mock:dual" and df.iloc[0]["change"] == "unchanged"


def test_harden_refuses_a_mitigation_the_model_cannot_take(tmp_path, monkeypatch):
    import vlmtrust.models.loader as loader

    def no_load(*a: object, **kw: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loader, "load_model", no_load)
    out = tmp_path / "h"
    # reference:clip is a dual encoder: told from its config, before loading
    with pytest.raises(CapabilityError, match="defense_prompt needs GENERATE.*reference:clip"):
        vlmtrust.harden("reference:clip", "safety/defense_prompt", out)
    # an endpoint only generates: no training mitigation
    with pytest.raises(CapabilityError, match="tecoa needs GRADIENT, TRAIN"):
        vlmtrust.harden("openai:m@http://127.0.0.1:9/v1", "robustness/tecoa", out)
    assert not out.exists()


def test_harden_checks_a_loaded_model_and_writes_a_wrapper(tmp_path):
    from vlmtrust.models.mock import load_mock

    with pytest.raises(CapabilityError, match="needs GENERATE"):
        vlmtrust.harden(load_mock("dual", spec="mock:dual"), "safety/defense_prompt", tmp_path)
    art = vlmtrust.harden("mock:generative", "safety/defense_prompt", tmp_path / "dp")
    assert art.spec == f"hardened:{tmp_path / 'dp'}"
    assert (tmp_path / "dp" / "wrapper.json").is_file()


def test_a_bad_mitigation_parameter_lists_the_valid_ones(tmp_path):
    with pytest.raises(InputError) as e:
        vlmtrust.harden("mock:generative", "safety/defense_prompt", tmp_path, params={"prest": 1})
    msg = str(e.value)
    assert "has no parameter 'prest'" in msg and "did you mean preset?" in msg
    assert "it has preset, text, mode, only_with_images" in msg
    assert "Extra inputs" not in msg
