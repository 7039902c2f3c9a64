"""The labeled-image family: each labeled image under each variant, classified and scored.

A labeled-image probe starts from clean labeled images — the user's dataset (``--data``,
handed in by the runner through :mod:`vlmtrust.probes._data`) or SynthWorld's in-distribution
shapes — and derives *variants* of each one (clean, corrupted, attacked, labelled, styled, …).
Every variant is classified the same way:

* dual encoders by zero-shot classification: the class whose prompt (``template``) has the
  highest raw cosine; ``confidence`` is the top softmax probability of
  ``logit_scale * cosines``;
* generative models by a short-answer question (``question``), the answer counted by the
  first class it names (:func:`~vlmtrust.attacks.zeroshot.answer_class`).

An abstention of an abstaining model (the ``robustness/ood_guard`` wrapper) is never correct
and is counted separately as ``abstention_rate``.

A probe of this family declares only what is specific to it: its ``Params``, its variants
(:meth:`LabeledImageProbe.variants`, how to make each variant of one image), optional extra
scores per record (:meth:`LabeledImageProbe.score`) and its metrics, built with the family's
helpers (:meth:`~LabeledImageProbe.rate`, :func:`paired_ratio_rows`, :func:`ratio`).

Each sample carries its label set in ``metadata["classes"]`` (so ``evaluate`` needs no shared
state) and ``attributes["base"]``, the id of the clean image it derives from.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image
from pydantic import Field, field_validator

from vlmtrust.attacks.zeroshot import (
    DEFAULT_TEMPLATE,
    VQA_QUESTION,
    TextCache,
    answer_class,
    answer_correct,
    class_prompts,
    logit_scale,
    predict,
    softmax,
)
from vlmtrust.core.errors import InputError
from vlmtrust.core.params import Params, distinct
from vlmtrust.core.probe import Probe, ProbeContext
from vlmtrust.core.results import Example, MetricKey, MetricResult, Plot, Record, Series
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.stats import accuracy, metric, share_metric
from vlmtrust.core.types import Capability
from vlmtrust.probes import _data

__all__ = [
    "AskParams",
    "DEFAULT_TEMPLATE",
    "VQA_QUESTION",
    "Base",
    "LabeledImageProbe",
    "SeverityGridProbe",
    "SeverityParams",
    "Variant",
    "accuracy_bars",
    "accuracy_metric",
    "ZeroShotProbe",
    "answer_class",
    "answer_correct",
    "base_images",
    "example",
    "grid",
    "heatmap",
    "id_classes",
    "known_names",
    "known_severities",
    "make_sample",
    "ood_classes",
    "paired_ratio_rows",
    "ratio",
    "synth_shapes",
]


# --------------------------------------------------------------------------- clean images


def id_classes() -> list[str]:
    """SynthWorld's in-distribution shape classes."""
    from vlmtrust.data.synthworld import ID_SHAPES

    return list(ID_SHAPES)


def ood_classes() -> list[str]:
    """SynthWorld's held-out (OOD) shape classes."""
    from vlmtrust.data.synthworld import OOD_SHAPES

    return list(OOD_SHAPES)


def synth_shapes(
    ctx: ProbeContext, n: int, *, purpose: str, split: Literal["id", "ood"] = "id"
) -> list[tuple[str, Image.Image, str]]:
    """``n`` SynthWorld shape scenes as ``(id, image, shape)``, seeded by run seed and purpose."""
    from vlmtrust.probes import _data

    seed = int(ctx.rng("synthworld", purpose, split).integers(0, 2**31 - 1))
    world = _data.world(ctx, seed)
    return [
        (f"{purpose}-{split}-{i:05d}", s.image, str(s.attributes["shape"]))
        for i, s in enumerate(world.shapes(n, split=split))
    ]


@dataclass(frozen=True)
class Base:
    """A clean labeled image the variants derive from (decoded once, when it is reached)."""

    id: str
    image: Image.Image
    label: str
    attributes: dict[str, str]


