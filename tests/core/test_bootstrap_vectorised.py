"""The vectorised bootstrap of means gives the replicates of the per-replicate loop."""

from __future__ import annotations

import numpy as np
import pytest

from vlmtrust.core import stats


@pytest.mark.parametrize("n", [2, 7, 300])
def test_vectorised_means_equal_the_loop(n):
    rng = np.random.default_rng(n)
    for values in (rng.integers(0, 2, n).astype(float), rng.normal(size=n)):
        fast = stats.bootstrap_replicates(stats.accuracy, values, seed=3)
        loop = stats.bootstrap_replicates(lambda x: stats.accuracy(x), values, seed=3)
        assert np.array_equal(fast, loop)
    assert stats.mean_ci([1.0, 0.0, 1.0, 1.0], seed=1)[1:] == stats.bootstrap_ci(
        lambda x: float(np.mean(x)), [1.0, 0.0, 1.0, 1.0], seed=1
    )


def test_record_writer_flushes_every_batch_and_syncs_on_close(tmp_path):
    from vlmtrust.core.results import Record
    from vlmtrust.runner.engine import RecordWriter, read_records

    path = tmp_path / "s.jsonl"
    w = RecordWriter(path, sync_every_s=3600)
    w.write([Record(sample_id="a", index=0)])
    assert [r.sample_id for r in read_records(path)] == ["a"]  # readable before close
    w.write([Record(sample_id="b", index=1)])
    w.close()
    assert [r.sample_id for r in read_records(path)] == ["a", "b"]
