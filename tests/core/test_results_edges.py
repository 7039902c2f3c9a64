"""Edge cases of metrics and logs: undefined values, failing groups, schema versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from vlmtrust.core.results import AuditLog, MetricResult
from vlmtrust.core.stats import metric


def test_an_undefined_metric_has_no_value_and_no_risk_band() -> None:
    m = metric("x", lambda y: math.nan, [1, 0, 1], thresholds=(0.9, 0.5), higher_is_better=True)
    assert m.value is None and m.risk is None
    ok = metric("x", lambda y: 0.2, [1, 0, 1], thresholds=(0.9, 0.5), higher_is_better=True)
    assert ok.risk == "high"


def test_a_statistic_undefined_in_one_group_leaves_that_group_empty() -> None:
    def mean_of_ones(y: np.ndarray) -> float:
        if not (y == 1).any():
            raise ValueError("no positive row")
        return float(y.mean())

    m = metric("x", mean_of_ones, [1, 1, 0, 0], groups=["a", "a", "b", "b"], higher_is_better=True)
    assert m.groups["a"].value == 1.0 and m.groups["b"].value is None
    assert m.gap is None  # one group with a value: no spread


def test_a_v1_metric_without_a_name_is_refused() -> None:
    with pytest.raises(ValidationError):
        MetricResult.model_validate({"value": 1.0, "n": 1, "higher_is_better": True})
    v1 = MetricResult.model_validate({"name": "asr/figstep/x", "value": 1.0, "n": 1,
                                      "higher_is_better": True})  # fmt: skip
    assert v1.name == "asr/figstep/x" and v1.key.metric == "asr/figstep/x"


def test_a_log_of_a_newer_schema_is_refused_in_one_line() -> None:
    with pytest.raises(ValidationError, match="newer than this vlmtrust"):
        AuditLog.model_validate({"schema_version": 99, "spec": {}})
