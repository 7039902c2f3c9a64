"""The attack engine: budgets, strength, determinism, APGD, objectives, ART agreement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vlmtrust.attacks.pgd import (
    AttackConfig,
    apgd_checkpoints,
    attack,
    embedding_distance,
    target_text_loss,
    zero_shot_ce,
)
from vlmtrust.core.errors import InputError

torch.set_num_threads(1)

N_CLASSES = 4
SCALE = 20.0


def _toy_data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Four texture classes (stripes h/v, checker, diagonal) of faint amplitude on 16x16."""
    y = torch.randint(0, N_CLASSES, (n,), generator=gen)
    ph = torch.rand(n, 1, 1, generator=gen) * 6.28
    r = torch.arange(16, dtype=torch.float32)[:, None].expand(16, 16)
    c = r.T
    pats = torch.stack(
        [
            torch.sin(r * 1.2 + ph),
            torch.sin(c * 1.2 + ph),
            torch.sin(r * 1.2 + ph) * torch.sin(c * 1.2 + ph),
            torch.sin((r + c) * 0.9 + ph),
        ],
        dim=1,
    )  # (n, 4, 16, 16)
    p = pats[torch.arange(n), y]
    colour = torch.rand(n, 3, 1, 1, generator=gen) * 0.5 + 0.25
    noise = 0.02 * torch.randn(n, 3, 16, 16, generator=gen)
    return (colour + 0.04 * p[:, None] + noise).clamp(0, 1), y


