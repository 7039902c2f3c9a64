"""The safe image loader, re-exported from :mod:`vlmtrust.core.images` (where it lives).

Every layer decodes untrusted images through the one loader in ``core``; this module keeps the
``vlmtrust.data.images`` import path working.
"""

from vlmtrust.core.images import (
    ACCEPTED_FORMATS,
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_PIXELS,
    NOTE_KEY,
    load_image,
    load_image_bytes,
    png_b64,
    thumbnail,
    thumbnail_png_b64,
    to_rgb,
)

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
