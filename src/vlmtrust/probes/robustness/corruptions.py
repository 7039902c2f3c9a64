"""``robustness/corruptions`` — accuracy under ImageNet-C natural corruptions.

A labeled-image probe (:mod:`vlmtrust.probes.families.labeled_image`): every clean image is
evaluated once clean and once per (corruption type, severity) (Hendrycks & Dietterich 2019;
:mod:`vlmtrust.attacks.corruptions`). Metrics: clean accuracy, accuracy per type (per severity
as groups), mean corruption accuracy (mCA, over every type and severity), and the relative
robustness ``mCA / acc_clean`` (headline; bootstrap CI over clean images), overall and per type.

Measured effect: docs/results/robustness.md#corruptions
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from pydantic import Field, field_validator

from vlmtrust.attacks.corruptions import CATEGORIES, CORRUPTIONS, check_corruption, corrupt
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Example, Plot, Record
from vlmtrust.core.types import Pillar
from vlmtrust.probes.families import labeled_image as li


def known_corruptions(v: list[str]) -> list[str]:
    """Validate corruption names (a pydantic validator body; duplicates dropped)."""
    return li.known_names(v, check_corruption)


class CorruptionsParams(li.SeverityParams):
    """Parameters of ``robustness/corruptions``."""

    n: int = Field(8, ge=1, le=100_000, description="clean images (each gets every corruption)")
    corruptions: list[str] = Field(
        default_factory=lambda: list(CORRUPTIONS), description="ImageNet-C corruption types"
    )
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])

    @field_validator("corruptions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return li.known_names(v, check_corruption, "corruption type")


@probe("robustness/corruptions")
class Corruptions(li.SeverityGridProbe):
    """Accuracy under 15 ImageNet-C corruptions x 5 severities, relative to clean accuracy."""

    pillar = Pillar.ROBUSTNESS
    Params = CorruptionsParams
    description = (
        "Natural corruptions (ImageNet-C: noise, blur, weather, digital; 5 severities): "
        "accuracy per type and severity, and relative robustness = corrupted / clean accuracy."
    )
    attr = "corruption"
    clean_desc = "accuracy on the uncorrupted images"
    mean_desc = "accuracy over every corruption type and severity (mCA)"

    params: CorruptionsParams

    def shift_names(self) -> list[str]:
        """The corruption types."""
        return list(self.params.corruptions)

    def shift(self, image: Image.Image, name: str, severity: int, seed: int) -> Image.Image:
        """ImageNet-C corruption ``name`` at ``severity``."""
        return corrupt(image, name, severity, seed=seed)

    def type_note(self, name: str) -> str:
        """The corruption's family (noise, blur, weather, digital)."""
        return CATEGORIES[name]

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
            r = self.strongest_miss(records, name)
            if r is not None:
                out.append(self.miss_example(r, f"accuracy under {name}: {means[name]:.0%}"))
        return out


def accuracy_matrix(
    records: Sequence[Record],
) -> tuple[list[list[float | None]], list[str], list[str]]:
    """Accuracy per corruption (rows) x severity (columns)."""
    corrupted = [r for r in records if r.attributes.get("corruption", "none") != "none"]
    return li.grid(corrupted, "correct", "corruption", "severity", col_order=int)
