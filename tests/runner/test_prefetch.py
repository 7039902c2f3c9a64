"""The runner's decoding thread changes when images are decoded, never what is computed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import shape_folder
from vlmtrust.core.probe import ProbeContext


def test_same_records_and_metrics_with_and_without_the_prefetch_thread(
    ref_clip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vlmtrust.runner.engine as engine
    from vlmtrust.probes.capability.zero_shot import ZeroShot

    data = shape_folder(tmp_path / "data", 16, seed=3)
    threaded: list[int] = []
    real = engine._prefetch

    def counting(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
        threaded.append(1)
        return real(items, depth)

    def run(name: str) -> tuple[list[str], list[dict[str, Any]]]:
        w = engine.RecordWriter(tmp_path / f"{name}.jsonl")
        res = engine.evaluate_probe(ref_clip, ZeroShot(), ProbeContext(data=data), writer=w)
        w.close()
        lines = w.path.read_text().splitlines()
        return lines, [m.model_dump() for m in res.metrics] + [e.model_dump() for e in res.examples]

    monkeypatch.setattr(engine, "_prefetch", counting)
    without = run("without")  # the default for an in-process model: no thread
    assert threaded == []
    monkeypatch.setattr(engine, "PREFETCH_LOCAL", True)
    with_thread = run("with")
    assert threaded == [1]
    assert with_thread == without
    assert sum('"error":null' not in line for line in with_thread[0]) == 1
