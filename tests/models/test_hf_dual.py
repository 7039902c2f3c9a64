"""The ``hf:`` dual-encoder backend on tiny random CLIP / SigLIP models built offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.model import EmbeddingModel
from vlmtrust.core.types import Capability
from vlmtrust.models.hf_dual import HFDualEncoder
from vlmtrust.models.loader import load_model

CLASSES = ["a red circle", "a blue square", "a green triangle on a white background"]


def test_loaded_through_hf_spec(tiny_clip: Any, tiny_clip_dir: Path) -> None:
    assert isinstance(tiny_clip, HFDualEncoder)
    assert isinstance(tiny_clip, EmbeddingModel)
    assert tiny_clip.kind == "dual"
    assert tiny_clip.spec == f"hf:{tiny_clip_dir}"
    assert tiny_clip.capabilities == Capability.EMBED | Capability.GRADIENT | Capability.TRAIN
    assert tiny_clip.fingerprint.startswith("sha256:")
    assert not tiny_clip.model.training
    # logit_scale is exp() of the model's parameter (CLIPConfig init value 2.6592)
    expected = float(tiny_clip.model.logit_scale.detach().exp())
    assert tiny_clip.logit_scale == pytest.approx(expected)
    assert tiny_clip.logit_scale == pytest.approx(np.exp(2.6592), rel=1e-4)
    assert tiny_clip.logit_bias is None


def test_embeddings_shape_and_norm(tiny_clip: Any, rgb_images: list[Image.Image]) -> None:
    e = tiny_clip.embed_images(rgb_images)
    assert e.shape == (5, 16) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(e).all()
    assert np.abs(e[0] - e[1]).max() > 1e-3  # different images, different embeddings
    t = tiny_clip.embed_texts(CLASSES)
    assert t.shape == (3, 16) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert np.abs(t[0] - t[1]).max() > 1e-3
    assert tiny_clip.embed_images([]).shape == (0, 16)
    assert tiny_clip.embed_texts([]).shape == (0, 16)


def test_embed_images_is_image_features_of_to_pixels(
    tiny_clip: Any, rgb_images: list[Image.Image]
) -> None:
    pixels = tiny_clip.to_pixels(rgb_images)
    assert pixels.shape == (5, 3, 32, 32) and pixels.dtype == torch.float32
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0
    assert float(pixels.max()) > 0.9 and float(pixels.min()) < 0.1  # not already normalised
    with torch.no_grad():
        feats = tiny_clip.image_features(pixels).cpu().numpy()
    np.testing.assert_allclose(tiny_clip.embed_images(rgb_images), feats, atol=1e-6)


def test_normalisation_inside_matches_processor(
    tiny_clip: Any, rgb_images: list[Image.Image]
) -> None:
    """normalize(to_pixels(x)) is exactly what the processor feeds the model."""
    ref = tiny_clip.processor(images=[im.convert("RGB") for im in rgb_images], return_tensors="pt")[
        "pixel_values"
    ]
    ours = tiny_clip.normalize(tiny_clip.to_pixels(rgb_images))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    with torch.inference_mode():
        direct = tiny_clip.model.get_image_features(pixel_values=ref).pooler_output
    direct = torch.nn.functional.normalize(direct, dim=-1).numpy()
    np.testing.assert_allclose(tiny_clip.embed_images(rgb_images), direct, atol=1e-5)


def test_batching_does_not_change_embeddings(
    tiny_clip: Any, rgb_images: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    full = tiny_clip.embed_images(rgb_images)
    texts_full = tiny_clip.embed_texts(CLASSES)
    monkeypatch.setattr(tiny_clip, "batch_size", 2)
    np.testing.assert_allclose(tiny_clip.embed_images(rgb_images), full, atol=1e-5)
    np.testing.assert_allclose(tiny_clip.embed_texts(CLASSES), texts_full, atol=1e-5)
    np.testing.assert_allclose(tiny_clip.embed_images(rgb_images[2:3])[0], full[2], atol=1e-5)


def test_zero_shot_logits_are_raw_cosines(tiny_clip: Any, rgb_images: list[Image.Image]) -> None:
    logits = tiny_clip.zero_shot_logits(rgb_images, CLASSES)
    assert logits.shape == (5, 3) and logits.dtype == np.float64
    assert np.abs(logits).max() <= 1.0 + 1e-6
    expected = tiny_clip.embed_images(rgb_images) @ tiny_clip.embed_texts(CLASSES).T
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    # and it agrees with HF's own (scaled) logits_per_image once scaled explicitly
    pv = tiny_clip.processor(images=[im.convert("RGB") for im in rgb_images], return_tensors="pt")
    tok = tiny_clip.tokenizer(CLASSES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hf = tiny_clip.model(pixel_values=pv["pixel_values"], **tok).logits_per_image.numpy()
    np.testing.assert_allclose(logits * tiny_clip.logit_scale, hf, atol=1e-4)
    np.testing.assert_allclose(tiny_clip.scaled_logits(logits), hf, atol=1e-4)


def test_gradient_flows_to_pixels(tiny_clip: Any, rgb_images: list[Image.Image]) -> None:
    text = tiny_clip.text_features(CLASSES[:1])
    assert not text.requires_grad
    pixels = tiny_clip.to_pixels(rgb_images[:3]).requires_grad_(True)
    sim = (tiny_clip.image_features(pixels) @ text.T).sum()
    sim.backward()
    grad = pixels.grad
    assert grad is not None and grad.shape == pixels.shape
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
    assert (grad.flatten(1).abs().sum(dim=1) > 0).all()  # every image gets a gradient
    # one signed-gradient step (FGSM-like) raises the similarity it ascends
    with torch.no_grad():
        stepped = (pixels + 2 / 255 * grad.sign()).clamp(0, 1)
        after = (tiny_clip.image_features(stepped) @ text.T).sum()
    assert float(after) > float(sim.detach())


def test_text_features_grad_for_training(tiny_clip: Any) -> None:
    assert not tiny_clip.text_features(CLASSES).requires_grad
    feats = tiny_clip.text_features(CLASSES, grad=True)
    assert feats.requires_grad
    np.testing.assert_allclose(feats.detach().numpy(), tiny_clip.embed_texts(CLASSES), atol=1e-6)
    tiny_clip.model.zero_grad()
    feats.sum().backward()
    g = tiny_clip.model.text_projection.weight.grad
    assert g is not None and float(g.abs().sum()) > 0
    tiny_clip.model.zero_grad(set_to_none=True)


def test_logit_scale_is_live(tiny_clip_dir: Path) -> None:
    m = load_model(f"hf:{tiny_clip_dir}", device="cpu")
    assert isinstance(m, HFDualEncoder)
    m.logit_scale = 100.0
    assert m.logit_scale == pytest.approx(100.0, rel=1e-5)
    assert float(m.model.logit_scale.detach()) == pytest.approx(np.log(100.0), rel=1e-5)
    with pytest.raises(InputError, match="must be > 0"):
        m.logit_scale = 0.0
    with pytest.raises(InputError, match="no settable logit_bias"):
        m.logit_bias = 1.0


def test_bad_inputs(tiny_clip: Any, rgb_images: list[Image.Image]) -> None:
    with pytest.raises(InputError, match="not one image"):
        tiny_clip.embed_images(rgb_images[0])
    with pytest.raises(InputError, match=r"images\[1\] is a ndarray"):
        tiny_clip.embed_images([rgb_images[0], np.zeros((4, 4, 3))])
    with pytest.raises(InputError, match="not one string"):
        tiny_clip.embed_texts("a red circle")
    with pytest.raises(InputError, match=r"expected \(B, 3, H, W\)"):
        tiny_clip.image_features(torch.zeros(3, 32, 32))


def test_long_text_is_truncated(tiny_clip: Any) -> None:
    long = " ".join(["red circle"] * 100)
    e = tiny_clip.embed_texts([long, "red circle"])
    assert e.shape == (2, 16) and np.isfinite(e).all()


def test_siglip(tiny_siglip: Any, rgb_images: list[Image.Image]) -> None:
    assert isinstance(tiny_siglip, HFDualEncoder)
    assert tiny_siglip.model_type == "siglip"
    assert tiny_siglip.logit_bias == pytest.approx(float(tiny_siglip.model.logit_bias.detach()))
    assert tiny_siglip.logit_scale == pytest.approx(
        float(tiny_siglip.model.logit_scale.detach().exp())
    )
    # SigLIP was trained on max_length padding: every text gets the full length
    enc = tiny_siglip._tokenize(["red", "a red circle on the left"])
    assert enc["input_ids"].shape == (2, 16)
    e = tiny_siglip.embed_images(rgb_images)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    pixels = tiny_siglip.to_pixels(rgb_images)
    with torch.no_grad():
        np.testing.assert_allclose(tiny_siglip.image_features(pixels).numpy(), e, atol=1e-6)
    # SigLIP processors resize to a square without cropping: mean/std 0.5 are applied inside
    ref = tiny_siglip.processor(
        images=[im.convert("RGB") for im in rgb_images], return_tensors="pt"
    )["pixel_values"]
    torch.testing.assert_close(tiny_siglip.normalize(pixels), ref, atol=1e-5, rtol=0)
    # the model's own sigmoid logits are scale * cos + bias
    tok = tiny_siglip.tokenizer(CLASSES, padding="max_length", max_length=16, return_tensors="pt")
    with torch.inference_mode():
        own = tiny_siglip.model(pixel_values=ref, input_ids=tok["input_ids"]).logits_per_image
    cos = tiny_siglip.zero_shot_logits(rgb_images, CLASSES)
    np.testing.assert_allclose(tiny_siglip.scaled_logits(cos), own.numpy(), atol=1e-4)
    pixels.requires_grad_(True)
    (tiny_siglip.image_features(pixels) @ tiny_siglip.text_features(CLASSES).T).sum().backward()
    assert pixels.grad is not None and float(pixels.grad.abs().sum()) > 0


def test_save_pretrained_round_trip(
    tiny_clip: Any, rgb_images: list[Image.Image], tmp_path: Path
) -> None:
    out = tiny_clip.save_pretrained(tmp_path / "saved")
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    again = load_model(f"hf:{out}", device="cpu")
    assert isinstance(again, HFDualEncoder)
    np.testing.assert_allclose(
        again.embed_images(rgb_images), tiny_clip.embed_images(rgb_images), atol=1e-6
    )
    np.testing.assert_allclose(
        again.embed_texts(CLASSES), tiny_clip.embed_texts(CLASSES), atol=1e-6
    )


def test_fine_tuned_weights_change_fingerprint(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """TRAIN: update parameters, save, reload: new fingerprint, new embeddings."""
    m = load_model(f"hf:{tiny_clip_dir}", device="cpu")
    assert isinstance(m, HFDualEncoder)
    before_fp = m.fingerprint
    txt_before = m.embed_texts(CLASSES)
    with torch.no_grad():
        m.model.text_projection.weight.mul_(-1.0)
    out = m.save_pretrained(tmp_path / "tuned")
    tuned = load_model(f"hf:{out}", device="cpu")
    assert isinstance(tuned, HFDualEncoder)
    assert tuned.fingerprint != before_fp
    np.testing.assert_allclose(tuned.embed_texts(CLASSES), -txt_before, atol=1e-5)
