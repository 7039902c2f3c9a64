import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlmtrust.core.errors import CapabilityError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.mitigations.privacy.audit import empirical_epsilon
from vlmtrust.mitigations.privacy.dp_finetune import (
    DPFinetuneParams,
    _canaries,
    _trainable,
    pair_losses,
)


def test_epsilon_lower_bound_is_valid_for_randomised_response() -> None:
    # ε-DP randomised response: a member reports 1 w.p. e^ε/(1+e^ε), a non-member w.p. 1/(1+e^ε)
    eps = 1.0
    p = math.exp(eps) / (1 + math.exp(eps))
    bounds = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        ins = (rng.random(2000) < p).astype(float)
        outs = (rng.random(2000) < 1 - p).astype(float)
        bounds.append(empirical_epsilon(ins, outs, delta=0.0).epsilon_lb)
    assert max(bounds) <= eps  # never above the truth
    assert min(bounds) > 0.7  # and not vacuous with 2000 a side


def test_epsilon_lower_bound_edge_cases() -> None:
    assert empirical_epsilon([], [1.0]).epsilon_lb == 0.0
    rng = np.random.default_rng(0)
    same = empirical_epsilon(rng.normal(size=200), rng.normal(size=200))
    assert same.epsilon_lb < 0.5
    # perfect separation of 64 a side: finite, bounded by the sample size
    sep = empirical_epsilon(np.ones(64), np.zeros(64))
    assert 0.5 < sep.epsilon_lb < math.log(64)


def test_pair_losses_do_not_couple_the_batch() -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    bank_i, bank_t = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    base = pair_losses(img, txt, bank_i, bank_t, 10.0)
    img2, txt2 = img.clone(), txt.clone()
    img2[3], txt2[3] = torch.randn(8, generator=g), torch.randn(8, generator=g)
    other = pair_losses(img2, txt2, bank_i, bank_t, 10.0)
    assert torch.allclose(base[:3], other[:3]) and not torch.allclose(base[3], other[3])


def test_opacus_per_pair_gradients_are_each_pairs_own(tiny_clip: Any) -> None:
    import copy

    import torch
    from opacus import GradSampleModule

    twin = copy.copy(tiny_clip)
    twin.model = copy.deepcopy(tiny_clip.model)
    ims, caps = _canaries(800_000, 3)
    bi, bc = _canaries(900_000, 4)
    px, bpx = twin.to_pixels(ims), twin.to_pixels(bi)
    params = _trainable(twin.model)
    with torch.no_grad():
        b_img, b_txt = twin.image_features(bpx), twin.text_features(bc)

    def loss(idx: list[int]) -> Any:
        img = twin.image_features(px[idx])
        txt = twin.text_features([caps[i] for i in idx], grad=True)
        return pair_losses(img, txt, b_img, b_txt, 10.0)

    alone = []
    for i in range(3):
        grads = torch.autograd.grad(loss([i]).sum(), params, allow_unused=True)
        alone.append(
            [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
        )
    gsm = GradSampleModule(twin.model, loss_reduction="sum")
    twin.model.train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        loss([0, 1, 2]).sum().backward()
    for k, p in enumerate(params):
        for i in range(3):
            assert torch.allclose(p.grad_sample[i], alone[i][k], atol=1e-5), k
    gsm._close()


def test_dp_finetune_writes_epsilon_and_bound_below_it(tiny_clip: Any, tmp_path: Path) -> None:
    from vlmtrust.models.loader import load_model

    p = {"epsilon": 2.0, "steps": 3, "batch_size": 8, "n_members": 16, "n_non_members": 16,
         "n_public": 8, "n_eval": 8}  # fmt: skip
    out = tmp_path / "dp"
    art = get_mitigation("privacy/dp_finetune")(p).apply(
        tiny_clip, MitigationContext(out_dir=out, seed=0)
    )
    privacy = json.loads((out / "config.json").read_text())["vlmtrust_privacy"]
    assert privacy["dp"] and privacy["delta"] == 1e-5 and privacy["noise_multiplier"] > 0
    assert 0 < privacy["epsilon"] <= 2.0 * 1.02
    lb = art.summary["epsilon_lower_bound"]["epsilon_lb"]
    assert 0 <= lb <= privacy["epsilon"]
    record = json.loads((out / "hardening.json").read_text())
    assert record["mitigation"] == "privacy/dp_finetune" and 0 <= record["membership_auc"] <= 1
    loaded = load_model(art.spec, device="cpu")
    assert loaded.kind == "dual"
    assert all(p.requires_grad for p in tiny_clip.model.parameters())  # caller's model intact


def test_control_and_bad_input(tiny_clip: Any, tmp_path: Path) -> None:
    p = DPFinetuneParams(epsilon="inf", steps=2, batch_size=8, n_members=8, n_non_members=8,
                         n_public=4, n_eval=0)  # fmt: skip
    assert math.isinf(p.epsilon)
    art = get_mitigation("privacy/dp_finetune")(p).apply(
        tiny_clip, MitigationContext(out_dir=tmp_path / "c")
    )
    assert art.summary["privacy"]["dp"] is False and art.summary["privacy"]["epsilon"] is None
    with pytest.raises(ValueError, match="epsilon"):
        DPFinetuneParams(epsilon=0)

    class Gen:
        spec, kind = "x", "generative"

    with pytest.raises(CapabilityError, match="dual"):
        get_mitigation("privacy/dp_finetune")(p).apply(Gen(), MitigationContext())


def test_lora_dp_sgd_on_a_generative_model_trains_with_a_finite_epsilon(
    tiny_llava: Any, tmp_path: Path
) -> None:
    from vlmtrust.models.loader import load_model

    before = {k: v.clone() for k, v in tiny_llava.model.state_dict().items()}
    p = {"epsilon": 8.0, "steps": 3, "batch_size": 4, "n_members": 8, "lr": 1e-2}
    out = tmp_path / "lora"
    art = get_mitigation("privacy/dp_finetune")(p).apply(
        tiny_llava, MitigationContext(out_dir=out, seed=0)
    )
    privacy = json.loads((out / "hardening.json").read_text())["privacy"]
    assert privacy["dp"] and 0 < privacy["epsilon"] <= 8.0 * 1.02 and privacy["lora"]["rank"] == 4
    assert art.summary["trainable_parameters"] > 0 and art.summary["final_loss"] is not None
    tuned = load_model(art.spec, device="cpu")  # merged: the base architecture, no adapters
    assert tuned.kind == "generative"
    after = tuned.model.state_dict()
    assert set(after) == set(before)
    assert any(not torch_equal(after[k], before[k]) for k in before if "q_proj" in k)
    assert all(torch_equal(v, tiny_llava.model.state_dict()[k]) for k, v in before.items())


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal(a, b))
