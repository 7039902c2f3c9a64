"""A folder per run by default, the ``latest`` pointer, ``vlmtrust runs`` and ``--resume``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.report.runs import list_runs
from vlmtrust.runner.outdir import new_run_dir, point_latest, resolve_latest

ZS = ["run", "capability/zero_shot", "-m", "mock:dual", "--limit", "4", "-q", "--cache", "off"]


def test_new_run_dir_is_unique_and_names_model_and_what(tmp_path: Path) -> None:
    a = new_run_dir(["openai:m@http://h/v1"], "safety/figstep", root=tmp_path, now=86400)
    assert a.name == "19700102-000000-openai-m-safety-figstep"
    a.mkdir()
    b = new_run_dir(["openai:m@http://h/v1"], "safety/figstep", root=tmp_path, now=86400)
    assert b.name == a.name + "-2"
    many = new_run_dir(["a", "b", "c", "d"], "audit", root=tmp_path, now=0)
    assert many.name == "19700101-000000-a+b+2more-audit"


def test_latest_pointer_moves_and_an_old_latest_folder_is_kept(tmp_path: Path) -> None:
    one, two = tmp_path / "r1", tmp_path / "r2"
    one.mkdir(), two.mkdir()
    point_latest(one, root=tmp_path)
    assert resolve_latest(tmp_path) == one.resolve()
    point_latest(two, root=tmp_path)
    assert resolve_latest(tmp_path) == two.resolve()
    assert os.readlink(tmp_path / "latest") == "r2"  # relative: the folder can move
    old = tmp_path / "old"
    old.mkdir()
    (old / "latest").mkdir()  # an earlier version's run folder named latest
    assert point_latest(one, root=old) is None and (old / "latest").is_dir()


def test_each_cli_run_gets_its_own_folder_and_runs_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    for _ in range(2):
        r = cli.invoke(app, ZS)
        assert r.exit_code == 0, r.output
    root = tmp_path / "vlmtrust-runs"
    folders = sorted(p for p in root.iterdir() if not p.is_symlink())
    assert len(folders) == 2 and all("mock-dual-capability-zero_shot" in p.name for p in folders)
    assert resolve_latest(root) == max(folders).resolve()
    # an interrupted run (spec.json, no results), and a run whose probe had no samples (exit 1)
    broken = root / "19990101-000000-x-audit"
    broken.mkdir()
    (broken / "spec.json").write_text((folders[0] / "spec.json").read_text())
    (tmp_path / "empty.jsonl").write_text("")
    r = cli.invoke(app, [*ZS, "--data", str(tmp_path / "empty.jsonl")])
    assert r.exit_code == 1, r.output
    runs = {s.path.name: s for s in list_runs(root)}
    assert runs[broken.name].status == "interrupted"
    statuses = sorted(s.status for s in runs.values())
    assert statuses == ["complete", "complete", "interrupted", "problems"]
    assert [s.latest for s in list_runs(root)].count(True) == 1
    r = cli.invoke(app, ["runs"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "(latest)" in r.output and "interrupted" in r.output
    assert "capabil" in r.output


def test_resume_without_out_continues_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    r = cli.invoke(app, [*ZS, "--resume"])
    assert r.exit_code == 2 and "there is none" in r.output
    assert cli.invoke(app, ZS).exit_code == 0
    latest = resolve_latest(tmp_path / "vlmtrust-runs")
    assert latest is not None
    before = json.loads((latest / "results.json").read_text())
    r = cli.invoke(app, [*ZS, "--resume"])
    assert r.exit_code == 0 and f"resuming {latest}" in r.output
    assert (
        json.loads((latest / "results.json").read_text())["results"][0]["metrics"]
        == (before["results"][0]["metrics"])
    )
    assert len([p for p in (tmp_path / "vlmtrust-runs").iterdir() if not p.is_symlink()]) == 1
