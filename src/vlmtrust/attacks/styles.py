"""Artistic and sensor-style shifts: the same scene re-rendered as a sketch, a painting, etc.

MultiTrust's out-of-distribution tasks (R.1/R.2, Zhang et al. 2024) test VLMs on images whose
*style* departs from natural photographs — artistic renderings and unusual sensors. These are
this project's own image-space renderings of any input image, numpy and Pillow only, each at
three severities (1 = mild, 3 = strong) and deterministic for a seed:

* ``sketch`` — pencil drawing: inverted edge magnitude of the luminance, blended with the
  greyscale image (severity 3 is lines only);
* ``painting`` — posterised colours (4, 3, 2 bits per channel) after a mode filter, the flat
  colour regions of a poster or an oil painting;
* ``infrared`` — a near-infrared / thermal look: a luminance that weights green (vegetation is
  bright in NIR) mapped through a black–purple–orange–yellow palette, blended with the original;
* ``night`` — a dark, blue-shifted, desaturated scene (gamma and gain per channel);
* ``low_light`` — a short exposure on a noisy sensor: the image scaled to a few photons per
  pixel, Poisson shot noise and Gaussian read noise, then amplified back.

Example:
    >>> from PIL import Image
    >>> im = Image.new("RGB", (32, 32), (200, 40, 40))
    >>> stylize(im, "sketch", 3, seed=0).size
    (32, 32)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from vlmtrust.core.errors import InputError

Array = NDArray[np.float64]

STYLES: tuple[str, ...] = ("sketch", "painting", "infrared", "night", "low_light")
"""The style shifts, artistic first, then sensor styles."""

KIND: dict[str, str] = {
    "sketch": "artistic",
    "painting": "artistic",
    "infrared": "sensor",
    "night": "sensor",
    "low_light": "sensor",
}
"""Artistic (MultiTrust R.1-style) or sensor (R.2-style) shift."""

SEVERITIES: tuple[int, ...] = (1, 2, 3)


def check_style(name: str, severity: int) -> None:
    """Raise a one-line :class:`InputError` for an unknown style or severity."""
    if name not in STYLES:
        raise InputError(f"unknown style {name!r}: use one of {', '.join(STYLES)}")
    if severity not in SEVERITIES:
        raise InputError(f"style {name} severity {severity}: use 1, 2 or 3")


def _luma(x: Array) -> Array:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _sketch(im: Image.Image, x: Array, sev: int, rng: np.random.Generator) -> Array:
    gray = _luma(x)
    gy, gx = np.gradient(gray)
    edges = np.clip(np.hypot(gx, gy) * 4.0, 0.0, 1.0)
    lines = 1.0 - edges  # dark lines on white paper
    keep = {1: 0.5, 2: 0.25, 3: 0.0}[sev]  # share of the greyscale tones kept
    out = keep * gray + (1.0 - keep) * lines
    return np.repeat(out[..., None], 3, axis=2)


def _painting(im: Image.Image, x: Array, sev: int, rng: np.random.Generator) -> Array:
    size = {1: 3, 2: 3, 3: 5}[sev]
    smooth = im.filter(ImageFilter.ModeFilter(size))
    bits = {1: 4, 2: 3, 3: 2}[sev]
    levels = 2**bits
    y = np.asarray(smooth, dtype=np.float64) / 255.0
    out: Array = np.floor(y * levels).clip(0, levels - 1) / (levels - 1)
    return out


_PALETTE = np.array(
    [[0.0, 0.0, 0.0], [0.35, 0.0, 0.55], [0.85, 0.25, 0.2], [1.0, 0.65, 0.0], [1.0, 1.0, 0.6]]
)


def _infrared(im: Image.Image, x: Array, sev: int, rng: np.random.Generator) -> Array:
    nir = np.clip(0.15 * x[..., 0] + 0.75 * x[..., 1] + 0.10 * x[..., 2], 0.0, 1.0)
    pos = nir * (len(_PALETTE) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_PALETTE) - 2)
    t = (pos - lo)[..., None]
    false_colour = _PALETTE[lo] * (1 - t) + _PALETTE[lo + 1] * t
    mix = {1: 0.5, 2: 0.8, 3: 1.0}[sev]
    out: Array = (1 - mix) * x + mix * false_colour
    return out


def _night(im: Image.Image, x: Array, sev: int, rng: np.random.Generator) -> Array:
    gain = {1: 0.5, 2: 0.3, 3: 0.15}[sev]
    gray = _luma(x)[..., None]
    desat = 0.4 * x + 0.6 * gray  # rods: little colour at night
    tint = np.array([0.7, 0.85, 1.15])
    out: Array = np.clip(gain * desat**1.4 * tint, 0.0, 1.0)
    return out


def _low_light(im: Image.Image, x: Array, sev: int, rng: np.random.Generator) -> Array:
    photons = {1: 60.0, 2: 20.0, 3: 6.0}[sev]  # expected photons at full white
    read_noise = {1: 1.0, 2: 2.0, 3: 3.0}[sev]
    counts = rng.poisson(x * photons) + rng.normal(0.0, read_noise, x.shape)
    return np.clip(counts / photons, 0.0, 1.0)


_FUNCS: dict[str, Callable[[Image.Image, Array, int, np.random.Generator], Array]] = {
    "sketch": _sketch,
    "painting": _painting,
    "infrared": _infrared,
    "night": _night,
    "low_light": _low_light,
}


def stylize(image: Image.Image, name: str, severity: int, *, seed: int = 0) -> Image.Image:
    """``image`` re-rendered in style ``name`` at ``severity`` (1..3); same size, RGB.

    Deterministic for ``(image, name, severity, seed)``; only ``low_light`` draws noise.

    Raises:
        InputError: an unknown style or severity (one line).
    """
    check_style(name, severity)
    im = image.convert("RGB")
    x = np.asarray(im, dtype=np.float64) / 255.0
    rng = np.random.default_rng([seed, STYLES.index(name), severity])
    out = _FUNCS[name](im, x, severity, rng)
    return Image.fromarray((np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")
