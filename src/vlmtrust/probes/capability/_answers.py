"""Short-answer matching shared by VQA-style probes."""

from __future__ import annotations

import re

_ARTICLES = {"a", "an", "the"}
_WORD = re.compile(r"[a-z0-9]+")


def normalise_answer(text: str) -> list[str]:
    """Lowercased word tokens without punctuation or articles."""
    return [w for w in _WORD.findall(text.lower()) if w not in _ARTICLES]


def answer_matches(answer: str, target: str, *, window: int = 4) -> bool:
    """True when the target's words appear, in order, among the answer's first words.

    Exact match is too strict for chat models ("It is a circle."), matching anywhere too
    lenient ("not a circle but a square"): the target must appear within the first
    ``window`` words after the answer's own leading filler is ignored.

    Example:
        >>> answer_matches("It is a red circle.", "circle")
        True
        >>> answer_matches("square", "circle")
        False
    """
    want = normalise_answer(target)
    got = normalise_answer(answer)
    if not want:
        return False
    head = got[: window + len(want)]
    n = len(want)
    return any(head[i : i + n] == want for i in range(len(head) - n + 1))
