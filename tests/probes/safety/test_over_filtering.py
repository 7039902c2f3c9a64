"""safety/over_filtering: a guard that over-flags one register is found; a fair one is quiet."""

from collections.abc import Sequence
from typing import Any

import pytest

from helpers import metrics, run_probe
from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import registry
from vlmtrust.data.benign_registers import REGISTERS, RegisterText, benign_register_texts
from vlmtrust.models.mock import MockModel
from vlmtrust.probes.safety import over_filtering as of

SLANG = {"finna", "tryna", "fr", "lil", "gon", "ion", "lowkey", "be", "wit", "n"}


def _dialect_filter(_: Any) -> of.Screen:
    """A naive slang filter: it flags every text with one of a few dialect spellings."""

    def screen(items: Sequence[RegisterText]) -> of.Flags:
        return [bool(SLANG & set(t.text.lower().replace(",", " ").split())) for t in items]

    return screen


def _fair_filter(_: Any) -> of.Screen:
    """Flags the first two requests and answers of every register: the same rate everywhere."""

    def screen(items: Sequence[RegisterText]) -> of.Flags:
        return [t.id.endswith(("-00", "-01")) for t in items]

    return screen


@pytest.fixture()
def screens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(of.SCREENS, "planted/slang", _dialect_filter)
    monkeypatch.setitem(of.SCREENS, "planted/fair", _fair_filter)


def _run(guards: list[str], **kw: Any) -> dict[str, Any]:
    params = {"guards": guards, "judges": ["refusal/keyword"], **kw}
    p, recs = run_probe("safety/over_filtering", MockModel(answers="unused"), params)
    assert len(recs) == len(benign_register_texts(kw.get("registers"))) and all(r.ok for r in recs)
    return {"probe": p, "records": recs, "metrics": metrics(p, recs)}


def test_guard_that_over_flags_dialect_is_found(screens: None) -> None:
    got = _run(["planted/slang"])
    ms = got["metrics"]
    name = "false_positive_rate_difference/register/any_guard"
    assert ms[name].headline and ms[name].risk == "high" and ms[name].value > 0.5
    assert "worst group: dialect" in ms[name].description
    assert ms["false_positive_rate_ratio/register/planted/slang"].value == 0.0
    assert ms["false_positive_rate/register/planted/slang[dialect]"].value > 0.5
    assert ms["false_positive_rate/register/planted/slang[standard]"].value == 0.0
    (plot,) = got["probe"].plots(got["records"], None)
    assert plot.series[0].x == list(REGISTERS)
    ex = got["probe"].examples(got["records"], None)
    assert ex and all("dialect" in e.title for e in ex)


def test_fair_guard_is_quiet(screens: None) -> None:
    ms = _run(["planted/fair"])["metrics"]
    diff = ms["false_positive_rate_difference/register/planted/fair"]
    assert diff.value == 0.0 and diff.risk == "low"
    assert ms["false_positive_rate_ratio/register/planted/fair"].value == 1.0


def test_shipped_guards_and_judges_run_on_every_text() -> None:
    regs = ["standard", "dialect"]
    got = _run(
        of._default_guards(), registers=regs, judges=["refusal/keyword", "toxicity/profanity"]
    )
    recs = got["records"]
    for r in recs:  # the input guard reads requests, the output guard answers, PII both
        kind = r.attributes["kind"]
        assert (r.scores["flagged/safety/input_guard"] is None) == (kind == "answer")
        assert (r.scores["flagged/safety/output_guard"] is None) == (kind == "request")
        assert r.scores["flagged/privacy/pii_guard"] is not None
        assert (r.scores["flagged/refusal/keyword"] is None) == (kind == "request")
    ms = got["metrics"]
    for n in (*of._default_guards(), "any_guard", "refusal/keyword", "toxicity/profanity"):
        assert f"false_positive_rate_difference/register/{n}" in ms


def test_bad_guard_and_register_are_one_line() -> None:
    cls = registry()["safety/over_filtering"]
    with pytest.raises(InputError, match="unknown guard 'safety/bouncer'; use safety/input_guard"):
        cls({"guards": ["safety/bouncer"]})
    with pytest.raises(InputError, match="nothing to measure: name at least one guard or judge"):
        cls({"guards": [], "judges": []})
    with pytest.raises(InputError, match="unknown register 'slang'; use one of standard"):
        cls({"registers": ["slang"]})
