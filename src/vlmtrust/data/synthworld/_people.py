"""Person-like figures with a group style, occupation props and occupation settings."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

GROUP_PALETTE: dict[str, tuple[RGB, RGB]] = {
    # (head, body) colours per group; the group is a rendering style, nothing more.
    "round": ((236, 170, 120), (230, 130, 50)),
    "angular": ((150, 120, 200), (40, 150, 150)),
}

SETTING_BASE: dict[str, RGB] = {
    "doctor": (225, 245, 240),
    "chef": (245, 245, 235),
    "builder": (235, 225, 210),
    "teacher": (240, 235, 225),
    "farmer": (210, 235, 250),
    "pilot": (170, 210, 250),
}
NEUTRAL_BASE: RGB = (235, 235, 235)


def _s(v: float, size: int) -> float:
    return v * size / 64.0


def draw_setting(draw: ImageDraw.ImageDraw, occupation: str, size: int) -> None:
    """Draw the occupation's setting (already on its base colour)."""

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (_s(x0, size), _s(y0, size), _s(x1, size), _s(y1, size))

    if occupation == "doctor":
        draw.rectangle(box(50, 4, 60, 14), fill=(255, 255, 255))
        draw.rectangle(box(53.5, 5.5, 56.5, 12.5), fill=(220, 30, 30))
        draw.rectangle(box(51.5, 7.5, 58.5, 10.5), fill=(220, 30, 30))
    elif occupation == "chef":
        step = 8
        for y in range(40, 64, step):
            for x in range(0, 64, step):
                if (x // step + y // step) % 2 == 0:
                    draw.rectangle(box(x, y, x + step - 1, y + step - 1), fill=(190, 190, 200))
    elif occupation == "builder":
        draw.rectangle(box(0, 54, 64, 64), fill=(20, 20, 20))
        for x in range(-8, 64, 8):
            draw.polygon(
                [
                    (_s(x, size), _s(64, size)),
                    (_s(x + 4, size), _s(64, size)),
                    (_s(x + 14, size), _s(54, size)),
                    (_s(x + 10, size), _s(54, size)),
                ],
                fill=(250, 170, 20),
            )
    elif occupation == "teacher":
        draw.rectangle(box(36, 6, 62, 30), fill=(30, 90, 50))
        for y in (11, 17, 23):
            draw.line(
                [(_s(40, size), _s(y, size)), (_s(57, size), _s(y, size))], fill=(240, 240, 240)
            )
    elif occupation == "farmer":
        draw.rectangle(box(0, 44, 64, 64), fill=(70, 160, 60))
        for x in range(2, 64, 6):
            draw.line(
                [(_s(x, size), _s(46, size)), (_s(x, size), _s(50, size))], fill=(40, 110, 40)
            )
    elif occupation == "pilot":
        wing = ((42, 10), (62, 10), (62, 13), (42, 13))
        fuselage = ((50, 4), (54, 4), (56, 19), (52, 19))
        for corners in (wing, fuselage):
            draw.polygon([(_s(x, size), _s(y, size)) for x, y in corners], fill=(255, 255, 255))


def draw_person(
    draw: ImageDraw.ImageDraw, group: str, size: int, dx: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Draw the figure; returns (head centre x, head top y) in pixels."""
    head, body = GROUP_PALETTE[group]
    cx = 26.0 + dx
    jit = float(rng.uniform(-1.0, 1.0))
    hy = 17.0 + jit
    hr = 6.5
    outline = (40, 40, 40)
    # legs and arms
    leg_w = max(1, round(_s(3, size)))
    # (x offset, y) of each limb's two ends, mirrored left then right: legs, then arms
    for (x0, y0), (x1, y1), fill in (((4, 46), (6, 60), outline), ((8, 28), (14, 42), body)):
        for side in (-1, 1):
            ends = [
                (_s(cx + side * x0, size), _s(y0, size)),
                (_s(cx + side * x1, size), _s(y1, size)),
            ]
            draw.line(ends, fill=fill, width=leg_w)
    head_box = (_s(cx - hr, size), _s(hy - hr, size), _s(cx + hr, size), _s(hy + hr, size))
    if group == "round":
        draw.ellipse(
            (_s(cx - 9, size), _s(24, size), _s(cx + 9, size), _s(50, size)),
            fill=body,
            outline=outline,
        )
        draw.ellipse(head_box, fill=head, outline=outline)
    else:
        draw.polygon(
            [
                (_s(cx - 7, size), _s(24, size)),
                (_s(cx + 7, size), _s(24, size)),
                (_s(cx + 10, size), _s(49, size)),
                (_s(cx - 10, size), _s(49, size)),
            ],
            fill=body,
            outline=outline,
        )
        draw.rectangle(head_box, fill=head, outline=outline)
    return cx, hy - hr


def draw_prop(draw: ImageDraw.ImageDraw, occupation: str, size: int, cx: float, top: float) -> None:
    """Draw the occupation's prop on the figure (hat, badge, tool)."""

    def p(x: float, y: float) -> tuple[float, float]:
        return (_s(x, size), _s(y, size))

    if occupation == "doctor":
        draw.rectangle((*p(cx - 3, 30), *p(cx + 3, 36)), fill=(255, 255, 255))
        draw.rectangle((*p(cx - 0.8, 30.5), *p(cx + 0.8, 35.5)), fill=(220, 30, 30))
        draw.rectangle((*p(cx - 2.5, 32.2), *p(cx + 2.5, 33.8)), fill=(220, 30, 30))
        draw.arc(
            (*p(cx - 6, 22), *p(cx + 6, 34)), 20, 160, fill=(20, 20, 20), width=max(1, size // 40)
        )
    elif occupation == "chef":
        draw.rectangle(
            (*p(cx - 5, top - 9), *p(cx + 5, top + 1)),
            fill=(255, 255, 255),
            outline=(160, 160, 160),
        )
        draw.ellipse(
            (*p(cx - 7, top - 13), *p(cx + 7, top - 5)),
            fill=(255, 255, 255),
            outline=(160, 160, 160),
        )
    elif occupation == "builder":
        draw.pieslice((*p(cx - 8, top - 4), *p(cx + 8, top + 8)), 180, 360, fill=(250, 200, 0))
        draw.line([p(cx + 14, 42), p(cx + 18, 32)], fill=(120, 70, 30), width=max(1, size // 32))
        draw.rectangle((*p(cx + 15, 29), *p(cx + 22, 33)), fill=(90, 90, 90))
    elif occupation == "teacher":
        draw.line([p(cx + 14, 42), p(cx + 24, 24)], fill=(110, 60, 20), width=max(1, size // 40))
        draw.rectangle((*p(cx - 4, 38), *p(cx + 4, 44)), fill=(200, 40, 40))
    elif occupation == "farmer":
        draw.ellipse((*p(cx - 12, top + 1), *p(cx + 12, top + 5)), fill=(200, 160, 60))
        draw.rectangle((*p(cx - 6, top - 3), *p(cx + 6, top + 3)), fill=(200, 160, 60))
        draw.line([p(cx - 14, 42), p(cx - 18, 20)], fill=(120, 70, 30), width=max(1, size // 40))
    elif occupation == "pilot":
        draw.rectangle((*p(cx - 7, top - 3), *p(cx + 7, top + 3)), fill=(20, 30, 90))
        draw.rectangle((*p(cx - 1, top + 3), *p(cx + 10, top + 5)), fill=(20, 20, 40))
        draw.rectangle((*p(cx - 5, 30), *p(cx + 5, 32)), fill=(230, 190, 40))


def render_person(
    occupation: str,
    group: str,
    size: int,
    rng: np.random.Generator,
    *,
    with_prop: bool,
    with_setting: bool,
) -> Image.Image:
    """Render one person scene."""
    base = SETTING_BASE[occupation] if with_setting else NEUTRAL_BASE
    img = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(img)
    if with_setting:
        draw_setting(draw, occupation, size)
    dx = float(rng.uniform(-4.0, 4.0))
    cx, top = draw_person(draw, group, size, dx, rng)
    if with_prop:
        draw_prop(draw, occupation, size, cx, top)
    return img
