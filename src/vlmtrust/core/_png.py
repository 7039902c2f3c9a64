"""A fast path of the safe loader for plain 8-bit PNG files (libspng through ``pyspng``).

Pillow parses a PNG's chunks in Python before its C decoder runs; for the small images of
image-classification data (SynthWorld's 64 px, CIFAR-size crops) that parse costs as much as
the decoding itself, and it is the largest per-image cost the runner adds to a small model's
forward pass (``bench/bench_runner.py`` prints both paths side by side). libspng decodes the
same file in C in about a third of Pillow's time.

:func:`decode_plain_png` takes only files whose decoded pixels are, by construction, exactly
what Pillow would give: bit depth 8, colour type grey, RGB or RGBA, one image (no
``acTL``: APNG goes to Pillow, which takes the first frame and notes it), no ``tRNS`` colour
key, no EXIF (an ``eXIf`` chunk, or ImageMagick's ``Raw profile type exif`` text chunk, which
Pillow reads as EXIF and the loader then orients by). For any other file — and for any file
libspng rejects (corrupt data, a bad CRC Pillow would tolerate) — it returns ``None`` and the
loader goes the Pillow way, which also words every error. The caller checks the size limits
from :func:`png_size` before decoding, as it does from Pillow's header.

Without ``pyspng`` installed (no wheel for the platform) every PNG takes the Pillow path.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from PIL import Image

try:  # an ordinary dependency, optional only where no wheel is published
    import pyspng as _spng
except ImportError:  # pragma: no cover - platform without a wheel
    _spng = None

__all__ = ["SIGNATURE", "available", "decode_plain_png", "png_size"]

SIGNATURE: Final[bytes] = b"\x89PNG\r\n\x1a\n"
_PLAIN_TYPES: Final[frozenset[int]] = frozenset({0, 2, 6})  # grey, RGB, RGBA (libspng: no LA)
_TO_PILLOW: Final[frozenset[bytes]] = frozenset({b"acTL", b"tRNS", b"eXIf"})
_TEXT: Final[frozenset[bytes]] = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_EXIF_TEXT_KEY: Final[bytes] = b"Raw profile type exif"


def available() -> bool:
    """Whether the fast path is installed."""
    return _spng is not None


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk; None when ``data`` is not such a file."""
    if len(data) < 33 or data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _plain(data: bytes) -> bool:
    """Whether every chunk of ``data`` keeps it within what the fast path decodes."""
    if data[24] != 8 or data[25] not in _PLAIN_TYPES:
        return False
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind in _TO_PILLOW:
            return False
        if kind in _TEXT and data[pos + 8 : pos + 8 + len(_EXIF_TEXT_KEY) + 1] == (
            _EXIF_TEXT_KEY + b"\x00"
        ):
            return False
        if kind == b"IEND":
            return True
        pos += 12 + length
    return False  # no IEND: truncated, Pillow words it


def decode_plain_png(data: bytes) -> Image.Image | None:
    """The decoded image (mode ``L``, ``RGB`` or ``RGBA``) or None: use Pillow.

    Only for ``data`` that :func:`png_size` accepted and whose size the caller has checked.
    """
    if _spng is None or not _plain(data):
        return None
    try:
        arr: Any = _spng.load(data)
    except Exception:  # libspng's errors: Pillow decodes or words them
        return None
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr)  # (h, w): L; (h, w, 3): RGB; (h, w, 4): RGBA
