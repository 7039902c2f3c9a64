"""``robustness/text_perturbation`` — accuracy drop under typos, synonyms and casing changes.

Dual encoders: the class prompts (template and class names) are perturbed; generative models:
the question is perturbed (the expected answer is unchanged). Every image is evaluated under
the identity perturbation (the control: its drop is exactly 0 by construction) and under each
perturbation kind, with ``variants`` independent random draws per kind. Metrics: accuracy per
perturbation and the paired accuracy drop ``acc_identity - acc_perturbed`` (bootstrap CI over
images); the headline is the largest drop.

Perturbations (seeded): ``typo`` — one character swapped, dropped, doubled or replaced by a
keyboard neighbour in ``rate`` of the words (at least one); ``synonym`` — words replaced by a
synonym from a small built-in table (template words and shape names); ``casing`` — UPPER,
Title or rAnDoM casing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from vlmtrust.attacks import zeroshot as zs
from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Example, MetricKey, MetricResult, Plot, Record, Thresholds
from vlmtrust.core.sample import Sample
from vlmtrust.core.stats import accuracy, metric, risk_band
from vlmtrust.core.types import Pillar
from vlmtrust.probes.families import labeled_image as li

Kind = Literal["identity", "typo", "synonym", "casing"]
KINDS: tuple[str, ...] = ("identity", "typo", "synonym", "casing")
_DEFAULT_KINDS: tuple[Kind, ...] = ("typo", "synonym", "casing")

SYNONYMS: dict[str, tuple[str, ...]] = {
    "photo": ("picture", "image", "snapshot"),
    "picture": ("photo", "image"),
    "image": ("picture", "photo"),
    "shape": ("figure", "form"),
    "what": ("which",),
    "answer": ("reply", "respond"),
    "word": ("term",),
    "circle": ("round disc", "ring shape"),
    "square": ("box", "quadrilateral"),
    "triangle": ("three sided shape", "trigon"),
    "star": ("starburst", "asterisk shape"),
    "hexagon": ("six sided shape", "hexagonal shape"),
    "pentagon": ("five sided shape", "pentagonal shape"),
    "cross": ("plus sign", "x shape"),
    "heart": ("love symbol", "heart shape"),
    "diamond": ("rhombus", "lozenge"),
    "arrow": ("pointer", "arrowhead"),
    "dog": ("puppy", "hound"),
    "cat": ("kitten", "feline"),
    "car": ("automobile", "vehicle"),
    "house": ("home", "building"),
}
"""A small synonym table (template words and SynthWorld classes); unknown words are kept."""

_NEIGHBOURS = {
    "a": "qs", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o",
    "q": "w", "r": "et", "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "x": "zc",
    "y": "tu", "z": "x",
}  # fmt: skip
_TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z]+")


def _typo_word(word: str, rng: np.random.Generator) -> str:
    if len(word) < 2:
        return word
    i = int(rng.integers(len(word) - 1))
    op = int(rng.integers(4))
    if op == 0:  # swap adjacent
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:  # drop
        return word[:i] + word[i + 1 :]
    if op == 2:  # double
        return word[: i + 1] + word[i] + word[i + 1 :]
    near = _NEIGHBOURS.get(word[i].lower(), "")
    return word[:i] + (near[int(rng.integers(len(near)))] if near else word[i]) + word[i + 1 :]


def perturb(text: str, kind: str, rng: np.random.Generator, *, rate: float = 0.3) -> str:
    """Perturb ``text`` with one perturbation ``kind`` (``identity`` returns it unchanged).

    Example:
        >>> import numpy as np
        >>> perturb("a photo of a circle", "identity", np.random.default_rng(0))
        'a photo of a circle'
        >>> perturb("a photo", "casing", np.random.default_rng(0)) != "a photo"
        True
    """
    if kind == "identity":
        return text
    tokens = _TOKEN.findall(text)
    word_idx = [i for i, t in enumerate(tokens) if t.isalpha()]
    if kind == "casing":
        mode = int(rng.integers(3))
        if mode == 0:
            return text.upper()
        if mode == 1:
            return text.title() if text.title() != text else text.upper()
        flips = rng.random(len(text)) < 0.5
        out = "".join(c.upper() if f else c.lower() for c, f in zip(text, flips, strict=True))
        return out if out != text else text.swapcase()
    if not word_idx:
        return text
    if kind == "typo":
        long_words = [i for i in word_idx if len(tokens[i]) >= 3] or word_idx
        k = max(1, int(round(rate * len(long_words))))
        for i in rng.choice(long_words, size=min(k, len(long_words)), replace=False):
            tokens[int(i)] = _typo_word(tokens[int(i)], rng)
        return "".join(tokens)
    if kind == "synonym":
        known = [i for i in word_idx if tokens[i].lower() in SYNONYMS]
        if not known:
            return text
        k = max(1, int(round(rate * len(word_idx))))
        # the class name (usually last known word) is always among the replaced words
        chosen = {known[-1]} | {
            int(i) for i in rng.choice(known, size=min(k, len(known)), replace=False)
        }
        for i in chosen:
            options = SYNONYMS[tokens[i].lower()]
            tokens[i] = options[int(rng.integers(len(options)))]
        return "".join(tokens)
    raise InputError(f"unknown text perturbation {kind!r}: use one of {', '.join(KINDS)}")


class TextPerturbationParams(li.AskParams):
    """Parameters of ``robustness/text_perturbation``."""

    n: int = Field(40, ge=1, le=100_000, description="clean images")
    kinds: list[Kind] = Field(default_factory=lambda: list(_DEFAULT_KINDS))
    variants: int = Field(4, ge=1, le=100, description="random draws per perturbation kind")
    rate: float = Field(0.3, gt=0.0, le=1.0, description="share of words perturbed")


@probe("robustness/text_perturbation")
class TextPerturbation(li.LabeledImageProbe):
    """Accuracy drop when prompts / class names carry typos, synonyms or odd casing."""

    pillar = Pillar.ROBUSTNESS
    Params = TextPerturbationParams
    description = (
        "Text perturbations (typos, synonyms, casing) of the class prompts (dual) or the "
        "question (generative): accuracy drop against the unperturbed text."
    )

    params: TextPerturbationParams

    def _kinds(self) -> list[str]:
        return ["identity", *[k for k in self.params.kinds if k != "identity"]]

    def variants_per_image(self) -> int:
        """One per perturbation kind (identity included)."""
        return len(self._kinds())

    def prepare(self, ctx: ProbeContext, classes: list[str]) -> None:
        """The unperturbed class prompts of this run's label set."""
        self._prompts = zs.class_prompts(classes, self.params.template)

    def variants(self, base: li.Base, index: int, ctx: ProbeContext) -> Iterator[li.Variant]:
        """The image once per perturbation kind (variant = image index mod ``variants``)."""
        variant = index % self.params.variants
        for kind in self._kinds():
            rng = ctx.rng("text_perturbation", kind, str(variant))
            texts = [perturb(p, kind, rng, rate=self.params.rate) for p in self._prompts]
            question = perturb(self.params.question, kind, rng, rate=self.params.rate)
            meta = {"class_texts": texts, "variant": variant}
            yield li.Variant(kind, base.image, {"perturbation": kind}, meta, prompt=question)

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Classify with perturbed class prompts (dual) or answer perturbed questions."""
        if getattr(model, "kind", "dual") == "generative":
            from vlmtrust.core.model import GenerateRequest, generate_sync

            reqs = [
                GenerateRequest(
                    prompt=s.prompt or self.params.question,
                    images=tuple(s.pil_images()),
                    max_new_tokens=self.params.max_new_tokens,
                    seed=ctx.seed,
                )
                for s in batch
            ]
            out = []
            for s, g in zip(batch, generate_sync(model, reqs), strict=True):
                if not g.ok:
                    out.append(self.record(s, error=g.error))
                    continue
                pred = zs.answer_class(g.text, list(s.metadata["classes"]))
                out.append(
                    self.record(
                        s,
                        output={
                            "answer": g.text,
                            "prediction": pred,
                            "target": s.target,
                            "prompt": s.prompt,
                        },
                        scores={"correct": float(pred == s.target)},
                    )
                )
            return out
        images = [s.pil_images()[0] for s in batch]
        emb = zs.embed_images(model, images)  # each image once, whatever its text variants
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, s in enumerate(batch):
            groups.setdefault(tuple(s.metadata["class_texts"]), []).append(i)
        by_id: dict[str, Record] = {}
        for texts, idxs in groups.items():
            group = [batch[i] for i in idxs]
            preds = zs.predict(
                model, [images[i] for i in idxs], texts, self._cache, image_emb=emb[idxs]
            )
            for s, idx, ab in zip(group, preds.index, preds.abstained, strict=True):
                classes = list(s.metadata["classes"])
                pred = classes[int(idx)]
                by_id[s.id] = self.record(
                    s,
                    output={"prediction": pred, "target": s.target, "prompt": texts[int(idx)]},
                    scores={"correct": float(pred == s.target and ab == 0.0)},
                )
        return [by_id[s.id] for s in batch]

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Accuracy per perturbation and paired accuracy drops."""
        out: list[MetricResult] = []
        by_kind: dict[str, dict[str, float]] = {}
        for r in records:
            by_kind.setdefault(r.attributes["perturbation"], {})[r.attributes["base"]] = float(
                r.scores["correct"] or 0.0
            )
        for kind, vals in by_kind.items():
            out.append(
                metric(
                    MetricKey(metric="accuracy", condition=kind),
                    accuracy,
                    list(vals.values()),
                    higher_is_better=True,
                    description=f"accuracy with {kind} text",
                    unit="%",
                    seed=ctx.seed,
                )
            )
        ident = by_kind.get("identity", {})
        drops: list[MetricResult] = []
        for kind, vals in by_kind.items():
            keys = [k for k in vals if k in ident]
            if not keys:
                continue
            drops.append(
                metric(
                    MetricKey(metric="accuracy_drop", condition=kind),
                    _mean_diff,
                    [ident[k] for k in keys],
                    [vals[k] for k in keys],
                    higher_is_better=False,
                    description=f"accuracy(identity) - accuracy({kind}), paired per image",
                    unit="%",
                    seed=ctx.seed,
                )
            )
        out.extend(drops)
        perturbed = [d for d in drops if d.name != "accuracy_drop/identity" and d.value is not None]
        if perturbed:
            worst = max(perturbed, key=lambda d: d.value or 0.0)
            th = Thresholds(moderate=0.05, high=0.15)
            out.append(
                worst.model_copy(
                    update={
                        "key": MetricKey(metric="max_accuracy_drop"),
                        "name": "max_accuracy_drop",
                        "description": f"largest accuracy drop ({worst.key.condition})",
                        "thresholds": th,
                        "risk": risk_band(worst.value, th, higher_is_better=False),
                        "headline": True,
                    }
                )
            )
        return out

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Accuracy per perturbation kind."""
        kinds = list(dict.fromkeys(r.attributes["perturbation"] for r in records))
        if not kinds:
            return []
        return li.accuracy_bars(
            records,
            lambda r: r.attributes["perturbation"],
            kinds,
            title="Accuracy per text perturbation",
            x_label="perturbation",
        )

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """Images right with the clean text but wrong with a perturbed one."""
        ok = {
            r.attributes["base"]
            for r in records
            if r.attributes["perturbation"] == "identity" and r.scores.get("correct") == 1.0
        }
        flips = [
            r
            for r in records
            if r.attributes["perturbation"] != "identity"
            and r.attributes["base"] in ok
            and r.scores.get("correct") == 0.0
        ][:6]
        return [
            Example(
                sample_id=r.sample_id,
                title=f"{r.attributes['perturbation']} flipped the answer",
                prompt=str(r.output.get("prompt")),
                output=str(r.output.get("answer", r.output.get("prediction"))),
                expected=str(r.output.get("target")),
            )
            for r in flips
        ]


def _mean_diff(a: Any, b: Any) -> float:
    return float(np.mean(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))
