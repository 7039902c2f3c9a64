"""``robustness/calibration`` — expected calibration error of zero-shot predictions.

Confidence is the top softmax probability of ``logit_scale * cosines`` (the model's own learned
temperature, as CLIP uses it). ECE with 15 equal-width bins (Guo et al. 2017; REFERENCE.md):
``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|``. Computed on clean images and on the same images
under ImageNet-C corruptions (a model that is confident *and* wrong under shift is the risk),
with reliability diagrams for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import Field, field_validator

from vlmtrust.attacks.corruptions import corrupt
from vlmtrust.core.params import Params
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import MetricKey, MetricResult, Plot, Record, Series
from vlmtrust.core.stats import accuracy, metric
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes._plots import one_plot
from vlmtrust.probes.families import labeled_image as li
from vlmtrust.probes.robustness.corruptions import known_corruptions

N_BINS = 15


def _bins(confidence: NDArray[np.float64], n_bins: int) -> NDArray[np.int64]:
    # equal-width bins (lo, hi]; confidence 0 goes to the first bin
    idx = np.ceil(confidence * n_bins).astype(np.int64) - 1
    return np.clip(idx, 0, n_bins - 1)


def expected_calibration_error(
    correct: ArrayLike, confidence: ArrayLike, *, n_bins: int = N_BINS
) -> float:
    """ECE with ``n_bins`` equal-width confidence bins.

    Example:
        >>> round(expected_calibration_error([1, 0, 1, 1], [0.9, 0.9, 0.6, 0.6]), 6)
        0.4
    """
    c = np.asarray(correct, dtype=np.float64)
    p = np.asarray(confidence, dtype=np.float64)
    if c.size == 0 or c.shape != p.shape:
        raise ValueError("ECE needs equal-length, non-empty correctness and confidence arrays")
    b = _bins(p, n_bins)
    acc_sum = np.bincount(b, weights=c, minlength=n_bins)
    conf_sum = np.bincount(b, weights=p, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / c.size)


def reliability(
    correct: ArrayLike, confidence: ArrayLike, *, n_bins: int = N_BINS
) -> tuple[list[float], list[float | None], list[float | None], list[int]]:
    """Per bin: centre, accuracy, mean confidence and count (``None`` for empty bins)."""
    c = np.asarray(correct, dtype=np.float64)
    p = np.asarray(confidence, dtype=np.float64)
    b = _bins(p, n_bins)
    centres = [(i + 0.5) / n_bins for i in range(n_bins)]
    accs: list[float | None] = []
    confs: list[float | None] = []
    counts: list[int] = []
    for i in range(n_bins):
        m = b == i
        counts.append(int(m.sum()))
        accs.append(float(c[m].mean()) if m.any() else None)
        confs.append(float(p[m].mean()) if m.any() else None)
    return centres, accs, confs, counts


class CalibrationParams(Params):
    """Parameters of ``robustness/calibration``."""

    n: int = Field(40, ge=1, le=1_000_000, description="clean images")
    corruptions: list[str] = Field(
        default_factory=lambda: [
            "gaussian_noise",
            "defocus_blur",
            "fog",
            "contrast",
            "jpeg_compression",
        ],
        description="corruptions for the shifted condition",
    )
    severity: int = Field(3, ge=1, le=5)
    template: str = Field(li.DEFAULT_TEMPLATE, description="class prompt")
    n_bins: int = Field(N_BINS, ge=2, le=100)

    @field_validator("corruptions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return known_corruptions(v)


@probe("robustness/calibration")
class Calibration(li.LabeledImageProbe):
    """ECE and reliability diagrams of zero-shot confidence, clean vs corrupted."""

    pillar = Pillar.ROBUSTNESS
    requires = Capability.EMBED
    requires_any = Capability.NONE
    Params = CalibrationParams
    description = (
        "Calibration: does the zero-shot confidence match the accuracy? ECE (15 bins) and "
        "reliability diagrams on clean and corrupted images."
    )

    params: CalibrationParams

    def variants_per_image(self) -> int:
        """Clean plus each configured corruption."""
        return 1 + len(self.params.corruptions)

    def variants(self, base: li.Base, index: int, ctx: ProbeContext) -> Iterator[li.Variant]:
        """The clean image, then each configured corruption (one severity)."""
        yield li.Variant("clean", base.image, {"condition": "clean", "corruption": "none"})
        for name in self.params.corruptions:
            img = corrupt(base.image, name, self.params.severity, seed=(ctx.seed * 7919 + index))
            yield li.Variant(name, img, {"condition": "corrupted", "corruption": name})

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """ECE, accuracy and mean confidence per condition."""
        out: list[MetricResult] = []
        nb = self.params.n_bins

        def ece(c: Any, p: Any) -> float:
            return expected_calibration_error(c, p, n_bins=nb)

        for cond in ("clean", "corrupted"):
            rows = [r for r in records if r.attributes.get("condition") == cond]
            if not rows:
                continue
            c = [r.scores["correct"] for r in rows]
            p = [r.scores["confidence"] for r in rows]
            groups = [r.attributes["corruption"] for r in rows] if cond == "corrupted" else None
            group_by = "corruption" if groups else None
            table: list[tuple[str, Callable[..., float], tuple[Any, ...], bool, str, str]] = [
                ("ece", ece, (c, p), False, "", f"expected calibration error ({nb} bins)"),
                ("accuracy", accuracy, (c,), True, "%", "zero-shot accuracy"),
                ("overconfidence", _gap, (p, c), False, "%", "mean confidence - accuracy"),
                ("confidence", accuracy, (p,), False, "%", "mean top-1 confidence"),
            ]
            for name, fn, arrays, higher, unit, what in table:
                # Overconfidence is best at 0 (calibrated); mean confidence is descriptive.
                direction: dict[str, Any] = _DIRECTION.get(name, {})
                ece_kw: dict[str, Any] = {
                    "groups": groups,
                    "group_by": group_by,
                    "thresholds": (0.1, 0.2),
                    "headline": cond == "corrupted",
                }
                out.append(
                    metric(
                        MetricKey(metric=name, condition=cond),
                        fn,
                        *arrays,
                        higher_is_better=higher,
                        description=f"{what}, {cond} images{_NOTE.get(name, '')}",
                        unit=unit,
                        seed=ctx.seed,
                        **direction,
                        **(ece_kw if name == "ece" else {"ci": name != "confidence"}),
                    )
                )
        return out

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Reliability diagram: accuracy per confidence bin, clean and corrupted."""
        series = []
        for cond in ("clean", "corrupted"):
            rows = [r for r in records if r.attributes.get("condition") == cond]
            if not rows:
                continue
            centres, accs, _, _ = reliability(
                [r.scores["correct"] or 0.0 for r in rows],
                [r.scores["confidence"] or 0.0 for r in rows],
                n_bins=self.params.n_bins,
            )
            series.append(Series(name=cond, x=centres, y=accs))
        return one_plot(
            "reliability",
            "Reliability diagram (perfect calibration: the diagonal)",
            "confidence",
            "accuracy",
            series,
        )


_DIRECTION: dict[str, dict[str, Any]] = {
    "overconfidence": {"better": "target", "target": 0.0},
    "confidence": {"better": "none"},
}
_NOTE = {"overconfidence": " (> 0: overconfident)", "confidence": " (compare with accuracy)"}


def _gap(confidence: Any, correct: Any) -> float:
    return float(np.mean(confidence) - np.mean(correct))
