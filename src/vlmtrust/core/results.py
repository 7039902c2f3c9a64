"""What a run writes to disk: records, metrics, plots, examples and the :class:`AuditLog`.

The schema is versioned (:data:`SCHEMA_VERSION`); its JSON Schema is committed at
``src/vlmtrust/schema/auditlog.schema.json`` and a test fails when it drifts without a bump.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vlmtrust.core.types import Pillar, RiskBand

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Record(_Model):
    """One sample's outcome, written to ``samples/<probe>.jsonl`` as soon as it completes.

    ``output`` holds what the model produced (texts are untrusted: escape when rendering);
    ``scores`` the per-sample numbers the probe aggregates. A failed sample has ``error`` set.
    """

    sample_id: str
    index: int = Field(description="position of the sample in the probe's sample stream")
    attributes: dict[str, str] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, float | None] = Field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the sample was evaluated without error."""
        return self.error is None


class Thresholds(_Model):
    """Risk-band thresholds for a metric: values beyond ``moderate`` / ``high`` raise the band.

    For a higher-is-better metric, a value below ``moderate`` is moderate risk and below
    ``high`` is high risk; for lower-is-better metrics, above.
    """

    moderate: float
    high: float


class GroupValue(_Model):
    """A metric restricted to one group."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int


class MetricResult(_Model):
    """One number with its uncertainty, direction, groups and risk band."""

    name: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int
    higher_is_better: bool
    description: str = ""
    unit: str = ""
    groups: dict[str, GroupValue] = Field(default_factory=dict)
    group_by: str | None = None
    thresholds: Thresholds | None = None
    risk: RiskBand | None = None
    headline: bool = Field(
        default=False, description="shown in the scorecard at the top of the report"
    )

    @field_validator("value", "ci_low", "ci_high")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is None or math.isfinite(v):
            return v
        return None


class Series(_Model):
    """One line/bar series of a plot."""

    name: str
    x: list[float] | list[str]
    y: list[float | None]
    lo: list[float | None] | None = None
    hi: list[float | None] | None = None


class Plot(_Model):
    """A plot described as data; the report renders it (inline SVG)."""

    kind: Literal["line", "bar", "heatmap", "roc", "reliability"]
    title: str
    x_label: str = ""
    y_label: str = ""
    series: list[Series] = Field(default_factory=list)
    matrix: list[list[float | None]] | None = None
    row_labels: list[str] | None = None
    col_labels: list[str] | None = None


class Example(_Model):
    """A worst case or illustrative sample shown in the report."""

    sample_id: str
    title: str = ""
    prompt: str | None = None
    output: str | None = None
    expected: str | None = None
    note: str = ""
    image_png_b64: str | None = Field(default=None, description="thumbnail, PNG, base64")


class ErrorSummary(_Model):
    """A failed sample, kept in the log and shown in the report."""

    sample_id: str
    message: str


class ProbeResult(_Model):
    """Everything one probe produced on one model."""

    probe: str
    pillar: Pillar
    version: int
    description: str = ""
    params: dict[str, Any]
    metrics: list[MetricResult] = Field(default_factory=list)
    plots: list[Plot] = Field(default_factory=list)
    examples: list[Example] = Field(default_factory=list)
    n_samples: int = 0
    n_errors: int = 0
    errors: list[ErrorSummary] = Field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)

    def metric(self, name: str) -> MetricResult:
        """Look a metric up by name (``KeyError`` if absent)."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"{self.probe} has no metric {name!r}")


class ModelInfo(_Model):
    """The audited model."""

    spec: str
    fingerprint: str
    kind: Literal["dual", "generative"]
    capabilities: list[str]


class ProbeSpec(_Model):
    """A probe as configured for a run."""

    name: str
    version: int
    params: dict[str, Any]


class RunSpec(_Model):
    """What was run, so a run can be reproduced and compared."""

    model: ModelInfo
    probes: list[ProbeSpec]
    seed: int
    data: str | None = Field(default=None, description="dataset spec (--data), if any")
    limit: int | None = Field(default=None, description="cap on samples per probe (--limit)")
    vlmtrust_version: str
    git_sha: str | None = None
    created: str
    label: str = ""


class AuditLog(_Model):
    """The whole result of ``vlmtrust run``/``audit`` on one model (``results.json``)."""

    schema_version: int = SCHEMA_VERSION
    spec: RunSpec
    results: list[ProbeResult] = Field(default_factory=list)
    seconds: float = 0.0

    def result(self, probe: str) -> ProbeResult:
        """Look a probe's result up by name."""
        for r in self.results:
            if r.probe == probe:
                return r
        raise KeyError(f"no result for probe {probe!r}")
