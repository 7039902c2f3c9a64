"""A reused --out (refused / --overwrite), the exit-1 problems, and secrets in stored runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_toys import ColourEncoder, ColourProbe

from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ErrorSummary, ProbeResult
from vlmtrust.core.types import Pillar
from vlmtrust.runner.cache import Cache
from vlmtrust.runner.engine import run_audit, samples_file
from vlmtrust.runner.outcome import check_error_rate, probe_problem, run_problems
from vlmtrust.runner.outdir import is_run_dir, prepare_model_dir, prepare_out_dir


class OtherColourProbe(ColourProbe):
    """The colour probe under another name (a second probe in a run)."""


OtherColourProbe.name = "capability/test_colour_other"


def _run(out: Path, probe: ColourProbe, **kw: object) -> object:
    return run_audit(ColourEncoder(), [probe], out_dir=out, ctx=ProbeContext(seed=1), **kw)  # type: ignore[arg-type]


def test_reusing_a_run_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, ColourProbe({"n": 4}))
    before = (out / "results.json").read_bytes()
    with pytest.raises(InputError) as e:
        _run(out, ColourProbe({"n": 4}))
    msg = str(e.value)
    assert "already holds a run" in msg and "--resume" in msg and "--overwrite" in msg
    assert "\n" not in msg
    assert (out / "results.json").read_bytes() == before  # nothing was touched


def test_overwrite_clears_stale_samples_of_other_probes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, OtherColourProbe({"n": 4}))
    (out / "report.html").write_text("old report")
    (out / "notes.txt").write_text("mine")  # not a run file: kept
    log = _run(out, ColourProbe({"n": 6}), overwrite=True)
    assert [r.probe for r in log.results] == ["capability/test_colour"]  # type: ignore[attr-defined]
    assert not samples_file(out, OtherColourProbe.name).exists()
    assert samples_file(out, ColourProbe.name).exists()
    assert not (out / "report.html").exists()
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.png").write_bytes(b"x")
    (out / "spec.json").write_text('{"not": "a run"}')
    with pytest.raises(InputError, match="not a vlmtrust run folder"):
        prepare_out_dir(out, overwrite=True)
    assert (out / "cat.png").exists() and (out / "spec.json").exists()


def test_a_folder_without_run_files_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    prepare_out_dir(tmp_path)  # nothing of a run's to overwrite
    prepare_out_dir(tmp_path / "new")
    prepare_out_dir(tmp_path / "new", overwrite=True)


def test_resume_and_overwrite_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="exclude each other"):
        prepare_out_dir(tmp_path, resume=True, overwrite=True)


def test_a_file_is_not_a_run_folder(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_text("")
    with pytest.raises(InputError, match="is a file"):
        prepare_out_dir(f)


def test_multi_model_parent_is_a_run_and_overwrite_clears_sub_runs(tmp_path: Path) -> None:
    parent = tmp_path / "audit"
    _run(parent / "m1", ColourProbe({"n": 4}))
    (parent / "index.json").write_text(json.dumps({"runs": ["m1"]}))
    assert is_run_dir(parent)
    with pytest.raises(InputError, match=r"index.json.*m1/"):
        prepare_out_dir(parent)
    prepare_out_dir(parent, overwrite=True)
    assert list(parent.iterdir()) == []


def test_harden_out_folder(tmp_path: Path) -> None:
    out = tmp_path / "hardened"
    prepare_model_dir(out)  # missing: fine
    out.mkdir()
    (out / "wrapper.json").write_text("{}")
    with pytest.raises(InputError, match="not empty"):
        prepare_model_dir(out)
    with pytest.raises(InputError, match="being hardened"):
        prepare_model_dir(out, overwrite=True, source=f"hardened:{out}")
    prepare_model_dir(out, overwrite=True, source="reference:clip")
    assert not out.exists()
    other = tmp_path / "data"
    other.mkdir()
    (other / "a.txt").write_text("x")
    with pytest.raises(InputError, match="holds no hardened model"):
        prepare_model_dir(other, overwrite=True)
    assert (other / "a.txt").exists()


def _result(n: int, bad: int, notes: list[str] | None = None) -> ProbeResult:
    errors = [ErrorSummary(sample_id="s0", message="HTTP 401")] if bad else []
    return ProbeResult(
        probe="p",
        pillar=Pillar.SAFETY,
        version=1,
        params={},
        n_samples=n,
        n_errors=bad,
        errors=errors,
        notes=notes or [],
    )


def test_probe_problems() -> None:
    assert probe_problem(_result(6, 0)) is None
    assert probe_problem(_result(6, 5)) is None  # default: only all-failed fails
    assert probe_problem(_result(6, 6)) == "all 6 samples failed (first: HTTP 401)"
    assert probe_problem(_result(0, 0)) is not None and "no samples" in str(
        probe_problem(_result(0, 0))
    )
    assert probe_problem(_result(0, 0, ["probe did not run: data x: not found"])) == (
        "did not run: data x: not found"
    )
    assert "summarising failed" in str(probe_problem(_result(5, 0, ["summarising failed: E"])))
    assert probe_problem(_result(10, 1), max_error_rate=0.1) is None  # not above R
    assert "above --max-error-rate 0.05" in str(probe_problem(_result(10, 1), max_error_rate=0.05))
    assert probe_problem(_result(10, 0), max_error_rate=0.0) is None
    with pytest.raises(InputError, match="between 0 and 1"):
        check_error_rate(1.5)
    with pytest.raises(InputError):
        check_error_rate(-0.1)


def test_run_problems_name_model_and_probe(tmp_path: Path) -> None:
    from vlmtrust.core.errors import InputError as IE

    class Broken(ColourProbe):
        def samples(self, ctx):  # type: ignore[no-untyped-def]
            raise IE("data x.jsonl: not found")

    Broken.name = "capability/test_broken_outcome"
    log = run_audit(
        ColourEncoder(), [Broken({"n": 2}), ColourProbe({"n": 4})], out_dir=tmp_path / "r"
    )
    assert run_problems(log) == [
        "toy:colour · capability/test_broken_outcome: did not run: data x.jsonl: not found"
    ]


KEY = "s3cr3t-0123456789-KEY"


class LeakyProbe(ColourProbe):
    """Every sample fails with a message that quotes the model's spec (as a backend might)."""

    def evaluate(self, model, batch, ctx):  # type: ignore[no-untyped-def]
        if any(s.id == "c000" for s in batch):
            raise RuntimeError(f"cannot reach {model.fingerprint}")
        return [self.record(s, error=f"HTTP 404 from {model.spec}") for s in batch]


