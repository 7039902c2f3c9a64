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

from collections.abc import Sequence

from PIL import Image
from pydantic import Field, field_validator

from vlmtrust.attacks.styles import KIND, SEVERITIES, STYLES, check_style, stylize
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Example, Plot, Record
from vlmtrust.core.types import Pillar
from vlmtrust.probes.families import labeled_image as li


class StyleShiftParams(li.SeverityParams):
    """Parameters of ``robustness/style_shift``."""

    n: int = Field(24, ge=1, le=100_000, description="clean images (each gets every style)")
    styles: list[str] = Field(default_factory=lambda: list(STYLES), description="style shifts")
    severities: list[int] = Field(default_factory=lambda: list(SEVERITIES))
    severity_top = max(SEVERITIES)

    @field_validator("styles")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return li.known_names(v, check_style, "style")


@probe("robustness/style_shift")
class StyleShift(li.SeverityGridProbe):
    """Accuracy on the same scenes as sketch, painting, infrared, night and low-light images."""

    pillar = Pillar.ROBUSTNESS
    Params = StyleShiftParams
    description = (
        "Artistic and sensor-style shift (MultiTrust R.1/R.2): accuracy per style (sketch, "
        "painting, infrared, night, low light; 3 severities) relative to the clean scenes."
    )
    attr = "style"
    clean_desc = "accuracy on the scenes as rendered"
    params: StyleShiftParams

    def type_note(self, name: str) -> str:
        """The style's kind (artistic or sensor)."""
        return f"{KIND[name]} style"

    def shift_names(self) -> list[str]:
        """The styles."""
        return list(self.params.styles)

    def shift(self, image: Image.Image, name: str, severity: int, seed: int) -> Image.Image:
        """Style ``name`` at ``severity``."""
        return stylize(image, name, severity, seed=seed)

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
            r = self.strongest_miss(records, name)
            if r is not None:
                out.append(self.miss_example(r, f"{KIND[name]} style shift"))
        return out[:4]