def base_images(
    ctx: ProbeContext, n: int, *, purpose: str
) -> tuple[Iterator[Base | Any], list[str]]:
    """Clean labeled images: the user's dataset (``--data``) or SynthWorld ID shapes.

    Returns ``(bases, classes)``. ``bases`` is lazy: each user image is decoded when the
    iterator reaches it; a bad one arrives as a data-error marker (one error record) in its
    place. ``classes`` is the label set: SynthWorld's ID shapes, or the sorted labels of the
    user's samples (read from the dataset's entries, without decoding images).

    Raises:
        InputError: a user sample has no label, or the data has fewer than 2 labels.
    """
    size = ctx.size(n)
    if ctx.data is None:
        synth = [
            Base(i, im, lab, {"class": lab})
            for i, im, lab in synth_shapes(ctx, size, purpose=purpose)
        ]
        return iter(synth), id_classes()
    items = list(_data.first(_data.dataset(ctx), size))
    for item in items:
        if isinstance(item, Sample) and not item.target:
            raise InputError(
                f"dataset {ctx.data}: sample {item.id} has no label; give every item a label "
                "(the class name) for zero-shot robustness probes"
            )
    classes = sorted({str(s.target) for s in items if isinstance(s, Sample)})
    if len(classes) < 2:
        raise InputError(
            f"dataset {ctx.data}: zero-shot probes need at least 2 distinct labels, found "
            f"{len(classes)}; add images of other classes"
        )
    return _decoded(items), classes


def _decoded(items: Iterable[Any]) -> Iterator[Base | Any]:
    for item in items:
        if not isinstance(item, Sample):
            yield item
            continue
        image = _data.decode(item)
        if isinstance(image, Image.Image):
            yield Base(item.id, image, str(item.target), {"class": str(item.target)})
        else:
            yield image


def make_sample(
    sample_id: str,
    image: Image.Image,
    label: str,
    classes: Sequence[str],
    *,
    attributes: dict[str, str],
    prompt: str | None = None,
    **metadata: Any,
) -> Sample:
    """A sample carrying its label set in metadata (so ``evaluate`` needs no shared state)."""
    return Sample(
        id=sample_id,
        images=(ImageRef.from_image(image, label=sample_id),),
        prompt=prompt,
        target=label,
        attributes=attributes,
        metadata={"classes": list(classes), **metadata},
    )


# --------------------------------------------------------------------------- the family


class AskParams(Params):
    """How a labeled-image probe asks: the class prompt (dual) or the question (generative)."""

    template: str = Field(DEFAULT_TEMPLATE, description="class prompt (dual encoders)")
    question: str = Field(VQA_QUESTION, description="question (generative models)")
    max_new_tokens: int = Field(8, ge=1, le=256)


class SeverityParams(AskParams):
    """``AskParams`` whose subclass declares ``severities``, checked to lie in ``1..severity_top``.

    (A :class:`SeverityGridProbe`'s parameters; the field stays in the subclass, in its order.)
    """

    severity_top: ClassVar[int] = 5

    @field_validator("severities", check_fields=False)
    @classmethod
    def _severities(cls, v: list[int]) -> list[int]:
        return known_severities(v, cls.severity_top)


class ZeroShotProbe(Probe):
    """Base of probes that score images against class prompts: one text-embedding cache each."""

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._cache = TextCache()


@dataclass(frozen=True)
class Variant:
    """One variant of a clean image: sample id ``f"{base.id}/{key}"``.

    ``attributes`` are added to the base's (``class``, ``base``); ``metadata`` is kept on the
    sample (e.g. the word written on it); ``prompt`` becomes the sample's prompt.
    """

    key: str
    image: Image.Image
    attributes: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None