class ToyDual(torch.nn.Module):
    """A tiny differentiable 'dual encoder' image side: pixels in [0,1] -> unit features."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AvgPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(32, 16),
        )

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        f: torch.Tensor = self.net((pixels - 0.5) / 0.25)
        out: torch.Tensor = f / f.norm(dim=1, keepdim=True)
        return out

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_features(pixels)


@pytest.fixture(scope="module")
def toy() -> tuple[ToyDual, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = _toy_data(512, gen)
    model = ToyDual()
    text = torch.nn.functional.normalize(torch.randn(N_CLASSES, 16, generator=gen), dim=1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(150):
        idx = torch.randint(0, 512, (64,), generator=gen)
        logits = SCALE * model.image_features(x[idx]) @ text.T
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval()
    xt, yt = _toy_data(128, gen)
    return model, text, xt, yt


def _acc(model: ToyDual, text: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((model.image_features(x) @ text.T).argmax(1) == y).float().mean())


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("eps", [-0.01, 1.5, float("nan")])
def test_eps_outside_unit_interval_is_one_line_error(eps: float) -> None:
    with pytest.raises(InputError) as e:
        AttackConfig(eps=eps)
    msg = str(e.value)
    assert "\n" not in msg and "eps" in msg


def test_unknown_norm_lists_valid_ones() -> None:
    with pytest.raises(InputError) as e:
        AttackConfig(norm="l3")  # type: ignore[arg-type]
    msg = str(e.value)
    assert "\n" not in msg and "'l3'" in msg and "linf" in msg and "l2" in msg


def test_unknown_algorithm_and_bad_pixels() -> None:
    with pytest.raises(InputError, match="pgd, apgd"):
        AttackConfig(algorithm="fgsm")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"not \[0, 1\]"):
        attack(lambda p: p.flatten(1).sum(1), torch.full((2, 3, 4, 4), 2.0), AttackConfig())


def test_apgd_checkpoints_follow_the_paper() -> None:
    # p = 0, .22, .41, .57, .70, .80, .87, .93 (+.06 floor), .99 -> w = ceil(p * N)
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10)[:3] == [0, 3, 5]


# ----------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("algorithm", ["pgd", "apgd"])
def test_perturbation_stays_in_ball_and_box(toy, norm: str, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    model, text, x, y = toy
    # include saturated pixels so the [0, 1] box is active
    x = x[:32].clone()
    x[:4] = 0.0
    x[4:8] = 1.0
    eps = 8 / 255 if norm == "linf" else 0.5
    cfg = AttackConfig(
        norm=norm,  # type: ignore[arg-type]
        eps=eps,
        steps=8,
        algorithm=algorithm,  # type: ignore[arg-type]
        random_start=True,
        step=eps,  # large steps push against the ball's boundary
    )
    res = attack(zero_shot_ce(model, text, y[:32], SCALE), x, cfg)
    d = res.pixels - x
    assert res.pixels.shape == x.shape and not res.pixels.requires_grad
    assert float(res.pixels.min()) >= 0.0 and float(res.pixels.max()) <= 1.0
    if norm == "linf":
        assert float(d.abs().max()) <= eps + 1e-6
        assert float(d.abs().max()) >= eps * 0.99  # the attack uses its budget
    else:
        norms = d.flatten(1).norm(dim=1)
        assert float(norms.max()) <= eps + 1e-5
        assert float(norms[8:].max()) >= eps * 0.99
    assert res.best_loss.shape == (9, 32)


def test_pgd_beats_random_noise_of_same_eps(toy) -> None:  # type: ignore[no-untyped-def]
    model, text, x, y = toy
    eps = 4 / 255
    clean = _acc(model, text, x, y)
    gen = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1
    noisy = _acc(model, text, (x + eps * signs).clamp(0, 1), y)
    res = attack(zero_shot_ce(model, text, y, SCALE), x, AttackConfig(eps=eps, steps=10))
    robust = _acc(model, text, res.pixels, y)
    assert clean >= 0.8
    assert noisy >= clean - 0.05  # random noise of the same budget barely matters
    assert robust <= 0.15  # PGD breaks most of it
    assert noisy - robust >= 0.6
    # success flags agree with the predictions
    assert res.success is not None
    assert abs(float(res.success.float().mean()) - (1 - robust)) < 1e-6


def test_l2_and_apgd_strength(toy) -> None:  # type: ignore[no-untyped-def]
    model, text, x, y = toy
    obj = zero_shot_ce(model, text, y, SCALE)
    pgd = attack(obj, x, AttackConfig(eps=2 / 255, steps=10, random_start=False))
    apgd = attack(obj, x, AttackConfig(eps=2 / 255, steps=10, algorithm="apgd"))
    a_pgd, a_apgd = _acc(model, text, pgd.pixels, y), _acc(model, text, apgd.pixels, y)
    assert a_apgd <= a_pgd + 0.02
    assert float(apgd.loss.mean()) >= float(pgd.loss.mean()) - 0.05
    l2 = attack(obj, x, AttackConfig(norm="l2", eps=0.5, steps=10))
    assert _acc(model, text, l2.pixels, y) <= 0.1
    # best loss is monotone (untargeted: non-decreasing)
    for r in (pgd, apgd, l2):
        assert bool((r.best_loss[1:] >= r.best_loss[:-1] - 1e-6).all())


def test_seeded_and_targeted(toy) -> None:  # type: ignore[no-untyped-def]
    model, text, x, y = toy
    obj = zero_shot_ce(model, text, y, SCALE)
    a = attack(obj, x, AttackConfig(eps=2 / 255, steps=3, seed=7))
    b = attack(obj, x, AttackConfig(eps=2 / 255, steps=3, seed=7))
    c = attack(obj, x, AttackConfig(eps=2 / 255, steps=3, seed=8))
    assert torch.equal(a.pixels, b.pixels)
    assert not torch.equal(a.pixels, c.pixels)
    target = (y + 1) % N_CLASSES
    tobj = zero_shot_ce(model, text, target, SCALE)
    res = attack(tobj, x, AttackConfig(eps=8 / 255, steps=20, targeted=True))
    with torch.no_grad():
        pred = (model.image_features(res.pixels) @ text.T).argmax(1)
    hit = float((pred == target).float().mean())
    assert hit >= 0.9
    assert res.success is not None and float(res.success.float().mean()) == pytest.approx(hit)
    # targeted: the best (minimised) loss is non-increasing
    assert bool((res.best_loss[1:] <= res.best_loss[:-1] + 1e-6).all())


def test_early_stop_freezes_fooled_samples(toy) -> None:  # type: ignore[no-untyped-def]
    model, text, x, y = toy
    obj = zero_shot_ce(model, text, y, SCALE)
    full = attack(obj, x, AttackConfig(eps=8 / 255, steps=10))
    es = attack(obj, x, AttackConfig(eps=8 / 255, steps=10, early_stop=True))
    assert int(full.iterations.min()) == 10
    assert float(es.iterations.float().mean()) < 5  # most samples fall in a few steps
    assert es.success is not None and bool(es.success.all())
    assert _acc(model, text, es.pixels, y) == 0.0
    apgd = attack(obj, x, AttackConfig(eps=8 / 255, steps=10, algorithm="apgd", early_stop=True))
    assert float(apgd.iterations.float().mean()) < 5 and _acc(model, text, apgd.pixels, y) == 0.0


def test_plain_callable_and_embedding_distance(toy) -> None:  # type: ignore[no-untyped-def]
    model, _, x, _ = toy
    with torch.no_grad():
        f0 = model.image_features(x)
    cfg = AttackConfig(eps=4 / 255, steps=5, early_stop=True)
    plain = attack(lambda p: (model.image_features(p) - f0).pow(2).sum(1), x, cfg)
    obj = attack(embedding_distance(model, f0), x, cfg)
    assert torch.allclose(plain.pixels, obj.pixels)
    assert plain.success is None
    assert float(obj.loss.mean()) > 0.05  # the features moved a lot within 4/255
    assert float(obj.loss.min()) >= float(obj.best_loss[0].min())


class _FakeGenerative:
    """``target_loss`` = distance of the mean pixel to a per-target level; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str], int]] = []

    def target_loss(self, pixels: torch.Tensor, prompts: list[str], targets: list[str]):  # type: ignore[no-untyped-def]
        self.calls.append((prompts, targets, pixels.shape[0]))
        level = torch.tensor([0.9 if t == "bright" else 0.1 for t in targets])
        return (pixels.flatten(1).mean(1) - level).pow(2)


