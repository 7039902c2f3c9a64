import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runner_toys import ColourEncoder, ColourProbe

from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import AuditLog
from vlmtrust.runner.cache import Cache, CachedEmbeddingModel
from vlmtrust.runner.engine import evaluate_probe, read_records, run_audit, samples_file

HERE = Path(__file__).parent


def test_evaluate_probe_scores_and_cis():
    res = evaluate_probe(ColourEncoder(), ColourProbe({"n": 40}), ProbeContext(seed=1))
    acc = res.metric("accuracy")
    assert res.n_samples == 40 and res.n_errors == 0
    assert acc.value == pytest.approx(1.0)
    assert set(acc.groups) <= {"red", "green", "blue"}
    assert sum(g.n for g in acc.groups.values()) == 40


def test_bad_sample_becomes_error_record_and_run_goes_on(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    probe = ColourProbe({"n": 30, "bad_every": 7, "bad_path": str(bad)})
    log = run_audit(ColourEncoder(), [probe], out_dir=tmp_path / "run", ctx=ProbeContext(seed=2))
    res = log.results[0]
    # ids 0, 7, 14, 21, 28 raise in evaluate; id 3 has an unreadable image.
    assert res.n_errors == 6
    assert res.n_samples == 30
    assert res.metric("accuracy").n == 24
    msgs = {e.sample_id: e.message for e in res.errors}
    assert "broken.png" in msgs["c003"] and "\n" not in msgs["c003"]
    assert msgs["c007"] == "RuntimeError: boom on c007"
    lines = samples_file(tmp_path / "run", probe.name).read_text().splitlines()
    assert len(lines) == 30
    assert (tmp_path / "run" / "results.json").exists()
    AuditLog.model_validate_json((tmp_path / "run" / "results.json").read_text())


def test_same_seed_same_numbers(tmp_path):
    a = run_audit(
        ColourEncoder(), [ColourProbe({"n": 24})], out_dir=tmp_path / "a", ctx=ProbeContext(seed=5)
    )
    b = run_audit(
        ColourEncoder(), [ColourProbe({"n": 24})], out_dir=tmp_path / "b", ctx=ProbeContext(seed=5)
    )
    assert a.results[0].metrics == b.results[0].metrics


def _metrics(run: Path):
    log = AuditLog.model_validate_json((run / "results.json").read_text())
    return [m.model_dump() for r in log.results for m in r.metrics]


def test_resume_after_kill_minus_9_equals_uninterrupted(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full = tmp_path / "full"
    subprocess.run(
        [sys.executable, str(HERE / "_resume_worker.py"), str(full), "0", "0"], check=True, env=env
    )
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_resume_worker.py"), str(cut), "0.25", "0"], env=env
    )
    path = samples_file(cut, "capability/test_colour")
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 16):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_records(path)
    assert 16 <= len(partial) < 64, "the run should have been cut mid-way"
    # Simulate a torn final line from the kill.
    with path.open("a") as fh:
        fh.write('{"sample_id": "c06')
    assert not (cut / "results.json").exists()
    subprocess.run(
        [sys.executable, str(HERE / "_resume_worker.py"), str(cut), "0", "1"], check=True, env=env
    )
    assert _metrics(cut) == _metrics(full)
    done = read_records(path)
    assert len(done) == 64
    # Finished samples were not recomputed: each id appears once in the file.
    ids = [json.loads(line)["sample_id"] for line in path.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 64


def test_resume_refuses_a_different_spec(tmp_path):
    from vlmtrust.core.errors import InputError

    run_audit(ColourEncoder(), [ColourProbe({"n": 8})], out_dir=tmp_path, ctx=ProbeContext(seed=1))
    with pytest.raises(InputError, match="--resume needs the same"):
        run_audit(
            ColourEncoder(),
            [ColourProbe({"n": 9})],
            out_dir=tmp_path,
            ctx=ProbeContext(seed=1),
            resume=True,
        )


def test_cache_reuses_embeddings_across_runs(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    m1 = ColourEncoder()
    run_audit(m1, [ColourProbe({"n": 32})], out_dir=tmp_path / "r1", cache=cache)
    assert m1.images_seen == 32
    m2 = ColourEncoder()
    log = run_audit(m2, [ColourProbe({"n": 32})], out_dir=tmp_path / "r2", cache=cache)
    assert m2.images_seen == 0
    assert log.results[0].metric("accuracy").value == pytest.approx(1.0)


def test_cached_embeddings_equal_fresh_ones(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)) for _ in range(5)]
    imgs.append(imgs[0].copy())  # a duplicate inside one batch is computed once
    model = ColourEncoder()
    cached = CachedEmbeddingModel(model, Cache(tmp_path / "c.sqlite"))
    first = cached.embed_images(imgs)
    assert model.images_seen == 5
    again = cached.embed_images(imgs)
    assert model.images_seen == 5
    np.testing.assert_allclose(first, model.embed_images(imgs))
    np.testing.assert_array_equal(first, again)


def _writer(path: str, k: int) -> None:
    c = Cache(path)
    for j in range(20):
        c.put_many({f"k{k}-{j}-{i}": os.urandom(64) for i in range(25)})
        c.get_many([f"k{k}-{j}-{i}" for i in range(25)])


def test_cache_is_safe_under_concurrent_writers(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    Cache(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    assert len(Cache(path)) == 4 * 20 * 25


def test_resume_refuses_a_different_limit(tmp_path):
    from vlmtrust.core.errors import InputError

    run_audit(ColourEncoder(), [ColourProbe({"n": 8})], out_dir=tmp_path, ctx=ProbeContext(limit=4))
    with pytest.raises(InputError, match="--limit"):
        run_audit(
            ColourEncoder(),
            [ColourProbe({"n": 8})],
            out_dir=tmp_path,
            ctx=ProbeContext(limit=2),
            resume=True,
        )


def test_a_probe_that_cannot_run_does_not_end_the_run(tmp_path):
    from vlmtrust.core.errors import InputError

    class Broken(ColourProbe):
        def samples(self, ctx):
            raise InputError("data x.jsonl: no such file — pass an existing --data")

    Broken.name = "capability/test_broken"
    log = run_audit(ColourEncoder(), [Broken({"n": 4}), ColourProbe({"n": 6})], out_dir=tmp_path)
    assert [r.probe for r in log.results] == ["capability/test_broken", "capability/test_colour"]
    assert log.results[0].notes == [
        "probe did not run: data x.jsonl: no such file — pass an existing --data"
    ]
    assert log.results[1].metric("accuracy").n == 6
    saved = AuditLog.model_validate_json((tmp_path / "results.json").read_text())
    assert saved.results[0].notes == log.results[0].notes
