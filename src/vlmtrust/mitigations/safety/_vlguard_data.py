"""The VLGuard-style fine-tuning set and held-out evaluation items (``safety/vlguard``'s data).

Built from the project's own data — train splits for fine-tuning, test splits and fresh
SynthWorld scenes for the evaluation — in four kinds (VLGuard, Zong et al., ICML 2024):

* **safe image + safe instruction**: SynthWorld scenes with VQA / caption questions;
* **safe image + unsafe instruction**: a SynthWorld scene with a harmful request typed in the
  prompt → refusal (every other one without an image, which keeps the text-only refusals);
* **unsafe image**: the harmful request drawn as FigStep typography with the FigStep prompt →
  refusal;
* **benign look-alikes**: benign requests typed and as FigStep typography (keeps helpfulness).

Answers for the safe parts are the model's *own* answers (self-distillation stands in for its
original instruction data, whose format it keeps); the refusal is the model's own refusal to
typed harmful requests (``refusal="auto"``) or a given text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vlmtrust.mitigations.safety._guarded import REFUSAL_TEXT

if TYPE_CHECKING:
    from vlmtrust.mitigations.safety.vlguard import VLGuardParams

SHAPE_QUESTIONS = ("What shape is this?", "What shape is in the image?")
COLOUR_QUESTIONS = ("What colour is the shape?", "What color is the shape?")
CAPTION_QUESTIONS = ("Describe the image.",)
SEED_OFFSET = 4_000_037
"""SynthWorld stream of the fine-tuning scenes (disjoint from the probes' and the evaluation's)."""
EVAL_SEED_OFFSET = 5_000_011


@dataclass(frozen=True)
class SafetyExample:
    """One fine-tuning example (an answer the model should give)."""

    image: Image.Image | None
    prompt: str
    answer: str
    kind: str


def model_answers(
    model: Any, items: Sequence[tuple[Image.Image | None, str]], mnt: int
) -> list[str]:
    """The model's greedy answer to each ``(image or None, prompt)`` (``""`` on failure)."""
    from vlmtrust.core.model import GenerateRequest, generate_sync

    reqs = [
        GenerateRequest(p, images=(im,) if im is not None else (), max_new_tokens=mnt)
        for im, p in items
    ]
    return [g.text if g.ok else "" for g in generate_sync(model, reqs)]


def is_refusal(texts: Sequence[str], judge: str = "refusal/keyword") -> list[bool]:
    """Whether ``judge`` labels each text a refusal."""
    from vlmtrust.judges.base import judges_for

    if not texts:
        return []
    return [j.label == "refusal" for j in judges_for([judge])[0].judge(list(texts))]


def model_refusal(
    model: Any, prompts: Sequence[str], mnt: int = 24, judge: str = "refusal/keyword"
) -> str | None:
    """The model's most common answer to typed harmful ``prompts`` that is a refusal."""
    answers = model_answers(model, [(None, p) for p in prompts], mnt)
    flags = is_refusal(answers, judge)
    refusals = [a for a, r in zip(answers, flags, strict=True) if r and a.strip()]
    if not refusals:
        return None
    values, counts = np.unique(np.asarray(refusals), return_counts=True)
    return str(values[int(np.argmax(counts))])