def test_target_text_loss_direction_and_subbatches() -> None:
    gen_model = _FakeGenerative()
    x = torch.full((4, 3, 8, 8), 0.5)
    prompts = [f"q{i}" for i in range(4)]
    targets = ["bright", "dark", "bright", "dark"]
    obj = target_text_loss(gen_model, prompts, targets, targeted=True)
    with pytest.raises(InputError, match="targeted"):
        attack(obj, x, AttackConfig(eps=0.1, steps=2))
    res = attack(obj, x, AttackConfig(eps=0.1, steps=10, targeted=True, random_start=False))
    mean = res.pixels.flatten(1).mean(1)
    assert torch.allclose(mean, torch.tensor([0.6, 0.4, 0.6, 0.4]), atol=1e-5)
    assert all(len(p) == len(t) == n for p, t, n in gen_model.calls)
    untargeted = target_text_loss(gen_model, prompts, targets, targeted=False)
    res2 = attack(untargeted, x, AttackConfig(eps=0.1, steps=10, random_start=False))
    assert torch.allclose(res2.pixels.flatten(1).mean(1), torch.tensor([0.4, 0.6, 0.4, 0.6]))
    with pytest.raises(InputError, match="2 prompts but 1 targets"):
        target_text_loss(gen_model, ["a", "b"], ["c"])


# ----------------------------------------------------------------------------- ART


def _reference_clip_available() -> bool:
    import vlmtrust

    return (Path(vlmtrust.__file__).parent / "reference" / "models" / "clip").is_dir()


def test_agrees_with_art_pgd(toy) -> None:  # type: ignore[no-untyped-def]
    from vlmtrust.attacks.pgd import art_pgd_attack

    model, text, x, y = toy
    for eps in (2 / 255, 4 / 255):
        cfg = AttackConfig(eps=eps, step=eps / 4, steps=10, random_start=False, keep_best=False)
        ours = _acc(model, text, attack(zero_shot_ce(model, text, y, SCALE), x, cfg).pixels, y)
        adv = art_pgd_attack(model, text, SCALE, x, y, cfg)
        assert float((adv - x).abs().max()) <= eps + 1e-6
        art_acc = _acc(model, text, adv, y)
        assert abs(ours - art_acc) <= 0.02, (eps, ours, art_acc)
        assert 0.0 < art_acc < _acc(model, text, x, y)  # a non-trivial comparison
    assert np.isfinite(art_acc)


