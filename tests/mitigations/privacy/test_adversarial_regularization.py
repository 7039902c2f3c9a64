import json
from pathlib import Path
from typing import Any

import pytest

from vlmtrust.core.errors import CapabilityError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.mitigations.privacy.adversarial_regularization import (
    AdvRegParams,
    advreg_candidates,
    run_adversarial_regularization,
)

SMALL = {"steps": 16, "attack_steps": 1, "batch_size": 16, "n_members": 32, "n_reference": 32,
         "n_non_members": 32, "n_public": 16, "n_eval": 0, "lr": 1e-3}  # fmt: skip


def test_hardened_model_leaks_less_membership_than_the_plain_finetune(
    ref_clip: Any, tmp_path: Path
) -> None:
    """Same data, batches and budget: λ > 0 brings the members' AUC against held-out pairs
    toward 0.5."""
    _, control = run_adversarial_regularization(
        ref_clip, MitigationContext(seed=0), AdvRegParams(lam=0, **SMALL)
    )
    out = tmp_path / "advreg"
    art = get_mitigation("privacy/adversarial_regularization")({"lam": 10, **SMALL}).apply(
        ref_clip, MitigationContext(out_dir=out, seed=0)
    )
    hardened = art.summary
    assert control["membership_auc"] > 0.6, control  # the plain fine-tune memorises
    # closer to chance (an AUC far below 0.5 would leak as much, with the sign flipped)
    leak, leak0 = abs(hardened["membership_auc"] - 0.5), abs(control["membership_auc"] - 0.5)
    assert leak < leak0 - 0.05, (hardened, control)
    record = json.loads((out / "hardening.json").read_text())
    assert record["mitigation"] == "privacy/adversarial_regularization"
    assert record["privacy"]["lambda"] == 10 and 0 <= record["attack_auc_train"] <= 1
    cfg = json.loads((out / "config.json").read_text())["vlmtrust_privacy"]
    assert cfg["adversarial_regularization"] is True
    assert all(p.requires_grad for p in ref_clip.model.parameters())  # caller's model intact


def test_candidate_sets_are_disjoint_and_generative_models_are_refused() -> None:
    p = AdvRegParams(n_members=8, n_reference=8, n_non_members=8)
    sets = [
        {(im.tobytes(), cap) for im, cap in zip(*part, strict=True)}
        for part in advreg_candidates(p, MitigationContext())
    ]
    assert [len(s) for s in sets] == [8, 8, 8]
    m, r, h = sets
    assert not (m & r) and not (m & h) and not (r & h)

    class Gen:
        spec, kind = "x", "generative"

    with pytest.raises(CapabilityError, match="dual"):
        get_mitigation("privacy/adversarial_regularization")(p).apply(Gen(), MitigationContext())
