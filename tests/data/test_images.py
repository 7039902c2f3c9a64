"""Every bad image a user can hand us, built on the fly; good ones come out RGB and oriented."""

from __future__ import annotations

import base64
import io
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtrust.core.errors import ImageLoadError, InputError
from vlmtrust.core.sample import ImageRef
from vlmtrust.data.images import (
    DEFAULT_MAX_PIXELS,
    NOTE_KEY,
    load_image,
    load_image_bytes,
    thumbnail_png_b64,
    to_rgb,
)

ONE_LINE = re.compile(r"^image .+: .+ — .+$")


def _err(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_pixels=max_pixels)
    msg = str(info.value)
    assert "\n" not in msg
    assert ONE_LINE.match(msg), msg
    assert msg.startswith(f"image {path}: ")
    return msg


def _px(im: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = im.getpixel((x, y))
    assert isinstance(value, tuple)
    return value


def _png_bytes(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _patch_ihdr(png: bytes, width: int, height: int) -> bytes:
    """Rewrite a PNG's declared size and fix the IHDR CRC (a 'decompression bomb' header)."""
    assert png[12:16] == b"IHDR"
    data = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + data) & 0xFFFFFFFF)
    return png[:16] + data + crc + png[33:]


# ---------------------------------------------------------------------------------- good files


def test_rgb_png_pixels_exact(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "ok.png"
    Image.fromarray(arr).save(path)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (5, 7)
    np.testing.assert_array_equal(np.asarray(im), arr)
    assert NOTE_KEY not in im.info
    # via ImageRef (the path every dataset image takes)
    np.testing.assert_array_equal(np.asarray(ImageRef.from_path(path).load()), arr)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    im = load_image(path)
    assert im.mode == "RGB"
    r, g, b = _px(im, 8, 8)
    assert r > 240 and g < 15 and b < 15  # pure red


def test_palette_with_transparency_composited_on_white(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    pal.putpixel((0, 0), 1)
    path = tmp_path / "pal.png"
    pal.save(path, transparency=0)  # index 0 (red) is transparent
    with Image.open(path) as raw:
        assert raw.mode == "P" and raw.info["transparency"] == 0
    im = load_image(path)
    assert im.mode == "RGB"
    assert _px(im, 0, 0) == (0, 0, 255)
    assert _px(im, 3, 3) == (255, 255, 255)  # transparent red -> white, not red
    assert "transparency" not in im.info


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composited_on_white(tmp_path: Path, mode: str) -> None:
    colour = (0, 0, 0, 0) if mode == "RGBA" else (0, 0)
    im = Image.new(mode, (3, 1), colour)
    im.putpixel((1, 0), (0, 0, 0, 255) if mode == "RGBA" else (0, 255))
    im.putpixel((2, 0), (0, 0, 0, 128) if mode == "RGBA" else (0, 128))
    path = tmp_path / f"{mode}.png"
    im.save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert _px(out, 0, 0) == (255, 255, 255)
    assert _px(out, 1, 0) == (0, 0, 0)
    assert all(abs(c - 127) <= 1 for c in _px(out, 2, 0))


def test_16bit_png_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
    out = np.asarray(load_image(path))
    assert out.shape == (1, 5, 3)
    # 1000 would clip to 255 with a naive convert("L"); scaled it is 1000*255/65535 ~ 3.9
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 4, 128, 255])
    assert (out[..., 0] == out[..., 2]).all()


def test_32bit_int_and_float_tiff(tmp_path: Path) -> None:
    ints = np.array([[0, 1000, 65535]], dtype=np.int32)
    Image.fromarray(ints).save(tmp_path / "i.tif")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "i.tif"))[0, :, 1], [0, 4, 255])
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(unit).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "f.tif"))[0, :, 0], [0, 128, 255]
    )
    wide = np.array([[-10.0, 0.0, 10.0]], dtype=np.float32)  # outside [0, 1]: min-max
    Image.fromarray(wide).save(tmp_path / "w.tif")
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "w.tif"))[0, :, 2], [0, 128, 255]
    )


