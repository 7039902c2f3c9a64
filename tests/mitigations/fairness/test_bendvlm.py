"""``fairness/bendvlm``: per-query bending of reference:clip's text embeddings lowers MaxSkew@k."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.mitigations.fairness.test_dual_debiasers import (  # the memoised model and helpers
    _excess,
    _harden,
    _skew,
    _zero_shot,
    base_numbers,
    clip,
)

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import get_mitigation
from vlmtrust.mitigations.fairness.bendvlm import augment, bend

__all__ = ["base_numbers", "clip"]


def test_bendvlm_lowers_maxskew_and_reports_zero_shot_cost(
    clip: Any, base_numbers: tuple[float, float], tmp_path: Path
) -> None:
    """Excess MaxSkew@50 falls by a quarter or more on held-out people; zero-shot accuracy (class
    prompts are bent too) stays within 2 points."""
    skew0, acc0 = base_numbers
    hardened = _harden(clip, "fairness/bendvlm", tmp_path)
    skew1, acc1 = _excess(_skew(hardened)), _zero_shot(hardened)
    assert skew1 <= 0.75 * skew0, (skew0, skew1)
    assert acc1 >= acc0 - 0.02, (acc0, acc1)


def test_bend_projects_out_the_local_direction_and_equalises_the_groups() -> None:
    rng = np.random.default_rng(0)
    q = np.eye(6)[0] + 0.3 * np.eye(6)[1]
    local = np.stack([q + 0.5 * np.eye(6)[2], q - 0.5 * np.eye(6)[2]])
    same = rng.normal(size=(20, 6))  # both values alike: step 2 changes nothing
    out = bend(q + 0.4 * np.eye(6)[2], local, np.vstack([same, same]), ["a"] * 20 + ["b"] * 20, 20)
    assert np.isclose(np.linalg.norm(out), 1.0) and abs(out[2]) < 1e-9  # local direction gone
    ref = rng.normal(size=(40, 6))
    ref[:20, 0] += 2.0  # value "a" sits along axis 0
    out = bend(q, local, ref, ["a"] * 20 + ["b"] * 20, n_nearest=20)
    mu = np.stack([ref[:20].mean(0), ref[20:].mean(0)])
    assert np.isclose(np.linalg.norm(out), 1.0) and np.isclose(*(mu @ out))


def test_augment_and_unfitted_wrapper() -> None:
    assert augment("a photo of a pilot", "round") == "a photo of a round pilot"
    assert augment("a photo of an engineer", "round") == "a photo of a round engineer"
    with pytest.raises(InputError, match="no reference set"):
        get_mitigation("fairness/bendvlm")({}).wrap(object())
