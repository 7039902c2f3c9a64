"""``robustness/corruptions`` — accuracy under ImageNet-C natural corruptions.

Every clean image is evaluated once clean and once per (corruption type, severity)
(Hendrycks & Dietterich 2019; :mod:`vlmtrust.attacks.corruptions`). Dual encoders are scored by
zero-shot classification, generative models by short-answer VQA ("What shape is in the image?
Answer with one word.", matched leniently: the first class named among the answer's first
words). Metrics: clean accuracy, accuracy per type (per severity as groups), mean corruption
accuracy (mCA, over every type and severity), and the relative robustness ``mCA / acc_clean``
(headline; bootstrap CI over clean images).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from vlmtrust.attacks.corruptions import CATEGORIES, CORRUPTIONS, check_corruption, corrupt
from vlmtrust.core.errors import InputError
from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import Example, MetricResult, Plot, Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.stats import accuracy, metric
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes.robustness import _zeroshot as zs


class CorruptionsParams(Params):
    """Parameters of ``robustness/corruptions``."""

    n: int = Field(8, ge=1, le=100_000, description="clean images (each gets every corruption)")
    corruptions: list[str] = Field(
        default_factory=lambda: list(CORRUPTIONS), description="ImageNet-C corruption types"
    )
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    template: str = Field(zs.DEFAULT_TEMPLATE, description="class prompt (dual encoders)")
    question: str = Field(zs.VQA_QUESTION, description="question (generative models)")
    max_new_tokens: int = Field(8, ge=1, le=256)

    @field_validator("corruptions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one corruption type")
        for name in v:
            try:
                check_corruption(name, 1)
            except InputError as e:  # pydantic turns ValueError into the probe's one-line error
                raise ValueError(str(e)) from None
        return list(dict.fromkeys(v))

    @field_validator("severities")
    @classmethod
    def _sev(cls, v: list[int]) -> list[int]:
        if not v or any(not 1 <= s <= 5 for s in v):
            raise ValueError("severities must be a non-empty list of integers in 1..5")
        return sorted(set(v))


def evaluate_classification(
    probe_: Probe,
    model: Any,
    batch: Sequence[Sample],
    cache: zs.TextCache,
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
        from vlmtrust.core.model import GenerateRequest, generate_sync

        reqs = [
            GenerateRequest(
                prompt=question,
                images=tuple(s.pil_images()),
                max_new_tokens=max_new_tokens,
                seed=seed,
            )
            for s in batch
        ]
        gens = generate_sync(model, reqs)
        out = []
        for s, g in zip(batch, gens, strict=True):
            if not g.ok:
                out.append(probe_.record(s, error=g.error))
                continue
            classes = list(s.metadata["classes"])
            pred = zs.answer_class(g.text, classes)
            out.append(
                probe_.record(
                    s,
                    output={"answer": g.text, "prediction": pred, "target": s.target},
                    scores={"correct": float(pred == s.target), "abstained": 0.0},
                )
            )
        return out
    groups: dict[tuple[str, ...], list[Sample]] = {}
    for s in batch:
        groups.setdefault(tuple(s.metadata["classes"]), []).append(s)
    by_id: dict[str, Record] = {}
    for key, group in groups.items():
        classes = list(key)
        texts = zs.class_prompts(classes, template)
        preds = zs.predict(model, [s.pil_images()[0] for s in group], texts, cache)
        probs = zs.softmax(zs.logit_scale(model) * preds.cos)
        for s, idx, ab, p in zip(group, preds.index, preds.abstained, probs, strict=True):
            pred = classes[int(idx)]
            correct = float(pred == s.target and ab == 0.0)
            by_id[s.id] = probe_.record(
                s,
                output={"prediction": pred, "target": s.target},
                scores={"correct": correct, "abstained": float(ab), "confidence": float(p.max())},
            )
    return [by_id[s.id] for s in batch]


@probe("robustness/corruptions")
class Corruptions(zs.ZeroShotProbe):
    """Accuracy under 15 ImageNet-C corruptions x 5 severities, relative to clean accuracy."""

    pillar = Pillar.ROBUSTNESS
    requires = Capability.NONE
    requires_any = Capability.EMBED | Capability.GENERATE
    Params = CorruptionsParams
    batch_size = 64
    description = (
        "Natural corruptions (ImageNet-C: noise, blur, weather, digital; 5 severities): "
        "accuracy per type and severity, and relative robustness = corrupted / clean accuracy."
    )

    params: CorruptionsParams

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars)."""
        if ctx.data is not None:
            return None
        per = 1 + len(self.params.corruptions) * len(self.params.severities)
        return ctx.size(self.params.n) * per

    def samples(self, ctx: ProbeContext) -> Iterable[Any]:
        """Clean images, then each one under every corruption and severity."""
        return self._gen(ctx)

    def _gen(self, ctx: ProbeContext) -> Iterator[Any]:
        bases, errors, classes = zs.base_images(ctx, self.params.n, purpose="corruptions")
        yield from errors
        for b_i, b in enumerate(bases):
            attrs = {**b.attributes, "corruption": "none", "severity": "0", "base": b.id}
            yield zs.make_sample(f"{b.id}/clean", b.image, b.label, classes, attributes=attrs)
            for name in self.params.corruptions:
                for sev in self.params.severities:
                    seed = (ctx.seed * 1_000_003 + b_i) & 0x7FFFFFFF
                    img = corrupt(b.image, name, sev, seed=seed)
                    attrs = {
                        **b.attributes,
                        "corruption": name,
                        "severity": str(sev),
                        "base": b.id,
                    }
                    yield zs.make_sample(
                        f"{b.id}/{name}/{sev}", img, b.label, classes, attributes=attrs
                    )

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Classify (dual) or ask (generative) each image."""
        return evaluate_classification(
            self,
            model,
            batch,
            self._cache,
            template=self.params.template,
            question=self.params.question,
            max_new_tokens=self.params.max_new_tokens,
            seed=ctx.seed,
        )

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Clean accuracy, per-type accuracy, mCA and relative robustness."""
        clean = [r for r in records if r.attributes.get("corruption") == "none"]
        corrupted = [r for r in records if r.attributes.get("corruption") != "none"]
        out: list[MetricResult] = []
        if clean:
            out.append(
                metric(
                    "clean_accuracy",
                    accuracy,
                    [r.scores["correct"] for r in clean],
                    higher_is_better=True,
                    description="accuracy on the uncorrupted images",
                    unit="%",
                    seed=ctx.seed,
                )
            )
        if not corrupted:
            return out
        rel = relative_robustness_rows(records)
        if rel is not None:
            clean_c, corr_c = rel
            out.append(
                metric(
                    "relative_robustness",
                    _ratio,
                    corr_c,
                    clean_c,
                    higher_is_better=True,
                    thresholds=(0.8, 0.6),
                    description="mean corruption accuracy / clean accuracy (1 = unaffected)",
                    headline=True,
                    seed=ctx.seed,
                )
            )
        out.append(
            metric(
                "mean_corruption_accuracy",
                accuracy,
                [r.scores["correct"] for r in corrupted],
                higher_is_better=True,
                groups=[r.attributes["severity"] for r in corrupted],
                group_by="severity",
                description="accuracy over every corruption type and severity (mCA)",
                unit="%",
                seed=ctx.seed,
            )
        )
        for name in dict.fromkeys(r.attributes["corruption"] for r in corrupted):
            rows = [r for r in corrupted if r.attributes["corruption"] == name]
            out.append(
                metric(
                    f"accuracy/{name}",
                    accuracy,
                    [r.scores["correct"] for r in rows],
                    higher_is_better=True,
                    groups=[r.attributes["severity"] for r in rows],
                    group_by="severity",
                    description=f"accuracy under {name} ({CATEGORIES[name]}), all severities",
                    unit="%",
                    seed=ctx.seed,
                    ci=False,
                )
            )
            rel_c = relative_robustness_rows(records, name)
            if rel_c is not None and any(rel_c[0]):
                out.append(
                    metric(
                        f"relative_robustness/{name}",
                        _ratio,
                        rel_c[1],
                        rel_c[0],
                        higher_is_better=True,
                        thresholds=(0.8, 0.6),
                        description=(
                            f"acc_{name} / acc_clean on the same images, all severities "
                            "(1 = unaffected)"
                        ),
                        seed=ctx.seed,
                    )
                )
        abst = [r.scores.get("abstained") or 0.0 for r in records]
        if any(abst):
            out.append(
                metric(
                    "abstention_rate",
                    accuracy,
                    abst,
                    higher_is_better=False,
                    description="share of images the model abstained on (counted as errors)",
                    unit="%",
                    seed=ctx.seed,
                )
            )
        return out

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Heatmap of accuracy per corruption type x severity."""
        matrix, rows, cols = accuracy_matrix(records)
        if not rows:
            return []
        return [
            Plot(
                kind="heatmap",
                title="Accuracy per corruption and severity",
                x_label="severity",
                y_label="corruption",
                matrix=matrix,
                row_labels=rows,
                col_labels=cols,
            )
        ]

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """One misclassified image for each of the worst corruption types."""
        matrix, rows, _ = accuracy_matrix(records)
        means = {
            r: float(np.mean([v for v in row if v is not None]))
            for r, row in zip(rows, matrix, strict=True)
        }
        out = []
        for name in sorted(means, key=means.__getitem__)[:4]:
            wrong = [
                r
                for r in records
                if r.attributes.get("corruption") == name and r.scores.get("correct") == 0.0
            ]
            if wrong:
                r = max(wrong, key=lambda r: int(r.attributes.get("severity", "0")))
                out.append(
                    Example(
                        sample_id=r.sample_id,
                        title=f"{name}, severity {r.attributes.get('severity')}",
                        output=str(r.output.get("answer", r.output.get("prediction"))),
                        expected=str(r.output.get("target")),
                        note=f"accuracy under {name}: {means[name]:.0%}",
                    )
                )
        return out


def _ratio(num: Any, den: Any) -> float:
    d = float(np.mean(den))
    if d == 0:
        raise ZeroDivisionError("clean accuracy is 0")
    return float(np.mean(num)) / d


def relative_robustness_rows(
    records: Sequence[Record], corruption: str | None = None
) -> tuple[list[float], list[float]] | None:
    """Per clean image: (clean correct, mean corrupted correct), for a paired bootstrap.

    ``corruption``: only that corruption type's rows count as corrupted (``acc_c``).
    """
    clean: dict[str, float] = {}
    corr: dict[str, list[float]] = {}
    for r in records:
        base = r.attributes.get("base", r.sample_id)
        kind = r.attributes.get("corruption")
        if kind == "none":
            clean[base] = float(r.scores["correct"] or 0.0)
        elif corruption is None or kind == corruption:
            corr.setdefault(base, []).append(float(r.scores["correct"] or 0.0))
    keys = [k for k in clean if k in corr]
    if not keys:
        return None
    return [clean[k] for k in keys], [float(np.mean(corr[k])) for k in keys]


def accuracy_matrix(
    records: Sequence[Record],
) -> tuple[list[list[float | None]], list[str], list[str]]:
    """Accuracy per corruption (rows) x severity (columns)."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in records:
        name = r.attributes.get("corruption", "none")
        if name == "none":
            continue
        cells.setdefault((name, r.attributes["severity"]), []).append(r.scores["correct"] or 0.0)
    rows = list(dict.fromkeys(k[0] for k in cells))
    cols = sorted({k[1] for k in cells}, key=int)
    matrix: list[list[float | None]] = [
        [float(np.mean(cells[(r, c)])) if (r, c) in cells else None for c in cols] for r in rows
    ]
    return matrix, rows, cols
