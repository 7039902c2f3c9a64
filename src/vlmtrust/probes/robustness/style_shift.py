"""``robustness/style_shift`` — accuracy when the scene is drawn in another style.

A labeled-image probe (:mod:`vlmtrust.probes.families.labeled_image`) after MultiTrust's
artistic and sensor-style out-of-distribution tasks (R.1/R.2, Zhang et al. 2024): every clean
image is evaluated once as it is and once per (style, severity) of :mod:`vlmtrust.attacks.styles`
— sketch, painting/posterised, infrared-like, night, low-light sensor noise. Dual encoders
classify zero-shot; generative models answer the shape question (VQA). Metrics: clean accuracy,
accuracy per style (per severity as groups), mean style accuracy, and the relative robustness
``mean style accuracy / clean accuracy`` (headline; paired bootstrap CI over clean images),
overall and per style. The plot shows accuracy per style beside clean.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pydantic import Field, field_validator

from vlmtrust.attacks.styles import KIND, SEVERITIES, STYLES, check_style, stylize
from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Example, MetricResult, Plot, Record
from vlmtrust.core.types import Pillar
from vlmtrust.probes.families import labeled_image as li


class StyleShiftParams(li.AskParams):
    """Parameters of ``robustness/style_shift``."""

    n: int = Field(24, ge=1, le=100_000, description="clean images (each gets every style)")
    styles: list[str] = Field(default_factory=lambda: list(STYLES), description="style shifts")
    severities: list[int] = Field(default_factory=lambda: list(SEVERITIES))

    @field_validator("styles")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one style")
        for name in v:
            try:
                check_style(name, 1)
            except InputError as e:
                raise ValueError(str(e)) from None
        return list(dict.fromkeys(v))

    @field_validator("severities")
    @classmethod
    def _sev(cls, v: list[int]) -> list[int]:
        if not v or any(s not in SEVERITIES for s in v):
            raise ValueError("severities must be a non-empty list of integers in 1..3")
        return sorted(set(v))


@probe("robustness/style_shift")
class StyleShift(li.LabeledImageProbe):
    """Accuracy on the same scenes as sketch, painting, infrared, night and low-light images."""

    pillar = Pillar.ROBUSTNESS
    Params = StyleShiftParams
    description = (
        "Artistic and sensor-style shift (MultiTrust R.1/R.2): accuracy per style (sketch, "
        "painting, infrared, night, low light; 3 severities) relative to the clean scenes."
    )

    params: StyleShiftParams

    def variants_per_image(self) -> int:
        """Clean plus every style x severity."""
        return 1 + len(self.params.styles) * len(self.params.severities)

    def variants(self, base: li.Base, index: int, ctx: ProbeContext) -> Iterator[li.Variant]:
        """The clean image, then every style at every severity."""
        yield li.Variant("clean", base.image, {"style": "none", "severity": "0"})
        seed = (ctx.seed * 1_000_003 + index) & 0x7FFFFFFF
        for name in self.params.styles:
            for sev in self.params.severities:
                img = stylize(base.image, name, sev, seed=seed)
                yield li.Variant(f"{name}/{sev}", img, {"style": name, "severity": str(sev)})

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Clean accuracy, accuracy per style, mean style accuracy and relative robustness."""
        return self.shift_metrics(
            records,
            ctx,
            attr="style",
            clean="none",
            noun="style",
            mean_key="mean_style_accuracy",
            type_note=lambda name: f"{KIND[name]} style",
            clean_desc="accuracy on the scenes as rendered",
        )

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Accuracy per style (clean first), and per style x severity."""
        order = ["none", *self.params.styles]
        bars = li.accuracy_bars(
            records,
            lambda r: str(r.attributes.get("style", "none")),
            [s for s in order if any(r.attributes.get("style") == s for r in records)],
            title="Accuracy per style (none = as rendered)",
            x_label="style",
        )
        shifted = [r for r in records if r.attributes.get("style", "none") != "none"]
        grid = li.grid(shifted, "correct", "style", "severity", col_order=int)
        heat = li.heatmap(
            grid, title="Accuracy per style and severity", x_label="severity", y_label="style"
        )
        return bars + heat

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """One misclassified image of each style at its strongest severity."""
        out = []
        for name in self.params.styles:
            wrong = [
                r
                for r in records
                if r.attributes.get("style") == name and r.scores.get("correct") == 0.0
            ]
            if wrong:
                r = max(wrong, key=lambda r: int(r.attributes.get("severity", "0")))
                title = f"{name}, severity {r.attributes.get('severity')}"
                out.append(li.example(r, title, f"{KIND[name]} style shift"))
        return out[:4]
