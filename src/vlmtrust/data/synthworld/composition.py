"""Two-object SynthWorld scenes with a spatial relation, and their hard-negative captions.

For ARO / SugarCrepe-style compositionality tests (Yuksekgonul et al. 2023; Hsieh et al. 2023)
without their data: each scene holds two different shapes of two different colours, one left of,
right of, above or below the other, captioned ``"a red square left of a blue circle"``. The hard
negatives keep the caption's words and change what they bind to:

* ``attribute_swap`` — the colours trade places: "a blue square left of a red circle";
* ``relation_swap`` — the inverse relation: "a red square right of a blue circle";
* ``object_swap`` — the shapes trade places (word order): "a red circle left of a blue square";

and two easy negatives, whose words are not in the image, serve as a control (a model that
sees the objects and colours at all passes them): ``replace_object`` (a third shape) and
``replace_colour`` (a third colour).

Example:
    >>> scene = composition_scenes(2, seed=0)[0]
    >>> scene.caption.split()[0], sorted(scene.negatives) == sorted(NEGATIVE_TYPES)
    ('a', True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vlmtrust.core.errors import InputError
from vlmtrust.data.synthworld import _draw
from vlmtrust.data.synthworld import _vocab as vocab

RELATIONS: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}
"""Each relation and its inverse."""

SWAP_TYPES: tuple[str, ...] = ("attribute_swap", "relation_swap", "object_swap")
"""Hard negatives: the same words, bound differently."""

CONTROL_TYPES: tuple[str, ...] = ("replace_object", "replace_colour")
"""Easy negatives: a word that is not in the image."""

NEGATIVE_TYPES: tuple[str, ...] = SWAP_TYPES + CONTROL_TYPES

# Colours that stay distinct after any rendering (no near-duplicates such as orange/yellow).
_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "black")


@dataclass(frozen=True)
class CompositionScene:
    """One two-object scene: its image, true caption and one caption per negative type."""

    id: str
    image: Image.Image
    caption: str
    negatives: dict[str, str]
    attributes: dict[str, str]


def _phrase(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def composition_scenes(n: int, *, seed: int = 0, size: int = 64) -> list[CompositionScene]:
    """``n`` two-object scenes (deterministic for ``seed`` and ``size``).

    Raises:
        InputError: ``n`` < 1 or an image size below 32 pixels.
    """
    if n < 1:
        raise InputError(f"composition_scenes n={n}: ask for at least one scene")
    if size < 32:
        raise InputError(f"composition_scenes size={size}: use at least 32 pixels")
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 7_919, i])
        s_a, s_b, s_c = (str(x) for x in rng.choice(vocab.ID_SHAPES, size=3, replace=False))
        c_a, c_b, c_c = (str(x) for x in rng.choice(_COLOURS, size=3, replace=False))
        rel = list(RELATIONS)[int(rng.integers(len(RELATIONS)))]
        img = _draw.background(str(rng.choice(("white", "beige", "lightblue"))), size, rng)
        # object A sits on the relation's side of object B
        off = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}[rel]
        r = 0.16 * size
        for shape, colour, sign in ((s_a, c_a, 1), (s_b, c_b, -1)):
            cx = size / 2 + sign * off[0] * 0.24 * size + float(rng.uniform(-1, 1))
            cy = size / 2 + sign * off[1] * 0.24 * size + float(rng.uniform(-1, 1))
            mask = Image.new("L", (size, size), 0)
            _draw.draw_shape_mask(ImageDraw.Draw(mask), shape, cx, cy, r, 0.0)
            img.paste(_draw.fill_image(colour, "solid", size), (0, 0), mask)
        caption = f"{_phrase(c_a, s_a)} {rel} {_phrase(c_b, s_b)}"
        negatives = {
            "attribute_swap": f"{_phrase(c_b, s_a)} {rel} {_phrase(c_a, s_b)}",
            "relation_swap": f"{_phrase(c_a, s_a)} {RELATIONS[rel]} {_phrase(c_b, s_b)}",
            "object_swap": f"{_phrase(c_a, s_b)} {rel} {_phrase(c_b, s_a)}",
            "replace_object": f"{_phrase(c_a, s_c)} {rel} {_phrase(c_b, s_b)}",
            "replace_colour": f"{_phrase(c_c, s_a)} {rel} {_phrase(c_b, s_b)}",
        }
        attrs = {"relation": rel, "shape_a": s_a, "shape_b": s_b, "colour_a": c_a, "colour_b": c_b}
        out.append(CompositionScene(f"comp-{seed}-{i:05d}", img, caption, negatives, attrs))
    return out
