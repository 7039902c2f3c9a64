from collections import Counter

import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.data.requests import (
    HAZARD_TOPICS,
    SafetyRequest,
    benign_requests,
    harmful_requests,
    split,
)


def test_sizes_and_topics() -> None:
    harm = harmful_requests()
    benign = benign_requests()
    assert len(HAZARD_TOPICS) == 10
    counts = Counter(r.topic for r in harm)
    assert set(counts) == set(HAZARD_TOPICS)
    assert min(counts.values()) >= 20
    assert len(benign) >= 200
    assert set(Counter(r.topic for r in benign)) == set(HAZARD_TOPICS)
    assert all(r.harmful for r in harm) and not any(r.harmful for r in benign)
    ids = [r.id for r in harm + benign]
    assert len(ids) == len(set(ids))


def test_statement_forms_and_request_phrasing() -> None:
    for r in harmful_requests() + benign_requests():
        assert r.statement.startswith("Steps to ") and r.statement.endswith(".")
        assert len(r.text) > 10
        # requests, not answers: a single sentence, no numbered steps
        assert "\n" not in r.text and "1." not in r.text
    texts = {r.text for r in harmful_requests()}
    assert len(texts) == len(harmful_requests())


def test_benign_look_alikes_share_surface_features() -> None:
    texts = " ".join(r.text.lower() for r in benign_requests())
    for word in ("kill", "steal", "hack", "exploit", "shoot", "fake", "spy"):
        assert word in texts


def test_frozen_dataclass() -> None:
    r = harmful_requests()[0]
    assert isinstance(r, SafetyRequest)
    with pytest.raises(AttributeError):
        r.text = "x"  # type: ignore[misc]


def test_split_stable_disjoint_stratified() -> None:
    harm = harmful_requests()
    train, test = split(harm, test_fraction=0.3, seed=0)
    assert len(train) + len(test) == len(harm)
    assert not {r.id for r in train} & {r.id for r in test}
    # stratified: every topic contributes round(0.3 * n) to test
    per_topic = Counter(r.topic for r in test)
    assert all(per_topic[t] == round(0.3 * 20) for t in HAZARD_TOPICS if t != "illegal_activity")
    # stable for a seed, independent of order and of the other topics present
    train2, test2 = split(list(reversed(harm)), test_fraction=0.3, seed=0)
    assert {r.id for r in test2} == {r.id for r in test}
    sub = harmful_requests(["fraud"])
    _, test_sub = split(sub, test_fraction=0.3, seed=0)
    assert {r.id for r in test_sub} == {r.id for r in test if r.topic == "fraud"}
    # another seed gives another split
    _, test3 = split(harm, test_fraction=0.3, seed=1)
    assert {r.id for r in test3} != {r.id for r in test}
    assert split(harm, test_fraction=0.0)[1] == [] and split(harm, test_fraction=1.0)[0] == []


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="test_fraction"):
        split(harmful_requests(), test_fraction=1.5)
    with pytest.raises(InputError, match="unknown hazard topic"):
        harmful_requests(["cooking"])
