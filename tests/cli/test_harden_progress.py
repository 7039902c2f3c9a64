"""`vlmtrust harden`: a training progress bar (steps, loss, rate, ETA) and a readable summary."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.mitigations._train import reporting, train_started, train_step
from vlmtrust.mitigations.summary import summary_lines

TINY = ["steps=3", "batch_size=4", "attack_steps=1", "n_train=8", "n_eval=0"]


def _harden(model: str, mitigation: str, params: list[str], out: Path, *extra: str) -> str:
    args = ["harden", "-m", model, "--mitigation", mitigation]
    for p in params:
        args += ["-p", p]
    res = CliRunner().invoke(app, [*args, "-o", str(out), *extra])
    assert res.exit_code == 0, res.output
    return res.output


def test_harden_shows_a_training_bar_and_a_readable_summary(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    out = _harden(f"hf:{tiny_clip_dir}", "robustness/tecoa", TINY, tmp_path / "h")
    bar = next(line for line in out.splitlines() if "adversarial fine-tuning" in line)
    assert "3/3" in bar and "/s" in bar and "loss " in bar and "eta" in bar
    assert "hardened model: hardened:" in out
    assert "{" not in out.split("hardened model:", 1)[1]  # no raw JSON
    assert "n train" in out


def test_harden_json_is_one_object(tmp_path: Path) -> None:
    out = _harden("mock:generative", "safety/defense_prompt", [], tmp_path / "h", "--json")
    doc = json.loads(out)
    assert doc["spec"].startswith("hardened:") and doc["mitigation"] == "safety/defense_prompt"
    assert doc["summary"]["wrapper"]["base"] == "mock:generative"


def test_reporting_reaches_the_active_receiver_only() -> None:
    seen: list[tuple[str, object, object]] = []

    class Rec:
        def start(self, description: str, total: int) -> None:
            seen.append(("start", description, total))

        def step(self, step: int, loss: float) -> None:
            seen.append(("step", step, loss))

    train_started("outside", 2)  # no receiver: a no-op
    with reporting(Rec()):
        train_started("loop", 2)
        train_step(0, 1.5)
    train_step(1, 1.0)
    assert seen == [("start", "loop", 2), ("step", 0, 1.5)]


def test_summary_lines_are_aligned_and_shorten_loss_curves() -> None:
    lines = summary_lines(
        {"steps": 3, "final_loss": 0.123456, "losses": [3.0, 2, 1, 1, 1, 1, 0.5], "after": {"n": 4}}
    )
    assert lines[0] == "  steps       3"
    assert "0.1235" in lines[1]
    assert lines[2].endswith("7 values, 3 → 0.5")
    assert lines[3:] == ["  after:", "    n  4"]
