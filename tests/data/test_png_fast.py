"""The safe loader's libspng path gives Pillow's pixels, or hands the file to Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtrust.core import _png, images
from vlmtrust.core.errors import ImageLoadError

pytestmark = pytest.mark.skipif(not _png.available(), reason="pyspng not installed")

RNG = np.random.default_rng(0)


def _png_bytes(im: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **save)
    return buf.getvalue()


def _pillow_only(data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Image.Image:
    """What the loader gives with the fast path switched off."""
    monkeypatch.setattr(_png, "_spng", None)
    try:
        p = tmp_path / "pillow.png"
        p.write_bytes(data)
        return images.load_image(p)
    finally:
        monkeypatch.undo()


def _with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """``data`` with one more chunk right after IHDR."""
    chunk = struct.pack(">I", len(body)) + kind + body
    chunk += struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return data[:33] + chunk + data[33:]


def _rgb(shape: tuple[int, ...]) -> np.ndarray:
    return (RNG.random(shape) * 255).astype(np.uint8)


PLAIN = {
    "rgb": lambda: _png_bytes(Image.fromarray(_rgb((23, 31, 3)))),
    "rgba": lambda: _png_bytes(Image.fromarray(_rgb((23, 31, 4)))),
    "grey": lambda: _png_bytes(Image.fromarray(_rgb((23, 31)))),
    "text chunk": lambda: _with_chunk(
        _png_bytes(Image.fromarray(_rgb((9, 9, 3)))), b"tEXt", b"Comment\x00hello"
    ),
}


@pytest.mark.parametrize("kind", sorted(PLAIN))
def test_plain_png_takes_the_fast_path_with_pillows_pixels(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = PLAIN[kind]()
    assert _png.decode_plain_png(data) is not None  # the fast path decodes it
    p = tmp_path / "x.png"
    p.write_bytes(data)
    fast = images.load_image(p)
    slow = _pillow_only(data, tmp_path, monkeypatch)
    assert fast.mode == slow.mode == "RGB"
    assert np.array_equal(np.asarray(fast), np.asarray(slow))
    assert np.array_equal(np.asarray(images.load_image_bytes(data, "x")), np.asarray(slow))


def _exif_rotated() -> bytes:
    im = Image.fromarray(_rgb((6, 10, 3)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    return _png_bytes(im, exif=exif.tobytes())


OTHER = {
    "exif orientation": _exif_rotated,
    "exif as ImageMagick text": lambda: _with_chunk(
        _png_bytes(Image.fromarray(_rgb((6, 10, 3)))),
        b"zTXt",
        b"Raw profile type exif\x00\x00" + zlib.compress(b"\nexif\n 4\n00000000\n"),
    ),
    "colour key": lambda: _png_bytes(Image.fromarray(_rgb((8, 8, 3))), transparency=(1, 2, 3)),
    "palette": lambda: _png_bytes(Image.fromarray(_rgb((8, 8, 3))).convert("P")),
    "16-bit": lambda: _png_bytes(Image.fromarray((RNG.random((8, 8)) * 65535).astype(np.uint16))),
    "grey+alpha": lambda: _png_bytes(Image.fromarray(_rgb((8, 8, 4))).convert("LA")),
    "animated": lambda: _png_bytes(
        Image.fromarray(_rgb((8, 8, 3))),
        save_all=True,
        append_images=[Image.fromarray(_rgb((8, 8, 3)))],
    ),
}


@pytest.mark.parametrize("kind", sorted(OTHER))
def test_other_pngs_go_to_pillow(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = OTHER[kind]()
    assert _png.decode_plain_png(data) is None
    p = tmp_path / "x.png"
    p.write_bytes(data)
    got, want = images.load_image(p), _pillow_only(data, tmp_path, monkeypatch)
    assert got.size == want.size and got.info == want.info
    assert np.array_equal(np.asarray(got), np.asarray(want))
    if kind == "exif orientation":
        assert got.size == (6, 10)  # rotated: Pillow's path applied the orientation


def test_corrupt_pixel_data_keeps_pillows_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytearray(PLAIN["rgb"]())
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 40] = b"\x00" * 30  # libspng rejects it (bad deflate / CRC)
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    assert _png.decode_plain_png(bytes(data)) is None
    with pytest.raises(ImageLoadError) as fast:
        images.load_image(p)
    monkeypatch.setattr(_png, "_spng", None)
    with pytest.raises(ImageLoadError) as slow:
        images.load_image(p)
    assert str(fast.value) == str(slow.value)
    assert "corrupt" in str(fast.value) or "truncated" in str(fast.value)


def test_size_limits_checked_before_the_fast_decode(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    p.write_bytes(_png_bytes(Image.fromarray(_rgb((40, 50, 3)))))
    with pytest.raises(ImageLoadError, match=r"50×40 = 2,000 pixels exceeds the limit of 1,999"):
        images.load_image(p, max_pixels=1999)
    with pytest.raises(ImageLoadError, match="aspect ratio"):
        images.load_image_bytes(
            _png_bytes(Image.fromarray(_rgb((2, 90, 3)))), "wide", max_aspect_ratio=10
        )
