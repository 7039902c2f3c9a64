"""robustness/hard_negatives, robustness/alignment and robustness/gap_shift on reference:clip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import evaluated as run
from helpers import value
from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.results import ProbeResult
from vlmtrust.data.synthworld import SynthWorld
from vlmtrust.models.loader import load_model

GAP = {"n": 40, "n_ood": 40, "adversarial_eps": 0.0}


@pytest.fixture(scope="module")
def base_gap(ref_clip: Any) -> ProbeResult:
    return run(ref_clip, "robustness/modality_gap", GAP)


def test_hard_negatives_raise_compositional_accuracy(ref_clip: Any, tmp_path: Path) -> None:
    params = {"steps": 60, "n_train": 400}
    art = get_mitigation("robustness/hard_negatives")(params).apply(
        load_model("reference:clip"), MitigationContext(out_dir=tmp_path / "hn")
    )
    assert art.summary["last_loss"] < art.summary["first_loss"]
    hard = load_model(art.spec)
    probe = {"n": 80}
    before = run(ref_clip, "robustness/compositionality", probe)
    after = run(hard, "robustness/compositionality", probe)
    zs = [run(m, "capability/zero_shot", {"n": 100}).metric("accuracy").value or 0.0
          for m in (ref_clip, hard)]  # fmt: skip
    b, a = value(before, "compositional_accuracy"), value(after, "compositional_accuracy")
    print("compositional accuracy", b, "->", a, "zero-shot", zs)
    # measured (seed 0, 60 steps): 35.0% -> 40.8%; attribute swap 45 -> 51%, object swap
    # 37.5 -> 51%; the relation swaps above/below stay tied: the reference tokenizer has no
    # token for "above" or "below" (both are unknown), so no fine-tuning can tell them apart
    assert a >= b + 0.03
    assert value(after, "accuracy/object_swap") > value(before, "accuracy/object_swap")
    assert zs[1] >= zs[0] - 0.08  # measured 94% -> 90%


def test_hard_negatives_refuses_unknown_negative_types(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="use some of attribute_swap"):
        get_mitigation("robustness/hard_negatives")({"negatives": ["nope"]}).apply(
            load_model("mock:dual"), MitigationContext(out_dir=tmp_path)
        )


def test_trained_alignment_narrows_the_gap_at_no_accuracy_cost(
    base_gap: ProbeResult, tmp_path: Path
) -> None:
    art = get_mitigation("robustness/alignment")(
        {"steps": 40, "n_train": 400, "batch_size": 32}
    ).apply(load_model("reference:clip"), MitigationContext(out_dir=tmp_path / "al"))
    after = run(load_model(art.spec), "robustness/modality_gap", GAP)
    g0, g1 = value(base_gap, "gap"), value(after, "gap")
    acc0, acc1 = (value(r, "zero_shot_accuracy/shift=0") for r in (base_gap, after))
    auc0, auc1 = (value(r, "ood_auroc/shift=0") for r in (base_gap, after))
    print("gap", g0, "->", g1, "zero-shot", acc0, "->", acc1, "OOD AUROC", auc0, "->", auc1)
    assert g1 <= 0.7 * g0  # measured 0.257 -> 0.141
    assert value(after, "separability") < value(base_gap, "separability")
    assert acc1 >= acc0 - 0.05 and auc1 >= auc0 - 0.05


def test_gap_shift_closes_the_gap_training_free(
    ref_clip: Any, base_gap: ProbeResult, tmp_path: Path
) -> None:
    out = tmp_path / "shift"
    art = get_mitigation("robustness/gap_shift")({"n_calibration": 200}).apply(
        ref_clip, MitigationContext(out_dir=out)
    )
    payload = json.loads((out / "wrapper.json").read_text())
    assert payload["base"] == "reference:clip" and len(payload["params"]["delta"]) > 1
    shifted = load_model(art.spec)
    ims = [s.image for s in SynthWorld(seed=5).shapes(3)]
    np.testing.assert_allclose(shifted.embed_texts(["a"]), ref_clip.embed_texts(["a"]), atol=1e-6)
    assert not np.allclose(shifted.embed_images(ims), ref_clip.embed_images(ims), atol=1e-3)
    after = run(shifted, "robustness/modality_gap", GAP)
    g0, g1 = value(base_gap, "gap"), value(after, "gap")
    acc0, acc1 = (value(r, "zero_shot_accuracy/shift=0") for r in (base_gap, after))
    print("gap", g0, "->", g1, "zero-shot", acc0, "->", acc1)
    # measured 0.257 -> 0.121: moving each unit embedding by Δ and renormalising moves the
    # centroid less than Δ (the probe's own λ = 1 row is the same operation)
    assert g1 <= 0.6 * g0
    # what the closed gap costs is exactly the probe's own λ = 1 measurement of the base model
    assert acc1 == pytest.approx(value(base_gap, "zero_shot_accuracy/shift=1"), abs=0.05)
    with pytest.raises(InputError, match="has no gap vector"):
        get_mitigation("robustness/gap_shift")({}).wrap(ref_clip)