class LabeledImageProbe(ZeroShotProbe):
    """Base of the labeled-image probes: variants of each clean image, classified and scored.

    Subclasses set ``Params`` (with ``n``, ``template`` and, for generative models,
    ``question`` and ``max_new_tokens``) and implement :meth:`variants` and
    :meth:`variants_per_image`; they may add samples (:meth:`extra_samples`), per-record
    scores (:meth:`score`) and build their metrics with :meth:`rate`.
    """

    requires = Capability.NONE
    requires_any = Capability.EMBED | Capability.GENERATE
    batch_size = 64
    purpose: ClassVar[str] = ""
    """Seeds the SynthWorld draw (default: the probe's short name)."""

    @abc.abstractmethod
    def variants(self, base: Base, index: int, ctx: ProbeContext) -> Iterable[Variant]:
        """The variants of clean image number ``index`` (the clean one included, if wanted)."""

    @abc.abstractmethod
    def variants_per_image(self) -> int:
        """How many variants :meth:`variants` yields per image (for progress bars)."""

    def prepare(self, ctx: ProbeContext, classes: list[str]) -> None:
        """Called once per sample stream, before the first variant (default: nothing)."""

    def extra_samples(self, ctx: ProbeContext, classes: list[str]) -> Iterable[Sample]:
        """Samples yielded before the variants (default: none)."""
        return ()

    def extra_count(self, ctx: ProbeContext) -> int:
        """How many :meth:`extra_samples` there are (for progress bars)."""
        return 0

    def score(self, sample: Sample, record: Record) -> None:
        """Add probe-specific scores to a successful record (default: nothing)."""

    # ------------------------------------------------------------------ samples

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars): the extras plus every image's variants.

        With ``--data`` the dataset's entries are counted (not decoded); an unreadable entry
        is one error record, not a set of variants.
        """
        n = int(self.params.n)  # type: ignore[attr-defined]
        if ctx.data is not None:
            items = _data.first(_data.dataset(ctx), ctx.size(n))
            vpi = self.variants_per_image()
            return sum(vpi if isinstance(it, Sample) else 1 for it in items)
        return self.extra_count(ctx) + ctx.size(n) * self.variants_per_image()

    def samples(self, ctx: ProbeContext) -> Iterable[Any]:
        """Every variant of every clean image, lazily (data errors pass through)."""
        return self._gen(ctx)

    def _gen(self, ctx: ProbeContext) -> Iterator[Any]:
        purpose = self.purpose or self.name.rsplit("/", 1)[-1]
        n = int(self.params.n)  # type: ignore[attr-defined]
        bases, classes = base_images(ctx, n, purpose=purpose)
        self.prepare(ctx, classes)
        if ctx.data is None:
            yield from self.extra_samples(ctx, classes)
        i = 0
        for b in bases:
            if not isinstance(b, Base):
                yield b
                continue
            for v in self.variants(b, i, ctx):
                yield make_sample(
                    f"{b.id}/{v.key}",
                    v.image,
                    b.label,
                    classes,
                    attributes={**b.attributes, "base": b.id, **v.attributes},
                    prompt=v.prompt,
                    **v.metadata,
                )
            i += 1

    # ------------------------------------------------------------------ evaluate

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Classify (dual) or ask (generative) each variant, then :meth:`score` it."""
        p = self.params
        records = classify(
            self,
            model,
            batch,
            self._cache,
            template=str(getattr(p, "template", DEFAULT_TEMPLATE)),
            question=str(getattr(p, "question", "")),
            max_new_tokens=int(getattr(p, "max_new_tokens", 1)),
            seed=ctx.seed,
        )
        for s, r in zip(batch, records, strict=True):
            if r.ok:
                self.score(s, r)
        return records

    # ------------------------------------------------------------------ metrics

    def rate(
        self,
        key: MetricKey,
        rows: Sequence[Record],
        ctx: ProbeContext,
        *,
        description: str,
        score: str = "correct",
        by: str | None = None,
        by_label: str | None = None,
        higher_is_better: bool = True,
        **kw: Any,
    ) -> MetricResult:
        """The mean of a 0/1 ``score`` over ``rows`` (a share, in %) with its bootstrap CI.

        ``by`` names the attribute whose values become the groups (shown as ``by_label``).
        """
        return metric(
            key,
            accuracy,
            [r.scores[score] for r in rows],
            higher_is_better=higher_is_better,
            groups=[r.attributes[by] for r in rows] if by else None,
            group_by=(by_label or by) if by else None,
            description=description,
            unit="%",
            seed=ctx.seed,
            **kw,
        )

    def relative(
        self,
        key: MetricKey,
        records: Sequence[Record],
        ctx: ProbeContext,
        *,
        attr: str,
        clean: str,
        description: str,
        only: str | None = None,
        headline: bool = False,
    ) -> MetricResult | None:
        """Accuracy of the variants relative to clean on the same images (paired bootstrap).

        ``None`` when no image has both a clean and a variant record, or (with ``only``)
        when no clean image is correct.
        """
        rows = paired_ratio_rows(records, attr, clean, only)
        if rows is None or (only is not None and not any(rows[0])):
            return None
        return metric(
            key,
            ratio,
            rows[1],
            rows[0],
            higher_is_better=True,
            thresholds=(0.8, 0.6),
            description=description,
            headline=headline,
            seed=ctx.seed,
        )

    def shift_metrics(
        self,
        records: Sequence[Record],
        ctx: ProbeContext,
        *,
        attr: str,
        clean: str,
        noun: str,
        mean_key: str,
        type_note: Callable[[str], str] = lambda name: "",
        clean_desc: str | None = None,
        mean_desc: str | None = None,
    ) -> list[MetricResult]:
        """Metrics of a clean-versus-shifted probe whose variants carry ``attr`` and ``severity``.

        ``clean_accuracy`` (records with ``attr == clean``); the headline
        ``relative_robustness`` (mean shifted accuracy / clean accuracy on the same images);
        ``mean_key`` (accuracy over every shift and severity, per severity as groups); and per
        shift type ``accuracy/NAME`` (per severity) and ``relative_robustness/NAME``. ``noun``
        names the shift in descriptions ("corruption", "style"); ``type_note`` adds a note
        per type (e.g. its family). With shifted records, ``abstention_rate`` follows when the
        model abstained.
        """
        base = [r for r in records if r.attributes.get(attr) == clean]
        shifted = [r for r in records if r.attributes.get(attr) != clean]
        out: list[MetricResult] = []
        if base:
            desc = clean_desc or f"accuracy on the images without a {noun}"
            out.append(self.rate(MetricKey(metric="clean_accuracy"), base, ctx, description=desc))
        if not shifted:
            return out
        rel = self.relative(
            MetricKey(metric="relative_robustness"),
            records,
            ctx,
            attr=attr,
            clean=clean,
            description=f"mean {noun} accuracy / clean accuracy (1 = unaffected)",
            headline=True,
        )
        out += [rel] if rel else []
        desc = mean_desc or f"accuracy over every {noun} type and severity"
        key = MetricKey(metric=mean_key)
        out.append(self.rate(key, shifted, ctx, by="severity", description=desc))
        for name in dict.fromkeys(r.attributes[attr] for r in shifted):
            rows = [r for r in shifted if r.attributes[attr] == name]
            note = type_note(name)
            desc = f"accuracy under {name}{f' ({note})' if note else ''}, all severities"
            key = MetricKey(metric="accuracy", condition=name)
            out.append(self.rate(key, rows, ctx, by="severity", description=desc, ci=False))
            rel = self.relative(
                MetricKey(metric="relative_robustness", condition=name),
                records,
                ctx,
                attr=attr,
                clean=clean,
                only=name,
                description=f"acc_{name} / acc_clean on the same images, all severities "
                "(1 = unaffected)",
            )
            out += [rel] if rel else []
        return out + self.abstention(records, ctx)

    def abstention(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """``abstention_rate`` when the model abstained at all (else nothing)."""
        if not any(r.scores.get("abstained") for r in records):
            return []
        return [
            metric(
                MetricKey(metric="abstention_rate"),
                accuracy,
                [r.scores.get("abstained") or 0.0 for r in records],
                higher_is_better=False,
                description="share of images the model abstained on (counted as errors)",
                unit="%",
                seed=ctx.seed,
            )
        ]


class SeverityGridProbe(LabeledImageProbe):
    """Labeled-image probes that shift each image by every named transform at every severity.

    The variants of an image are the clean one (``{attr: "none", "severity": "0"}``, id
    ``clean``) and one per (name, severity) (``{attr: name, "severity": str(severity)}``, id
    ``f"{name}/{severity}"``), made by :meth:`shift` with a seed per image. Subclasses set
    ``attr`` (e.g. ``"corruption"``) and implement :meth:`shift_names` (the params' names, in
    order) and :meth:`shift`; their ``Params`` have ``severities``. The metrics are
    :meth:`shift_metrics` with ``attr`` as the noun, ``mean_{attr}_accuracy`` as the mean's key,
    :meth:`type_note` per type and the descriptions ``clean_desc`` / ``mean_desc`` (None: the
    default wording).
    """

    attr: ClassVar[str] = "shift"
    clean_desc: ClassVar[str | None] = None
    mean_desc: ClassVar[str | None] = None

    @abc.abstractmethod
    def shift_names(self) -> list[str]:
        """The transforms to apply, in order."""

    @abc.abstractmethod
    def shift(self, image: Image.Image, name: str, severity: int, seed: int) -> Image.Image:
        """``image`` under transform ``name`` at ``severity`` (deterministic in ``seed``)."""

    def _severities(self) -> list[int]:
        return list(self.params.severities)  # type: ignore[attr-defined]

    def variants_per_image(self) -> int:
        """Clean plus every name x severity."""
        return 1 + len(self.shift_names()) * len(self._severities())

    def variants(self, base: Base, index: int, ctx: ProbeContext) -> Iterator[Variant]:
        """The clean image, then every transform at every severity."""
        yield Variant("clean", base.image, {self.attr: "none", "severity": "0"})
        seed = (ctx.seed * 1_000_003 + index) & 0x7FFFFFFF
        for name in self.shift_names():
            for sev in self._severities():
                img = self.shift(base.image, name, sev, seed)
                yield Variant(f"{name}/{sev}", img, {self.attr: name, "severity": str(sev)})

    def type_note(self, name: str) -> str:
        """A note on transform ``name`` in its metrics' descriptions (default: none)."""
        return ""

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Clean accuracy, per-transform accuracy, their mean and relative robustness."""
        return self.shift_metrics(
            records,
            ctx,
            attr=self.attr,
            clean="none",
            noun=self.attr,
            mean_key=f"mean_{self.attr}_accuracy",
            type_note=self.type_note,
            clean_desc=self.clean_desc,
            mean_desc=self.mean_desc,
        )

    def strongest_miss(self, records: Sequence[Record], name: str) -> Record | None:
        """A misclassified record of transform ``name`` at its highest severity (None: none)."""
        wrong = [
            r
            for r in records
            if r.attributes.get(self.attr) == name and r.scores.get("correct") == 0.0
        ]
        if not wrong:
            return None
        return max(wrong, key=lambda r: int(r.attributes.get("severity", "0")))

    def miss_example(self, r: Record, note: str) -> Example:
        """:func:`example` of a :meth:`strongest_miss`, titled by its transform and severity."""
        title = f"{r.attributes.get(self.attr)}, severity {r.attributes.get('severity')}"
        return example(r, title, note)


def known_names(
    v: list[str], check: Callable[[str, int], Any], what: str | None = None
) -> list[str]:
    """Validate transform names by ``check(name, 1)`` (a pydantic validator body).

    With ``what`` an empty list is refused, asking for one ``what``; an unknown name fails
    with ``check``'s message; duplicates are dropped, the order kept.
    """
    for name in v:
        try:
            check(name, 1)
        except InputError as e:  # pydantic turns ValueError into the probe's one-line error
            raise ValueError(str(e)) from None
    if what is None:
        return list(dict.fromkeys(v))
    return distinct(v, empty=f"give at least one {what}")


def known_severities(v: list[int], top: int) -> list[int]:
    """Validate severities: a non-empty list of integers in ``1..top`` (sorted, deduplicated)."""
    if not v or any(not 1 <= s <= top for s in v):
        raise ValueError(f"severities must be a non-empty list of integers in 1..{top}")
    return sorted(set(v))


def classify(
    probe_: Probe,
    model: Any,
    batch: Sequence[Sample],
    cache: TextCache,
    *,
    template: str,
    question: str,
    max_new_tokens: int,
    seed: int,
) -> list[Record]:
    """Score a batch of labeled samples: zero-shot (dual) or short-answer VQA (generative).

    Records carry ``correct`` (0/1; an abstention is not correct), ``abstained`` and, for
    dual encoders, ``confidence`` (max softmax of ``logit_scale * cosines``).
    """
    if getattr(model, "kind", "dual") == "generative":
        return _ask(probe_, model, batch, question, max_new_tokens, seed)
    groups: dict[tuple[str, ...], list[Sample]] = {}
    for s in batch:
        groups.setdefault(tuple(s.metadata["classes"]), []).append(s)
    by_id: dict[str, Record] = {}
    for key, group in groups.items():
        classes = list(key)
        texts = class_prompts(classes, template)
        preds = predict(model, [s.pil_images()[0] for s in group], texts, cache)
        probs = softmax(logit_scale(model) * preds.cos)
        for s, idx, ab, p in zip(group, preds.index, preds.abstained, probs, strict=True):
            pred = classes[int(idx)]
            correct = float(pred == s.target and ab == 0.0)
            by_id[s.id] = probe_.record(
                s,
                output={"prediction": pred, "target": s.target},
                scores={"correct": correct, "abstained": float(ab), "confidence": float(p.max())},
            )
    return [by_id[s.id] for s in batch]


def _ask(
    probe_: Probe,
    model: Any,
    batch: Sequence[Sample],
    question: str,
    max_new_tokens: int,
    seed: int,
) -> list[Record]:
    from vlmtrust.core.model import GenerateRequest, generate_sync

    reqs = [
        GenerateRequest(
            prompt=question, images=tuple(s.pil_images()), max_new_tokens=max_new_tokens, seed=seed
        )
        for s in batch
    ]
    out = []
    for s, g in zip(batch, generate_sync(model, reqs), strict=True):
        if not g.ok:
            out.append(probe_.record(s, error=g.error))
            continue
        pred = answer_class(g.text, list(s.metadata["classes"]))
        out.append(
            probe_.record(
                s,
                output={"answer": g.text, "prediction": pred, "target": s.target},
                scores={"correct": float(pred == s.target), "abstained": 0.0},
            )
        )
    return out


def ratio(num: Any, den: Any) -> float:
    """``mean(num) / mean(den)`` (relative accuracy); raises when the denominator is 0."""
    d = float(np.mean(den))
    if d == 0:
        raise ZeroDivisionError("clean accuracy is 0")
    return float(np.mean(num)) / d


def paired_ratio_rows(
    records: Sequence[Record], attr: str, clean: str, only: str | None = None
) -> tuple[list[float], list[float]] | None:
    """Per clean image: (clean correct, mean correct of its variants), for a paired bootstrap.

    A record is clean when ``attributes[attr] == clean``; with ``only``, just the variants
    whose ``attributes[attr] == only`` count. ``None`` when no image has both.
    """
    base: dict[str, float] = {}
    var: dict[str, list[float]] = {}
    for r in records:
        key = r.attributes.get("base", r.sample_id)
        kind = r.attributes.get(attr)
        if kind == clean:
            base[key] = float(r.scores["correct"] or 0.0)
        elif only is None or kind == only:
            var.setdefault(key, []).append(float(r.scores["correct"] or 0.0))
    keys = [k for k in base if k in var]
    if not keys:
        return None
    return [base[k] for k in keys], [float(np.mean(var[k])) for k in keys]


def grid(
    records: Sequence[Record],
    score: str,
    row_attr: str,
    col_attr: str,
    *,
    col_order: Any = None,
) -> tuple[list[list[float | None]], list[str], list[str]]:
    """Mean ``score`` per ``row_attr`` (rows) x ``col_attr`` (columns); ``None`` if empty.

    Rows and columns come in order of appearance; ``col_order`` sorts the columns.
    """
    cells: dict[tuple[str, str], list[float]] = {}
    for r in records:
        key = (r.attributes[row_attr], r.attributes[col_attr])
        cells.setdefault(key, []).append(r.scores[score] or 0.0)
    rows = list(dict.fromkeys(k[0] for k in cells))
    cols = list(dict.fromkeys(k[1] for k in cells))
    if col_order is not None:
        cols.sort(key=col_order)
    matrix: list[list[float | None]] = [
        [float(np.mean(cells[(r, c)])) if (r, c) in cells else None for c in cols] for r in rows
    ]
    return matrix, rows, cols


def heatmap(
    grid_: tuple[list[list[float | None]], list[str], list[str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> list[Plot]:
    """A heatmap plot of a :func:`grid` (no plot when it is empty)."""
    matrix, rows, cols = grid_
    if not rows:
        return []
    return [
        Plot(
            kind="heatmap",
            title=title,
            x_label=x_label,
            y_label=y_label,
            matrix=matrix,
            row_labels=rows,
            col_labels=cols,
        )
    ]


def example(r: Record, title: str, note: str) -> Example:
    """A report example of a record: the model's answer (or prediction) vs the label."""
    return Example(
        sample_id=r.sample_id,
        title=title,
        output=str(r.output.get("answer", r.output.get("prediction"))),
        expected=str(r.output.get("target")),
        note=note,
    )


def accuracy_bars(
    records: Sequence[Record],
    group_of: Callable[[Record], str],
    groups: Sequence[str] | None = None,
    *,
    title: str,
    x_label: str,
) -> list[Plot]:
    """A bar plot of the mean ``correct`` score per group, in the order of ``groups``.

    ``groups`` defaults to the sorted groups of ``records``; no records then make no plot.
    """
    if groups is None:
        if not records:
            return []
        groups = sorted({group_of(r) for r in records})
    acc = [
        float(np.mean([r.scores["correct"] or 0.0 for r in records if group_of(r) == g]))
        for g in groups
    ]
    series = [Series(name="accuracy", x=list(groups), y=list(acc))]
    return [Plot(kind="bar", title=title, x_label=x_label, y_label="accuracy", series=series)]


def accuracy_metric(
    correct: Sequence[Any],
    groups: Sequence[str],
    group_by: str,
    description: str,
    *,
    seed: int,
) -> MetricResult:
    """The headline ``accuracy`` metric (CI, per-group breakdown, thresholds 80 % / 50 %)."""
    return share_metric(
        MetricKey(metric="accuracy"),
        correct,
        description,
        higher_is_better=True,
        thresholds=(0.8, 0.5),
        seed=seed,
        groups=groups,
        group_by=group_by,
        headline=True,
    )
