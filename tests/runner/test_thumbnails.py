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
    ex = [Example(sample_id="mem"), Example(sample_id="disk")]
    thumbs.fill(ex)
    assert ex[0].image_png_b64 is None and ex[1].image_png_b64 is None


def test_a_render_of_model_size_is_previewed_only_when_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 224-px in-memory image costs no resize at keep(); the report preview is unchanged."""
    import numpy as np

    import vlmtrust.core.images as images

    rng = np.random.default_rng(0)
    render = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
    expected = images.png_b64(images.thumbnail(render))
    big = Image.fromarray(rng.integers(0, 256, (400, 300, 3), dtype=np.uint8))
    calls: list[tuple[int, int]] = []
    real = images.thumbnail

    def counting(image: Image.Image, max_side: int = 160) -> Image.Image:
        calls.append(image.size)
        return real(image, max_side)

    monkeypatch.setattr(images, "thumbnail", counting)
    thumbs = Thumbnails()
    for sid, im in (("render", render), ("big", big)):
        s = Sample(id=sid, images=(ImageRef.from_image(im),))
        thumbs.keep(s, s)
    assert calls == [big.size]  # only the image larger than two previews is shrunk now
    ex = [Example(sample_id="render"), Example(sample_id="big")]
    thumbs.fill(ex)
    assert ex[0].image_png_b64 == expected
    assert ex[1].image_png_b64 == images.png_b64(real(big))
