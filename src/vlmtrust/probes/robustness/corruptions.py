"""``robustness/corruptions`` — accuracy under ImageNet-C natural corruptions.

A labeled-image probe (:mod:`vlmtrust.probes.families.labeled_image`): every clean image is
evaluated once clean and once per (corruption type, severity) (Hendrycks & Dietterich 2019;
:mod:`vlmtrust.attacks.corruptions`). Metrics: clean accuracy, accuracy per type (per severity
as groups), mean corruption accuracy (mCA, over every type and severity), and the relative
robustness ``mCA / acc_clean`` (headline; bootstrap CI over clean images), overall and per type.

Measured effect: docs/results/robustness.md#corruptions
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from pydantic import Field, field_validator

from vlmtrust.attacks.corruptions import CATEGORIES, CORRUPTIONS, check_corruption, corrupt
from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Example, MetricResult, Plot, Record
from vlmtrust.core.types import Pillar
from vlmtrust.probes.families import labeled_image as li


def known_corruptions(v: list[str]) -> list[str]:
    """Validate corruption names (a pydantic validator body; duplicates dropped)."""
    for name in v:
        try:
            check_corruption(name, 1)
        except InputError as e:  # pydantic turns ValueError into the probe's one-line error
            raise ValueError(str(e)) from None
    return list(dict.fromkeys(v))


class CorruptionsParams(li.AskParams):
    """Parameters of ``robustness/corruptions``."""

    n: int = Field(8, ge=1, le=100_000, description="clean images (each gets every corruption)")
    corruptions: list[str] = Field(
        default_factory=lambda: list(CORRUPTIONS), description="ImageNet-C corruption types"
    )
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])

    @field_validator("corruptions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one corruption type")
        return known_corruptions(v)

    @field_validator("severities")
    @classmethod
    def _sev(cls, v: list[int]) -> list[int]:
        if not v or any(not 1 <= s <= 5 for s in v):
            raise ValueError("severities must be a non-empty list of integers in 1..5")
        return sorted(set(v))


@probe("robustness/corruptions")
class Corruptions(li.LabeledImageProbe):
    """Accuracy under 15 ImageNet-C corruptions x 5 severities, relative to clean accuracy."""

    pillar = Pillar.ROBUSTNESS
    Params = CorruptionsParams
    description = (
        "Natural corruptions (ImageNet-C: noise, blur, weather, digital; 5 severities): "
        "accuracy per type and severity, and relative robustness = corrupted / clean accuracy."
    )

    params: CorruptionsParams

    def variants_per_image(self) -> int:
        """Clean plus every corruption x severity."""
        return 1 + len(self.params.corruptions) * len(self.params.severities)

    def variants(self, base: li.Base, index: int, ctx: ProbeContext) -> Iterator[li.Variant]:
        """The clean image, then every corruption at every severity."""
        yield li.Variant("clean", base.image, {"corruption": "none", "severity": "0"})
        seed = (ctx.seed * 1_000_003 + index) & 0x7FFFFFFF
        for name in self.params.corruptions:
            for sev in self.params.severities:
                img = corrupt(base.image, name, sev, seed=seed)
                yield li.Variant(f"{name}/{sev}", img, {"corruption": name, "severity": str(sev)})

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Clean accuracy, per-type accuracy, mCA and relative robustness."""
        return self.shift_metrics(
            records,
            ctx,
            attr="corruption",
            clean="none",
            noun="corruption",
            mean_key="mean_corruption_accuracy",
            type_note=CATEGORIES.__getitem__,
            clean_desc="accuracy on the uncorrupted images",
            mean_desc="accuracy over every corruption type and severity (mCA)",
        )

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Heatmap of accuracy per corruption type x severity."""
        title = "Accuracy per corruption and severity"
        return li.heatmap(
            accuracy_matrix(records), title=title, x_label="severity", y_label="corruption"
        )

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
                title = f"{name}, severity {r.attributes.get('severity')}"
                out.append(li.example(r, title, f"accuracy under {name}: {means[name]:.0%}"))
        return out


def accuracy_matrix(
    records: Sequence[Record],
) -> tuple[list[list[float | None]], list[str], list[str]]:
    """Accuracy per corruption (rows) x severity (columns)."""
    corrupted = [r for r in records if r.attributes.get("corruption", "none") != "none"]
    return li.grid(corrupted, "correct", "corruption", "severity", col_order=int)
