"""privacy/memorization: déjà vu, alignment gap and exposure on the reference models' planted
memorisation, their controls, and the formulas by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.probes.privacy.privacy_helpers import loaded, result

from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.types import RiskBand
from vlmtrust.probes.privacy.memorization import (
    PHONE_SPACE,
    MemorizationProbe,
    canary_codes,
    canary_objects,
    exposure,
    gap_of_fractions,
    guess_precision,
    rank_of,
)
from vlmtrust.runner.engine import evaluate_probe

torch.set_num_threads(1)


def covers_zero(m: Any) -> bool:
    return m.ci_low is not None and m.ci_low < 0.0 < m.ci_high


def test_formulas_by_hand() -> None:
    assert exposure(1, 100) == pytest.approx(math.log2(100))
    assert rank_of(0.5, np.array([0.9, 0.5, 0.5, 0.1])) == 2.5  # one above, one tie
    truth = frozenset({"a", "b"})
    # "a" in 3 neighbours, "c" in 2, "b" in 1: the top-2 guess {a, c} is half right
    assert guess_precision([{"a", "c"}, {"a", "c"}, {"a", "b"}], truth) == 0.5  # type: ignore[list-item]
    assert gap_of_fractions(np.array([1, 0]), np.array([0.2, 0.9])) == -1.0
    codes = canary_codes()
    assert len(codes) == 20 * 19 * 18 == len(set(codes))
    from vlmtrust.data.synthworld import SynthWorld

    c = SynthWorld(seed=0, image_size=64).canaries(1)[0]
    assert c.caption in codes
    objs = canary_objects(c.image)
    assert len(objs) == 16 and all(o.startswith("r") and "=" in o for o in objs)
    assert len(PHONE_SPACE) == 100


def test_reference_clip_canaries_are_memorised(planted: Path) -> None:
    res = result(planted, "privacy/memorization")
    ppg = res.metric("ppg")
    assert ppg.headline and ppg.ci_low is not None and ppg.ci_low > 0.1
    member = res.metric("dejavu_precision", condition="member").value
    held = res.metric("dejavu_precision", condition="held_out").value
    assert member is not None and held is not None and member > held
    gap = res.metric("exposure_gap")
    assert gap.headline and gap.risk == RiskBand.HIGH and gap.ci_low > 3  # type: ignore[operator]
    assert res.metric("exposure", condition="held_out").ci_low < math.log2(2)  # type: ignore[operator]
    assert res.metric("alignment_gap").ci_low > 0.2  # type: ignore[operator]
    assert res.notes == ["no reference model given: the held-out pairs stand in for it"]


def test_control_canaries_show_no_memorisation(ref_clip: Any) -> None:
    res = evaluate_probe(
        ref_clip, MemorizationProbe({"split": "control", "public": 300}), ProbeContext()
    )
    for name in ("ppg", "alignment_gap", "exposure_gap"):
        assert covers_zero(res.metric(name)), name


class CountingTexts:
    """A model that counts the texts it embeds (everything else is the wrapped model's)."""

    def __init__(self, model: Any) -> None:
        self.model, self.texts = model, 0

    def embed_texts(self, texts: Any) -> Any:
        self.texts += len(texts)
        return self.model.embed_texts(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def test_reference_model_path(ref_clip: Any) -> None:
    # the target as its own reference: every per-pair gap is exactly zero
    probe = MemorizationProbe({"reference_model": "reference:clip", "held_out": 8, "public": 100})
    ref = CountingTexts(ref_clip)
    res = evaluate_probe(ref_clip, probe, loaded({"reference:clip": ref}))
    assert res.metric("ppg").value == 0.0 and res.metric("ppg").n == 32
    assert res.metric("alignment_gap").value == pytest.approx(0.0, abs=1e-6)
    assert res.metric("dejavu_precision", condition="reference").n == 32
    # the reference embeds the 40 captions only, not the 6,840 codes the target's exposure ranks
    assert ref.texts == 40 and res.metric("exposure_gap").n == 40


def test_reference_vlm_pii_exposure(ref_vlm: Any) -> None:
    params = {**MemorizationProbe.defaults_for("generative"), "held_out": 2}
    res = evaluate_probe(ref_vlm, MemorizationProbe(params), ProbeContext())
    member = res.metric("exposure", condition="member")
    assert member.n == 8 and member.value == pytest.approx(math.log2(100))  # ranked first
    gap = res.metric("exposure_gap")
    assert gap.risk == RiskBand.HIGH and gap.ci_low > 2  # type: ignore[operator]
    assert res.metric("extraction_rate", condition="member").value == 1.0
    assert res.metric("extraction_rate", condition="held_out").value == 0.0
    control = evaluate_probe(
        ref_vlm, MemorizationProbe({**params, "split": "control"}), ProbeContext()
    )
    assert covers_zero(control.metric("exposure_gap"))
    assert control.metric("extraction_rate", condition="member").value == 0.0


def test_generative_without_gradient_is_refused() -> None:
    from vlmtrust.core.types import Capability

    class Api:
        spec, kind, fingerprint = "openai:x@http://h", "generative", "x"
        capabilities = Capability.GENERATE

    why = MemorizationProbe().unsupported(Api())  # type: ignore[arg-type]
    assert why is not None and "needs GRADIENT" in why


def test_same_image_nll_matches_per_image_preparation(ref_vlm: Any) -> None:
    from vlmtrust.probes.privacy import _scoring
    from vlmtrust.probes.privacy._candidates import PII_ANSWERS

    probe = MemorizationProbe({**MemorizationProbe.defaults_for("generative"), "held_out": 1})
    s = next(iter(probe.samples(ProbeContext())))
    im = s.images[0].load()
    answers = [PII_ANSWERS["phone"].format(v) for v in PHONE_SPACE[:3]]
    prompts = [s.prompt or ""] * 3
    once = _scoring.same_image_nll(ref_vlm, im, prompts, answers)
    each = _scoring.generative_nll(ref_vlm, [im] * 3, prompts, answers)
    assert once.shape == (3,) and np.allclose(once, each, atol=1e-5)