def test_agrees_with_art_on_reference_clip() -> None:
    if not _reference_clip_available():
        pytest.skip("reference:clip is not shipped yet")
    from vlmtrust.attacks.pgd import art_pgd_attack
    from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld
    from vlmtrust.models.loader import load_model

    model: Any = load_model("reference:clip")
    samples = SynthWorld(seed=4242).shapes(48)
    classes = list(ID_SHAPES)
    y = torch.tensor([classes.index(str(s.attributes["shape"])) for s in samples])
    x = model.to_pixels([s.image for s in samples])
    text = model.text_features([f"a photo of a {c}" for c in classes])

    def acc(px: torch.Tensor) -> float:
        with torch.no_grad():
            return float(((model.image_features(px) @ text.T).argmax(1) == y).float().mean())

    eps = 0.5 / 255
    cfg = AttackConfig(eps=eps, step=eps / 4, steps=5, random_start=False, keep_best=False)
    ours = acc(attack(zero_shot_ce(model, text, y, model.logit_scale), x, cfg).pixels)
    theirs = acc(art_pgd_attack(model, text, model.logit_scale, x, y, cfg))
    assert abs(ours - theirs) <= 0.02 + 1e-9, (ours, theirs)
    assert ours < acc(x)  # the budget is large enough to matter


def test_patch_embedding_matmul_matches_convolution() -> None:
    """The attack-time rewrite of ViT patch convolutions is exact in values and gradients."""
    from vlmtrust.attacks.fastpath import patch_embeddings_as_matmul

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, kernel_size=4, stride=4, bias=True),  # patchify: rewritten
        torch.nn.Conv2d(8, 8, kernel_size=3, padding=1),  # ordinary conv: left alone
    )
    x = torch.rand(2, 3, 18, 17, requires_grad=True)  # ragged border, dropped like the conv
    y_ref = net(x)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    with patch_embeddings_as_matmul(net) as n_rewritten:
        assert n_rewritten == 1
        y = net(x)
        (g,) = torch.autograd.grad(y.square().sum(), x)
    assert "forward" not in vars(net[0])  # restored
    assert torch.allclose(y, y_ref, atol=1e-5) and torch.allclose(g, g_ref, atol=1e-5)


def test_attack_fast_path_is_exact_on_a_clip(tiny_clip: Any) -> None:
    """Every attack-time rewrite fires on a CPU CLIP and keeps embeddings and gradients."""
    from vlmtrust.attacks.fastpath import attack_fast_path

    hf = tiny_clip.model
    x = torch.rand(3, 3, *tiny_clip.input_size)

    def feats_and_grad() -> tuple[torch.Tensor, torch.Tensor]:
        xi = x.clone().requires_grad_(True)
        f = tiny_clip.image_features(xi)
        (g,) = torch.autograd.grad((f * torch.linspace(-1, 1, f.shape[1])).sum(), xi)
        return f.detach(), g

    attn_before = hf.config.vision_config._attn_implementation
    f_ref, g_ref = feats_and_grad()
    with attack_fast_path(hf, pooled_only=True) as counts:
        f, g = feats_and_grad()
        d = hf.config.vision_config.hidden_size
        assert hf.vision_model.encoder.layers[-1](torch.rand(2, 5, d), None).shape == (2, 1, d)
    assert counts["patch_matmul"] == 1 and counts["quick_gelu_silu"] >= 2
    assert counts["cls_only_last_layer"] == 1
    assert counts["eager_attention"] == (1 if attn_before == "sdpa" else 0)
    assert torch.allclose(f, f_ref, atol=1e-5) and torch.allclose(g, g_ref, atol=1e-6)
    # everything restored: the full last block again, the attention setting as before
    assert "forward" not in vars(hf.vision_model.encoder.layers[-1])
    assert hf.config.vision_config._attn_implementation == attn_before
    with attack_fast_path(hf, pooled_only=False) as counts:
        assert counts["cls_only_last_layer"] == 0
