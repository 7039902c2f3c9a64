import re
import subprocess
import sys
import time

from typer.testing import CliRunner

from vlmtrust.cli import app, parse_params

runner = CliRunner()


def test_help_is_instant_and_lazy():
    code = (
        "import sys, time; t=time.perf_counter(); "
        "from vlmtrust.cli import app; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'; "
        "print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 1.0
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vlmtrust.cli", "--help"], capture_output=True, check=True
    )
    assert time.perf_counter() - t < 3.0  # interpreter start included


def test_list_probes_names_capability_probes():
    res = runner.invoke(app, ["list", "probes"])
    assert res.exit_code == 0, res.output
    assert "capability/zero_shot" in res.output and "capability/vqa" in res.output


def test_unknown_probe_is_one_clear_line():
    res = runner.invoke(app, ["run", "capability/zero_shoot", "--model", "reference:clip"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "capability/zero_shot" in lines[0]


def test_bad_spec_is_one_clear_line():
    res = runner.invoke(app, ["run", "capability/vqa", "--model", "gguf:foo"])
    assert res.exit_code == 2
    assert "unknown scheme 'gguf'" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1


def test_param_parsing():
    assert parse_params(["capability/vqa.n=5", "capability/vqa.suffix=hi"], scoped=True) == {
        "capability/vqa": {"n": 5, "suffix": "hi"}
    }
    assert parse_params(["eps=0.01"], scoped=False) == {"": {"eps": 0.01}}


def test_report_on_missing_dir(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no results.json" in res.output


def test_run_on_mock_model(tmp_path):
    import json

    from vlmtrust.core.results import AuditLog

    out = tmp_path / "run"
    args = ["run", "safety/figstep", "--model", "mock:generative", "--limit", "4"]
    args += ["--out", str(out), "-p", 'safety/figstep.judges=["refusal/keyword"]', "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    spec = json.loads((out / "spec.json").read_text())
    assert spec["model"]["spec"] == "mock:generative"
    assert spec["model"]["fingerprint"].startswith("mock-")
    log = AuditLog.model_validate_json((out / "results.json").read_text())
    asr = log.result("safety/figstep").metric("asr/figstep/refusal/keyword")
    assert asr.value == 1.0  # the mock answers "OK" to everything: it complies


def _cli_options(command: str) -> set[str]:
    import typer

    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {opt for param in cmd.params for opt in param.opts}


def _named_limits() -> set[str]:
    """Every option an error message of src/vlmtrust tells the user to raise or lower."""
    import re
    from pathlib import Path

    from vlmtrust.core.limits import LIMIT_OPTIONS

    src = Path(__file__).resolve().parents[2] / "src" / "vlmtrust"
    named: set[str] = set()
    for path in src.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        named |= set(re.findall(r"\b(?:raise|lower|increase) (--[a-z][a-z0-9-]*)", text))
        named |= {LIMIT_OPTIONS[k] for k in re.findall(r"\boption\(['\"](\w+)['\"]\)", text)}
        # a limit named by its Python name ("raise max_pixels") cannot be typed on the CLI
        bare = re.findall(r"\b(?:raise|lower|increase) ([a-z]+_[a-z_]+)\b", text)
        assert not bare, f"{path.name}: a message names {bare}; name the CLI option instead"
    return named


def test_every_limit_an_error_names_is_a_cli_option(tmp_path) -> None:
    from PIL import Image

    from vlmtrust.core.errors import InputError
    from vlmtrust.core.limits import LIMIT_OPTIONS
    from vlmtrust.data.datasets import iter_dataset
    from vlmtrust.data.images import load_image

    named = _named_limits()
    assert set(LIMIT_OPTIONS.values()) <= named
    # what the messages really say, for each limit
    Image.new("RGB", (4000, 2)).save(tmp_path / "wide.png")
    messages = []
    for kwargs in ({}, {"max_pixels": 100, "max_aspect_ratio": 5000}):
        try:
            load_image(tmp_path / "wide.png", **kwargs)  # type: ignore[arg-type]
        except InputError as e:
            messages.append(str(e))
    (tmp_path / "m.jsonl").write_text('{"prompt": "' + "x" * (1 << 20) + '"}\n')
    messages += [str(item) for item in iter_dataset(tmp_path / "m.jsonl")]
    assert len(messages) == 3
    for message in messages:
        (said,) = re.findall(r"--[a-z][a-z0-9-]+", message)
        named.add(said)
    for command in ("run", "audit", "harden"):
        missing = named - _cli_options(command)
        assert not missing, f"`vlmtrust {command}` lacks {sorted(missing)}"
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert all(option in res.output for option in named), res.output


def test_data_limits_from_the_cli(tmp_path) -> None:
    from PIL import Image

    from vlmtrust.core.results import AuditLog

    Image.new("RGB", (4000, 2), (200, 0, 0)).save(tmp_path / "wide.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "square.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"image": "wide.png", "label": "red"}\n{"image": "square.png", "label": "black"}\n'
    )
    base = ["run", "capability/zero_shot", "--model", "mock:dual", "--data", str(manifest)]
    base += ["--quiet", "--no-report", "--cache", "off"]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    log = AuditLog.model_validate_json((tmp_path / "a" / "results.json").read_text())
    (err,) = log.result("capability/zero_shot").errors
    assert err.message.endswith("crop or pad the image, or raise --max-aspect-ratio")
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--max-aspect-ratio", "5000"])
    assert res.exit_code == 0, res.output
    log = AuditLog.model_validate_json((tmp_path / "b" / "results.json").read_text())
    assert log.result("capability/zero_shot").n_errors == 0
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "c"), "--max-aspect-ratio", "0.5"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: --max-aspect-ratio 0.5: not a number >= 1 — pass e.g. 50"


def _served():
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
    from openai_server import ConstantBackend, Fault, serve

    return serve(ConstantBackend("I cannot help with that."), faults=[Fault.http(503)])


def test_model_options_reach_the_backend_and_spec_json(tmp_path, monkeypatch):
    import json

    from vlmtrust.core.results import AuditLog

    monkeypatch.setenv("VLMTRUST_TEST_CLI_KEY", "sk-cli-SECRET-42")
    out = tmp_path / "run"
    with _served() as url:
        args = ["run", "safety/figstep", "--model", f"openai:test-model@{url}", "--limit", "2"]
        args += ["--model-option", "timeout=7", "--model-option", "concurrency=3"]
        args += ["--model-option", "backoff_base_s=0.01", "--model-option", "rps=none"]
        args += ["--model-option", "api_key_env=VLMTRUST_TEST_CLI_KEY"]
        args += ["-p", 'safety/figstep.judges=["refusal/keyword"]']
        args += ["-p", "safety/figstep.image_size=32", "--out", str(out), "--quiet"]
        res = runner.invoke(app, args)
        assert url.stats.auth_headers[-1] == "Bearer sk-cli-SECRET-42"
    assert res.exit_code == 0, res.output
    opts = json.loads((out / "spec.json").read_text())["model"]["options"]
    assert opts["timeout_s"] == 7.0 and opts["concurrency"] == 3 and opts["max_retries"] == 5
    assert opts["requests_per_second"] is None and opts["batches_in_flight"] == 3
    assert opts["api_key_env"] == "VLMTRUST_TEST_CLI_KEY"
    for name in ("spec.json", "results.json", "report.md", "report.html"):
        assert "sk-cli-SECRET" not in (out / name).read_text()
    log = AuditLog.model_validate_json((out / "results.json").read_text())
    st = log.result("safety/figstep").requests
    assert st is not None and st.requests == 8 and st.retries == {"5xx": 1}
    assert "**Requests** (remote model)" in (out / "report.md").read_text()


def test_bad_model_options_fail_before_any_model_loads(monkeypatch):
    import vlmtrust.api

    def no_loading(*a, **kw):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(vlmtrust.api, "load_model", no_loading)
    spec = "openai:m@http://127.0.0.1:9/v1"
    cases = [
        (["--model-option", "timeout_s=soon"], "timeout_s='soon' is invalid; use a number"),
        (["--model-option", "temperature=0"], "valid: concurrency, timeout_s, max_retries"),
        (["--model-option", "api_key=sk-pasted-SECRET"], "export the key as OPENAI_API_KEY"),
        (["--model-option", "sk-pasted-SECRET"], "is not KEY=VALUE"),
    ]
    for extra, needle in cases:
        for cmd in (["run", "safety/figstep"], ["audit"]):
            res = runner.invoke(app, [*cmd, "--model", spec, *extra])
            assert res.exit_code == 2, res.output
            lines = [ln for ln in res.output.splitlines() if ln.strip()]
            assert len(lines) == 1 and needle in lines[0], res.output
            assert "sk-pasted-SECRET" not in res.output
    # several models: one that takes no options refuses them, before the others load
    res = runner.invoke(app, ["audit", "-m", spec, "-m", "reference:clip", "--model-option", "x=1"])
    assert res.exit_code == 2 and "not an openai: option" in res.output
    res = runner.invoke(
        app, ["audit", "-m", spec, "-m", "reference:clip", "--model-option", "timeout_s=3"]
    )
    assert res.exit_code == 2 and "reference: backend takes no --model-option" in res.output


def test_harden_checks_model_options(tmp_path):
    args = ["harden", "--model", "reference:clip", "--mitigation", "robustness/fare"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path), "--model-option", "timeout_s=3"])
    assert res.exit_code == 2 and "reference: backend takes no --model-option" in res.output
