"""End to end through the CLI on tiny HF models loaded with the real ``hf:`` path."""

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.results import AuditLog

runner = CliRunner()


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / label / f"{i}.png")
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "trunc.png").write_bytes((root / "dog" / "0.png").read_bytes()[:60])
    Image.new("CMYK", (16, 16), (0, 50, 100, 0)).save(root / "dog" / "cmyk.jpg")
    return root


def test_run_zero_shot_on_folder_with_bad_files(tmp_path, tiny_clip_dir):
    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "run",
            "capability/zero_shot",
            "--model",
            f"hf:{tiny_clip_dir}",
            "--data",
            str(data),
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "c.sqlite"),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    log = AuditLog.model_validate_json((out / "results.json").read_text())
    r = log.result("capability/zero_shot")
    assert r.n_samples == 15 and r.n_errors == 2
    assert r.metric("accuracy").n == 13
    msgs = " ".join(e.message for e in r.errors)
    assert "empty.png" in msgs and "trunc.png" in msgs
    spec = json.loads((out / "spec.json").read_text())
    assert spec["model"]["fingerprint"] and spec["seed"] == 0
    html = (out / "report.html").read_text()
    assert "capability/zero_shot" in html and "trunc.png" in html
    # the report command re-renders from files alone
    (out / "report.html").unlink()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").exists()


def test_vqa_probe_on_generative_model_with_manifest(tmp_path, tiny_llava_dir):
    img = tmp_path / "a.png"
    Image.new("RGB", (24, 24), (200, 10, 10)).save(img)
    lines = [
        json.dumps({"id": "q1", "image": "a.png", "prompt": "What colour?", "target": "red"}),
        "{not json",
        json.dumps({"id": "q2", "image": "../escape.png", "prompt": "x", "target": "y"}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "run",
            "capability/vqa",
            "--model",
            f"hf:{tiny_llava_dir}",
            "--data",
            str(tmp_path / "m.jsonl"),
            "--out",
            str(out),
            "--cache",
            "off",
            "--quiet",
            "--no-report",
        ],
    )
    assert res.exit_code == 0, res.output
    r = AuditLog.model_validate_json((out / "results.json").read_text()).result("capability/vqa")
    assert r.n_samples == 3 and r.n_errors == 2
    assert r.metric("accuracy").n == 1


def test_capability_mismatch_is_one_line(tmp_path, tiny_clip_dir):
    res = runner.invoke(
        app, ["run", "capability/vqa", "--model", f"hf:{tiny_clip_dir}", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2
    assert "needs GENERATE" in res.output
