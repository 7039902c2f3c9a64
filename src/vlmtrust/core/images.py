"""The one safe loader every untrusted image goes through.

:func:`load_image` (files) and :func:`load_image_bytes` (in-memory data) turn whatever a user
hands us into a plain 8-bit RGB :class:`PIL.Image.Image`, or raise
:class:`~vlmtrust.core.errors.ImageLoadError` with one line::

    image <path>: <what is wrong> — <fix>

What they guard against and normalise:

- missing files, directories, zero-byte files, unreadable files;
- formats outside :data:`ACCEPTED_FORMATS` (a text file named ``.png``, SVG, HEIC, EPS — the
  last would run Ghostscript inside Pillow, so it is never even tried);
- decompression bombs: the pixel count from the *header* is checked against ``max_pixels``
  before any pixel is decoded; Pillow's ``DecompressionBombWarning`` is silenced in favour of
  that check (never a stray warning) and its ``DecompressionBombError`` (beyond
  ``2 * Image.MAX_IMAGE_PIXELS``) becomes the same one-line error;
- extreme aspect ratios (``1×100000``) beyond ``max_aspect_ratio``;
- corrupt and truncated files (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never turned on);
- modes: ``CMYK``, ``YCbCr``, ``P`` / ``PA`` (palette, with transparency), ``L``, ``LA``,
  ``RGBA``, ``1``, ``I;16*`` and ``I`` (16-bit data scaled by 255/65535, not clipped), ``F``
  (``[0, 1]`` scaled by 255, other ranges min–max normalised) all become RGB; anything with
  alpha or a transparency key is composited onto white;
- EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`);
- animated GIF / WebP / APNG: the first frame is used, and ``image.info[NOTE_KEY]`` says so.

A message about a limit names the command-line option that raises it (``--max-image-pixels``,
``--max-aspect-ratio``; :mod:`vlmtrust.core.limits`).

The returned image is detached from the file: every file handle is closed before returning.
"""

from __future__ import annotations

import base64
import io
import stat
import threading
import warnings
from pathlib import Path
from typing import IO, Final, NoReturn

from PIL import Image, ImageOps, UnidentifiedImageError

from vlmtrust.core import _png
from vlmtrust.core.errors import ImageLoadError, InputError
from vlmtrust.core.limits import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_PIXELS, option

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_MAX_ASPECT_RATIO",
    "DEFAULT_MAX_PIXELS",
    "NOTE_KEY",
    "load_image",
    "load_image_bytes",
    "png_b64",
    "thumbnail",
    "thumbnail_png_b64",
    "to_rgb",
]

ACCEPTED_FORMATS: Final[tuple[str, ...]] = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "PPM")
"""Pillow format names the loader will try to decode (APNG is ``PNG``, MPO is ``JPEG``)."""

NOTE_KEY: Final[str] = "vlmtrust_note"
"""Key in ``image.info`` holding a note about what the loader did (e.g. first frame taken)."""

_EXIF_ORIENTATION: Final[int] = 0x0112
_WHITE: Final[tuple[int, int, int]] = (255, 255, 255)
_FIX_CONVERT: Final[str] = "re-save it as an 8-bit PNG or JPEG"
# ``warnings.catch_warnings`` mutates process-global state; serialise the header parse.
_OPEN_LOCK = threading.Lock()


