"""Exit codes of `run` / `audit`, input refused before running, reused --out, and secrets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from vlmtrust.cli import app
from vlmtrust.core.results import AuditLog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from openai_server import EchoBackend, serve  # noqa: E402

runner = CliRunner()
FIGSTEP = ["run", "safety/figstep", "--limit", "1", "--quiet"]
KEYWORD = ["-p", 'safety/figstep.judges=["refusal/keyword"]']
KEY = "sk-test-0123456789abcdefKEY"


def _lines(res: Result) -> list[str]:
    return [ln for ln in res.output.splitlines() if ln.strip()]


def _one_error(res: Result, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    lines = _lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def _manifest(tmp_path: Path, good: int, bad: int) -> Path:
    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "a.png")
    lines = [
        json.dumps({"id": f"q{i}", "image": "a.png", "prompt": "Colour?", "target": "OK"})
        for i in range(good)
    ]
    lines += [
        json.dumps({"id": f"b{i}", "image": "missing.png", "prompt": "x"}) for i in range(bad)
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(ln + "\n" for ln in lines))
    return path


@pytest.mark.parametrize("command", ["run", "audit"])
def test_help_documents_the_exit_codes(command: str) -> None:
    res = runner.invoke(app, [command, "--help"], terminal_width=120)
    assert res.exit_code == 0
    text = res.output
    assert "Exit codes" in text and "130" in text and "--max-error-rate" in text
    assert "--overwrite" in text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--limit", "-3"], "--limit -3: use a positive number"),
        (["--limit", "0"], "--limit 0"),
        (["--data", "/no/such/dir"], "data /no/such/dir: not found"),
        (["--data", "/no/such/m.jsonl"], "manifest not found"),
        (["-p", "capability/vqa.n=3"], "not in this run (safety/figstep)"),
        (["--max-error-rate", "1.5"], "between 0 and 1"),
        (["--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_bad_input_is_refused_before_running(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, [*FIGSTEP, "-m", "mock:generative", "--out", str(out), *args])
    assert fragment in _one_error(res)
    assert not out.exists()


def test_template_without_placeholder_is_refused(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["run", "capability/zero_shot", "-m", "mock:dual", "--out", str(tmp_path / "r"),
         "-p", "capability/zero_shot.template=a photo"],
    )  # fmt: skip
    assert "'template'" in _one_error(res) and "'{}'" in res.output


def test_param_for_a_pillar_the_audit_leaves_out(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["audit", "-m", "mock:dual", "--pillar", "privacy", "--out", str(tmp_path / "r"),
         "-p", "capability/zero_shot.n=3"],
    )  # fmt: skip
    assert "--pillar privacy leaves out" in _one_error(res)


def test_param_for_a_probe_the_model_cannot_run(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["audit", "-m", "mock:dual", "--pillar", "safety", "--pillar", "capability",
         "--out", str(tmp_path / "r"), "-p", "safety/figstep.n_harmful=3"],
    )  # fmt: skip
    assert "does not run on mock:dual" in _one_error(res)


def test_empty_manifest_exits_1_and_still_writes_results(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        ["run", "capability/vqa", "-m", "mock:generative", "--data", str(tmp_path / "empty.jsonl"),
         "--out", str(out), "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "error: mock:generative · capability/vqa: did not run:" in res.output
    assert (out / "results.json").exists() and (out / "report.html").exists()


def test_max_error_rate(tmp_path: Path) -> None:
    data = _manifest(tmp_path, good=3, bad=1)  # 1 of 4 samples fails
    base = ["run", "capability/vqa", "-m", "mock:generative", "--data", str(data), "--quiet"]
    ok = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--no-report"])
    assert ok.exit_code == 0, ok.output  # default: only all-failed fails
    ok = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--max-error-rate", "0.25"])
    assert ok.exit_code == 0, ok.output
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "c"), "--max-error-rate", "0.1"])
    assert res.exit_code == 1, res.output
    assert "1 of 4 samples failed (25%, above --max-error-rate 0.1)" in res.output
    assert (tmp_path / "c" / "report.html").exists()


def test_reused_out_is_refused_and_overwrite_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*FIGSTEP, *KEYWORD, "-m", "mock:generative", "--out", str(out), "--no-report"]
    assert runner.invoke(app, args).exit_code == 0
    stale = out / "samples" / "safety__over_refusal.jsonl"
    stale.write_text("{}\n")
    assert "already holds a run" in _one_error(runner.invoke(app, args))
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert not stale.exists()
    log = AuditLog.model_validate_json((out / "results.json").read_text())
    assert [r.probe for r in log.results] == ["safety/figstep"]


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    (tmp_path / "results.json").write_text("not vlmtrust's")
    res = runner.invoke(
        app, [*FIGSTEP, "-m", "mock:generative", "--out", str(tmp_path), "--overwrite"]
    )
    assert "not a vlmtrust run folder" in _one_error(res)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def _assert_nowhere(key: str, res: Result, *roots: Path) -> None:
    assert key not in res.output and key not in (res.stderr or ""), res.output
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for p in files:
            assert key.encode() not in p.read_bytes(), p


def test_failing_endpoint_exits_1_and_the_key_appears_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request is refused (the server wants another key and echoes the one it got)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    with serve(EchoBackend(), require_key="the-right-key") as url:
        res = runner.invoke(
            app,
            [*FIGSTEP, *KEYWORD, "-m", f"openai:test-model@{url}", "--out", str(out),
             "--cache", str(cache)],
        )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "safety/figstep: all 4 samples failed (first: HTTP 401" in res.output
    assert (out / "results.json").exists() and (out / "report.html").exists()
    _assert_nowhere(KEY, res, out, cache)


def test_a_working_keyed_endpoint_writes_the_key_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    with serve(EchoBackend(), require_key=KEY) as url:
        res = runner.invoke(
            app,
            [*FIGSTEP, *KEYWORD, "-m", f"openai:test-model@{url}", "--out", str(out),
             "--cache", str(cache)],
        )  # fmt: skip
        assert url.stats.chat_requests == 4
    assert res.exit_code == 0, res.output
    assert cache.exists()
    _assert_nowhere(KEY, res, out, cache)


@pytest.mark.parametrize(
    "args",
    [
        ["-m", f"openai:m@http://user:{KEY}@127.0.0.1:1/v1"],
        ["-m", f"openai:m@http://127.0.0.1:1/v1?api_key={KEY}"],
        ["-m", f"openai:m@http://127.0.0.1:1/v1?X-Amz-Signature={KEY}"],
        ["-m", f"hf:org/model?token={KEY}"],
        ["-m", f"openai:m@{KEY}@127.0.0.1:1/v1"],
        ["-m", "mock:generative",
         "-p", f'safety/figstep.judges=["llm:openai:g@http://127.0.0.1:1/v1?api_key={KEY}"]'],
        ["-m", "mock:generative",
         "-p", f'safety/figstep.judges=["llm:openai:g@http://u:{KEY}@127.0.0.1:1/v1#refusal"]'],
    ],
)  # fmt: skip
def test_credentials_in_specs_are_refused_and_never_echoed(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, [*FIGSTEP, "--out", str(out), *args])
    line = _one_error(res)
    assert "credential" in line or "expected openai:MODEL@http" in line
    assert "***" in line or "holds a credential" in line  # shown redacted, or not at all
    _assert_nowhere(KEY, res)
    assert not out.exists()


def test_harden_refuses_a_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    args = ["harden", "-m", "mock:generative", "--mitigation", "safety/defense_prompt"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert "not empty" in _one_error(res)
    res = runner.invoke(app, [*args, "--out", str(tmp_path), "--overwrite"])
    assert "holds no hardened model" in _one_error(res)
    out = tmp_path / "wrapped"
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 2
    res = runner.invoke(app, [*args, "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (out / "wrapper.json").exists()
