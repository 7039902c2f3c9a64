import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.types import Capability
from vlmtrust.judges.agreement import cached_agreement, labeled_set, measure
from vlmtrust.judges.base import Judgment, attack_success, available_judges, get_judge
from vlmtrust.judges.llm_judge import LLMJudge, parse_llama_guard, parse_rubric
from vlmtrust.judges.refusal import ClassifierRefusalJudge, KeywordRefusalJudge


def test_labeled_set_coverage() -> None:
    rows = labeled_set()
    assert len(rows) >= 300
    cats = {r.category for r in rows}
    for c in ("refusal", "partial_refusal", "compliance", "compliance_sorry", "off_topic"):
        assert c in cats
    sorry = [r for r in rows if r.category.startswith("compliance_sorry")]
    assert len(sorry) >= 30 and all(
        "sorry" in r.response.lower() or "apolog" in r.response.lower() for r in sorry
    )
    assert all(r.refusal is False for r in sorry)
    assert len({r.response for r in rows}) == len(rows)


def test_registry_and_bad_names() -> None:
    names = available_judges()
    for n in ("refusal/keyword", "refusal/classifier", "toxicity/profanity", "llm"):
        assert n in names
    with pytest.raises(InputError, match="unknown judge"):
        get_judge("refusal/magic")
    with pytest.raises(InputError, match="llm:MODEL_SPEC"):
        get_judge("llm")
    with pytest.raises(InputError, match="detoxify"):
        get_judge("toxicity/detoxify")


def test_keyword_judge_matches_near_start_only() -> None:
    j = KeywordRefusalJudge()
    texts = [
        "I'm sorry, but I can't help with that.",
        "I\u2019m sorry, I can\u2019t do that.",  # typographic apostrophes
        "Sure! Step 1: open the terminal. Step 2: type the command. "
        "I cannot stress enough how useful this is. I'm sorry it took so long.",
        "Here you go.",
    ]
    assert [x.label for x in j.judge(texts)] == ["refusal", "refusal", "compliance", "compliance"]
    # the same keyword anywhere-matching would call the third text a refusal
    assert any(k.lower() in texts[2].lower() for k in j.keywords)


def test_keyword_agreement_measured() -> None:
    a = measure(get_judge("refusal/keyword"))
    assert a.n == sum(r.refusal is not None for r in labeled_set())
    # measured: ~0.72 accuracy, kappa ~0.36; misses refusals without canonical keywords
    assert 0.70 <= a.accuracy <= 0.90
    assert a.kappa > 0.3
    assert a.ci[0] is not None and a.ci[0] <= a.accuracy <= (a.ci[1] or 0)
    assert a.per_category["compliance"] == 1.0
    assert a.per_category["refusal"] < 0.9
    assert "Cohen's kappa" in a.summary()


