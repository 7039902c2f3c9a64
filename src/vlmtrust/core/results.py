"""What a run writes to disk: records, metrics, plots, examples and the :class:`AuditLog`.

The schema is versioned (:data:`SCHEMA_VERSION`); its JSON Schema is committed at
``src/vlmtrust/schema/auditlog.schema.json`` and a test fails when it drifts without a bump.
Logs of an older schema are upgraded when read (:meth:`AuditLog.model_validate` accepts them).

Metric names are structured (:class:`MetricKey`): stored as an object, rendered to one display
string by :meth:`MetricKey.render` — the only place a name string is made. Nobody parses it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlmtrust.core.types import Pillar, RiskBand

SCHEMA_VERSION = 4
"""2: structured metric keys (:class:`MetricKey`) and group gaps (:class:`GroupGap`).
3: optional request statistics per probe (:class:`RequestStats`) and backend options in the
model section (:attr:`ModelInfo.options`).
4: what better means for a metric (:attr:`MetricResult.better`, :attr:`MetricResult.target`);
v2 and v3 logs load unchanged."""

Better = Literal["higher", "lower", "target", "none"]
"""What a better value of a metric is: higher, lower, closer to a target, or none (descriptive)."""


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


class MetricKey(BaseModel):
    """The structured name of a metric; every field but ``metric`` is optional.

    ``render()`` gives the display name: ``metric/condition/judge/step``, then ``@eps``, then
    ``[group]`` — the same string everywhere (report, compare, ``ProbeResult.metric``).

    Example:
        >>> MetricKey(metric="asr", condition="figstep", judge="refusal/keyword").render()
        'asr/figstep/refusal/keyword'
        >>> MetricKey(metric="robust_accuracy", eps="2/255").render()
        'robust_accuracy@2/255'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="what is measured: asr, accuracy, auroc, max_skew, ...")
    condition: str | None = Field(
        default=None, description="attack, corruption, variant or layout the metric is over"
    )
    judge: str | None = Field(default=None, description="the judge whose labels were used")
    step: str | None = Field(default=None, description="a stage inside a condition: round2, k=10")
    eps: str | None = Field(default=None, description="perturbation budget label, e.g. 2/255")
    group: str | None = Field(default=None, description="the group the metric is restricted to")

    def render(self) -> str:
        """The display name (never parsed back)."""
        parts = [self.metric, self.condition, self.judge, self.step]
        out = "/".join(p for p in parts if p is not None)
        if self.eps is not None:
            out += f"@{self.eps}"
        if self.group is not None:
            out += f"[{self.group}]"
        return out

    def matches(self, **fields: str | None) -> bool:
        """True when every given field equals this key's."""
        return all(getattr(self, k) == v for k, v in fields.items())