def load_image(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
) -> Image.Image:
    """Decode an untrusted image file into an RGB image, safely.

    Args:
        path: the image file.
        max_pixels: largest accepted ``width * height``, checked from the header before
            decoding. Pillow's own hard limit (``2 * Image.MAX_IMAGE_PIXELS``) still applies.
        max_aspect_ratio: largest accepted ``max(w, h) / min(w, h)``.

    Returns:
        A new 8-bit ``RGB`` image, EXIF-oriented, detached from the file. For animated
        images it is the first frame and ``image.info[NOTE_KEY]`` records that.

    Raises:
        ImageLoadError: one line ``image <path>: <problem> — <fix>``.

    Example:
        >>> from PIL import Image
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> Image.new("LA", (4, 2), (0, 0)).save(os.path.join(d, "a.png"))
        >>> im = load_image(os.path.join(d, "a.png"))
        >>> im.mode, im.size, im.getpixel((0, 0))
        ('RGB', (4, 2), (255, 255, 255))
    """
    name = str(path)
    _check_limits_args(name, max_pixels, max_aspect_ratio)
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        if p.is_symlink():
            _fail(name, "is a broken symbolic link", "point it at an existing image file")
        _fail(
            name,
            "file not found",
            "check the path (relative paths start at the current directory, "
            "or at the manifest's folder for manifest entries)",
        )
    except PermissionError:
        _fail(name, "permission denied", "make the file and its folders readable by this user")
    except ValueError as exc:  # e.g. an embedded NUL byte in the path
        _fail(name, f"invalid path ({_one_line(exc)})", "check the path")
    except OSError as exc:  # symlink loops, over-long names, I/O errors
        _fail(name, f"cannot access file ({_one_line(exc)})", "check the path and the disk")
    if stat.S_ISDIR(st.st_mode):
        _fail(name, "is a directory, not an image file", "pass an image file inside it")
    if not stat.S_ISREG(st.st_mode):
        _fail(name, "is not a regular file", "pass a regular image file")
    if st.st_size == 0:
        _fail(name, "file is empty (0 bytes)", "re-export the image or remove it from the data")
    try:
        with p.open("rb") as fp:
            head = fp.read(len(_png.SIGNATURE))
            if head == _png.SIGNATURE and _png.available():
                fast = _fast_png(head + fp.read(), name, max_pixels, max_aspect_ratio)
                if fast is not None:
                    return fast
            fp.seek(0)
            return _decode(fp, name, max_pixels, max_aspect_ratio)
    except PermissionError:
        _fail(name, "permission denied", "make the file readable by this user")
    except OSError as exc:
        _fail(name, f"cannot read file ({_one_line(exc)})", "check the file and the disk")


def load_image_bytes(
    data: bytes,
    name: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
) -> Image.Image:
    """Decode an untrusted in-memory image (upload, dataset cell) into RGB, safely.

    Same checks and conversions as :func:`load_image`.

    Args:
        data: the encoded image bytes (PNG, JPEG, ...).
        name: how to name the input in errors (e.g. ``"dataset[12].image"``).
        max_pixels: largest accepted ``width * height``, checked before decoding.
        max_aspect_ratio: largest accepted ``max(w, h) / min(w, h)``.

    Returns:
        A new 8-bit ``RGB`` image.

    Raises:
        ImageLoadError: one line ``image <name>: <problem> — <fix>``.
    """
    _check_limits_args(name, max_pixels, max_aspect_ratio)
    if not isinstance(data, bytes | bytearray | memoryview):
        _fail(
            name,
            f"expected encoded image bytes, got {type(data).__name__}",
            "pass the file's raw bytes",
        )
    if len(data) == 0:
        _fail(name, "data is empty (0 bytes)", "re-export the image or remove it from the data")
    raw = bytes(data)
    if raw[: len(_png.SIGNATURE)] == _png.SIGNATURE:
        fast = _fast_png(raw, name, max_pixels, max_aspect_ratio)
        if fast is not None:
            return fast
    with io.BytesIO(raw) as fp:
        return _decode(fp, name, max_pixels, max_aspect_ratio)


