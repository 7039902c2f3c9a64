"""``run`` and ``audit`` take their shared options from one declaration (cli.RunOptions)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from typer.testing import CliRunner

from vlmtrust.cli import RunOptions, app

runner = CliRunner()


def _options(command: str) -> set[str]:
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    return {w.rstrip(",") for w in res.output.split() if w.startswith("--")}


def test_run_and_audit_offer_every_shared_option() -> None:
    shared = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(RunOptions)}
    for command in ("run", "audit"):
        missing = shared - _options(command)
        assert not missing, f"{command} lacks {sorted(missing)}"


def test_with_config_fills_only_what_the_command_line_left_unset() -> None:
    cfg = SimpleNamespace(data="cfg-data", limit=5, seed=7)
    given = RunOptions(limit=2).with_config(cfg)
    assert (given.data, given.limit, given.seed) == ("cfg-data", 2, 7)
    bare = RunOptions().with_config(None)
    assert (bare.data, bare.limit, bare.seed) == (None, None, 0)
    assert bare.limits.max_image_pixels == RunOptions().max_image_pixels
