"""Drawing primitives for SynthWorld (Pillow + numpy, cached where it pays)."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlmtrust.data.synthworld._vocab import COLOURS

RGB = tuple[int, int, int]

FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono-Bold.ttf",
)

BG_TINTS: dict[str, RGB] = {
    "white": (250, 250, 250),
    "beige": (240, 230, 205),
    "lightblue": (205, 225, 245),
}


@lru_cache(maxsize=1)
def font_dir() -> Path:
    """Directory of the DejaVu fonts shipped inside matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=256)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached DejaVu font."""
    return ImageFont.truetype(str(font_dir() / name), size=max(4, size))


def _star(points: int, inner: float) -> list[tuple[float, float]]:
    out = []
    for i in range(points * 2):
        r = 1.0 if i % 2 == 0 else inner
        a = -math.pi / 2 + i * math.pi / points
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


def _regular(n: int, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [
        (math.cos(phase + 2 * math.pi * i / n), math.sin(phase + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _heart() -> list[tuple[float, float]]:
    pts = []
    for i in range(48):
        t = 2 * math.pi * i / 48
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17.0, -(y + 2.5) / 17.0))
    return pts


UNIT_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)],
    "star": _star(5, 0.42),
    "hexagon": _regular(6, 0.0),
    "pentagon": _regular(5),
    "cross": [
        (-0.3, -1.0),
        (0.3, -1.0),
        (0.3, -0.3),
        (1.0, -0.3),
        (1.0, 0.3),
        (0.3, 0.3),
        (0.3, 1.0),
        (-0.3, 1.0),
        (-0.3, 0.3),
        (-1.0, 0.3),
        (-1.0, -0.3),
        (-0.3, -0.3),
    ],
    "heart": _heart(),
    "diamond": [(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)],
    "arrow": [
        (-1.0, -0.3),
        (0.15, -0.3),
        (0.15, -0.75),
        (1.0, 0.0),
        (0.15, 0.75),
        (0.15, 0.3),
        (-1.0, 0.3),
    ],
    "bolt": [
        (0.2, -1.0),
        (-0.6, 0.15),
        (-0.05, 0.15),
        (-0.3, 1.0),
        (0.6, -0.2),
        (0.05, -0.2),
        (0.35, -1.0),
    ],
    "trapezoid": [(-0.45, -0.6), (0.45, -0.6), (1.0, 0.6), (-1.0, 0.6)],
}


def draw_shape_mask(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float
) -> None:
    """Draw ``shape`` (filled, value 255) on an ``L`` mask."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        return
    if shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        ri = r * 0.55
        draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=0)
        return
    if shape == "crescent":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        off = r * 0.55
        draw.ellipse((cx - r + off, cy - r - off * 0.3, cx + r + off, cy + r - off * 0.3), fill=0)
        return
    ca, sa = math.cos(angle), math.sin(angle)
    pts = [
        (cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in UNIT_POLYGONS[shape]
    ]
    draw.polygon(pts, fill=255)


def shade(rgb: RGB, factor: float) -> RGB:
    """Darken (factor < 1) or lighten (factor > 1, towards white) a colour."""
    if factor <= 1.0:
        return (int(rgb[0] * factor), int(rgb[1] * factor), int(rgb[2] * factor))
    t = factor - 1.0
    return (
        int(rgb[0] + (255 - rgb[0]) * t),
        int(rgb[1] + (255 - rgb[1]) * t),
        int(rgb[2] + (255 - rgb[2]) * t),
    )


@lru_cache(maxsize=512)
def fill_image(colour: str, texture: str, size: int) -> Image.Image:
    """A full-size image of the colour with the texture (cached; do not mutate)."""
    base = np.array(COLOURS[colour], dtype=np.uint8)
    alt = np.array(shade(COLOURS[colour], 1.55 if colour in ("black", "brown") else 0.55), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(4, size // 10)
    if texture == "striped":
        sel = ((xx + yy) // (period // 2)) % 2 == 1
    elif texture == "dotted":
        sel = ((xx % period) - period // 2) ** 2 + ((yy % period) - period // 2) ** 2 <= (
            period // 4
        ) ** 2
    elif texture == "checkered":
        sel = ((xx // period) + (yy // period)) % 2 == 1
    else:
        sel = np.zeros((size, size), dtype=bool)
    arr = np.where(sel[..., None], alt, base).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


@lru_cache(maxsize=64)
def _static_background(kind: str, size: int) -> Image.Image:
    if kind in BG_TINTS:
        return Image.new("RGB", (size, size), BG_TINTS[kind])
    if kind == "grid":
        arr = np.full((size, size, 3), 245, np.uint8)
        step = max(4, size // 8)
        arr[::step, :, :] = (190, 200, 215)
        arr[:, ::step, :] = (190, 200, 215)
        return Image.fromarray(arr, "RGB")
    if kind == "gradient":
        t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
        top = np.array([250, 235, 215], np.float32)
        bottom = np.array([200, 220, 240], np.float32)
        arr = (top * (1 - t) + bottom * t).repeat(size, axis=1)
        return Image.fromarray(arr.astype(np.uint8), "RGB")
    raise KeyError(kind)


def background(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A fresh background image of ``kind``."""
    if kind == "noise":
        arr = rng.integers(200, 256, size=(size, size, 3), dtype=np.uint8)
        return Image.fromarray(arr, "RGB")
    return _static_background(kind, size).copy()


def fit_text(
    draw: ImageDraw.ImageDraw, text: str, font_name: str, size: int, max_width: float
) -> ImageFont.FreeTypeFont:
    """Largest font not above ``size`` whose rendering of ``text`` fits ``max_width``."""
    f = font(font_name, size)
    while size > 5 and draw.textlength(text, font=f) > max_width:
        size -= 1
        f = font(font_name, size)
    return f