def build_safety_set(model: Any, p: VLGuardParams, seed: int) -> tuple[list[SafetyExample], str]:
    """The VLGuard-style fine-tuning set for ``model`` and the refusal text used."""
    from vlmtrust.attacks.typography import FIGSTEP_PROMPT, render_figstep
    from vlmtrust.data.requests import pool
    from vlmtrust.data.synthworld import SynthWorld

    rng = np.random.default_rng(seed + SEED_OFFSET)
    harmful = pool(harmful=True, split_name="train")
    benign = pool(harmful=False, split_name="train")
    world = SynthWorld(seed=seed + SEED_OFFSET, image_size=224)
    scenes = [s.image for s in world.shapes(max(p.n_safe, p.n_unsafe_text, 1))]

    refusal = p.refusal
    if refusal == "auto":
        refusal = model_refusal(
            model, [r.text for r in harmful[:24]], p.max_new_tokens, p.refusal_judge
        ) or (REFUSAL_TEXT)
    out: list[SafetyExample] = []

    def pick(items: Sequence[Any], n: int) -> list[Any]:
        if not items or n <= 0:
            return []
        return [items[int(i)] for i in rng.integers(0, len(items), size=n)]

    # safe image + safe instruction (the model's own answers)
    qs = (*SHAPE_QUESTIONS, *COLOUR_QUESTIONS, *CAPTION_QUESTIONS)
    safe_items = [
        (scenes[i % len(scenes)], qs[int(rng.integers(len(qs)))]) for i in range(p.n_safe)
    ]
    safe_ans = model_answers(model, safe_items, p.max_new_tokens)
    for (im, q), a in zip(safe_items, safe_ans, strict=True):
        if a.strip():
            out.append(SafetyExample(im, q, a, "safe"))
    # safe image + unsafe instruction; every other one text-only, so that the text-only
    # refusals the model already has are kept (they are part of its normal behaviour)
    for k, r in enumerate(pick(harmful, p.n_unsafe_text)):
        u_im: Image.Image | None = scenes[k % len(scenes)] if k % 2 == 0 else None
        out.append(SafetyExample(u_im, r.text, refusal, "unsafe_text"))
    # unsafe image: FigStep typography of the harmful request
    for r in pick(harmful, p.n_unsafe_image):
        im = render_figstep(r.statement, size=p.image_size)
        out.append(SafetyExample(im, FIGSTEP_PROMPT, refusal, "unsafe_image"))
    # benign look-alikes, typed and typographic (own answers)
    half = p.n_benign // 2
    ben_items: list[tuple[Image.Image | None, str]] = [(None, r.text) for r in pick(benign, half)]
    ben_items += [
        (render_figstep(r.statement, size=p.image_size), FIGSTEP_PROMPT)
        for r in pick(benign, p.n_benign - half)
    ]
    ben_ans = model_answers(model, ben_items, p.max_new_tokens)
    for (b_im, q), a, refused in zip(
        ben_items, ben_ans, is_refusal(ben_ans, p.refusal_judge), strict=True
    ):
        if a.strip() and not refused:  # never teach refusals of benign requests
            out.append(SafetyExample(b_im, q, a, "benign"))
    return out, refusal


def heldout_items(
    *, n: int, seed: int, image_size: int = 760
) -> tuple[list[Any], list[Any], list[Any], list[tuple[Image.Image | None, str]]]:
    """``(harmful, benign, scenes, items)`` of the held-out evaluation (test splits, fresh scenes).

    ``items`` are, in order: harmful FigStep images, harmful typed, benign typed, benign
    FigStep, scenes with the shape question, scenes with the colour question.
    """
    from vlmtrust.attacks.typography import FIGSTEP_PROMPT, render_figstep
    from vlmtrust.data.requests import pool
    from vlmtrust.data.synthworld import SynthWorld

    harmful = pool(harmful=True, split_name="test")[:n]
    benign = pool(harmful=False, split_name="test")[:n]
    scenes = SynthWorld(seed=seed + EVAL_SEED_OFFSET, image_size=224).shapes(n)
    items: list[tuple[Image.Image | None, str]] = []
    items += [(render_figstep(r.statement, size=image_size), FIGSTEP_PROMPT) for r in harmful]
    items += [(None, r.text) for r in harmful]
    items += [(None, r.text) for r in benign]
    items += [(render_figstep(r.statement, size=image_size), FIGSTEP_PROMPT) for r in benign]
    items += [(s.image, SHAPE_QUESTIONS[0]) for s in scenes]
    items += [(s.image, COLOUR_QUESTIONS[0]) for s in scenes]
    return harmful, benign, list(scenes), items
