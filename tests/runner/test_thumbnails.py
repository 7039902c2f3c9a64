"""Report previews: never fail a probe, and keep only references for images on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vlmtrust.core.results import Example
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.runner.data import Thumbnails


def test_file_backed_images_keep_a_reference_and_memory_ones_a_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (400, 300), (200, 10, 10)).save(path)
    on_disk = Sample(id="disk", images=(ImageRef.from_path(path),))
    in_memory = Sample(id="mem", images=(ImageRef.from_image(Image.new("RGB", (50, 50))),))
    thumbs = Thumbnails()
    thumbs.keep(on_disk, on_disk.with_images((ImageRef.from_path(path).loaded(),)))
    thumbs.keep(in_memory, in_memory)
    assert set(thumbs._thumbs) == {"mem"} and set(thumbs._refs) == {"disk"}
    examples = [Example(sample_id="disk"), Example(sample_id="mem"), Example(sample_id="other")]
    thumbs.fill(examples)
    assert examples[0].image_png_b64 and examples[1].image_png_b64
    assert examples[2].image_png_b64 is None


def test_a_preview_that_cannot_be_made_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vlmtrust.core.images as images

    def broken(image: Image.Image, max_side: int = 160) -> Image.Image:
        raise OSError("cannot make a thumbnail")

    monkeypatch.setattr(images, "thumbnail", broken)
    mem = Sample(id="mem", images=(ImageRef.from_image(Image.new("RGB", (8, 8))),))
    path = tmp_path / "b.png"
    Image.new("RGB", (8, 8)).save(path)
    disk = Sample(id="disk", images=(ImageRef.from_path(path),))
    thumbs = Thumbnails()
    thumbs.keep(mem, mem)  # must not raise: a preview never fails the probe
    thumbs.keep(disk, disk.with_images((ImageRef.from_path(path).loaded(),)))
    assert "mem" not in thumbs._thumbs
    ex = [Example(sample_id="mem"), Example(sample_id="disk")]
    thumbs.fill(ex)
    assert ex[0].image_png_b64 is None and ex[1].image_png_b64 is None