def thumbnail_png_b64(image: Image.Image, max_side: int = 160) -> str:
    """Small PNG preview of an image, base64-encoded (for ``data:image/png;base64,...``).

    Args:
        image: any PIL image (converted to RGB first; the input is not modified).
        max_side: longest side of the thumbnail in pixels; smaller images are not enlarged.

    Returns:
        ASCII base64 of a PNG file (without the ``data:`` prefix).

    Raises:
        InputError: if ``max_side`` is not a positive integer.

    Example:
        >>> from PIL import Image
        >>> s = thumbnail_png_b64(Image.new("RGB", (640, 320), "red"), max_side=64)
        >>> import base64, io
        >>> Image.open(io.BytesIO(base64.b64decode(s))).size
        (64, 32)
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise InputError(
            f"thumbnail max_side={max_side!r}: must be a positive integer — pass e.g. max_side=160"
        )
    return png_b64(thumbnail(image, max_side))


def thumbnail(image: Image.Image, max_side: int = 160) -> Image.Image:
    """An RGB copy of ``image`` whose longest side is at most ``max_side`` (never enlarged).

    ``png_b64(thumbnail(im, k)) == thumbnail_png_b64(im, k)``: the runner keeps the thumbnail
    of each sample's one decode and encodes only those the report shows.
    """
    thumb = to_rgb(image) if image.mode != "RGB" else image.copy()
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return thumb


def png_b64(image: Image.Image) -> str:
    """The image as an optimised PNG file, base64-encoded (ASCII)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def to_rgb(image: Image.Image, *, name: str = "<in-memory image>") -> Image.Image:
    """Convert any decoded PIL image to 8-bit RGB (a new image; the input is untouched).

    Alpha and palette/colour-key transparency are composited onto white; 16-bit integer data
    is scaled by 255/65535 (not clipped); float data in ``[0, 1]`` is scaled by 255, other
    float or 32-bit integer ranges are min–max normalised.

    Args:
        image: a decoded image in any Pillow mode.
        name: how to name the image in errors.

    Returns:
        A new 8-bit ``RGB`` image.

    Raises:
        ImageLoadError: if the mode has no conversion to RGB (e.g. ``LAB``).
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image.copy()
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "LAB":
        return _lab_to_rgb(image, name)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            out = Image.new("RGB", rgba.size, _WHITE)
            out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        else:
            out = image.convert("RGB")
    except (ValueError, OSError) as exc:
        _fail(name, f"mode {mode} cannot be converted to RGB ({_one_line(exc)})", _FIX_CONVERT)
    out.info.pop("transparency", None)
    return out


# --------------------------------------------------------------------------------------------
# internals


def _fast_png(data: bytes, name: str, max_pixels: int, max_ratio: float) -> Image.Image | None:
    """A plain 8-bit PNG decoded by :mod:`vlmtrust.core._png`, or None: decode it with Pillow.

    The limits are checked from the IHDR header first, with the Pillow path's messages. Sizes
    Pillow itself would warn about or refuse (beyond ``Image.MAX_IMAGE_PIXELS``), and empty
    ones, go to Pillow so that its errors stay the loader's.
    """
    size = _png.png_size(data)
    if size is None:
        return None
    width, height = size
    if width == 0 or height == 0 or width * height > (Image.MAX_IMAGE_PIXELS or 0):
        return None
    _check_size(name, width, height, max_pixels, max_ratio)
    im = _png.decode_plain_png(data)
    if im is None:
        return None
    return im if im.mode == "RGB" else to_rgb(im, name=name)


def _decode(fp: IO[bytes], name: str, max_pixels: int, max_aspect_ratio: float) -> Image.Image:
    """Parse the header, check limits, decode the first frame, orient and convert to RGB."""
    im = _open_header(fp, name)
    with im:
        width, height = im.size
        _check_size(name, width, height, max_pixels, max_aspect_ratio)
        note = ""
        try:
            if getattr(im, "is_animated", False):
                kind = "multi-page" if im.format == "TIFF" else "animated"
                note = f"{kind} {im.format}: first frame used"
                im.seek(0)
            im.load()
        except ImageLoadError:
            raise
        except Image.DecompressionBombError:
            _fail(
                name,
                "too many pixels for Pillow's own limit (decompression bomb?)",
                "downscale the image",
            )
        except MemoryError:
            _fail(
                name,
                f"out of memory decoding {width}×{height} pixels",
                f"downscale the image or lower {option('max_image_pixels')}",
            )
        except Exception as exc:  # Pillow decoders raise many types on malformed data.
            what = "truncated" if "truncated" in str(exc).lower() else "corrupt"
            _fail(
                name,
                f"{what} image data ({_one_line(exc)})",
                "re-export the image or remove it from the data",
            )
        oriented = _apply_exif_orientation(im)
        if oriented is None:
            oriented, note = im, _join(note, "EXIF orientation unreadable: not applied")
        if oriented is not im and oriented.mode == "RGB" and "transparency" not in oriented.info:
            rgb = oriented  # exif_transpose already made a detached copy
        else:
            rgb = to_rgb(oriented, name=name)
    if note:
        rgb.info[NOTE_KEY] = note
    return rgb


def _open_header(fp: IO[bytes], name: str) -> Image.Image:
    """``Image.open`` restricted to :data:`ACCEPTED_FORMATS`; Pillow's bomb warning silenced.

    The warning is replaced by our own header check (:func:`_check_size`), which names the
    size; Pillow's hard ``DecompressionBombError`` becomes an :class:`ImageLoadError`.
    """
    head = fp.read(64)
    fp.seek(0)
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Our own limit (checked next, with the sizes in the message) replaces the warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp, formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError:
        hard = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        _fail(
            name,
            f"declares more than {hard:,} pixels, Pillow's own ceiling, which no "
            f"{option('max_image_pixels')} can raise (decompression bomb?)",
            "downscale the image",
        )
    except UnidentifiedImageError:
        declared = _signature(head)
        if declared:
            _fail(
                name,
                f"corrupt or truncated {declared} header",
                "re-export the image or remove it from the data",
            )
        _fail(
            name,
            f"not a supported image format ({_sniff(head)})",
            f"convert it to PNG or JPEG (accepted: {', '.join(ACCEPTED_FORMATS)})",
        )
    except Exception as exc:  # malformed headers raise SyntaxError, ValueError, struct.error...
        what = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        _fail(
            name,
            f"{what} image header ({_one_line(exc)})",
            "re-export the image or remove it from the data",
        )


def _check_size(name: str, width: int, height: int, max_pixels: int, max_ratio: float) -> None:
    if width <= 0 or height <= 0:
        _fail(name, f"has no pixels ({width}×{height})", "re-export the image")
    pixels = width * height
    if pixels > max_pixels:
        _fail(
            name,
            f"{width}×{height} = {pixels:,} pixels exceeds the limit of "
            f"{max_pixels:,} (decompression bomb?)",
            f"downscale the image, or raise {option('max_image_pixels')} if you trust it",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > max_ratio:
        _fail(
            name,
            f"{width}×{height} has aspect ratio {ratio:,.0f}:1, beyond the limit of "
            f"{max_ratio:g}:1",
            f"crop or pad the image, or raise {option('max_aspect_ratio')}",
        )


def _check_limits_args(name: str, max_pixels: int, max_aspect_ratio: float) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(
            f"image {name}: max_pixels={max_pixels!r} is invalid — pass a positive integer"
        )
    if not max_aspect_ratio >= 1.0:
        raise InputError(
            f"image {name}: max_aspect_ratio={max_aspect_ratio!r} is invalid — pass a number >= 1"
        )


def _apply_exif_orientation(im: Image.Image) -> Image.Image | None:
    """The image rotated per its EXIF Orientation tag; ``im`` itself when there is none.

    Returns ``None`` when the EXIF block is present but unreadable.
    """
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation in (None, 1):
            return im
        out = ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF must not reject an otherwise fine image
        return None
    return out if out is not None else im


def _lab_to_rgb(image: Image.Image, name: str) -> Image.Image:
    """CIE L*a*b* (D50) to sRGB through littlecms; Pillow's ``convert`` cannot do this."""
    try:
        from PIL import ImageCms
    except ImportError as exc:  # Pillow built without littlecms
        _fail(name, f"mode LAB cannot be converted to RGB ({_one_line(exc)})", _FIX_CONVERT)
    try:
        transform = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        out = ImageCms.applyTransform(image, transform)
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        _fail(name, f"mode LAB cannot be converted to RGB ({_one_line(exc)})", _FIX_CONVERT)
    if out is None:  # pragma: no cover - only with inPlace=True
        _fail(name, "mode LAB cannot be converted to RGB", _FIX_CONVERT)
    return out


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer and float greyscale to 8-bit RGB without clipping."""
    import numpy as np

    arr = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = arr.astype(np.float64) * (255.0 / 65535.0)
    else:
        values = arr.astype(np.float64)
        finite = values[np.isfinite(values)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
        if image.mode == "F" and lo >= 0.0 and hi <= 1.0:
            scaled = values * 255.0
        elif image.mode == "I" and lo >= 0.0 and hi <= 65535.0:
            scaled = values * (255.0 / 65535.0)  # 16-bit data held in a 32-bit container
        elif hi > lo:
            scaled = (values - lo) * (255.0 / (hi - lo))
        else:
            scaled = np.zeros_like(values)
        scaled = np.where(np.isfinite(scaled), scaled, 0.0)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(grey)).convert("RGB")


def _signature(head: bytes) -> str:
    """The accepted format whose magic number ``head`` starts with, or ``""``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    return ""


def _sniff(head: bytes) -> str:
    """A short human description of what the bytes look like."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    lowered = stripped[:64].lower()
    if lowered.startswith((b"<svg", b"<?xml")):
        return "looks like SVG/XML"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif", b"ftypheim"):
        return "looks like HEIC/AVIF"
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "looks like HTML"
    if head.startswith(b"%PDF"):
        return "looks like PDF"
    if head.startswith(b"%!PS"):
        return "looks like PostScript/EPS"
    if stripped and all(32 <= b < 127 or b in (9, 10, 13) for b in stripped[:64]):
        return "looks like text"
    return "unrecognised content"


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _fail(name: str, what: str, fix: str) -> NoReturn:
    """Raise the one-line :class:`ImageLoadError`."""
    raise ImageLoadError(f"image {_clean(name)}: {what} — {fix}")


def _clean(name: str) -> str:
    """Names may come from untrusted manifests: keep the message on one printable line."""
    return "".join(ch if ch.isprintable() else "?" for ch in name) if name else "<unnamed>"
