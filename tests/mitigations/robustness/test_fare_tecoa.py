"""robustness/fare and robustness/tecoa: reduced runs still raise robust accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.probe import ProbeContext
from vlmtrust.models.loader import load_model
from vlmtrust.probes.robustness.adversarial import AdversarialProbe
from vlmtrust.runner.engine import evaluate_probe

torch.set_num_threads(1)

# A reduced run (60 steps of 32, 2-step inner PGD) at the budget, 2/255, where
# reference:clip is planted to collapse (model card, flaw 4). The before/after check uses a
# 10-step PGD. The full recipes are measured in the tecoa module docstring, not here.
REDUCED = {
    "steps": 60,
    "batch_size": 32,
    "attack_steps": 2,
    "n_train": 800,
    "n_eval": 64,
    "eval_steps": 10,
    "lr": 1e-4,
    "warmup": 0,
    "eps": "2/255",
}


def _has_reference(name: str) -> bool:
    import vlmtrust

    return (Path(vlmtrust.__file__).parent / "reference" / "models" / name).is_dir()


@pytest.fixture(scope="module")
def ref_clip() -> Any:
    if not _has_reference("clip"):
        pytest.skip("reference:clip is not shipped yet")
    return load_model("reference:clip")


def test_params_and_bad_input(tiny_clip: Any, tiny_llava: Any, tmp_path: Path) -> None:
    fare = get_mitigation("robustness/fare")
    assert fare({"eps": "4/255"}).params.eps == pytest.approx(4 / 255)  # type: ignore[attr-defined]
    for bad in ({"eps": 3}, {"eps": "-1/255"}, {"steps": 0}, {"lr": 2.0}):
        with pytest.raises(InputError) as e:
            fare(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="only for generative"):
        fare({"encoder": "reference:clip"}).apply(tiny_clip, MitigationContext(out_dir=tmp_path))
    from vlmtrust.core.errors import CapabilityError

    with pytest.raises(CapabilityError, match="dual encoders"):
        get_mitigation("robustness/tecoa")().apply(tiny_llava, MitigationContext(out_dir=tmp_path))


def test_user_data_holds_out_the_before_after_images(tiny_clip: Any, tmp_path: Path) -> None:
    """With --data n_eval held-out images (spread over the classes) are measured before/after
    and never trained on."""
    from vlmtrust.data.synthworld import SynthWorld

    data = tmp_path / "shapes"
    for i, s in enumerate(SynthWorld(seed=5).shapes(40)):
        shape = str(s.attributes["shape"])
        if shape in ("heart", "cross"):
            (data / shape).mkdir(parents=True, exist_ok=True)
            s.image.save(data / shape / f"{i:03d}.png")
    n_all = sum(1 for _ in data.rglob("*.png"))
    tiny = {"steps": 1, "batch_size": 4, "attack_steps": 1, "eval_steps": 1, "n_train": 100}
    tecoa = get_mitigation("robustness/tecoa")
    ctx = MitigationContext(seed=0, out_dir=tmp_path / "a", data=str(data))
    s = tecoa({**tiny, "n_eval": 3}).apply(tiny_clip, ctx).summary
    assert s["n_train"] == n_all - 3 and s["before"]["n"] == 3 and s["after"]["n"] == 3
    ctx = MitigationContext(seed=0, out_dir=tmp_path / "b", data=str(data))
    s = tecoa({**tiny, "n_eval": n_all}).apply(tiny_clip, ctx).summary
    assert s["n_train"] == n_all and "before" not in s
    assert "could be held out" in s["before_after_skipped"]


@pytest.mark.slow
def test_tecoa_reduced_run_raises_robust_accuracy(ref_clip: Any, tmp_path: Path) -> None:
    ctx = MitigationContext(seed=0, out_dir=tmp_path / "tecoa")
    original = {k: v.clone() for k, v in ref_clip.model.state_dict().items()}
    art = get_mitigation("robustness/tecoa")(REDUCED).apply(ref_clip, ctx)
    s = art.summary
    before, after = s["before"], s["after"]
    # the target: near 0 -> >= 40% at 2/255, clean accuracy down by <= 10 points
    assert before["clean_accuracy"] >= 0.85
    assert before["robust_accuracy"] <= 0.15  # planted fragility (measured 0.047)
    assert after["robust_accuracy"] >= 0.4
    assert after["clean_accuracy"] >= before["clean_accuracy"] - 0.10
    # the caller's model is untouched; the text side of the copy stayed frozen
    assert all(torch.equal(v, ref_clip.model.state_dict()[k]) for k, v in original.items())
    hardened: Any = load_model(art.spec)
    assert hardened.kind == "dual"
    ht = hardened.model.state_dict()
    text_keys = [k for k in original if k.startswith("text_model.")]
    vis_keys = [k for k in original if k.startswith("vision_model.")]
    assert text_keys and all(torch.equal(ht[k], original[k]) for k in text_keys)
    assert any(not torch.equal(ht[k], original[k]) for k in vis_keys)
    # the probe agrees on fresh data: robust accuracy at 2/255 is far higher after hardening
    probe = {"n": 64, "eps": "2/255,4/255", "steps": 10}
    pctx = ProbeContext(seed=3)
    base = evaluate_probe(ref_clip, AdversarialProbe(probe), pctx)
    hard = evaluate_probe(hardened, AdversarialProbe(probe), pctx)
    b2, h2 = base.metric("robust_accuracy@2/255"), hard.metric("robust_accuracy@2/255")
    assert b2.value is not None and h2.value is not None
    assert b2.risk == "high" and h2.risk != "high" and h2.value >= b2.value + 0.3
    # Control: the same fine-tuning without an attack (ε ≈ 0). The planted fragility is
    # shallower than a real CLIP's: clean fine-tuning undoes much of it at 2/255 (measured on
    # these 64 images: 3% -> control 45%, TeCoA 58%), but only adversarial training buys
    # robustness beyond the planted radius (4/255: control 5%, TeCoA 36%).
    clean_ft = get_mitigation("robustness/tecoa")({**REDUCED, "eps": 1e-9}).apply(
        ref_clip, MitigationContext(seed=0, out_dir=tmp_path / "control")
    )
    ctrl = evaluate_probe(load_model(clean_ft.spec), AdversarialProbe(probe), pctx)
    c2, c4 = (ctrl.metric(f"robust_accuracy@{e}/255").value for e in (2, 4))
    h4 = hard.metric("robust_accuracy@4/255").value
    assert c2 is not None and c4 is not None and h4 is not None
    assert h2.value >= c2 and h4 >= c4 + 0.15


def _feature_shift(model: Any, pixels: torch.Tensor) -> float:
    """Mean squared embedding shift a 5-step PGD achieves at 2/255 (FARE's own objective)."""
    from vlmtrust.attacks.pgd import AttackConfig, attack, embedding_distance

    with torch.no_grad():
        clean = model.image_features(pixels)
    res = attack(embedding_distance(model, clean), pixels, AttackConfig(eps=2 / 255, steps=5))
    return float(res.loss.mean())


@pytest.mark.slow
def test_fare_reduced_run_keeps_clean_embedding(ref_clip: Any, tmp_path: Path) -> None:
    ctx = MitigationContext(seed=0, out_dir=tmp_path / "fare")
    art = get_mitigation("robustness/fare")(REDUCED).apply(ref_clip, ctx)
    s = art.summary
    assert s["before"]["robust_accuracy"] <= 0.15 and s["after"]["robust_accuracy"] >= 0.4
    assert s["after"]["clean_accuracy"] >= s["before"]["clean_accuracy"] - 0.10
    assert (tmp_path / "fare" / "hardening.json").is_file()
    hardened: Any = load_model(art.spec)
    from vlmtrust.data.synthworld import SynthWorld

    images = [x.image for x in SynthWorld(seed=99).shapes(32)]
    px = ref_clip.to_pixels(images)
    # robustness in embedding space: the attack moves hardened embeddings far less
    assert _feature_shift(hardened, px) <= 0.7 * _feature_shift(ref_clip, px)
    a, b = ref_clip.embed_images(images), hardened.embed_images(images)
    assert float((a * b).sum(axis=1).mean()) >= 0.8  # clean embeddings stay close
    # the adversarial probe agrees on fresh data
    probe = {"n": 32, "eps": "2/255", "steps": 10}
    pctx = ProbeContext(seed=3)
    base = evaluate_probe(ref_clip, AdversarialProbe(probe), pctx).metric("robust_accuracy@2/255")
    hard = evaluate_probe(hardened, AdversarialProbe(probe), pctx).metric("robust_accuracy@2/255")
    assert base.value is not None and hard.value is not None
    assert hard.value >= base.value + 0.3


def test_swap_vision_tower_into_llava(
    tiny_llava: Any, tiny_llava_dir: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    from vlmtrust.mitigations.robustness.fare import swap_vision_tower, towers_match

    clip = load_model(f"hf:{tiny_clip_dir}")
    # perturb the CLIP tower so the swap is visible
    with torch.no_grad():
        for p in clip.model.vision_model.parameters():  # type: ignore[attr-defined]
            p.add_(0.01)
    assert towers_match(tiny_llava, clip)
    out = swap_vision_tower(tiny_llava_dir, clip, tmp_path / "swapped")
    gen: Any = load_model(f"hardened:{out}")
    assert gen.kind == "generative"
    dst = gen.model.model.vision_tower.state_dict()
    src = clip.model.vision_model.state_dict()  # type: ignore[attr-defined]
    assert all(torch.equal(dst[k], src[k]) for k in dst)
    from PIL import Image

    from vlmtrust.core.model import GenerateRequest, generate_sync

    (g,) = generate_sync(
        gen,
        [GenerateRequest("What shape?", images=(Image.new("RGB", (32, 32)),), max_new_tokens=3)],
    )
    assert g.ok
    # a tower with other shapes is refused with one line
    with torch.no_grad():
        emb = clip.model.vision_model.embeddings  # type: ignore[attr-defined]
        emb.position_embedding = torch.nn.Embedding(
            emb.position_embedding.num_embeddings + 1, emb.position_embedding.embedding_dim
        )
    assert not towers_match(tiny_llava, clip)
    with pytest.raises(InputError) as e:
        swap_vision_tower(tiny_llava, clip, tmp_path / "bad")
    assert "\n" not in str(e.value) and "position_embedding" in str(e.value)


def test_fare_on_generative_swaps_trained_tower(
    tiny_llava: Any, tiny_clip: Any, tmp_path: Path
) -> None:
    p = {"steps": 2, "batch_size": 8, "n_train": 16, "n_eval": 0, "encoder": tiny_clip.spec}
    art = get_mitigation("robustness/fare")(p).apply(
        tiny_llava, MitigationContext(out_dir=tmp_path)
    )
    gen = load_model(art.spec)
    enc = load_model(f"hf:{art.summary['encoder_dir']}")
    dst = gen.model.model.vision_tower.state_dict()  # type: ignore[attr-defined]
    src = enc.model.vision_model.state_dict()  # type: ignore[attr-defined]
    orig = tiny_clip.model.vision_model.state_dict()
    assert all(torch.equal(dst[k], src[k]) for k in dst)
    assert any(not torch.equal(src[k], orig[k]) for k in src)  # it was trained


def test_fare_on_generative_starts_from_the_vlms_own_tower(
    tiny_llava: Any, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    # The encoder's tower drifted after the VLM took it (as reference:clip's did in its
    # fragility stage): FARE must anchor on the tower the VLM really uses.
    clip: Any = load_model(f"hf:{tiny_clip_dir}")
    with torch.no_grad():
        for p in clip.model.vision_model.parameters():
            p.add_(0.05)
    clip.save_pretrained(tmp_path / "drifted")
    vlm_tower = tiny_llava.model.model.vision_tower.state_dict()
    before = {k: v.clone() for k, v in vlm_tower.items()}
    drifted = clip.model.vision_model.state_dict()
    fare = get_mitigation("robustness/fare")
    for own in (True, False):
        p = {
            "steps": 1, "batch_size": 8, "n_train": 16, "n_eval": 0, "lr": 1e-12,
            "encoder": f"hf:{tmp_path / 'drifted'}", "from_model_tower": own,
        }  # fmt: skip
        art = fare(p).apply(tiny_llava, MitigationContext(out_dir=tmp_path / f"own{own}"))
        enc_model: Any = load_model(f"hf:{art.summary['encoder_dir']}")
        enc = enc_model.model.vision_model.state_dict()
        start = vlm_tower if own else drifted
        assert all(torch.allclose(enc[k], start[k], atol=1e-6) for k in start)
        assert all(torch.allclose(enc[k], drifted[k], atol=1e-3) for k in enc) is (not own)
    # the mitigation saved a new model and left the one it was given unchanged
    after = tiny_llava.model.model.vision_tower.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
