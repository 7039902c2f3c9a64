"""The fairness probes' list-of-texts parameters share one validator (fc.texts)."""

from __future__ import annotations

import pytest

from vlmtrust.probes.fairness.attribute_leakage import AttributeLeakageParams
from vlmtrust.probes.fairness.embedding_bias import EmbeddingBiasParams
from vlmtrust.probes.fairness.retrieval_skew import RetrievalSkewParams
from vlmtrust.probes.fairness.zero_shot_groups import ZeroShotGroupsParams


def test_texts_are_checked_the_same_way_in_every_probe() -> None:
    for cls in (AttributeLeakageParams, RetrievalSkewParams, ZeroShotGroupsParams):
        with pytest.raises(ValueError, match="attributes names 'group' twice"):
            cls(attributes=["group", "group"])
        with pytest.raises(ValueError, match=r"attributes is empty: give at least one, e\.g\."):
            cls(attributes=[])
    with pytest.raises(ValueError, match=r"concepts\[1\] is blank"):
        EmbeddingBiasParams(concepts_y=["nurse", " "])
    with pytest.raises(ValueError, match="queries is empty"):
        RetrievalSkewParams(queries=[])


def test_lists_that_may_be_empty_accept_none() -> None:
    assert EmbeddingBiasParams(neutral=[]).neutral == []
    assert AttributeLeakageParams(concepts=[]).concepts == []
    assert ZeroShotGroupsParams(harmful_classes=[]).harmful_classes == []
