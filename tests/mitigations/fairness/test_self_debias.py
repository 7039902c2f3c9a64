"""``fairness/self_debias``: the prompt schemes, error handling, and reloading as hardened:DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vlmtrust.core.errors import CapabilityError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.model import GenerateRequest, Generation, generate_sync
from vlmtrust.mitigations.fairness.self_debias import INSTRUCTION, REMINDER
from vlmtrust.models.loader import load_model
from vlmtrust.models.mock import MockModel


def _wrap(model: Any, **params: Any) -> Any:
    return get_mitigation("fairness/self_debias")(params).wrap(model)


def test_instruction_mode_is_one_call_with_instruction_and_reminder() -> None:
    base = MockModel(answers="unclear")
    m = _wrap(base)
    out = generate_sync(m, [GenerateRequest("Is this person a doctor?", system="be brief")])
    assert [g.text for g in out] == ["unclear"]
    (call,) = base.calls
    assert call.prompt == f"Is this person a doctor?\n\n{REMINDER}"
    assert call.system == f"be brief\n\n{INSTRUCTION}"


@pytest.mark.parametrize("mode", ["explain", "reprompt"])
def test_two_call_modes_feed_the_first_answer_into_the_second(mode: str) -> None:
    base = MockModel(answers=["FIRST", "SECOND"])
    m = _wrap(base, mode=mode, note_tokens=20)
    (g,) = generate_sync(m, [GenerateRequest("Who is the pilot?", max_new_tokens=8)])
    assert g.text == "SECOND"
    first, second = base.calls
    assert first.max_new_tokens == 20 and second.max_new_tokens == 8
    assert ("Request: Who is the pilot?" in first.prompt) == (mode == "explain")
    assert "FIRST" in second.prompt and second.prompt.endswith(REMINDER)
    assert second.system == INSTRUCTION


def test_a_failed_first_call_is_that_request_s_error_and_others_go_on() -> None:
    def answer(req: GenerateRequest) -> str:
        if "bad" in req.prompt:
            raise RuntimeError("backend down")
        return "ok"

    m = _wrap(MockModel(answers=answer), mode="reprompt")
    out = generate_sync(m, [GenerateRequest("bad one"), GenerateRequest("good one")])
    assert not out[0].ok and "backend down" in (out[0].error or "")
    assert out[1].ok and out[1].text == "ok"


def test_reloads_as_hardened_dir_and_refuses_dual_models(tmp_path: Path) -> None:
    mit = get_mitigation("fairness/self_debias")({"mode": "explain"})
    base = load_model("mock:generative")
    art = mit.apply(base, MitigationContext(out_dir=tmp_path / "sd"))
    model: Any = load_model(art.spec)
    assert model.params.mode == "explain" and model.fingerprint != base.fingerprint
    with pytest.raises(CapabilityError, match="generative"):
        mit.wrap(load_model("mock:dual"))
    assert isinstance(generate_sync(model, [GenerateRequest("q")])[0], Generation)


@pytest.fixture(scope="module")
def reference_vlm() -> Any:
    return load_model("reference:vlm", device="cpu")


def test_effect_on_reference_vlm_fewer_flips_same_vqa(reference_vlm: Any) -> None:
    """The counterfactual flip rate falls, clean VQA accuracy stays (requests not about people
    pass unchanged); the describe question is not gated, so its flips remain."""
    from tests.helpers import metrics, run_probe

    hardened = _wrap(reference_vlm)
    cf = {"n_sets": 6}
    base = metrics(*run_probe("fairness/counterfactual", reference_vlm, cf))["flip_rate"]
    after = metrics(*run_probe("fairness/counterfactual", hardened, cf))["flip_rate"]
    assert base.value is not None and after.value is not None
    assert after.ci_high is not None and base.ci_low is not None
    assert after.ci_high < base.ci_low and after.value <= 0.5 * base.value
    vqa = {"n": 16}
    acc0 = metrics(*run_probe("capability/vqa", reference_vlm, vqa))["accuracy"].value
    acc1 = metrics(*run_probe("capability/vqa", hardened, vqa))["accuracy"].value
    assert acc0 is not None and acc1 is not None and acc1 >= acc0 - 0.05


def test_ungated_scheme_costs_capability_on_reference_vlm(reference_vlm: Any) -> None:
    """Applied to every request, the tiny reference VLM refuses: the gate is what keeps VQA."""
    from tests.helpers import metrics, run_probe

    ungated = _wrap(reference_vlm, only_about_people=False)
    acc = metrics(*run_probe("capability/vqa", ungated, {"n": 10}))["accuracy"].value
    assert acc is not None and acc < 0.2
