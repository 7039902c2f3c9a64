"""Human evaluation: export flagged + control answers, import labels, agreement in the report."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from tests.helpers import make_probe
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import Record
from vlmtrust.models.mock import MockModel
from vlmtrust.report.human import export_labels, import_labels, read_agreement
from vlmtrust.runner.engine import read_records, run_audit, samples_file

EVIL = "<script>alert(1)</script>"


def _answer(req: object) -> str:
    # Refuse every other request; the comply answer carries a script payload.
    prompt = str(getattr(req, "prompt", ""))
    return "I'm sorry, I can't help with that." if len(prompt) % 2 else f"Sure. 1. {EVIL}"


@pytest.fixture(scope="module")
def _judged_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    probe = make_probe("safety/figstep", {"n_harmful": 10, "n_benign": 6, "agreement": False})
    out = tmp_path_factory.mktemp("human") / "run"
    run_audit(MockModel(answers=_answer), [probe], out_dir=out, ctx=ProbeContext(seed=0))
    return out


@pytest.fixture
def judged_run(_judged_once: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(_judged_once, tmp_path / "run"))


def _records(run: Path) -> list[Record]:
    return read_records(samples_file(run, "safety/figstep"))


def test_export_picks_flagged_and_a_seeded_control(judged_run: Path) -> None:
    s = export_labels(judged_run, n_control=3, seed=1)
    tasks = json.loads(s.path.read_text())
    assert s.path == judged_run / "human_labels" / "tasks.json"
    assert len(tasks) == s.n_flagged + s.n_control and s.n_control == 3
    assert (judged_run / "human_labels" / "label_config.xml").is_file()
    n_records = len([r for r in _records(judged_run) if r.ok])
    assert s.n_candidates == n_records  # one refusal-task item per judged record
    exported = [
        json.loads(line)
        for line in (judged_run / "human_labels" / "export.jsonl").read_text().splitlines()
    ]
    for item in exported:
        labels = set(item["judges"].values())
        kind = "benign" if item["sample_id"].startswith("b-") else "harmful"
        risky = (kind == "harmful" and "compliance" in labels) or (
            kind == "benign" and "refusal" in labels
        )
        assert (item["selection"] == "flagged") == (len(labels) > 1 or risky), item
    # the same seed draws the same control sample; another seed may not
    again = export_labels(judged_run, out=judged_run / "again.json", n_control=3, seed=1)
    assert json.loads(again.path.read_text()) == tasks


def _fill(tasks: list[dict], label_of) -> list[dict]:
    """A Label Studio JSON export of the tasks with one annotation each."""
    out = []
    for n, t in enumerate(tasks):
        value = {"choices": [label_of(t["data"])]}
        result = [
            {"from_name": "human_label", "to_name": "answer", "type": "choices", "value": value}
        ]
        out.append({"id": n, "data": t["data"], "annotations": [{"result": result}]})
    return out


def _keyword_label(data: dict) -> str:
    return "refusal" if "sorry" in data["answer"].lower() else "compliance"


def test_import_measures_kappa_and_the_report_shows_it(judged_run: Path, tmp_path: Path) -> None:
    s = export_labels(judged_run, n_control=50)
    tasks = json.loads(s.path.read_text())
    # humans agree with the keyword judge everywhere (the mock's refusals are unambiguous)
    ls_export = tmp_path / "export.json"
    ls_export.write_text(json.dumps(_fill(tasks, _keyword_label)))
    res = import_labels(judged_run, ls_export)
    assert res.n_labels == len(tasks) and not res.errors
    by_judge = {a.judge: a for a in res.agreements}
    kw = by_judge["refusal/keyword"]
    assert kw.n == len(tasks) and kw.agreement == 1.0 and kw.kappa == pytest.approx(1.0)
    assert kw.n_control == s.n_control
    assert read_agreement(judged_run)[0].probe == "safety/figstep"

    # a reviewer who calls every answer a refusal: agreement falls, κ is undefined (one label)
    flipped = tmp_path / "flipped.json"
    flipped.write_text(json.dumps(_fill(tasks, lambda d: "refusal")))
    res2 = import_labels(judged_run, flipped)
    kw2 = {a.judge: a for a in res2.agreements}["refusal/keyword"]
    assert kw2.agreement is not None and kw2.agreement < 1.0
    assert kw2.kappa == pytest.approx(0.0)  # one human label: no agreement beyond chance

    r = CliRunner().invoke(app, ["report", str(judged_run)])
    assert r.exit_code == 0, r.output
    html = (judged_run / "report.html").read_text()
    md = (judged_run / "report.md").read_text()
    assert "Agreement with human labels" in html and "Agreement with human labels" in md
    assert "refusal/keyword" in md.split("Agreement with human labels")[1]


def test_bad_rows_are_counted_and_named_and_the_rest_imported(
    judged_run: Path, tmp_path: Path
) -> None:
    r = CliRunner().invoke(app, ["export-labels", str(judged_run), "--format", "csv"])
    assert r.exit_code == 0, r.output
    path = judged_run / "human_labels" / "tasks.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows and EVIL in "".join(row["answer"] for row in rows)  # the CSV keeps the value
    rows[0]["human_label"] = "maybe"  # not a choice
    rows[1]["human_label"] = "unsure"
    rows[2]["item_id"] = "nope"
    for row in rows[3:]:
        row["human_label"] = _keyword_label(row)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    filled = tmp_path / "filled.csv"
    filled.write_text(buf.getvalue())
    r = CliRunner().invoke(app, ["import-labels", str(judged_run), str(filled)])
    assert r.exit_code == 0, r.output
    assert f"{len(rows) - 3} labels imported, 1 unsure or blank, 2 rejected" in r.output
    assert "label 'maybe'" in r.output and "item_id 'nope'" in r.output
    html = (judged_run / "report.html").read_text()
    assert EVIL not in html  # answers never reach the report unescaped


def test_clear_errors(judged_run: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="export-labels"):
        import_labels(judged_run, tmp_path / "x.json")
    export_labels(judged_run)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        import_labels(judged_run, bad)
    csv_bad = tmp_path / "bad.csv"
    csv_bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="item_id and human_label"):
        import_labels(judged_run, csv_bad)
    r = CliRunner().invoke(app, ["export-labels", str(judged_run), "--format", "xml"])
    assert r.exit_code == 2 and "--format 'xml'" in r.output


def test_vectorised_kappa_replicates_match_sklearn() -> None:
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    from vlmtrust.report.human import kappa_replicates

    rng = np.random.default_rng(3)
    h = rng.choice(["refusal", "compliance"], size=40)
    j = np.where(rng.random(40) < 0.8, h, rng.choice(["refusal", "compliance"], size=40))
    reps = kappa_replicates(h, j, n_boot=50, seed=5)
    idx = np.random.default_rng(5).integers(0, 40, size=(50, 40))
    for b in range(50):
        hb, jb = h[idx[b]], j[idx[b]]
        want = cohen_kappa_score(hb, jb) if len(set(hb) | set(jb)) > 1 else np.nan
        assert reps[b] == pytest.approx(want, nan_ok=True)
