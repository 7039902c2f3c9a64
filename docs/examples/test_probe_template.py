"""Template test: the probe end to end through the runner on toy encoders with a known answer.

Copy to ``tests/probes/test_<name>.py`` and change the one import line marked below (see
``docs/adding-a-probe.md``). A fair toy must show no gap; a toy with a planted flaw must show it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

# After copying: from vlmtrust.probes.<pillar>.<name> import <YourProbe> as ProbeUnderTest
from probe_template import TemplateGapProbe as ProbeUnderTest

from vlmtrust.core.probe import ProbeContext, registry
from vlmtrust.core.results import ProbeResult
from vlmtrust.core.sample import image_digest
from vlmtrust.core.types import RiskBand
from vlmtrust.data.synthworld import OCCUPATIONS
from vlmtrust.runner.engine import evaluate_probe


class LookupEncoder:
    """Knows each image's answer (planted): right for every group except ``blind_group``."""

    kind = "dual"
    capabilities = ProbeUnderTest.requires
    logit_scale = 100.0
    spec = "toy:lookup"
    fingerprint = "toy-lookup-v1"

    def __init__(self, probe: ProbeUnderTest, ctx: ProbeContext, blind_group: str | None) -> None:
        self.answer: dict[str, int] = {}
        for s in probe.samples(ctx):
            right = OCCUPATIONS.index(str(s.target))
            wrong = (right + 1) % len(OCCUPATIONS)
            blind = s.attributes["group"] == blind_group
            self.answer[image_digest(s.images[0].load())] = wrong if blind else right

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """One-hot of the planted answer for each image."""
        return np.eye(len(OCCUPATIONS))[[self.answer[image_digest(im)] for im in images]]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One-hot of the occupation each prompt names."""
        return np.eye(len(OCCUPATIONS))[[OCCUPATIONS.index(t.split()[-1]) for t in texts]]


def run(blind_group: str | None) -> ProbeResult:
    """The probe through the runner, on a toy blind to ``blind_group`` (None: a fair toy)."""
    probe, ctx = ProbeUnderTest({"n": 60}), ProbeContext(seed=0)
    return evaluate_probe(LookupEncoder(probe, ctx, blind_group), probe, ctx)


def test_probe_is_registered() -> None:
    """The ``@probe`` decorator put the probe in the registry under its name."""
    assert registry()[ProbeUnderTest.name] is ProbeUnderTest


def test_fair_model_shows_no_gap() -> None:
    """No false alarm: a model right on every group has no gap and a low risk band."""
    res = run(blind_group=None)
    acc = res.metric("accuracy", condition="group", group=None)
    assert acc.value == pytest.approx(1.0) and acc.n == 60
    assert acc.gap is not None and acc.gap.difference == pytest.approx(0.0)
    diff = res.metric("accuracy_difference", condition="group")
    assert diff.risk == RiskBand.LOW


def test_planted_flaw_shows_the_gap() -> None:
    """Known answer: a model wrong on every ``angular`` figure has a gap of 1, flagged high."""
    res = run(blind_group="angular")
    acc = res.metric("accuracy", condition="group", group=None)
    assert acc.groups["round"].value == pytest.approx(1.0)
    assert acc.groups["angular"].value == pytest.approx(0.0)
    assert acc.gap is not None and acc.gap.difference == pytest.approx(1.0)
    assert acc.gap.worst == "angular"
    diff = res.metric("accuracy_difference", condition="group")
    assert diff.risk == RiskBand.HIGH
