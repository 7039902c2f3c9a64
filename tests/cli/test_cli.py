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
