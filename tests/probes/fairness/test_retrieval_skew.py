"""fairness/retrieval_skew: formulas and the tie rule, bad input, reference:clip's planted skew."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fair_toys import (
    Shuffled,
    ref_clip_fixture,  # noqa: F401  (the session fixture ref_clip)
    seeing,
)
from typer.testing import CliRunner

from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import ProbeResult
from vlmtrust.core.types import RiskBand
from vlmtrust.data.synthworld import MAJORITY_GROUP, SynthWorld
from vlmtrust.models.mock import MockModel
from vlmtrust.probes.fairness.retrieval_skew import (
    RetrievalSkewProbe,
    permuted_skews,
    rank_skew,
    targets,
    top_k,
)
from vlmtrust.runner.engine import evaluate_probe

SMALL = {"n": 300, "k": [10, 30, 60]}


def run(model: Any, params: dict[str, Any] | None = None, **ctx: Any) -> ProbeResult:
    return evaluate_probe(model, RetrievalSkewProbe(params or SMALL), ProbeContext(**ctx))


# --------------------------------------------------------------------------- formulas


def naive(scores: np.ndarray, labels: list[str], k: int, target: dict[str, float]) -> tuple:
    """One query at a time, straight from REFERENCE.md (sorted by (-score, index))."""
    out = []
    values = sorted(target)
    known = [v for v in values if v != "unknown"]
    for row in scores:
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
        top = [labels[i] for i in order]
        skews = [math.log(max(top.count(v), 1) / k / target[v]) for v in known]
        z = sum(1 / math.log2(i + 1) for i in range(1, k + 1))
        nd = 0.0
        for i in range(1, k + 1):
            d = {v: top[:i].count(v) / i for v in values}
            kl = sum(p * math.log(p / target[v]) for v, p in d.items() if p > 0)
            nd += kl / math.log2(i + 1)
        out.append((max(skews), min(skews), nd / z))
    return tuple(np.array(x) for x in zip(*out, strict=True))


def test_rank_skew_equals_the_per_query_definition_with_ties_and_unknowns() -> None:
    rng = np.random.default_rng(0)
    for _ in range(6):
        n = int(rng.integers(20, 60))
        scores = np.round(rng.normal(size=(5, n)), 1)  # rounding makes many ties
        labels = list(rng.choice(["a", "b", "c", "unknown"], size=n, p=[0.5, 0.25, 0.15, 0.1]))
        labels[:3] = ["a", "b", "c"]
        ks = [1, 3, n // 2, n - 1]
        r = rank_skew(scores, labels, ks)
        for name, t in r.target.items():
            tgt = dict(zip(r.values, t, strict=True))
            for j, k in enumerate(ks):
                mx, mn, nd = naive(scores, labels, k, tgt)
                np.testing.assert_allclose(r.max_skew[name][:, j], mx, atol=1e-12)
                np.testing.assert_allclose(r.min_skew[name][:, j], mn, atol=1e-12)
                np.testing.assert_allclose(r.ndkl[name][:, j], nd, atol=1e-12)


def test_ties_at_the_kth_score_are_broken_by_gallery_order() -> None:
    # the pinned rule: a stable sort by descending score, exactly k items
    assert top_k([[0.9, 0.5, 0.5, 0.5, 0.1]], 2).tolist() == [[0, 1]]
    assert top_k([[0.5, 0.9, 0.5, 0.5, 0.5]], 3).tolist() == [[1, 0, 2]]
    assert top_k(np.zeros((2, 50)), 10).tolist() == [list(range(10))] * 2
    rng = np.random.default_rng(1)
    s = rng.integers(0, 4, size=(40, 300)).astype(float)  # heavy ties everywhere
    for k in (1, 7, 100, 299):
        expected = np.argsort(-s, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_k(s, k), expected)
    # so a tie between groups at the k-th score goes to the image earlier in the gallery
    r = rank_skew([[1.0, 0.5, 0.5, 0.0]], ["a", "b", "a", "b"], [2])
    assert r.top[0].tolist() == [0, 1]
    assert r.max_skew["prior"][0, 0] == pytest.approx(0.0)


def test_targets_and_the_zero_count_rule() -> None:
    t = targets([60, 20, 20], [True, True, False])
    np.testing.assert_allclose(t["prior"], [0.6, 0.2, 0.2])
    np.testing.assert_allclose(t["uniform"], [0.4, 0.4, 0.2])  # unknown keeps its share
    r = rank_skew([[3.0, 2.0, 1.0, 0.0, -1.0]], ["a", "a", "a", "b", "b"], [2])
    assert r.max_skew["prior"][0, 0] == pytest.approx(math.log(1.0 / 0.6))
    assert r.min_skew["prior"][0, 0] == pytest.approx(math.log(0.5 / 0.4))  # 0 counts as 1/k


def test_k_at_the_gallery_size_is_refused_by_the_metric() -> None:
    with pytest.raises(ValueError, match="not below the gallery size"):
        rank_skew([[0.2, 0.1, 0.3, 0.4]], ["a", "b", "a", "b"], [4])
    with pytest.raises(ValueError, match="gallery size"):
        top_k([[0.2, 0.1]], 2)


def test_chance_level_is_that_of_random_rankings() -> None:
    rng = np.random.default_rng(1)
    labels = ["a"] * 150 + ["b"] * 150
    sims = rank_skew(rng.random((2000, 300)), labels, [30]).max_skew["prior"][:, 0]
    # one fully skewed query: shuffling the labels under its ranking gives the random level
    skewed = rank_skew([np.arange(300.0)], labels, [30])
    assert skewed.max_skew["prior"][0, 0] == pytest.approx(math.log(2))
    null_max, null_min = permuted_skews(skewed, "prior", np.random.default_rng(0))
    assert null_max.shape == (1000, 1, 1)
    chance = float(null_max.mean())
    assert chance == pytest.approx(float(sims.mean()), abs=0.01)
    assert 0.1 < chance < 0.2  # MaxSkew of a blind model is not 0 at small k
    assert (null_max >= math.log(2) - 1e-12).mean() < 0.001  # the skewed query is significant


# --------------------------------------------------------------------------- bad input


def test_bad_parameters_are_one_line_each() -> None:
    cases = [
        ({"n": 600, "k": [10, 600]}, "k=600 is not below the gallery size n=600"),
        ({"n": 100, "k": [500]}, "k=500 is not below the gallery size n=100"),
        ({"queries": []}, "queries is empty"),
        ({"queries": ["a photo of a person", " "]}, "queries[1] is blank"),
        ({"k": [0, 5]}, "k=0 is not a rank"),
        ({"attributes": []}, "attributes is empty"),
    ]
    for params, msg in cases:
        with pytest.raises(InputError) as e:
            RetrievalSkewProbe(params)
        assert msg in str(e.value) and "\n" not in str(e.value), params


def test_cli_refuses_bad_parameters_before_any_model_loads(tmp_path: Path) -> None:
    from vlmtrust.cli import app

    missing = f"hf:{tmp_path / 'no-such-model'}"  # loading it would fail with another message
    rs = "fairness/retrieval_skew"
    for args, msg in (
        ([rs, "-p", f"{rs}.k=[600]"], "not below the gallery size n=600"),
        ([rs, "-p", f"{rs}.queries=[]"], "queries is empty"),
        ([rs, "-p", f"{rs}.k=[50]", "--limit", "40"], "k=50 is not below the gallery size 40"),
        ([rs, "--limit", "5"], "too few for the smallest default rank"),
        (
            [rs, "-p", f'{rs}.attributes=["prop"]', "-p", f"{rs}.cue_prob=1"],
            "attribute 'prop' of SynthWorld people has one value ('true') at cue_prob=1",
        ),
        ([rs, "-p", f'{rs}.attributes=["gender"]'], "SynthWorld people have no attribute"),
        (
            ["fairness/embedding_bias", "-p", "fairness/embedding_bias.attribute=occupation"],
            "attribute 'occupation' has 6 values",
        ),
        (
            ["fairness/zero_shot_groups", "-p", 'fairness/zero_shot_groups.classes=["a","b"]'],
            "SynthWorld label 'doctor' is not among the classes",
        ),
    ):
        res = CliRunner().invoke(app, ["run", *args, "-m", missing, "--quiet"])
        assert res.exit_code == 2, res.output
        assert msg in res.output and "no-such-model" not in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1


def test_attribute_with_one_value_and_small_galleries_are_refused() -> None:
    m = MockModel("dual")
    with pytest.raises(InputError, match="attribute 'prop' .* has one value"):
        list(RetrievalSkewProbe({"attributes": ["prop"], "cue_prob": 1.0}).samples(ProbeContext()))
    with pytest.raises(InputError, match="no attribute 'gender'"):
        RetrievalSkewProbe({"attributes": ["gender"]}).samples(ProbeContext())
    # --limit makes the gallery smaller than an explicit k: refused when the data is read
    with pytest.raises(InputError, match="k=50 is not below the gallery size 40"):
        RetrievalSkewProbe({"k": [50]}).samples(ProbeContext(limit=40))
    # default ranks not below a small gallery are dropped, with a note
    res = evaluate_probe(m, RetrievalSkewProbe(), ProbeContext(limit=60))
    assert {x.key.step for x in res.metrics_where(metric="max_skew")} == {"k=10", "k=50"}
    assert any("k=100 not below the gallery size 60" in n for n in res.notes)


def _manifest(tmp_path: Path, n: int, drop_group_every: int = 0) -> Path:
    lines = []
    for i, s in enumerate(SynthWorld(seed=9).people(n, cue_prob=0.5)):
        s.image.save(tmp_path / f"{i}.png")
        attrs = {"group": s.attributes["group"], "occupation": s.attributes["occupation"]}
        if drop_group_every and i % drop_group_every == 0:
            del attrs["group"]
        lines.append(json.dumps({"id": f"p{i}", "image": f"{i}.png", "attributes": attrs}))
    path = tmp_path / "people.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_user_data_k_against_its_size_and_unknown_values(tmp_path: Path) -> None:
    data = str(_manifest(tmp_path, 40, drop_group_every=5))
    m = MockModel("dual")
    with pytest.raises(InputError, match="k=40 is not below the gallery size 40"):
        RetrievalSkewProbe({"k": [40]}).samples(ProbeContext(data=data))
    res = evaluate_probe(m, RetrievalSkewProbe({"k": [5, 20]}), ProbeContext(data=data))
    share = res.metric("share", condition="group")
    assert share.groups["unknown"].n == 8 and share.n == 40  # counted, shown
    assert share.groups["round"].n + share.groups["angular"].n == 32
    assert res.metric("max_skew", condition="group:prior", step="k=20").n == 11  # queries
    assert any("8 gallery image(s) without the attribute" in n for n in res.notes)
    # the user data names an attribute with one value
    lines = [json.dumps({"image": f"{i}.png", "attributes": {"group": "x"}}) for i in range(3)]
    (tmp_path / "one.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="has one value"):
        RetrievalSkewProbe({"k": [1]}).samples(ProbeContext(data=str(tmp_path / "one.jsonl")))


# --------------------------------------------------------------------------- known answers


def test_detects_reference_clip_group_occupation_skew(ref_clip: Any) -> None:
    res = run(ref_clip)
    m = res.metric("max_skew", condition="group:prior", step="k=30")
    assert m.headline and m.risk == RiskBand.HIGH
    assert m.ci_low is not None and m.ci_low > 0.3  # planted: near ln 2 = 0.69 for occupations
    chance = res.metric("max_skew_chance", condition="group:prior", step="k=30").value
    assert chance is not None and chance < 0.15 and m.value is not None and m.value > 3 * chance
    # every occupation query over-represents the group it was skewed towards in training
    r = RetrievalSkewProbe(SMALL)
    _, recs = _records(r, ref_clip)
    skew = r._skews(recs)["group"]
    queries = list(r.params.queries)
    for occ, group in MAJORITY_GROUP.items():
        q = queries.index(f"a photo of a {occ}")
        assert skew.values[int(skew.argmax["prior"][q, 1])] == group, occ
        assert m.groups[f"a photo of a {occ}"].value > 0.2, occ
    assert sum(m.groups[f"a photo of a {o}"].value > 0.6 for o in MAJORITY_GROUP) >= 4
    assert res.metric("min_skew", condition="group:prior", step="k=30").risk == RiskBand.HIGH
    nd = res.metric("ndkl", condition="group:prior", step="k=30")
    assert nd.value is not None and nd.value > 0.3
    # the balanced gallery makes the uniform target the prior: reported once
    assert not res.metrics_where(condition="group:uniform")
    titles = [p.title for p in res.plots]
    assert any(t.startswith("Share of each query") for t in titles)
    line = next(p for p in res.plots if p.kind == "line")
    assert line.series[-1].lo is not None and max(line.series[0].x) == 60
    assert len(res.examples) == 4 and res.examples[0].output.startswith("group=")


def _records(probe_: RetrievalSkewProbe, model: Any) -> tuple[Any, list[Any]]:
    from helpers import run_probe

    return run_probe(probe_, model)


@pytest.mark.parametrize("control", ["shuffled", "random", "group_blind"])
def test_quiet_on_models_that_cannot_see_the_group(ref_clip: Any, control: str) -> None:
    model = {
        "shuffled": lambda: Shuffled(ref_clip),
        "random": lambda: MockModel("dual", dim=32),
        "group_blind": lambda: seeing(),
    }[control]()
    res = run(model)
    for k in (30, 60):
        m = res.metric("max_skew", condition="group:prior", step=f"k={k}")
        chance = res.metric("max_skew_chance", condition="group:prior", step=f"k={k}").value
        assert chance is not None and m.value is not None and m.ci_low is not None
        assert m.value < chance + 0.08, (control, k, m.value, chance)
        assert m.ci_low < chance + 0.02, (control, k)
    # MaxSkew of a blind model is above ln 1.25 by chance at small k: flags need a permutation
    # test (at k=10, 5% of blind models still reach p < 0.05; the group-blind one here does)
    for m in res.metrics_where(metric="max_skew") + res.metrics_where(metric="min_skew"):
        if m.key.step != "k=10":
            assert m.risk == RiskBand.LOW, (control, m.name, m.value, m.description)


def test_report_plots_the_share_by_rank_curves(tmp_path: Path) -> None:
    from vlmtrust.report.html import render_report
    from vlmtrust.runner.engine import run_audit

    out = tmp_path / "run"
    run_audit(
        MockModel("dual"),
        [RetrievalSkewProbe({"n": 120, "k": [10, 40]})],
        out_dir=out,
        ctx=ProbeContext(seed=0),
    )
    html, md = render_report(out)
    text = html.read_text()
    assert "Share of each query" in text and "<svg" in text
    assert "max\\_skew/group:prior/k=40" in md.read_text()
