"""privacy/membership_inference: reference:clip's planted canaries, the control, the confound
check, bad input, and the report's Privacy column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tests.probes.privacy.privacy_helpers import loaded, result

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.types import RiskBand
from vlmtrust.probes.privacy.membership_inference import MembershipInferenceProbe
from vlmtrust.runner.engine import evaluate_probe, run_audit

torch.set_num_threads(1)
NAME = "privacy/membership_inference"


def covers_half(m: Any) -> bool:
    return m.ci_low is not None and m.ci_low < 0.5 < m.ci_high


def test_planted_canaries_are_detected(planted: Path) -> None:
    res = result(planted, NAME)
    a = res.metric("auc")
    assert a.n == 32 + 1000 and a.headline and a.risk == RiskBand.HIGH
    assert a.ci_low is not None and a.ci_low > 0.9
    low = res.metric("tpr_at_fpr", step="fpr=1%")
    assert low.n == 32 and low.ci_low is not None and low.ci_low > 0.5
    loss = res.metric("auc", condition="loss")
    assert loss.ci_low is not None and loss.ci_low > 0.9
    # the split is sound: one distribution on both sides, so no confound flag
    assert res.metric("auc", condition="model_free").risk == RiskBand.LOW
    assert not any("confounded" in n for n in res.notes)
    assert [p.kind for p in res.plots] == ["roc"]
    assert [s.name for s in res.plots[0].series] == ["threshold", "loss (φ vs distractors)"]


def test_control_candidates_never_trained_on_cover_one_half(ref_clip: Any) -> None:
    probe = MembershipInferenceProbe({"split": "control", "non_members": 300, "fprs": [0.01]})
    res = evaluate_probe(ref_clip, probe, ProbeContext())
    for cond in (None, "loss"):
        assert covers_half(res.metric("auc", condition=cond)), cond
    assert res.metric("tpr_at_fpr", step="fpr=1%").value <= 0.1  # type: ignore[operator]
    assert not any("confounded" in n for n in res.notes)


def test_confounded_split_is_flagged(ref_clip: Any, tmp_path: Path) -> None:
    from vlmtrust.report.html import render_report

    probe = MembershipInferenceProbe({"split": "confounded", "non_members": 200, "fprs": [0.01]})
    res = run_audit(ref_clip, [probe], out_dir=tmp_path).result(NAME)
    free = res.metric("auc", condition="model_free")
    assert free.value is not None and free.value > 0.9 and free.risk == RiskBand.HIGH
    assert any(n.startswith("split confounded") for n in res.notes)
    assert "split confounded" in res.metric("auc").description
    # the report carries the flag beside the attack's AUC and its low-FPR TPR with a CI
    html, md = render_report(tmp_path)
    for text in (html.read_text(), md.read_text()):
        assert "split confounded" in text and "fpr=1%" in text and "[83.8%, 99.9%]" in text


def test_privacy_column_of_the_scorecard_is_filled(planted: Path) -> None:
    from vlmtrust.core.types import Pillar
    from vlmtrust.report.html import render_report
    from vlmtrust.report.rundir import load_run
    from vlmtrust.report.view import build_run_view

    view = build_run_view(load_run(planted))
    card = next(c for c in view.scorecard if c.pillar == Pillar.PRIVACY)
    assert card.audited and card.risk == RiskBand.HIGH
    heads = {(h.probe, h.metric) for h in card.headlines}
    assert {
        (NAME, "auc"),
        (NAME, "tpr_at_fpr/fpr=0.1%"),
        ("privacy/memorization", "ppg"),
        ("privacy/memorization", "exposure_gap"),
    } <= heads
    html, _ = render_report(planted)
    assert "(log scale)" in html.read_text()  # the ROC's FPR axis


# --------------------------------------------------------------------------- bad input


def test_too_few_non_members_for_the_fpr_is_one_line(ref_clip: Any, tmp_path: Path) -> None:
    probe = MembershipInferenceProbe({"non_members": 50})
    with pytest.raises(InputError) as e:
        evaluate_probe(ref_clip, probe, ProbeContext())
    msg = str(e.value)
    assert "fpr=0.1% needs at least 1000 non-member candidates, got 50" in msg
    assert "\n" not in msg and "non_members" in msg
    # through an audit it is the probe's one note, and nothing was attacked
    log = run_audit(ref_clip, [probe], out_dir=tmp_path)
    res = log.result(NAME)
    assert res.metrics == [] and res.n_samples == 0
    assert res.notes == [f"probe did not run: {msg}"]
    # the rate the candidates allow runs
    ok = evaluate_probe(ref_clip, MembershipInferenceProbe({"non_members": 50, "fprs": "0.02"}))
    assert ok.metric("tpr_at_fpr", step="fpr=2%").n == 32


def user_data(items: list[Sample]) -> ProbeContext:
    return ProbeContext(data="memory:test", datasets=lambda spec: items)


def canary_rows(n: int, member: str, start: int) -> list[Sample]:
    from vlmtrust.data.synthworld import SynthWorld

    return [
        Sample(
            id=f"{member}-{c.id}",
            images=(ImageRef.from_image(c.image, label=c.id),),
            attributes={"member": member},
            metadata={"caption": c.caption},
        )
        for c in SynthWorld(seed=0, image_size=64).canaries(n, start=start)
    ]


def test_overlapping_members_and_non_members_are_one_line(ref_clip: Any) -> None:
    members = canary_rows(8, "1", 0)
    non = canary_rows(20, "0", 100)
    twin = Sample(
        id="dup", images=members[0].images, attributes={"member": "false"},
        metadata=members[0].metadata,
    )  # fmt: skip
    probe = MembershipInferenceProbe({"fprs": [0.1]})
    with pytest.raises(InputError, match=r"1 candidate\(s\) are both members and non-members"):
        evaluate_probe(ref_clip, probe, user_data([*members, *non, twin]))
    # without the twin the same data runs, through the same --data path
    res = evaluate_probe(ref_clip, probe, user_data([*members, *non]))
    assert res.metric("auc").n == 28


def test_unknown_member_value_is_one_line(ref_clip: Any) -> None:
    rows = canary_rows(3, "1", 0)
    bad = Sample(id="x", images=rows[0].images, attributes={"member": "maybe"})
    with pytest.raises(InputError, match="member='maybe'.*1 \\(trained on\\), 0"):
        evaluate_probe(ref_clip, MembershipInferenceProbe({"fprs": [0.5]}), user_data([bad]))


def test_reference_model_of_another_architecture_is_one_line(
    tiny_clip: Any, tiny_siglip_dir: Path
) -> None:
    probe = MembershipInferenceProbe(
        {"reference_models": f"hf:{tiny_siglip_dir}", "non_members": 20, "fprs": [0.1],
         "population": 10}
    )  # fmt: skip
    with pytest.raises(CapabilityError) as e:
        evaluate_probe(tiny_clip, probe, ProbeContext())
    msg = str(e.value)
    assert "is dual siglip" in msg and "is dual clip" in msg and "\n" not in msg
    assert "must share the target's architecture" in msg


def test_bad_parameters_are_one_line() -> None:
    with pytest.raises(InputError, match="references=3: use an even number") as e:
        MembershipInferenceProbe({"references": 3})
    assert "bad parameter 'references'" in str(e.value)  # names the parameter
    with pytest.raises(InputError, match="fpr 1.5 is outside"):
        MembershipInferenceProbe({"fprs": "0.01,1.5"})
    assert MembershipInferenceProbe({"reference_models": "a, b"}).params.reference_models == [
        "a",
        "b",
    ]


def test_api_model_without_gradient_is_refused() -> None:
    from vlmtrust.core.types import Capability

    class Api:
        spec, kind, fingerprint = "openai:x@http://h", "generative", "x"
        capabilities = Capability.GENERATE

    why = MembershipInferenceProbe().unsupported(Api())  # type: ignore[arg-type]
    assert why is not None and "needs GRADIENT" in why


# --------------------------------------------------------------------------- references


def test_user_reference_model_gives_offline_lira_and_rmia(ref_clip: Any) -> None:
    # reference:clip as its own "reference" (assumed trained on no candidate): offline LiRA
    # and RMIA run, and a reference identical to the target calibrates every signal away
    # (RMIA with a = 1: p(x) = p_out(x) = p(x|θ), every ratio 1).
    probe = MembershipInferenceProbe(
        {"reference_models": "reference:clip", "non_members": 200, "fprs": [0.01],
         "population": 100, "rmia_a": 1.0}
    )  # fmt: skip
    res = evaluate_probe(ref_clip, probe, loaded({"reference:clip": ref_clip}))
    names = {m.key.condition for m in res.metrics if m.key.metric == "auc"}
    assert names == {None, "loss", "lira_offline", "rmia", "model_free"}
    off = res.metric("auc", condition="lira_offline")
    assert off.n == 232 and off.value == pytest.approx(0.5)  # population not counted
    assert res.metric("auc", condition="rmia").value == pytest.approx(0.5)
    assert res.metric("auc").ci_low > 0.9  # type: ignore[operator]  # the threshold is unmoved
    assert any("user reference models" in n for n in res.notes)


def test_trained_references_detect_the_planted_canaries(ref_clip: Any) -> None:
    probe = MembershipInferenceProbe(
        {"references": 2, "reference_steps": 10, "non_members": 100, "fprs": [0.01],
         "population": 50}
    )  # fmt: skip
    res = evaluate_probe(ref_clip, probe, ProbeContext())
    for cond in ("lira_offline", "rmia"):
        m = res.metric("auc", condition=cond)
        assert m.ci_low is not None and m.ci_low > 0.7, cond
    assert res.metric("auc", condition="lira_online").n == 132
    assert any("2 reference models fine-tuned from the target" in n for n in res.notes)


def test_generative_loss_attack_on_reference_vlm_cards() -> None:
    from vlmtrust.models.loader import load_model

    vlm = load_model("reference:vlm", device="cpu")
    params = {**MembershipInferenceProbe.defaults_for("generative"), "non_members": 100}
    res = evaluate_probe(vlm, MembershipInferenceProbe({**params, "fprs": [0.01]}))
    # reference:vlm memorised identities, not card images: training cards and fresh cards of
    # the same identities have the same loss (privacy/memorization measures the identities).
    a = res.metric("auc")
    assert a.n == 96 + 100 and covers_half(a)
    assert res.metric("auc", condition="model_free").risk == RiskBand.LOW


def test_cli_refuses_bad_privacy_input_before_any_model_loads(tmp_path: Path) -> None:
    """Too few non-members, overlapping members and non-members, and reference models of
    another architecture stop `vlmtrust run` with one line before the model is loaded."""
    import json

    from typer.testing import CliRunner

    from vlmtrust.cli import app
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.models.reference import reference_path

    # configs without weights: loading either folder would fail with another message
    clip_cfg = json.loads((reference_path("clip") / "config.json").read_text())
    target, other = tmp_path / "no-weights-clip", tmp_path / "no-weights-siglip"
    for d, cfg in ((target, clip_cfg), (other, {**clip_cfg, "model_type": "siglip"})):
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
    rows = []
    for k, c in enumerate(SynthWorld(seed=0, image_size=64).canaries(6)):
        c.image.save(tmp_path / f"c{k}.png")
        rows.append({"image": f"c{k}.png", "target": c.caption, "attributes": {"member": "1"}})
    rows.append({**rows[0], "attributes": {"member": "0"}})  # a member again, as a non-member
    data = tmp_path / "cands.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mi = NAME
    for args, msg in (
        (["--limit", "50"], "fpr=0.1% needs at least 1000 non-member candidates, got 50"),
        (["-p", f"{mi}.non_members=99", "-p", f"{mi}.fprs=0.01"], "needs at least 100 non-member"),
        (["--data", str(data)], "1 candidate(s) are both members and non-members"),
        (
            ["-p", f"{mi}.reference_models=hf:{other}", "-p", f"{mi}.non_members=1000"],
            f"reference model hf:{other} is dual siglip",
        ),
    ):
        res = CliRunner().invoke(app, ["run", mi, "-m", f"hf:{target}", *args, "--quiet"])
        assert res.exit_code == 2, res.output
        out = " ".join(res.output.split())
        assert msg in out and "safetensors" not in out, (args, res.output)
        assert "dual clip" in out if "siglip" in msg else len(res.output.splitlines()) == 1, out
