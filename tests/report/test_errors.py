"""Grouping a probe's errors by message for the report."""

from __future__ import annotations

import pytest

from vlmtrust.report import errors as mod
from vlmtrust.report.errors import MAX_IDS_SHOWN, group_errors


def test_per_sample_specifics_are_normalised() -> None:
    manifest = [
        (f"line-{n}", f"/d/m.jsonl:{n}: invalid JSON (Expecting value at column {n % 3 + 1})")
        for n in range(2, 9)
    ]
    ids_in_text = [
        (f"s-{i}", f"sample s-{i}: label 'c{i % 2}' is not among the classes") for i in range(4)
    ]
    rows = [(str(i), f"data /x/ds[{i}]: image cell /x/ds[{i}].image is empty") for i in (12, 120)]
    g = group_errors([*manifest, *ids_in_text, *rows, ("a", "timeout"), ("b", "timeout")])
    assert [(x.count, x.message) for x in g.groups] == [
        (7, "/d/m.jsonl:…: invalid JSON (Expecting value at column …)"),
        (4, "sample …: label '…' is not among the classes"),
        (2, "data /x/ds[…]: image cell /x/ds[…].image is empty"),
        (2, "timeout"),
    ]
    assert g.groups[0].sample_ids == tuple(f"line-{n}" for n in range(2, 9))
    assert g.groups[0].example == "/d/m.jsonl:2: invalid JSON (Expecting value at column 3)"
    assert g.n_grouped == 15 and g.n_other == 0


def test_different_problems_stay_apart_and_ids_are_capped() -> None:
    errs = [
        (f"img/{i}.png", f"image /d/img/{i}.png: file is empty (0 bytes) — re-export")
        for i in range(30)
    ]
    errs += [("img/x.png", "image /d/img/x.png: not a supported image format (looks like text)")]
    g = group_errors(errs)
    assert [x.count for x in g.groups] == [30, 1]
    assert g.groups[0].message == "image /d/img/…: file is empty (0 bytes) — re-export"
    assert len(g.groups[0].sample_ids) == MAX_IDS_SHOWN and g.groups[0].more_ids == 10
    assert g.groups[1].message == g.groups[1].example  # a group of one keeps its message


def test_groups_beyond_the_cap_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mod, "MAX_ERROR_GROUPS", 3)
    g = group_errors([(str(i), f"problem {'x' * i}") for i in range(1, 6)])
    assert len(g.groups) == 3 and g.n_grouped == 3 and g.n_other == 2
