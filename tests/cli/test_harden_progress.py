"""`vlmtrust harden`: a training progress bar (steps, loss, rate, ETA) and a readable summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.mitigations._train import reporting, train_started, train_step
from vlmtrust.mitigations.summary import summary_lines


def _harden(model: str, mitigation: str, params: list[str], out: Path, *extra: str) -> str:
    args = ["harden", "-m", model, "--mitigation", mitigation]
    for p in params:
        args += ["-p", p]
    res = CliRunner().invoke(app, [*args, "-o", str(out), *extra])
    assert res.exit_code == 0, res.output
    return res.output


class _Rec:
    def __init__(self) -> None:
        self.seen: list[tuple[str, object, object]] = []

    def start(self, description: str, total: int) -> None:
        self.seen.append(("start", description, total))

    def step(self, step: int, loss: float) -> None:
        self.seen.append(("step", step, loss))


def test_harden_shows_a_training_bar_and_a_readable_summary(tmp_path: Path, monkeypatch) -> None:
    import vlmtrust.api
    from vlmtrust.core.mitigation import HardenedArtifact

    def fake_harden(model: str, name: str, out: Path, **kw: object) -> HardenedArtifact:
        train_started("tecoa adversarial fine-tuning", 3)  # what the training loop reports
        for i in range(3):
            train_step(i, 1.0 / (i + 1))
        summary = {"steps": 3, "n_train": 8, "losses": [1, 0.5, 0.33], "after": {"n": 4}}
        return HardenedArtifact(spec=f"hardened:{out}", out_dir=out, summary=summary)

    monkeypatch.setattr(vlmtrust.api, "harden", fake_harden)
    out = _harden("mock:dual", "robustness/tecoa", [], tmp_path / "h")
    bar = next(line for line in out.splitlines() if "adversarial fine-tuning" in line)
    assert "3/3" in bar and "/s" in bar and "loss 0.3333" in bar and "eta" in bar
    assert "hardened model: hardened:" in out
    assert "{" not in out.split("hardened model:", 1)[1]  # no raw JSON
    assert "  n train  8" in out and "    n  4" in out


def test_the_training_loop_reports_each_step(tiny_clip: Any) -> None:
    from PIL import Image

    from vlmtrust.mitigations.robustness._advtrain import (
        AdvTrainConfig,
        adversarial_finetune,
        clone_dual,
    )

    model = clone_dual(tiny_clip)  # the session's model stays untouched
    px = model.to_pixels([Image.new("RGB", (32, 32), (60 * i, 0, 0)) for i in range(4)])
    rec = _Rec()
    cfg = AdvTrainConfig("fare", steps=2, batch_size=2, attack_steps=1)
    with reporting(rec):
        adversarial_finetune(model, px, cfg)
    assert [e[:2] for e in rec.seen] == [
        ("start", "fare adversarial fine-tuning"),
        ("step", 0),
        ("step", 1),
    ]
    assert rec.seen[0][2] == 2


def test_harden_json_is_one_object(tmp_path: Path) -> None:
    out = _harden("mock:generative", "safety/defense_prompt", [], tmp_path / "h", "--json")
    doc = json.loads(out)
    assert doc["spec"].startswith("hardened:") and doc["mitigation"] == "safety/defense_prompt"
    assert doc["summary"]["wrapper"]["base"] == "mock:generative"


def test_reporting_reaches_the_active_receiver_only() -> None:
    rec = _Rec()
    train_started("outside", 2)  # no receiver: a no-op
    with reporting(rec):
        train_started("loop", 2)
        train_step(0, 1.5)
    train_step(1, 1.0)
    assert rec.seen == [("start", "loop", 2), ("step", 0, 1.5)]


def test_summary_lines_are_aligned_and_shorten_loss_curves() -> None:
    lines = summary_lines(
        {"steps": 3, "final_loss": 0.123456, "losses": [3.0, 2, 1, 1, 1, 1, 0.5], "after": {"n": 4}}
    )
    assert lines[0] == "  steps       3"
    assert "0.1235" in lines[1]
    assert lines[2].endswith("7 values, 3 → 0.5")
    assert lines[3:] == ["  after:", "    n  4"]
