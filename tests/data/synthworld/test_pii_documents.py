"""SynthWorld's private documents (ID cards, forms, screenshots, receipts), their benign twins,
and people scenes with forced occupation cues."""

from __future__ import annotations

import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.data.synthworld import (
    BUSINESS_KIND,
    BUSINESS_ON_DOC,
    DOC_TYPES,
    PII_ON_DOC,
    PII_POOL,
    PII_POOL_DOB,
    PII_TYPES,
    SynthWorld,
)


def test_pii_documents_ground_truth_per_type_and_determinism() -> None:
    world = SynthWorld(seed=3)
    for doc_type in DOC_TYPES:
        docs = world.pii_documents(3, doc_type=doc_type, size=128)
        again = SynthWorld(seed=3).pii_documents(3, doc_type=doc_type, size=128)
        assert [d.image.tobytes() for d in docs] == [d.image.tobytes() for d in again]
        assert [d.id for d in world.pii_documents(2, doc_type=doc_type, start=1, size=128)] == [
            d.id for d in docs[1:]
        ]
        for d in docs:
            pii = d.metadata["pii"]
            assert tuple(pii) == PII_ON_DOC[doc_type] and set(pii) <= set(PII_TYPES)
            assert d.target == pii["name"] and d.image.size == (128, 128)
            assert dict(d.attributes) == {
                "doc_type": doc_type,
                "content": "personal",
                "identities": "faker",
            }
            if "dob" in pii:
                assert 1950 <= int(pii["dob"][:4]) <= 2004
            assert pii["phone"].startswith("555-01")  # the fictional range
            # a receipt also shows its store; nothing else carries business details
            assert bool(d.metadata["business"]) == (doc_type == "receipt")
    assert len({d.id for t in DOC_TYPES for d in world.pii_documents(2, doc_type=t)}) == 8


def test_pool_identities_carry_their_dates_of_birth() -> None:
    docs = SynthWorld(0).pii_documents(len(PII_POOL), identities="pool", size=128)
    for k, d in enumerate(docs):
        pii = d.metadata["pii"]
        assert {t: pii[t] for t in PII_POOL[k]} == dict(PII_POOL[k])
        assert pii["dob"] == PII_POOL_DOB[k] and pii["id_number"].startswith("ID-")


def test_benign_twin_shows_business_details_only() -> None:
    for doc_type in DOC_TYPES:
        d = SynthWorld(1).pii_documents(1, doc_type=doc_type, content="business", size=128)[0]
        assert d.metadata["pii"] == {}
        biz = d.metadata["business"]
        assert tuple(biz) == BUSINESS_ON_DOC[doc_type] and set(biz) <= set(BUSINESS_KIND)
        assert d.target == biz["company"] and d.attributes["identities"] == "none"
        assert "@" in biz.get("email", "x@example.com")
        # the same layout as its personal twin, another content
        twin = SynthWorld(1).pii_documents(1, doc_type=doc_type, size=128)[0]
        assert twin.image.size == d.image.size and twin.image.tobytes() != d.image.tobytes()
        # no person's name from the pool or the twin in the business details
        names = {p["name"] for p in PII_POOL} | {twin.metadata["pii"]["name"]}
        assert not any(n in v for n in names for v in biz.values())


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"doc_type": "passport"}, "doc_type='passport': use one of id_card"),
        ({"content": "secret"}, "content='secret': use personal or business"),
        ({"identities": "real"}, "identities='real': use faker or pool"),
        ({"size": 32}, "size=32: use 64..2048"),
    ],
)
def test_pii_documents_bad_input_is_one_line(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        SynthWorld(0).pii_documents(1, **kw)  # type: ignore[arg-type]


def test_people_forced_cues_leave_the_default_stream_unchanged() -> None:
    world = SynthWorld(0)
    plain = world.people(8, cue_prob=0.5)
    assert [s.id for s in plain] == [s.id for s in SynthWorld(0).people(8, cue_prob=0.5)]
    forced = world.people(8, cue_prob=0.5, prop=False, setting=True)
    assert all(
        s.attributes["prop"] == "false" and s.attributes["setting"] == "true" for s in forced
    )
    # the same people (group, occupation) as the unforced stream; other ids, other images
    assert [(s.attributes["group"], s.attributes["occupation"]) for s in forced] == [
        (s.attributes["group"], s.attributes["occupation"]) for s in plain
    ]
    assert {s.id for s in forced}.isdisjoint(s.id for s in plain)
    bare = world.people(4, prop=False, setting=False)
    assert all(s.attributes["prop"] == s.attributes["setting"] == "false" for s in bare)
