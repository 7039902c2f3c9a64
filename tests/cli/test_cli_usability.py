"""CLI usability: --version, -h, completion, examples, list -v defaults, -p syntax, early
mitigation checks, and where `reference train` writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from vlmtrust.cli import app

runner = CliRunner()


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    out: list[list[str]] = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out += [[name, s] for s in subs] if subs else [[name]]
    return out


def test_version_and_short_help():
    from vlmtrust import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"vlmtrust {__version__}"
    res = runner.invoke(app, ["-h"])
    assert res.exit_code == 0 and "--install-completion" in res.output
    assert runner.invoke(app, ["run", "-h"]).exit_code == 0
    # completion itself, as bash asks for it (``--show-completion`` depends on detecting the
    # parent shell, which fails in some process trees)
    env = {"_VLMTRUST_COMPLETE": "complete_bash", "COMP_WORDS": "vlmtrust ru", "COMP_CWORD": "1"}
    res = runner.invoke(app, [], prog_name="vlmtrust", env=env)
    assert res.exit_code == 0 and res.output.split() == ["run", "runs"], res.output


def test_every_command_has_examples_in_its_help():
    for cmd in _commands():
        res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "250"})
        assert res.exit_code == 0, cmd
        assert "Examples:" in res.output and f"vlmtrust {' '.join(cmd)}" in res.output, cmd


def test_out_defaults_are_in_the_help():
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    assert "vlmtrust-runs/<time>-<model>-<what>/" in " ".join(res.output.split())
    res = runner.invoke(app, ["reference", "train", "--help"], env={"COLUMNS": "250"})
    assert "vlmtrust-reference/NAME-seedSEED" in " ".join(res.output.split())


def test_list_verbose_shows_real_defaults():
    res = runner.invoke(app, ["list", "probes", "--verbose"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    assert "PydanticUndefined" not in res.output
    assert "eps = [1/255, 2/255, 4/255]" in res.output
    assert "severities = [1, 2, 3, 4, 5]" in res.output
    assert "judges = ['refusal/keyword', 'refusal/classifier']" in res.output
    assert "attacks = ['text', 'figstep']" in res.output
    assert "steps = 10" in res.output  # not a budget, though its name holds 'eps'
    res = runner.invoke(app, ["list", "mitigations", "-v"], env={"COLUMNS": "250"})
    assert "PydanticUndefined" not in res.output and "eps = 2/255" in res.output
    assert "0.00784313725490196" not in res.output


def test_harden_refuses_a_mitigation_of_the_wrong_kind_before_anything(tmp_path):
    out = tmp_path / "h"
    args = ["harden", "--model", "reference:clip", "--mitigation", "safety/defense_prompt"]
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs GENERATE" in lines[0], res.output
    assert not out.exists()


def test_harden_did_you_mean_and_parameter_names(tmp_path):
    res = runner.invoke(
        app,
        ["harden", "-m", "mock:generative", "--mitigation", "safety/defense_promt"]
        + ["--out", str(tmp_path / "a")],
    )
    assert res.exit_code == 2 and "Did you mean safety/defense_prompt" in res.output
    res = runner.invoke(
        app,
        ["harden", "-m", "mock:generative", "--mitigation", "safety/defense_prompt"]
        + ["-p", "mdoe=system", "--out", str(tmp_path / "b")],
    )
    assert res.exit_code == 2 and "did you mean mode?" in res.output
    assert "it has preset, text, mode, only_with_images" in res.output


def test_harden_and_run_take_the_same_param_syntax(tmp_path):
    import json

    base = ["harden", "-m", "mock:generative", "--mitigation", "safety/defense_prompt"]
    res = runner.invoke(
        app, [*base, "-p", "safety/defense_prompt.preset=self_reminder", "-o", str(tmp_path / "a")]
    )
    assert res.exit_code == 0, res.output
    wrapper = json.loads((tmp_path / "a" / "wrapper.json").read_text())
    assert wrapper["params"]["preset"] == "self_reminder"
    res = runner.invoke(app, [*base, "-p", "safety/input_guard.x=1", "-o", str(tmp_path / "b")])
    assert res.exit_code == 2 and "the mitigation is safety/defense_prompt" in res.output
    # run with one probe takes a bare KEY=VALUE, as harden does
    out = tmp_path / "run"
    args = ["run", "safety/figstep", "-m", "mock:generative", "--limit", "2", "--quiet"]
    args += ["--out", str(out), "-p", 'judges=["refusal/keyword"]', "--no-report"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    spec = json.loads((out / "spec.json").read_text())
    (probe,) = spec["probes"]
    assert probe["params"]["judges"] == ["refusal/keyword"]


@pytest.fixture
def fake_train(monkeypatch):
    import vlmtrust.reference as ref

    calls: list[Path | None] = []

    def train(name: str, **kw: object) -> Path:
        out = kw["out_dir"]
        calls.append(out)  # type: ignore[arg-type]
        return Path(str(out or "shipped"))

    monkeypatch.setattr(ref, "train", train)
    return calls


def test_reference_train_writes_a_new_folder_by_default(fake_train, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["reference", "train", "clip", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert fake_train == [Path("vlmtrust-reference/clip-seed3")]
    assert "--model hf:vlmtrust-reference/clip-seed3" in res.output
    res = runner.invoke(app, ["reference", "train", "clip", "--replace-shipped"])
    assert res.exit_code == 0 and fake_train[-1] is None
    res = runner.invoke(app, ["reference", "train", "clip", "--replace-shipped", "-o", "x"])
    assert res.exit_code == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["reference", "train", "clip", "-o", str(busy)])
    assert res.exit_code == 2 and "not empty" in res.output
    res = runner.invoke(app, ["reference", "train", "clip", "-o", str(busy), "--overwrite"])
    assert res.exit_code == 2 and "no MANIFEST.json" in res.output
    assert len(fake_train) == 2 and (busy / "notes.txt").exists()
