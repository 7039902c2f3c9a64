"""`--mlflow`: params, metrics with CI bounds and the report logged to a local MLflow store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.errors import InputError
from vlmtrust.report.tracker import ENV_URI, log_run, tracking_uri


def test_only_local_stores_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_URI, raising=False)
    assert tracking_uri(None, tmp_path) == (tmp_path.resolve() / "mlruns").as_uri()
    assert tracking_uri(str(tmp_path / "store"), tmp_path).startswith("file:///")
    monkeypatch.setenv(ENV_URI, "sqlite:///x.db")
    assert tracking_uri(None, tmp_path) == "sqlite:///x.db"
    with pytest.raises(InputError, match="only to a local store"):
        tracking_uri("http://tracker.example:5000", tmp_path)


def test_without_the_extra_the_error_names_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'vlmtrust\[mlflow\]'"):
        log_run(tmp_path)


def test_run_is_logged_with_ci_bounds_and_the_report(tmp_path: Path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.delenv(ENV_URI, raising=False)
    out = tmp_path / "run"
    args = ["run", "capability/zero_shot", "-m", "mock:dual", "--limit", "8", "-q"]
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--mlflow"])
    assert res.exit_code == 0, res.output
    client = mlflow.tracking.MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("vlmtrust")
    (run,) = client.search_runs([exp.experiment_id])
    m = run.data.metrics
    acc = "capability/zero_shot/accuracy"
    assert m[acc + ".ci_low"] <= m[acc] <= m[acc + ".ci_high"]
    assert run.data.params["model"] == "mock:dual" and run.data.params["limit"] == "8"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "report.html", "report.md"} <= names