def test_bilevel_and_lab(tmp_path: Path) -> None:
    bw = Image.new("1", (2, 1), 0)
    bw.putpixel((1, 0), 1)
    bw.save(tmp_path / "bw.png")
    out = load_image(tmp_path / "bw.png")
    assert _px(out, 0, 0) == (0, 0, 0) and _px(out, 1, 0) == (255, 255, 255)
    Image.new("LAB", (2, 2), (255, 128, 128)).save(tmp_path / "lab.tif")  # L*=100: white
    lab = load_image(tmp_path / "lab.tif")
    assert lab.mode == "RGB" and min(_px(lab, 0, 0)) >= 250


def test_exif_orientation_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # stored: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display needs a 90° clockwise rotation
    path = tmp_path / "rot.jpg"
    im.save(path, quality=95, exif=exif)
    out = load_image(path)
    assert out.size == (20, 40)  # portrait after rotation
    top = _px(out, 10, 5)
    bottom = _px(out, 10, 35)
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize(("fmt", "ext"), [("GIF", "gif"), ("PNG", "png"), ("WEBP", "webp")])
def test_animated_takes_first_frame(tmp_path: Path, fmt: str, ext: str) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / f"anim.{ext}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=50, **extra)
    with Image.open(path) as raw:
        assert getattr(raw, "n_frames", 1) == 3  # really animated
    out = load_image(path)
    assert out.mode == "RGB" and _px(out, 4, 4) == (255, 0, 0)
    assert out.info[NOTE_KEY] == f"animated {fmt}: first frame used"


# ----------------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found — check the path" in _err(tmp_path / "nope.png")


def test_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "dangling.png"
    link.symlink_to(tmp_path / "gone.png")
    assert "broken symbolic link" in _err(link)


def test_directory_given_as_file(tmp_path: Path) -> None:
    d = tmp_path / "looks_like.png"
    d.mkdir()
    assert "is a directory, not an image file — pass an image file inside it" in _err(d)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "file is empty (0 bytes)" in _err(path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("hello, I am not a picture\n")
    msg = _err(path)
    assert "not a supported image format (looks like text) — convert it to PNG or JPEG" in msg


def test_svg_and_eps_are_refused_not_rendered(tmp_path: Path) -> None:
    svg = tmp_path / "vector.png"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    assert "looks like SVG/XML" in _err(svg)
    eps = tmp_path / "doc.eps"  # Pillow would hand this to Ghostscript; we never try
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    assert "looks like PostScript/EPS" in _err(eps)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path: Path, fmt: str) -> None:
    noise = Image.effect_noise((64, 64), 60).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated image data" in _err(path)
    header_only = tmp_path / f"head.{fmt.lower()}"
    header_only.write_bytes(data[:20])  # cut inside the header
    expected = {"PNG": "truncated image header", "JPEG": "corrupt or truncated JPEG header"}
    assert expected[fmt] in _err(header_only)


def test_corrupt_png_body(tmp_path: Path) -> None:
    data = bytearray(_png_bytes(Image.effect_noise((32, 32), 60)))
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 40] = bytes(30)  # garbage inside the compressed stream
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    msg = _err(path)
    assert "corrupt image data (" in msg and "— re-export the image" in msg


def test_decompression_bomb_header_rejected_before_decoding(tmp_path: Path) -> None:
    png = _png_bytes(Image.new("L", (1, 1)))
    huge = tmp_path / "bomb.png"
    huge.write_bytes(_patch_ihdr(png, 100_000, 100_000))
    assert huge.stat().st_size < 200
    assert "Pillow's own ceiling, which no --max-image-pixels can raise" in _err(huge)
    # above Pillow's warning threshold but below its hard limit: our limit, no stray warning
    big = tmp_path / "big.png"
    big.write_bytes(_patch_ihdr(png, 10_000, 10_000))
    msg = _err(big)
    assert f"10000×10000 = 100,000,000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS:,}" in msg
    assert "raise --max-image-pixels if you trust it" in msg
    # the limit is configurable, checked on the header (a real 20×20 image)
    small = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(small)
    assert "400 pixels exceeds the limit of 100" in _err(small, max_pixels=100)
    assert load_image(small, max_pixels=400).size == (20, 20)