LeakyProbe.name = "capability/test_leaky"


def test_a_key_in_a_model_object_reaches_no_file(tmp_path: Path) -> None:
    """Specs are refused with credentials, but a model built in Python may still carry one."""
    from vlmtrust.report.html import render_report

    url = f"http://user:{KEY}@127.0.0.1:1/v1?api_key={KEY}"
    model = ColourEncoder(spec=f"openai:m@{url}")
    model.fingerprint = f"openai:m@{url}"
    out = tmp_path / "run"
    cache = Cache(tmp_path / "cache.sqlite")
    probes = [ColourProbe({"n": 4}), LeakyProbe({"n": 3})]
    log = run_audit(model, probes, out_dir=out, ctx=ProbeContext(seed=1), cache=cache)
    assert len(cache) > 0  # the embeddings were cached (keys hold the fingerprint)
    cache.close()
    leaky = log.result(LeakyProbe.name)
    assert leaky.n_errors == 3 and all("***" in e.message for e in leaky.errors)
    render_report(out)
    files = [p for p in out.rglob("*") if p.is_file()] + list(tmp_path.glob("cache.sqlite*"))
    assert {p.name for p in files} >= {"spec.json", "results.json", "report.html", "report.md"}
    for p in files:
        assert KEY.encode() not in p.read_bytes(), p
    spec = json.loads((out / "spec.json").read_text())
    assert spec["model"]["spec"] == "openai:m@http://***@127.0.0.1:1/v1?api_key=***"
