"""The decoder process gives the safe loader's images and errors; runs compute the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import shape_folder
from vlmtrust.core.errors import ImageLoadError
from vlmtrust.core.images import NOTE_KEY, load_image
from vlmtrust.core.probe import ProbeContext
from vlmtrust.runner import decoder


@pytest.fixture(scope="module")
def started() -> decoder.Decoder:
    dec = decoder.shared()
    assert dec is not None and dec.ready.wait(30), "decoder process did not start"
    return dec


def _files(root: Path) -> list[tuple[str, int, float]]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((9, 13, 3)) * 255).astype(np.uint8)).save(root / "a.png")
    Image.fromarray((rng.random((8, 8, 4)) * 255).astype(np.uint8)).save(root / "b.png")
    Image.fromarray((rng.random((10, 6, 3)) * 255).astype(np.uint8)).save(root / "c.jpg")
    frames = [Image.new("RGB", (5, 5), c) for c in ("red", "blue")]
    frames[0].save(root / "d.gif", save_all=True, append_images=frames[1:])
    (root / "e.png").write_bytes(b"not a png")
    big = 1_000
    return [
        *((str(root / n), 10**8, 200.0) for n in ("a.png", "b.png", "c.jpg", "d.gif", "e.png")),
        (str(root / "a.png"), big // 10, 200.0),  # over the pixel limit
        (str(root / "missing.png"), 10**8, 200.0),
    ]


def test_decoder_gives_the_loaders_pixels_notes_and_errors(
    started: decoder.Decoder, tmp_path: Path
) -> None:
    jobs = _files(tmp_path)
    got = started.result(started.submit(jobs))
    assert len(got) == len(jobs)
    for (path, max_pixels, max_ratio), image in zip(jobs, got, strict=True):
        try:
            want: Image.Image | ImageLoadError = load_image(
                path, max_pixels=max_pixels, max_aspect_ratio=max_ratio
            )
        except ImageLoadError as e:
            want = e
        if isinstance(want, ImageLoadError):
            assert isinstance(image, ImageLoadError) and str(image) == str(want)
            continue
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), np.asarray(want))
        assert image.info.get(NOTE_KEY) == want.info.get(NOTE_KEY)
    assert "first frame" in got[3].info[NOTE_KEY]  # type: ignore[union-attr]
    assert sum(isinstance(x, ImageLoadError) for x in got) == 3


def _run(model: Any, data: str, out: Path) -> tuple[list[str], list[dict[str, Any]]]:
    import vlmtrust.runner.engine as engine
    from vlmtrust.probes.capability.zero_shot import ZeroShot

    w = engine.RecordWriter(out)
    probe = ZeroShot()
    probe.batch_size = 8  # several chunks in flight
    res = engine.evaluate_probe(model, probe, ProbeContext(data=data), writer=w)
    w.close()
    lines = out.read_text().splitlines()
    return lines, [m.model_dump() for m in res.metrics] + [e.model_dump() for e in res.examples]


def test_same_records_and_metrics_with_the_decoder_process_and_without(
    ref_clip: Any, started: decoder.Decoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = shape_folder(tmp_path / "data", 40, seed=4)
    monkeypatch.setenv(decoder.ENV, "off")
    here = _run(ref_clip, data, tmp_path / "here.jsonl")
    sent: list[int] = []
    real = decoder.Decoder.submit

    def counting(self: decoder.Decoder, jobs: Any) -> int:
        sent.append(len(jobs))
        return real(self, jobs)

    monkeypatch.setattr(decoder.Decoder, "submit", counting)
    monkeypatch.setenv(decoder.ENV, "on")
    there = _run(ref_clip, data, tmp_path / "there.jsonl")
    assert sum(sent) == 41  # every file went to the process (the broken one too)
    assert there == here
    assert sum('"error":null' not in line for line in there[0]) == 1

    # The process dies: the run decodes in-process and computes the same.
    started._proc.kill()
    started._proc.wait()
    assert started.dead.wait(10)
    again = _run(ref_clip, data, tmp_path / "again.jsonl")
    assert again == here
    assert decoder.shared() is None  # not restarted: this process decodes in-process now


def test_auto_uses_the_process_only_with_a_core_left_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vlmtrust.runner.compute as compute

    monkeypatch.setenv(decoder.ENV, "auto")
    monkeypatch.setattr(decoder.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(compute, "threads_in_use", lambda: 2)
    assert not decoder.enabled()
    monkeypatch.setattr(compute, "threads_in_use", lambda: 1)
    assert decoder.enabled()
    monkeypatch.setenv(decoder.ENV, "off")
    assert not decoder.enabled()
