"""fairness/dataset_audit: finds the planted correlation in reference:clip's own training
mixture, stays quiet on a control mixture at correlation 0.5, and audits any manifest row by row
without a model and without decoding an image."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from vlmtrust.api import select_probes
from vlmtrust.cli import app
from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ProbeResult
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.types import Capability, RiskBand
from vlmtrust.models.none import NoModel
from vlmtrust.probes.fairness._audit_tally import AuditTally, TallyLimits, shipped_lexicon
from vlmtrust.probes.fairness.dataset_audit import DatasetAuditProbe
from vlmtrust.runner.engine import evaluate_probe


def _audit(params=None, model=None, data=None, limit=None) -> ProbeResult:
    probe = DatasetAuditProbe(params or {})
    return evaluate_probe(model or NoModel(), probe, ProbeContext(seed=0, data=data, limit=limit))


def _m(res: ProbeResult, metric: str, condition: str | None = None, step: str | None = None):
    return res.metric(metric, condition=condition, step=step)


def _reference(spec: str):
    return SimpleNamespace(spec=spec, fingerprint=spec, kind="dual", capabilities=Capability.EMBED)


@pytest.fixture(scope="module")
def planted() -> ProbeResult:
    return _audit({"mixture": "reference:clip"})


@pytest.fixture(scope="module")
def control() -> ProbeResult:
    # the same recipe at correlation 0.5 (fewer scenes keep the test quick)
    return _audit({"mixture": "reference:clip", "correlation": 0.5, "rows": 12_000})


def test_finds_the_planted_group_occupation_correlation(planted):
    share = _m(planted, "majority_share", "group", "label")
    assert share.value > 0.95 and share.ci_low > 0.9
    assert share.risk is RiskBand.HIGH and share.headline
    assert set(share.groups) == {"doctor", "chef", "builder", "teacher", "farmer", "pilot"}
    pmi = _m(planted, "pmi_min", "group", "label")
    # minority share ~ (1 - 0.95) / 2 of each occupation vs 1/2 overall: ln(0.05) = -3.0
    assert pmi.value < math.log(0.08) and pmi.ci_high < -math.log(5)
    assert pmi.risk is RiskBand.HIGH
    words = _m(planted, "majority_share", "group", "word")  # the captions name the occupation
    assert words.value > 0.95 and words.risk is RiskBand.HIGH
    # the mixture is balanced overall: the skew is in the co-occurrence, not the shares
    assert _m(planted, "imbalance_ratio", "group").risk is RiskBand.LOW
    assert _m(planted, "lexicon_rate", "lexicon").value == 0.0
    assert planted.n_errors == 0 and planted.n_samples == 1
    assert "28,000 scenes" in planted.notes[0] and "correlation 0.95" in planted.notes[0]
    assert any("rare among label" in e.title for e in planted.examples)
    assert {p.kind for p in planted.plots} == {"bar", "heatmap"}


def test_stays_quiet_on_the_control_mixture(control):
    share = _m(control, "majority_share", "group", "label")
    # (1 + 0.5) / 2 = 75% majority per occupation: below the 80% band
    assert 0.72 < share.value < 0.8 and share.ci_high < 0.8
    assert share.risk is RiskBand.LOW
    assert _m(control, "pmi_min", "group", "label").risk is RiskBand.LOW
    assert _m(control, "majority_share", "group", "word").risk is RiskBand.LOW
    assert _m(control, "imbalance_ratio", "group").risk is RiskBand.LOW


def test_default_audit_runs_it_on_the_reference_models_only():
    for spec in ("reference:clip", "reference:vlm", "none"):
        model = _reference(spec)
        assert "fairness/dataset_audit" in [p.name for p in select_probes(model)], spec
    hf = _reference("hf:/some/clip")
    assert "fairness/dataset_audit" not in [p.name for p in select_probes(hf)]
    with pytest.raises(CapabilityError, match="audits data, not a model"):
        select_probes(hf, ["fairness/dataset_audit"])


def test_on_a_reference_model_it_audits_that_models_mixture():
    res = _audit({"rows": 3000}, model=_reference("reference:vlm"))
    assert "reference:vlm" in res.notes[0] and "correlation 0.9" in res.notes[0]
    share = _m(res, "majority_share", "group", "label")
    assert share.value > 0.9 and share.risk is not RiskBand.LOW


def test_without_data_or_mixture_it_says_what_to_pass(tmp_path):
    with pytest.raises(CapabilityError, match="nothing to audit: pass --data"):
        _audit()
    result = CliRunner().invoke(
        app, ["run", "fairness/dataset_audit", "--out", str(tmp_path), "-q", "--cache", "off"]
    )
    [res] = json.loads((tmp_path / "results.json").read_text())["results"]
    assert res["metrics"] == [] and "nothing to audit: pass --data" in res["notes"][0]
    assert result.exit_code == 1, result.output  # a requested probe that could not run


def _write_manifest(tmp: Path) -> Path:
    rows = []
    for i in range(400):
        job = ["nurse", "engineer"][i % 2]
        usual = (i // 2) % 10 != 3  # 90% of each job is one gender
        gender = (
            ("female" if usual else "male") if job == "nurse" else ("male" if usual else "female")
        )
        caption = f"a {job} at the hospital desk"
        if i % 50 == 0:
            caption += " next to a wheelchair-bound visitor"
        if i % 80 == 0:
            caption += "; the mongoloid race theory in an old book"
        row = {
            "id": f"r{i}",
            "image": f"images/{i}.png",  # never written: the audit must not open images
            "target": job,
            "attributes": {"gender": gender},
            "metadata": {"caption": caption},
        }
        if i % 40 == 0:
            del row["attributes"]  # no gender: counted as unknown
        rows.append(json.dumps(row))
    rows.insert(7, "{not json")
    path = tmp / "m.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_audits_a_manifest_without_decoding_images(tmp_path, monkeypatch):
    def no_decode(self):
        raise AssertionError("the audit decoded an image")

    monkeypatch.setattr(ImageRef, "load", no_decode)
    res = _audit(data=str(_write_manifest(tmp_path)))
    unknown = _m(res, "unknown_share", "gender")
    assert unknown.value == pytest.approx(10 / 400) and unknown.n == 400
    share = _m(res, "majority_share", "gender", "label")
    assert share.value == pytest.approx(0.9, abs=0.02) and share.risk is RiskBand.MODERATE
    lex = _m(res, "lexicon_rate", "lexicon")
    assert lex.value == pytest.approx(12 / 400) and lex.risk is RiskBand.HIGH  # 8 + 5 - 1
    # longest match: "mongoloid race" is the race-typology term, not the clinical one
    assert set(lex.groups) == {"disability", "race and ethnicity"}
    flagged = {e.title.split("'")[1] for e in res.examples if e.title.startswith("flagged")}
    assert flagged == {"wheelchair-bound", "mongoloid race"}
    assert any("1 rows could not be read" in n for n in res.notes)


def test_cli_run_needs_no_model(tmp_path):
    out = tmp_path / "run"
    manifest = _write_manifest(tmp_path)
    result = CliRunner().invoke(
        app,
        ["run", "fairness/dataset_audit", "--data", str(manifest), "--out", str(out), "-q"]
        + ["--cache", "off", "--no-report"],
    )
    assert result.exit_code == 0, result.output
    log = json.loads((out / "results.json").read_text())
    assert log["spec"]["model"]["spec"] == "none"
    [res] = log["results"]
    names = {m["name"] for m in res["metrics"]}
    assert {
        "imbalance_ratio/gender",
        "majority_share/gender/label",
        "lexicon_rate/lexicon",
    } <= names


def test_cli_run_without_model_still_refuses_probes_that_need_one(tmp_path):
    result = CliRunner().invoke(app, ["run", "capability/zero_shot", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "needs exactly one --model" in result.output


def test_small_groups_are_shown_not_scored():
    rows = [
        Sample(id=str(i), target=["a", "b"][i % 2], attributes={"g": "x" if i < 190 else "y"})
        for i in range(200)
    ]
    probe = DatasetAuditProbe({"min_group_size": 30})
    tally = _tally()
    tally.add_all(rows)
    rec = probe.record(Sample(id="dataset"), output={**tally.summary(min_total=20), "source": "t"})
    ctx = ProbeContext()
    metrics = {m.name: m for m in probe.aggregate([rec], ctx)}
    assert "group_share/g" in metrics and set(metrics["group_share/g"].groups) == {"x", "y"}
    assert "majority_share/g/label" not in metrics  # one scored group: nothing to compare
    assert any("shown, not scored: y" in n for n in probe.notes([rec], ctx))


def _tally(**limits) -> AuditTally:
    return AuditTally(
        attributes=None,
        text_fields=["caption", "prompt", "target"],
        label_fields=["target", "label"],
        lexicon=shipped_lexicon(),
        limits=TallyLimits(**limits),
    )


def test_tally_memory_is_bounded_by_its_caps():
    tally = _tally(max_concepts=50, max_groups=3, flush_rows=64)
    for i in range(5000):
        caption = f"a doctor seen with token{i}" if i % 2 else f"a teacher seen with token{i}"
        tally.add(
            Sample(
                id=str(i),
                attributes={"g": ["p", "q"][i % 2], "id": f"v{i}"},
                metadata={"caption": caption},
            )
        )
        assert tally.tracked_concepts() <= 50
    s = tally.summary(min_total=20)
    assert s["evictions"] > 0 and s["error_bound"] >= 1
    words = {c["value"]: c for c in s["concepts"] if c["kind"] == "word"}
    # frequent words survive every eviction with exact counts
    assert words["doctor"]["n"] == 2500 and words["doctor"]["delta"] == 0
    assert words["doctor"]["by"]["g"] == {"q": 2500}
    assert words["seen"]["by"]["g"] == {"p": 2500, "q": 2500}
    # a value per row: three values kept, the rest folded into (other)
    ids = s["attributes"]["id"]
    assert len(ids["groups"]) == 4 and ids["groups"]["(other)"] == 4997
    assert ids["overflow_rows"] == 4997


def test_tally_counts_a_word_once_per_row():
    tally = _tally()
    tally.add(Sample(id="1", attributes={"g": "a"}, metadata={"caption": "dog dog dog"}))
    s = tally.summary(min_total=1)
    [dog] = [c for c in s["concepts"] if c["value"] == "dog"]
    assert dog["n"] == 1 and dog["by"] == {"g": {"a": 1}}


def test_limit_caps_the_rows_and_mixture_options_need_a_mixture(tmp_path):
    res = _audit({"mixture": "reference:clip"}, limit=500)
    assert _m(res, "unknown_share", "group").n == 500
    with pytest.raises(InputError, match="apply to a mixture only"):
        _audit({"correlation": 0.5}, data=str(_write_manifest(tmp_path)))


def _group_manifest(tmp: Path, counts: dict[str, int]) -> str:
    rows = [
        json.dumps({"id": f"{g}{i}", "image": f"{g}{i}.png", "attributes": {"group": g}})
        for g, n in counts.items()
        for i in range(n)
    ]
    path = tmp / "groups.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("counts", "covers_one"),
    [
        ({"a": 200, "b": 200}, True),
        ({"a": 100, "b": 100, "c": 100}, True),
        ({"a": 240, "b": 160}, False),
    ],
)
def test_imbalance_ratio_ci_covers_the_value_and_exact_balance(tmp_path, counts, covers_one):
    """An exactly balanced set (ratio 1.000) gets a CI that covers 1 (a max/min percentile
    bootstrap gave [1.001, 1.043]); a 3:2 set's CI covers 1.5 and excludes 1."""
    m = _m(_audit(data=_group_manifest(tmp_path, counts)), "imbalance_ratio", "group")
    assert m.value == pytest.approx(max(counts.values()) / min(counts.values()))
    assert m.ci_low <= m.value <= m.ci_high
    assert (m.ci_low <= 1.0 <= m.ci_high) is covers_one