def test_extreme_aspect_ratio(tmp_path: Path) -> None:
    path = tmp_path / "line.png"
    Image.new("L", (1, 100_000), 200).save(path)
    msg = _err(path)
    assert "1×100000 has aspect ratio 100,000:1, beyond the limit of 50:1" in msg
    assert msg.endswith("crop or pad the image, or raise --max-aspect-ratio")
    out = load_image(path, max_aspect_ratio=1e6)
    assert out.size == (1, 100_000) and _px(out, 0, 5) == (200, 200, 200)


def test_bad_limits_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="max_pixels=0 is invalid"):
        load_image(tmp_path / "x.png", max_pixels=0)
    with pytest.raises(InputError, match="max_aspect_ratio=0.5 is invalid"):
        load_image(tmp_path / "x.png", max_aspect_ratio=0.5)


def test_name_with_control_characters_stays_one_line() -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(b"junk", "evil\nname\x1b[31m")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert str(info.value).startswith("image evil?name?[31m: not a supported image format")


def test_file_handles_closed(tmp_path: Path) -> None:
    good = tmp_path / "g.gif"
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(good, save_all=True, append_images=frames[1:])
    bad = tmp_path / "b.png"
    bad.write_bytes(_png_bytes(Image.new("RGB", (30, 30)))[:50])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(25):
        load_image(good)
        with pytest.raises(ImageLoadError):
            load_image(bad)
    assert len(os.listdir("/proc/self/fd")) == before


# ------------------------------------------------------------------------- bytes and thumbnails


def test_load_image_bytes() -> None:
    data = _png_bytes(Image.new("RGBA", (4, 4), (0, 255, 0, 255)))
    im = load_image_bytes(data, "upload.png")
    assert im.mode == "RGB" and _px(im, 1, 1) == (0, 255, 0)
    with pytest.raises(ImageLoadError, match=r"^image upload\.png: data is empty \(0 bytes\) — "):
        load_image_bytes(b"", "upload.png")
    with pytest.raises(ImageLoadError, match=r"^image cell\[3\]: not a supported image format"):
        load_image_bytes(b"\x00\x01garbage" * 10, "cell[3]")


def test_thumbnail_png_b64() -> None:
    src = Image.new("RGBA", (640, 320), (255, 0, 0, 255))
    s = thumbnail_png_b64(src, max_side=64)
    thumb = Image.open(io.BytesIO(base64.b64decode(s, validate=True)))
    assert thumb.format == "PNG" and thumb.size == (64, 32) and thumb.mode == "RGB"
    assert _px(thumb, 10, 10) == (255, 0, 0)
    assert src.size == (640, 320)  # input untouched
    tiny = Image.open(io.BytesIO(base64.b64decode(thumbnail_png_b64(Image.new("L", (10, 5))))))
    assert tiny.size == (10, 5)  # never enlarged
    with pytest.raises(InputError, match="max_side=0"):
        thumbnail_png_b64(src, max_side=0)


def test_to_rgb_in_memory_16bit() -> None:
    im = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert to_rgb(im).getpixel((0, 0)) == (255, 255, 255)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert "is not a regular file — pass a regular image file" in _err(fifo)


def test_multipage_tiff_first_page(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (6, 6), c) for c in ((0, 0, 200), (200, 0, 0))]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    out = load_image(path)
    assert _px(out, 2, 2) == (0, 0, 200)
    assert out.info[NOTE_KEY] == "multi-page TIFF: first frame used"
