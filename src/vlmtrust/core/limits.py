"""The limits on user data, and the command-line option that raises each one.

Every limit an error message names is a field of :class:`DataLimits`, and the message names it
by its command-line spelling (:data:`LIMIT_OPTIONS`, e.g. ``--max-aspect-ratio``), which
``vlmtrust run``, ``audit`` and ``harden`` all accept. The runner hands the limits to the data
layer, which attaches them to each image reference it makes, so an image is checked against
them wherever it is decoded.

Example:
    >>> limits = DataLimits(max_aspect_ratio=5000)
    >>> limits.max_aspect_ratio, option("max_aspect_ratio")
    (5000.0, '--max-aspect-ratio')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from vlmtrust.core.errors import InputError

DEFAULT_MAX_PIXELS: Final[int] = 50_000_000
"""Largest accepted width × height (about 50 megapixels, ~150 MB decoded as RGB)."""

DEFAULT_MAX_ASPECT_RATIO: Final[float] = 50.0
"""Largest accepted ``max(w, h) / min(w, h)``."""

DEFAULT_MAX_MANIFEST_LINE_BYTES: Final[int] = 1 << 20
"""Longest accepted manifest line (1 MiB)."""

LIMIT_OPTIONS: Final[dict[str, str]] = {
    "max_image_pixels": "--max-image-pixels",
    "max_aspect_ratio": "--max-aspect-ratio",
    "max_manifest_line_bytes": "--max-manifest-line-bytes",
}
""":class:`DataLimits` field → the command-line option that sets it."""


def option(name: str) -> str:
    """The command-line spelling of the limit ``name`` (a :class:`DataLimits` field)."""
    return LIMIT_OPTIONS[name]


def pillow_hard_limit() -> int | None:
    """Pillow's own ceiling on an image's pixels (``2 * Image.MAX_IMAGE_PIXELS``), if set."""
    from PIL import Image

    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None


@dataclass(frozen=True)
class DataLimits:
    """What the data loaders accept; anything beyond a limit becomes one error record.

    Attributes:
        max_image_pixels: largest ``width * height`` of an image, checked from its header
            before any pixel is decoded; at most Pillow's own ceiling
            (:func:`pillow_hard_limit`, about 179 million).
        max_aspect_ratio: largest ``max(w, h) / min(w, h)`` of an image (>= 1).
        max_manifest_line_bytes: longest line of a JSONL manifest, in bytes.

    Raises:
        InputError: a value out of range, named by its command-line option.
    """

    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    max_manifest_line_bytes: int = DEFAULT_MAX_MANIFEST_LINE_BYTES

    def __post_init__(self) -> None:
        for name, default in (
            ("max_image_pixels", DEFAULT_MAX_PIXELS),
            ("max_manifest_line_bytes", DEFAULT_MAX_MANIFEST_LINE_BYTES),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(
                    f"{option(name)} {value!r}: not a positive integer — pass e.g. {default}"
                )
        hard = pillow_hard_limit()
        if hard is not None and self.max_image_pixels > hard:
            raise InputError(
                f"{option('max_image_pixels')} {self.max_image_pixels}: beyond Pillow's own "
                f"ceiling of {hard:,} pixels — pass at most {hard}"
            )
        ratio = self.max_aspect_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio >= 1.0:
            raise InputError(
                f"{option('max_aspect_ratio')} {ratio!r}: not a number >= 1 — pass e.g. 50"
            )
        if ratio == float("inf"):
            raise InputError(
                f"{option('max_aspect_ratio')} {ratio!r}: must be finite — pass e.g. 100000"
            )
        object.__setattr__(self, "max_aspect_ratio", float(ratio))
