"""`vlmtrust run --config FILE` (TOML / YAML) and `--dry-run`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.errors import InputError
from vlmtrust.core.runconfig import load_run_config

runner = CliRunner()

TOML = """
model = "mock:dual"
probes = ["capability/zero_shot"]
seed = 3
limit = 4

[params."capability/zero_shot"]
template = "a picture of a {}"
"""


def test_config_files_parse_and_are_checked(tmp_path):
    t = tmp_path / "c.toml"
    t.write_text(TOML)
    cfg = load_run_config(t)
    assert (cfg.model, cfg.probes, cfg.seed, cfg.limit) == (
        "mock:dual",
        ["capability/zero_shot"],
        3,
        4,
    )
    assert cfg.params == {"capability/zero_shot": {"template": "a picture of a {}"}}
    assert cfg.record_name == "config.toml"
    y = tmp_path / "c.yaml"
    y.write_text("model: mock:dual\nprobes: capability/zero_shot\nseed: 1\n")
    ycfg = load_run_config(y)
    assert ycfg.probes == ["capability/zero_shot"] and ycfg.record_name == "config.yaml"
    bad = tmp_path / "bad.toml"
    bad.write_text('modle = "x"\n')
    with pytest.raises(InputError, match=r"unknown key 'modle' \(did you mean model\?\)"):
        load_run_config(bad)
    bad.write_text('seed = "zero"\n')
    with pytest.raises(InputError, match="seed = 'zero' should be an integer"):
        load_run_config(bad)
    bad.write_text("model = [\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_run_config(bad)


@pytest.fixture(scope="module")
def config_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cfg")
    (root / "c.toml").write_text(TOML)
    out = root / "run"
    args = ["run", "--config", str(root / "c.toml"), "--out", str(out), "-q", "--no-report"]
    res = runner.invoke(app, [*args, "-p", "n=50"])
    assert res.exit_code == 0, res.output
    return out


def test_run_from_a_config_is_recorded(config_run):
    assert (config_run / "config.toml").read_text() == TOML
    spec = json.loads((config_run / "spec.json").read_text())
    assert spec["seed"] == 3 and spec["limit"] == 4 and spec["model"]["spec"] == "mock:dual"
    (probe,) = spec["probes"]
    # the file's parameter, and the command line's added over it
    assert probe["params"]["template"] == "a picture of a {}" and probe["params"]["n"] == 50


def test_dry_run_loads_and_writes_nothing(config_run, tmp_path, monkeypatch):
    import vlmtrust.models.loader as loader

    def no_load(*a: object, **kw: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loader, "load_model", no_load)
    monkeypatch.chdir(tmp_path)
    args = ["run", "capability/zero_shot", "-m", "mock:dual", "--limit", "6", "--dry-run"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "capability/zero_shot: 6 samples, time unknown" in res.output
    assert 'template="a photo of a {}"' in res.output
    assert list(tmp_path.iterdir()) == []
    # with an earlier run of the probe on the model, an estimate from its seconds per sample
    shutil.copytree(config_run, tmp_path / "vlmtrust-runs" / "r1")
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "6 samples, ~" in res.output and "s/sample" in res.output
    assert "total: 6 samples, ~" in res.output
    res = runner.invoke(app, ["run", "safety/figstep", "-m", "reference:clip", "--dry-run"])
    assert res.exit_code == 2 and "reference:clip is a dual encoder" in res.output
    res = runner.invoke(app, ["run", "--dry-run"])
    assert res.exit_code == 2 and "--config FILE" in res.output


def test_audit_takes_a_config_too(tmp_path):
    (tmp_path / "c.toml").write_text(TOML)
    out = tmp_path / "audit"
    args = ["audit", "--config", str(tmp_path / "c.toml"), "--out", str(out), "-q"]
    res = runner.invoke(app, [*args, "--no-report", "-p", "capability/zero_shot.n=40"])
    assert res.exit_code == 0, res.output
    assert (out / "config.toml").read_text() == TOML
    spec = json.loads((out / "spec.json").read_text())
    assert spec["seed"] == 3 and spec["limit"] == 4 and spec["model"]["spec"] == "mock:dual"
    (probe,) = spec["probes"]
    assert probe["name"] == "capability/zero_shot"
    assert probe["params"]["template"] == "a picture of a {}" and probe["params"]["n"] == 40
