"""Small shared helpers of core: group_result, resource_rows, distinct."""

from __future__ import annotations

import pytest

from vlmtrust.core.files import resource_rows
from vlmtrust.core.params import distinct
from vlmtrust.core.results import GroupValue, MetricKey
from vlmtrust.core.stats import group_result


def test_group_result_carries_the_group_value_ci_and_n() -> None:
    gv = GroupValue(value=0.25, ci_low=0.1, ci_high=0.4, n=12)
    m = group_result(MetricKey(metric="leakage", group="email"), gv, higher_is_better=False)
    assert (m.value, m.ci_low, m.ci_high, m.n) == (0.25, 0.1, 0.4, 12)
    assert m.key.group == "email" and m.higher_is_better is False


def test_resource_rows_reads_a_shipped_jsonl() -> None:
    rows = resource_rows("fairness", "lexicon.jsonl")
    assert rows and all(isinstance(r, dict) and "term" in r for r in rows)


def test_distinct_keeps_order_and_refuses_none() -> None:
    assert distinct([3, 1, 3, 2], empty="x") == [3, 1, 2]
    with pytest.raises(ValueError, match="give one"):
        distinct([], empty="give one")