class GroupGap(_Model):
    """The spread of a metric over its groups (fairlearn ``MetricFrame`` semantics).

    ``difference`` = max − min of the group values; ``ratio`` = min / max (1 = parity; ``None``
    when the max is 0 or a value is negative). CIs come from a bootstrap that resamples within
    each group.
    """

    difference: float | None
    difference_ci_low: float | None = None
    difference_ci_high: float | None = None
    ratio: float | None
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    best: str | None = Field(default=None, description="the group with the best value")
    worst: str | None = Field(default=None, description="the group with the worst value")

    @field_validator("*")
    @classmethod
    def _finite(cls, v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v


class MetricResult(_Model):
    """One number with its uncertainty, direction, groups and risk band.

    Give ``key`` (structured); ``name`` is derived from it. A bare ``name`` (schema v1) becomes
    ``MetricKey(metric=name)``.

    Direction: ``higher_is_better`` orients the risk thresholds and the group gap's best/worst
    group. ``better`` says what a better value is when that is more than "higher" or "lower":
    ``"target"`` (closer to ``target`` is better, e.g. overconfidence, ideal 0) or ``"none"``
    (a descriptive number such as a mean confidence, which no value improves on). ``better``
    left ``None`` means "follow ``higher_is_better``" (runs written before schema v4, and probes
    that do not declare it); :attr:`direction` gives the resolved value. ``better="higher"`` or
    ``"lower"`` alone also sets ``higher_is_better``.
    """

    key: MetricKey
    name: str = Field(default="", description="display name, derived: key.render()")
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int
    higher_is_better: bool
    better: Better | None = Field(
        default=None,
        description="what a better value is: higher, lower, closer to target, none "
        "(descriptive); null: as higher_is_better says",
    )
    target: float | None = Field(default=None, description="the ideal value when better=target")
    description: str = ""
    unit: str = ""
    groups: dict[str, GroupValue] = Field(default_factory=dict)
    group_by: str | None = None
    gap: GroupGap | None = Field(default=None, description="spread over groups, with CIs")
    thresholds: Thresholds | None = None
    risk: RiskBand | None = None
    headline: bool = Field(
        default=False, description="shown in the scorecard at the top of the report"
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_name(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            key = data.get("key")
            if key is None and isinstance(data.get("name"), str) and data["name"]:
                # Schema v1 (a flat name) or a caller passing only a plain metric name.
                key = MetricKey.model_construct(metric=data["name"])
                data["key"] = key
            if key is None:
                return data  # no key and no name: validation reports the missing key
            elif isinstance(key, dict):
                key = MetricKey(**key)
                data["key"] = key
            data["name"] = key.render()
            if "higher_is_better" not in data and data.get("better") in ("higher", "lower"):
                data["higher_is_better"] = data["better"] == "higher"
        return data

    @model_validator(mode="after")
    def _check_direction(self) -> MetricResult:
        if self.better == "target" and self.target is None:
            raise ValueError(f"metric {self.name}: better='target' needs a target value")
        if self.target is not None and self.better != "target":
            raise ValueError(f"metric {self.name}: target is set but better is not 'target'")
        if self.better in ("higher", "lower") and (self.better == "higher") != (
            self.higher_is_better
        ):
            raise ValueError(
                f"metric {self.name}: better={self.better!r} contradicts "
                f"higher_is_better={self.higher_is_better}"
            )
        return self

    @property
    def direction(self) -> Better:
        """``better``, or ``"higher"``/``"lower"`` from ``higher_is_better`` when not declared."""
        if self.better is not None:
            return self.better
        return "higher" if self.higher_is_better else "lower"

    @field_validator("value", "ci_low", "ci_high")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is None or math.isfinite(v):
            return v
        return None

    @classmethod
    def of(cls, key: MetricKey, estimate: GroupValue, **fields: Any) -> MetricResult:
        """The metric whose value, CI and n are ``estimate``'s; ``fields`` set the rest.

        ``fields`` may override ``n``.
        """
        est = {"value": estimate.value, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high}
        return cls(key=key, **{**est, "n": estimate.n, **fields})


class Series(_Model):
    """One line/bar series of a plot."""

    name: str
    x: list[float] | list[str]
    y: list[float | None]
    lo: list[float | None] | None = None
    hi: list[float | None] | None = None


class Plot(_Model):
    """A plot described as data; the report renders it (inline SVG)."""

    kind: Literal["line", "bar", "heatmap", "roc", "reliability", "scatter"]
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


class SlowRequest(_Model):
    """One of a probe's slowest model requests (first send to final answer, retries included)."""

    sample_id: str | None = None
    seconds: float
    attempts: int
    ok: bool = True


RETRY_CAUSES = ("429", "5xx", "timeout", "connection", "malformed")
"""Why a request was retried: rate limited, server error, timeout (client or HTTP 408),
dropped or refused connection, malformed response body."""


class RequestStats(_Model):
    """The requests a remote model served for one probe (``openai:`` endpoints).

    No request body, prompt or key is kept: counts, causes, sample ids and seconds only.
    """

    requests: int = Field(0, description="model requests made (cache hits excluded)")
    attempts: int = Field(0, description="HTTP attempts, retries included")
    retries: dict[str, int] = Field(
        default_factory=dict, description="retries by cause (RETRY_CAUSES), only causes seen"
    )
    errors: int = Field(0, description="requests that still failed (error generations)")
    slowest: list[SlowRequest] = Field(default_factory=list, description="slowest first")


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
    requests: RequestStats | None = Field(
        default=None, description="request counts of a remote model (None for local models)"
    )

    def metric(self, name: str | None = None, /, **fields: str | None) -> MetricResult:
        """Look a metric up by display name or by key fields (``KeyError`` if absent).

        Example: ``result.metric("asr", condition="figstep", judge="refusal/keyword")``; with a
        positional name and fields, the name is the ``metric`` field.
        """
        if name is not None and fields:
            fields = {"metric": name, **fields}
            name = None
        for m in self.metrics:
            if (name is not None and m.name == name) or (name is None and m.key.matches(**fields)):
                return m
        from vlmtrust.core.tables import NotFound

        asked = name if name is not None else ", ".join(f"{k}={v}" for k, v in fields.items())
        raise NotFound.naming(f"{self.probe} has no metric", asked, [m.name for m in self.metrics])

    def metrics_where(self, **fields: str | None) -> list[MetricResult]:
        """Every metric whose key has the given fields."""
        return [m for m in self.metrics if m.key.matches(**fields)]


class ModelInfo(_Model):
    """The audited model."""

    spec: str
    fingerprint: str
    kind: Literal["dual", "generative"]
    capabilities: list[str]
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="backend settings (--model-option and defaults; never a key)",
    )


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

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        # v1 -> v2: metric keys are derived from the flat names by MetricResult itself.
        # v2 -> v3: a metric without ``better`` follows its higher_is_better.
        if isinstance(data, dict):
            version = data.get("schema_version", SCHEMA_VERSION)
            if isinstance(version, int) and version > SCHEMA_VERSION:
                raise ValueError(
                    f"results schema v{version} is newer than this vlmtrust's v{SCHEMA_VERSION}; "
                    "upgrade vlmtrust to read it"
                )
            if isinstance(version, int) and version < SCHEMA_VERSION:
                # v2 -> v3 -> v4 only added optional fields
                data = {**data, "schema_version": SCHEMA_VERSION}
        return data

    def result(self, probe: str) -> ProbeResult:
        """Look a probe's result up by name."""
        for r in self.results:
            if r.probe == probe:
                return r
        from vlmtrust.core.tables import NotFound

        raise NotFound.naming("no result for probe", probe, [r.probe for r in self.results])

    def metric(self, name: str, /, probe: str | None = None) -> MetricResult:
        """Look a metric up by display name across every probe (or in ``probe`` only).

        Raises ``KeyError`` listing the valid names (close matches first) when no probe has
        it, or naming the probes to choose from when several do.
        """
        if probe is not None:
            return self.result(probe).metric(name)
        found = [(r.probe, m) for r in self.results for m in r.metrics if m.name == name]
        if len(found) == 1:
            return found[0][1]
        from vlmtrust.core.tables import NotFound

        if found:
            raise NotFound(
                f"metric {name!r} is in several probes ({', '.join(p for p, _ in found)}): "
                "pass probe="
            )
        names = sorted({m.name for r in self.results for m in r.metrics})
        raise NotFound.naming("no metric", name, names)

    def to_dataframe(self, *, groups: bool = False) -> Any:
        """The metrics as a pandas DataFrame, one row per metric (:mod:`vlmtrust.core.tables`).

        Columns: model, probe, pillar, metric, value, ci_low, ci_high, n, group, risk,
        higher_is_better, headline; ``groups=True`` adds a row per group value.
        """
        from vlmtrust.core.tables import to_dataframe

        return to_dataframe([self], groups=groups)

    def to_csv(self, path: str | Path, *, groups: bool = False) -> Path:
        """Write :meth:`to_dataframe`'s rows to ``path`` as CSV; returns the path."""
        from vlmtrust.core.tables import to_csv

        return to_csv([self], path, groups=groups)
