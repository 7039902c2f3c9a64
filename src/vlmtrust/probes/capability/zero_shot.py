"""``capability/zero_shot`` — top-1 zero-shot classification accuracy of a dual encoder."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import Example, MetricKey, MetricResult, Plot, Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.stats import accuracy, metric
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes import _data
from vlmtrust.probes.families import labeled_image as li


class ZeroShotParams(Params):
    """Parameters of ``capability/zero_shot``."""

    n: int = Field(200, ge=1, le=1_000_000, description="samples from the default data")
    template: str = Field("a photo of a {}", description="class prompt; {} is the class name")
    classes: list[str] | None = Field(
        None, description="class names (default: from the dataset's labels)"
    )


@probe("capability/zero_shot")
class ZeroShot(Probe):
    """Top-1 zero-shot accuracy over labeled images, per class."""

    pillar = Pillar.CAPABILITY
    requires = Capability.EMBED
    Params = ZeroShotParams
    batch_size = 64
    description = (
        "Zero-shot classification: each image is assigned the class whose prompt embedding is "
        "closest. Trust numbers mean little without capability beside them."
    )

    params: ZeroShotParams

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        from vlmtrust.attacks.zeroshot import TextCache

        self._texts = TextCache()
        self._names: dict[str | None, list[str]] = {}

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars)."""
        return ctx.size(self.params.n) if ctx.data is None else _data.count(ctx)

    def class_names(self, ctx: ProbeContext) -> list[str]:
        """The label set."""
        if self.params.classes:
            return list(self.params.classes)
        if ctx.data not in self._names:  # reading a dataset's labels once, not per batch
            self._names[ctx.data] = _data.class_names(ctx)
        return self._names[ctx.data]

    def samples(self, ctx: ProbeContext) -> Iterable[Any]:
        """Labeled images: the user's dataset, or SynthWorld shapes."""
        return _data.labeled_images(ctx, self.params.n, purpose="zero_shot")

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Classify a batch (an abstaining model's abstentions count as wrong)."""
        from vlmtrust.attacks import zeroshot as zs

        names = self.class_names(ctx)
        for s in batch:
            if s.target not in names:
                raise ValueError(f"sample {s.id}: label {s.target!r} is not among the classes")
        prompts = [self.params.template.format(c) for c in names]
        pred = zs.predict(model, [s.images[0].load() for s in batch], prompts, self._texts)
        out = []
        for i, s in enumerate(batch):
            label = names[int(pred.index[i])]
            abstained = bool(pred.abstained[i])
            out.append(
                self.record(
                    s,
                    output={"prediction": None if abstained else label, "target": s.target},
                    scores={
                        "correct": float(label == s.target and not abstained),
                        "abstained": float(abstained),
                        "margin": float(np.max(pred.cos[i])),
                    },
                )
            )
        return out

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Top-1 accuracy with a CI and per-class values."""
        correct = [r.scores["correct"] for r in records]
        labels = [str(r.output["target"]) for r in records]
        abstained = [r.scores.get("abstained") or 0.0 for r in records]
        extra = []
        if any(abstained):
            extra.append(
                metric(
                    MetricKey(metric="abstention_rate"),
                    accuracy,
                    abstained,
                    higher_is_better=False,
                    description="share of images the (guarded) model declined to classify",
                    unit="%",
                    seed=ctx.seed,
                )
            )
        desc = "top-1 zero-shot accuracy"
        return extra + [li.accuracy_metric(correct, labels, "class", desc, seed=ctx.seed)]

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Per-class accuracy bars."""
        return li.accuracy_bars(
            records,
            lambda r: str(r.output["target"]),
            title="Accuracy per class",
            x_label="class",
        )

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """A few misclassified images."""
        wrong = [r for r in records if r.scores.get("correct") == 0.0][:6]
        return [
            Example(
                sample_id=r.sample_id,
                title="misclassified",
                output=str(r.output["prediction"]),
                expected=str(r.output["target"]),
            )
            for r in wrong
        ]
