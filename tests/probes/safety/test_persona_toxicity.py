"""safety/persona_toxicity: a persona that makes a scripted model rude is found."""

from typing import Any

import pytest

from helpers import metrics, run_probe
from vlmtrust.core.errors import InputError
from vlmtrust.core.model import GenerateRequest
from vlmtrust.data.personas import PERSONAS, persona
from vlmtrust.judges.agreement import labeled_set
from vlmtrust.models.mock import MockModel

CIVIL = "Thanks for sharing. It is a simple picture of a shape on a plain background."
# a rude answer from the project's own hand-labeled set (no new toxic text is written here)
RUDE = next(r.response for r in labeled_set() if r.id == "toxic-002")
PARAMS: dict[str, Any] = {
    "n": 8,
    "personas": ["assistant", "teacher", "bar_brawler"],
    "with_image": False,
}


def _rude_under(persona_id: str) -> MockModel:
    system = persona(persona_id).system

    def answer(r: GenerateRequest) -> str:
        return RUDE if r.system == system else CIVIL

    return MockModel(answers=answer, spec=f"mock:rude-as-{persona_id}")


def test_persona_that_raises_toxicity_is_found_with_kappa() -> None:
    model = _rude_under("bar_brawler")
    p, recs = run_probe("safety/persona_toxicity", model, PARAMS)
    assert len(recs) == 8 * 4 and all(r.ok for r in recs)
    assert {c.system for c in model.calls} == {None} | {
        persona(i).system for i in PARAMS["personas"]
    }
    ms = metrics(p, recs)
    j = "toxicity/profanity"
    assert ms[f"toxic_fraction/none/{j}"].value == 0.0
    assert ms[f"toxic_fraction/bar_brawler/{j}"].value == 1.0
    lift = ms[f"toxicity_lift/bar_brawler_vs_none/{j}"]
    assert lift.value == 1.0 and lift.headline and lift.risk == "high"
    assert ms[f"toxicity_lift/teacher_vs_none/{j}"].value == 0.0
    assert ms[f"toxicity_lift/teacher_vs_none/{j}"].risk == "low"
    assert f"judge_kappa/{j}" in ms  # the judge's agreement with the labeled set, as elsewhere
    (plot,) = p.plots(recs, None)  # type: ignore[arg-type]
    assert plot.series[0].x == ["none", "assistant", "teacher", "bar_brawler"]
    assert plot.series[0].y == [0.0, 0.0, 0.0, 1.0]
    ex = p.examples(recs, None)  # type: ignore[arg-type]
    assert ex and all("bar_brawler" in e.title for e in ex)


def test_model_that_ignores_personas_is_quiet() -> None:
    p, recs = run_probe(
        "safety/persona_toxicity", MockModel(answers=CIVIL), {**PARAMS, "agreement": False}
    )
    ms = metrics(p, recs)
    lifts = [m for m in ms.values() if m.key.metric == "toxicity_lift"]
    assert len(lifts) == 3 and all(m.value == 0.0 and m.risk == "low" for m in lifts)
    assert not p.examples(recs, None)  # type: ignore[arg-type]


def test_reference_vlm_stays_quiet_under_personas(ref_vlm: Any) -> None:
    # reference:vlm answers a system prompt with its content-free template: never toxic
    params = {"n": 3, "personas": ["assistant", "bar_brawler"], "agreement": False}
    p, recs = run_probe("safety/persona_toxicity", ref_vlm, params)
    assert all(r.ok for r in recs)
    ms = metrics(p, recs)
    assert all(
        m.value == 0.0 for m in ms.values() if m.key.metric in ("toxic_fraction", "toxicity_lift")
    )


def test_bad_persona_and_refusal_judge_are_one_line() -> None:
    from vlmtrust.core.probe import registry

    cls = registry()["safety/persona_toxicity"]
    with pytest.raises((InputError, ValueError), match="unknown persona 'pirate'; use one of"):
        cls({"personas": ["pirate"]})
    with pytest.raises((InputError, ValueError), match="refusal judge"):
        cls({"judges": ["refusal/keyword"]})
    assert len({p.id for p in PERSONAS}) == len(PERSONAS)
