"""The labeled-image family's shared pieces: the severity grid, its validators, the plot helpers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import Record, Series
from vlmtrust.core.stats import mean_ci
from vlmtrust.probes._plots import mean_ci_series, one_plot
from vlmtrust.probes.families import labeled_image as li
from vlmtrust.probes.robustness.corruptions import Corruptions, CorruptionsParams
from vlmtrust.probes.robustness.style_shift import StyleShiftParams


def test_severity_grid_variants_are_clean_then_every_name_and_severity() -> None:
    probe = Corruptions({"n": 1, "corruptions": ["fog", "contrast"], "severities": [2, 1]})
    base = li.Base("b0", Image.new("RGB", (16, 16), (90, 120, 200)), "circle", {})
    vs = list(probe.variants(base, 0, SimpleNamespace(seed=0)))  # type: ignore[arg-type]
    assert [v.key for v in vs] == ["clean", "fog/1", "fog/2", "contrast/1", "contrast/2"]
    assert vs[0].attributes == {"corruption": "none", "severity": "0"}
    assert vs[2].attributes == {"corruption": "fog", "severity": "2"}
    assert probe.variants_per_image() == len(vs)


def test_strongest_miss_is_the_highest_severity_error() -> None:
    probe = Corruptions({"n": 1})

    def rec(sid: str, name: str, sev: str, correct: float) -> Record:
        attrs = {"corruption": name, "severity": sev}
        return Record(sample_id=sid, index=0, attributes=attrs, scores={"correct": correct})

    recs = [rec("a", "fog", "1", 0.0), rec("b", "fog", "3", 0.0), rec("c", "fog", "5", 1.0)]
    miss = probe.strongest_miss(recs, "fog")
    assert miss is not None and miss.sample_id == "b"
    assert probe.strongest_miss(recs, "contrast") is None
    assert probe.miss_example(miss, "note").title == "fog, severity 3"


def test_severity_and_name_validators_keep_their_messages() -> None:
    with pytest.raises(ValueError, match=r"integers in 1\.\.5"):
        CorruptionsParams(severities=[6])
    with pytest.raises(ValueError, match=r"integers in 1\.\.3"):
        StyleShiftParams(severities=[4])
    with pytest.raises(ValueError, match="give at least one corruption type"):
        CorruptionsParams(corruptions=[])
    assert CorruptionsParams(severities=[3, 1, 3]).severities == [1, 3]
    assert list(CorruptionsParams.model_fields)[-1] == "severities"  # the field stays in place

    def check(name: str, severity: int) -> None:
        if name != "ok":
            raise InputError(f"unknown {name!r}")

    assert li.known_names(["ok", "ok"], check) == ["ok"]
    assert li.known_names([], check) == []
    with pytest.raises(ValueError, match="unknown 'bad'"):
        li.known_names(["bad"], check, "thing")


def test_one_plot_and_mean_ci_series() -> None:
    assert one_plot("bar", "t", "x", "y", []) == []
    s = Series(name="s", x=["a"], y=[1.0])
    (plot,) = one_plot("bar", "t", "x", "y", [s])
    assert (plot.kind, plot.title, plot.x_label, plot.y_label, plot.series) == (
        "bar",
        "t",
        "x",
        "y",
        [s],
    )
    cols = [[1.0, 0.0, 1.0, 1.0], []]
    series = mean_ci_series("acc", [0.0, 1.0], cols, seed=3)
    m, lo, hi = mean_ci(cols[0], seed=3)
    assert series.y == [m, None] and series.lo == [lo, None] and series.hi == [hi, None]