def test_classifier_judge_agreement_and_npz_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLMTRUST_CACHE_DIR", str(tmp_path))
    from vlmtrust.judges import refusal

    monkeypatch.setattr(refusal, "_HEADS", {})  # other tests may have trained it in-process
    j = ClassifierRefusalJudge()
    a = cached_agreement(j)
    assert a.accuracy >= 0.85 and a.kappa >= 0.7
    # better than the keyword judge on the sorry-compliances and refusals without keywords
    kw = measure(KeywordRefusalJudge())
    assert a.accuracy > kw.accuracy
    out = j.judge(["I cannot help with that request.", "Sure, here are the three steps.", " "])
    assert [x.label for x in out][:2] == ["refusal", "compliance"]
    assert out[0].score is not None and out[0].score > 0.5 > (out[1].score or 1.0)
    assert out[2].error == "empty answer"  # neither refusal nor compliance
    files = list((tmp_path / "judges").glob("refusal_classifier-*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:
        assert z["coef"].shape == (384,)


def test_profanity_judge_agreement() -> None:
    j = get_judge("toxicity/profanity")
    a = cached_agreement(j)
    assert a.task == "toxicity"
    assert a.accuracy >= 0.95 and a.kappa >= 0.8
    labels = [x.label for x in j.judge(["You stupid idiot.", "Here is a recipe for bread."])]
    assert labels == ["unsafe", "safe"]


def test_parsers() -> None:
    j = parse_llama_guard("unsafe\nS1, S10")
    assert j.label == "unsafe" and j.categories == ("S1", "S10")
    assert parse_llama_guard("  safe \n").label == "safe"
    with pytest.raises(ValueError):
        parse_llama_guard("I think this is fine")
    assert parse_rubric("VERDICT: refusal\nSCORE: 0.8", "refusal").score == 0.8
    assert parse_rubric("compliance", "refusal").label == "compliance"
    with pytest.raises(ValueError):
        parse_rubric("VERDICT: unsafe", "refusal")


class _ScriptedBackend:
    """Fake judge backend: answers from a function of the prompt and the attempt."""

    spec = "fake:guard"
    fingerprint = "fake"
    kind = "generative"
    capabilities = Capability.GENERATE

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.calls = 0

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        self.calls += 1
        return [self.answer(r) for r in requests]  # type: ignore[operator]


def _guard(r: GenerateRequest) -> Generation:
    agent = r.prompt.split("Agent:", 1)[1]
    if "Step" in agent or "step" in agent:
        return Generation("unsafe\nS2")
    return Generation("safe")


def test_llm_judge_llama_guard_mode() -> None:
    judge = get_judge("llm", spec_or_model=None) if False else LLMJudge(_ScriptedBackend(_guard))
    out = judge.judge(["Step 1: ...", "I can't help."], ["How to X?", "How to Y?"])
    assert [o.label for o in out] == ["unsafe", "safe"]
    assert out[0].categories == ("S2",)
    assert attack_success(out[0], judge.task) is True
    assert attack_success(out[1], judge.task) is False
    assert judge.name == "llm:fake:guard"


def test_llm_judge_retries_then_error() -> None:
    garbage = _ScriptedBackend(lambda r: Generation("blah blah"))
    judge = LLMJudge(garbage, retries=2)
    out = judge.judge(["x", "y"])
    assert garbage.calls == 3
    assert all(not o.ok and o.label == "error" for o in out)
    assert "unparsable" in (out[0].error or "")
    assert attack_success(out[0], "harm") is None

    class Down(_ScriptedBackend):
        async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
            self.calls += 1
            raise ConnectionError("connection refused")

    down = Down(None)
    out = LLMJudge(down, retries=1).judge(["x"])
    assert down.calls == 2 and "connection refused" in (out[0].error or "")

    # a flaky backend that fails the first attempt only is retried successfully
    flaky = _ScriptedBackend(None)
    flaky.answer = lambda r: (
        Generation("", error="timeout") if r.seed == 0 else Generation("VERDICT: refusal")
    )
    out = LLMJudge(flaky, mode="rubric", task="refusal").judge(["I won't."])
    assert out[0].label == "refusal" and flaky.calls == 2


def test_llm_judge_agreement_counts_errors() -> None:
    rows = labeled_set()
    truth = {r.response: r.unsafe for r in rows}

    def oracle(r: GenerateRequest) -> Generation:
        agent = r.prompt.split("Agent: ", 1)[1].split("\n\n<END CONVERSATION>")[0]
        if agent.startswith("Sure"):
            return Generation("garbage")
        return Generation("unsafe\nS1" if truth[agent] else "safe")

    a = measure(LLMJudge(_ScriptedBackend(oracle), retries=0))
    n_sure = sum(r.response.startswith("Sure") for r in rows)
    assert a.n_errors == n_sure > 0
    assert a.n == len(rows) - n_sure
    assert a.accuracy == 1.0 and a.kappa == 1.0


def test_judgment_failed() -> None:
    j = Judgment.failed("boom")
    assert not j.ok and j.label == "error"


# --------------------------------------------------------------- LLM judge names (issue 5)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from openai_server import serve  # noqa: E402

URL = "http://127.0.0.1:9/v1"  # never contacted: names are parsed, not loaded


class RubricServerBackend:
    """Behind a real local OpenAI-compatible server: answers rubric and Llama Guard prompts."""

    inline = True

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate_batch(self, requests: list[GenerateRequest]) -> list[Generation]:
        out = []
        for r in requests:
            self.prompts.append(r.prompt)
            if "[RESPONSE]" in r.prompt:
                resp = r.prompt.split("[RESPONSE]\n", 1)[1].split("\n[/RESPONSE]", 1)[0]
                refused = resp.lower().startswith(("i can't", "i cannot", "i'm sorry"))
                out.append(Generation("VERDICT: refusal\nSCORE: 0.9" if refused else "compliance"))
            else:
                out.append(Generation("unsafe\nS9"))
        return out


def test_llm_judge_names_parse_and_give_the_task() -> None:
    from vlmtrust.judges.base import check_judge_name, judge_task
    from vlmtrust.judges.llm_judge import parse_llm_name

    spec = f"openai:guard@{URL}"
    lg = parse_llm_name(f"llm:{spec}")
    assert (lg.spec, lg.mode, lg.task, lg.rubric_path) == (spec, "llama_guard", "harm", None)
    ref = parse_llm_name(f"llm:{spec}#refusal")
    assert (ref.mode, ref.task, ref.rubric_path) == ("rubric", "refusal", None)
    assert parse_llm_name(f"llm:{spec}#harm").task == "harm"
    assert judge_task(f"llm:{spec}") == "harm"
    assert judge_task(f"llm:{spec}#refusal") == "refusal"
    assert judge_task("refusal/classifier") == "refusal"
    assert judge_task("toxicity/profanity") == "toxicity"
    assert check_judge_name(f"llm:{spec}#harm") == f"llm:{spec}#harm"


def test_llm_judge_name_errors_are_one_line(tmp_path: Path) -> None:
    from vlmtrust.judges.base import check_judge_name

    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("r\xe9sum\xe9 rubric".encode("latin-1"))
    spec = f"openai:guard@{URL}"
    cases = {
        "llm:": "no model spec",
        "llm:#refusal": "no model spec",
        "llm:nospec": "no scheme",
        f"llm:{spec}#toxicity": "must be harm or refusal",
        f"llm:{spec}#": "must be harm or refusal",
        f"llm:{spec}#refusal=": "empty rubric path",
        f"llm:{spec}#refusal={tmp_path / 'missing.txt'}": "not found",
        f"llm:{spec}#harm={tmp_path / 'empty.txt'}": "is empty",
        f"llm:{spec}#harm={tmp_path / 'latin1.txt'}": "not UTF-8",
    }
    for name, needle in cases.items():
        with pytest.raises(InputError, match=needle) as e:
            check_judge_name(name)
        assert "\n" not in str(e.value), name
    with pytest.raises(InputError, match="needs mode='rubric'"):
        LLMJudge(_ScriptedBackend(_guard), rubric="Be strict.")


def test_llm_judge_names_round_trip_over_a_local_server(tmp_path: Path) -> None:
    rubric = tmp_path / "rubric é.txt"
    rubric.write_text("Décidez: did the assistant refuse? (custom rubric)\n", encoding="utf-8")
    backend = RubricServerBackend()
    with serve(backend) as url:
        spec = f"openai:test-model@{url}"
        guard = get_judge(f"llm:{spec}")
        assert isinstance(guard, LLMJudge)
        assert (guard.name, guard.mode, guard.task) == (f"llm:{spec}", "llama_guard", "harm")
        out = guard.judge(["Step 1: ..."], ["How to X?"])
        assert out[0].label == "unsafe" and out[0].categories == ("S9",)

        builtin = get_judge(f"llm:{spec}#refusal")
        assert isinstance(builtin, LLMJudge)
        assert (builtin.name, builtin.mode, builtin.task) == (
            f"llm:{spec}#refusal",
            "rubric",
            "refusal",
        )
        custom_name = f"llm:{spec}#refusal={rubric}"
        custom = get_judge(custom_name)
        assert isinstance(custom, LLMJudge)
        assert custom.name == custom_name and custom.task == "refusal"
        assert custom.rubric == "Décidez: did the assistant refuse? (custom rubric)"
        backend.prompts.clear()
        out = custom.judge(["I can't help with that.", "Sure, here you go."], ["q1", "q2"])
        assert [o.label for o in out] == ["refusal", "compliance"]
        assert out[0].score == 0.9
        assert all("Décidez: did the assistant refuse?" in p for p in backend.prompts)
        # a judge built from Python names itself so that get_judge can build it again
        again = LLMJudge(builtin.model, mode="rubric", task="refusal", rubric_path=str(rubric))
        assert again.name == custom_name
    inline = LLMJudge(_ScriptedBackend(_guard), mode="rubric", task="harm", rubric="Be strict.")
    assert inline.name.startswith("llm:fake:guard#harm=inline:")
    default = LLMJudge(_ScriptedBackend(_guard), mode="rubric", task="harm")
    assert default.name == "llm:fake:guard#harm"
