"""The ``hf:`` generative backend on a tiny random LLaVA (CLIP tower + Llama) built offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.model import GenerateRequest, GenerativeModel, generate_sync, run_sync
from vlmtrust.core.types import Capability
from vlmtrust.models.hf_generative import HFGenerativeModel
from vlmtrust.models.loader import load_model


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (24 + 4 * i, 40, 3), dtype=np.uint8)) for i in range(n)
    ]


def _mixed_requests() -> list[GenerateRequest]:
    ims = _images(6)
    return [
        GenerateRequest("what colour is it ?", images=(ims[0],), max_new_tokens=6),
        GenerateRequest("how many objects are there ?", images=(ims[1], ims[2]), max_new_tokens=5),
        GenerateRequest(
            "describe the image", images=(ims[3],), system="be brief", max_new_tokens=4
        ),
        GenerateRequest("say yes or no", max_new_tokens=3),
        GenerateRequest("what shape is it ?", images=(ims[4],), max_new_tokens=7),
        GenerateRequest("read the text", images=(ims[5].convert("L"),), max_new_tokens=5),
        GenerateRequest("which two are red ?", images=(ims[0], ims[4]), max_new_tokens=6),
    ]


def test_loaded_through_hf_spec(tiny_llava: Any, tiny_llava_dir: Path) -> None:
    assert isinstance(tiny_llava, HFGenerativeModel)
    assert isinstance(tiny_llava, GenerativeModel)
    assert tiny_llava.kind == "generative"
    assert tiny_llava.spec == f"hf:{tiny_llava_dir}"
    assert tiny_llava.capabilities == (Capability.GENERATE | Capability.GRADIENT | Capability.TRAIN)
    assert tiny_llava.fingerprint.startswith("sha256:")
    assert tiny_llava.tokenizer.padding_side == "left"
    assert not tiny_llava.model.training


def test_chat_template_rendering(tiny_llava: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    text = tiny_llava.render("what colour is it ?", 2, system="be brief")
    assert text == "system: be brief user: <image> <image> what colour is it ? assistant:"
    assert tiny_llava.render("hi", 0) == "user: hi assistant:"
    # a template without a system role gets the system text prepended to the user turn
    monkeypatch.setattr(tiny_llava, "_system_ok", False)
    assert (
        tiny_llava.render("hi", 1, system="be brief") == "user: <image> be brief\n\nhi assistant:"
    )


def test_batched_equals_one_by_one(tiny_llava: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = _mixed_requests()
    monkeypatch.setattr(tiny_llava, "batch_size", 3)
    batched = tiny_llava.generate_batch(reqs)
    single = [tiny_llava.generate_batch([r])[0] for r in reqs]
    assert batched == single
    for r, g in zip(reqs, batched, strict=True):
        assert g.ok and g.text and g.text == g.text.strip()
        assert g.finish_reason in ("stop", "length")
        if g.finish_reason == "length":
            assert len(tiny_llava.tokenizer(g.text, add_special_tokens=False)["input_ids"]) <= (
                r.max_new_tokens
            )
    # the answer depends on the image: same prompt, another image, another answer
    other = tiny_llava.generate_batch(
        [GenerateRequest("what colour is it ?", images=(_images(1, seed=9)[0],), max_new_tokens=6)]
    )
    assert other[0].text != batched[0].text


def test_async_generate_matches_sync(tiny_llava: Any) -> None:
    reqs = _mixed_requests()[:3]
    assert run_sync(tiny_llava.generate(reqs)) == tiny_llava.generate_batch(reqs)
    assert generate_sync(tiny_llava, reqs) == tiny_llava.generate_batch(reqs)


def test_max_new_tokens_is_honoured(tiny_llava: Any) -> None:
    im = _images(1)[0]
    long, short = tiny_llava.generate_batch(
        [
            GenerateRequest("describe the image", images=(im,), max_new_tokens=8),
            GenerateRequest("describe the image", images=(im,), max_new_tokens=2),
        ]
    )
    # the short answer is a prefix of the long one (same greedy path, cut earlier)
    long_ids = tiny_llava.tokenizer(long.text, add_special_tokens=False)["input_ids"]
    short_ids = tiny_llava.tokenizer(short.text, add_special_tokens=False)["input_ids"]
    assert short.finish_reason == "length"
    assert short_ids == long_ids[: len(short_ids)] and len(short_ids) <= 2 < len(long_ids)


def test_failed_request_does_not_fail_the_batch(tiny_llava: Any) -> None:
    good = _mixed_requests()[:3]
    bad_prompt = GenerateRequest("look <image> here", images=tuple(_images(1)), max_new_tokens=3)
    bad_image = GenerateRequest("what is it ?", images=(np.zeros((4, 4, 3)),), max_new_tokens=3)  # type: ignore[arg-type]
    bad_len = GenerateRequest("what is it ?", max_new_tokens=0)
    reqs = [good[0], bad_prompt, good[1], bad_image, good[2], bad_len]
    out = tiny_llava.generate_batch(reqs)
    assert len(out) == len(reqs)
    assert [g.ok for g in out] == [True, False, True, False, True, False]
    assert "image placeholder" in (out[1].error or "") and out[1].text == ""
    assert "not a PIL image" in (out[3].error or "")
    assert "max_new_tokens=0" in (out[5].error or "")
    expected = [tiny_llava.generate_batch([r])[0] for r in good]
    assert [out[0], out[2], out[4]] == expected


def test_sampling_is_seeded(tiny_llava: Any) -> None:
    im = _images(1)[0]

    def req(seed: int) -> GenerateRequest:
        return GenerateRequest(
            "describe the image", images=(im,), max_new_tokens=10, temperature=1.5, seed=seed
        )

    state = torch.random.get_rng_state()
    a, b, c = tiny_llava.generate_batch([req(1), req(1), req(2)])
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert a == b and a.ok
    assert a.text != c.text
    greedy = tiny_llava.generate_batch(
        [GenerateRequest("describe the image", images=(im,), max_new_tokens=10)]
    )[0]
    assert a.text != greedy.text


def test_to_pixels_and_normalisation(tiny_llava: Any) -> None:
    ims = _images(3)
    pixels = tiny_llava.to_pixels(ims)
    assert pixels.shape == (3, 3, 32, 32)
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 1
    ref = tiny_llava.image_processor(images=ims, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(tiny_llava.normalize(pixels), ref, atol=1e-5, rtol=0)


def test_target_loss_differentiable(tiny_llava: Any) -> None:
    pixels = tiny_llava.to_pixels(_images(2)).requires_grad_(True)
    loss = tiny_llava.target_loss(
        pixels, ["what colour is it ?", "describe the image"], ["red", "a blue square on the left"]
    )
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    # random model over a ~130-word vocabulary: NLL near ln(V)
    v = len(tiny_llava.tokenizer)
    assert 0.5 * np.log(v) < float(loss.detach().min()) < 2.0 * np.log(v)
    loss.sum().backward()
    assert pixels.grad is not None and (pixels.grad.flatten(1).abs().sum(dim=1) > 0).all()
    one = tiny_llava.target_loss(pixels.detach(), "what colour is it ?", "red")
    assert one.shape == (2,)
    torch.testing.assert_close(one[0], loss.detach()[0], atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="2 images, 3 prompts"):
        tiny_llava.target_loss(pixels.detach(), ["a", "b", "c"], ["x", "y"])


def test_target_loss_matches_generation(tiny_llava: Any) -> None:
    """The greedy first word has the lowest one-word target loss: same prompt as generate."""
    ims = _images(2, seed=3)
    gens = tiny_llava.generate_batch(
        [GenerateRequest("what shape is it ?", images=(im,), max_new_tokens=1) for im in ims]
    )
    first = [g.text for g in gens]
    candidates = ["red", "circle", "yes", "no", "square", "two", *first]
    pixels = tiny_llava.to_pixels(ims)
    with torch.no_grad():
        for b, word in enumerate(first):
            losses = tiny_llava.target_loss(
                pixels[b : b + 1].expand(len(candidates), -1, -1, -1),
                "what shape is it ?",
                candidates,
            )
            assert candidates[int(losses.argmin())] == word


def test_target_loss_drops_when_fitted(tiny_llava_dir: Path, tmp_path: Path) -> None:
    """TRAIN + GRADIENT: fitting one answer lowers its loss and makes generation stop there."""
    m = load_model(f"hf:{tiny_llava_dir}", device="cpu")
    assert isinstance(m, HFGenerativeModel)
    pixels = m.to_pixels(_images(1, seed=5))
    prompt, target = "what colour is it ?", "blue circle [EOS]"
    with torch.no_grad():
        before = float(m.target_loss(pixels, prompt, target)[0])
        other_before = float(m.target_loss(pixels, prompt, "red square [EOS]")[0])
    torch.manual_seed(0)
    opt = torch.optim.Adam(m.model.parameters(), lr=3e-2)
    m.model.train()
    for _ in range(25):
        opt.zero_grad()
        m.target_loss(pixels, prompt, target).sum().backward()
        opt.step()
    m.model.eval()
    with torch.no_grad():
        after = float(m.target_loss(pixels, prompt, target)[0])
        other_after = float(m.target_loss(pixels, prompt, "red square [EOS]")[0])
    assert after < 0.1 * before
    assert other_after > after + 1.0 and other_before > 0
    g = m.generate_batch(
        [GenerateRequest(prompt, images=tuple(_images(1, seed=5)), max_new_tokens=8)]
    )[0]
    assert g.text == "blue circle" and g.finish_reason == "stop"
    # the fitted weights round-trip through save_pretrained
    out = m.save_pretrained(tmp_path / "fitted")
    again = load_model(f"hf:{out}", device="cpu")
    assert isinstance(again, HFGenerativeModel)
    assert again.fingerprint != m.fingerprint
    assert again.generate_batch(
        [GenerateRequest(prompt, images=tuple(_images(1, seed=5)), max_new_tokens=8)]
    ) == [g]


def test_idefics3_batched_generation_without_gradient(tiny_idefics3_dir: Path) -> None:
    """A SmolVLM-architecture model: same batching contract, no plain-pixel GRADIENT path."""
    m = load_model(f"hf:{tiny_idefics3_dir}", device="cpu")
    assert isinstance(m, HFGenerativeModel) and m.model_type == "idefics3"
    assert m.capabilities == Capability.GENERATE | Capability.TRAIN
    reqs = _mixed_requests()
    m.batch_size = 3
    batched = m.generate_batch(reqs)
    assert all(g.ok for g in batched)
    assert batched == [m.generate_batch([r])[0] for r in reqs]
    with pytest.raises(CapabilityError, match="needs GRADIENT"):
        m.to_pixels(_images(1))
    with pytest.raises(CapabilityError, match="needs GRADIENT"):
        m.target_loss(torch.zeros(1, 3, 32, 32), "what is it ?", "red")


def test_greedy_ignores_checkpoint_decoding_tweaks(
    tiny_llava: Any, tiny_llava_dir: Path, tmp_path: Path
) -> None:
    """temperature=0 means plain greedy, whatever generation_config.json suggests."""
    import json
    import shutil

    copy = tmp_path / "tweaked"
    shutil.copytree(tiny_llava_dir, copy)
    path = copy / "generation_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(do_sample=True, temperature=0.7, top_k=5, repetition_penalty=1.5, max_new_tokens=2)
    path.write_text(json.dumps(cfg))
    tweaked = load_model(f"hf:{copy}", device="cpu")
    reqs = _mixed_requests()[:3]
    assert tweaked.generate_batch(reqs) == tiny_llava.generate_batch(reqs)  # type: ignore[attr-defined]
    assert tweaked.model.generation_config.repetition_penalty == 1.5  # type: ignore[attr-defined]


def test_missing_chat_template_is_a_clear_error(tiny_llava_dir: Path, tmp_path: Path) -> None:
    import shutil

    from vlmtrust.core.errors import ModelSpecError

    copy = tmp_path / "no_template"
    shutil.copytree(tiny_llava_dir, copy)
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(ModelSpecError) as e:
        load_model(f"hf:{copy}", device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "no chat template" in msg and str(copy) in msg


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen2_vl_batched_generation_and_round_trip(
    arch: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Qwen2-VL and Qwen2.5-VL (flattened patches, image_grid_thw, M-RoPE): batched = one by
    one, multi-image requests, save and reload; no plain-pixel GRADIENT path."""
    path = request.getfixturevalue(f"tiny_{arch}_dir")
    m = load_model(f"hf:{path}", device="cpu")
    assert isinstance(m, HFGenerativeModel) and m.model_type == arch
    assert m.capabilities == Capability.GENERATE | Capability.TRAIN
    reqs = _mixed_requests()
    m.batch_size = 3
    batched = m.generate_batch(reqs)
    assert all(g.ok for g in batched), batched
    assert batched == [m.generate_batch([r])[0] for r in reqs]
    m.save_pretrained(tmp_path / "saved")
    again = load_model(f"hf:{tmp_path / 'saved'}", device="cpu")
    assert again.generate_batch(reqs) == batched  # type: ignore[attr-defined]
    (bad,) = m.generate_batch([GenerateRequest("look <|image_pad|>", max_new_tokens=2)])
    assert not bad.ok and "image placeholder" in (bad.error or "")


def test_image_only_processor_matches_transformers_token_count(tiny_qwen2_vl_dir: Path) -> None:
    """Without torchvision the stand-in processor expands each image placeholder to
    transformers' own count (Qwen2VLProcessor.replace_image_token), image by image."""
    from types import SimpleNamespace

    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

    from vlmtrust.models.hf_processors import ImageOnlyProcessor

    m = load_model(f"hf:{tiny_qwen2_vl_dir}", device="cpu")
    proc = m.processor  # type: ignore[attr-defined]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        assert isinstance(proc, ImageOnlyProcessor)
    ims = [Image.new("RGB", (32, 32)), Image.new("RGB", (48, 24)), Image.new("RGB", (17, 40))]
    pix = proc.image_processor(images=ims, return_tensors="pt")
    fake = SimpleNamespace(image_processor=proc.image_processor, image_token="<|image_pad|>")
    expected = [
        Qwen2VLProcessor.replace_image_token(fake, pix, i).count("<|image_pad|>")  # type: ignore[arg-type]
        for i in range(len(ims))
    ]
    assert len(set(expected)) == 3  # three different counts: a swap would show
    texts = ["a <|image_pad|> b <|image_pad|>", "c <|image_pad|>"]
    enc = proc(text=texts, images=ims, padding=True, return_tensors="pt")
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def runs(row: list[int]) -> list[int]:  # lengths of the image-token runs, in order
        from itertools import groupby

        return [len(list(group)) for tok, group in groupby(row) if tok == pad]

    assert [runs(r) for r in enc["input_ids"].tolist()] == [expected[:2], expected[2:]]
    assert torch.equal(enc["image_grid_thw"], pix["image_grid_thw"])
    # each token's modality, as transformers builds it (Qwen2-VL's M-RoPE reads it)
    from transformers.processing_utils import ProcessorMixin

    modal = SimpleNamespace(image_token_ids=[pad], video_token_ids=[-1], audio_token_ids=[-1])
    types = ProcessorMixin.create_mm_token_type_ids(modal, enc["input_ids"])  # type: ignore[arg-type]
    assert enc["mm_token_type_ids"].tolist() == types
    with pytest.raises(InputError, match="2 image placeholders for 3 images"):
        proc(text=["<|image_pad|> <|image_pad|>"], images=ims)
    if isinstance(proc, ImageOnlyProcessor):
        with pytest.raises(InputError, match="video placeholder"):
            proc(text=["<|video_pad|>"], images=[])


def test_image_only_processor_reads_a_processor_level_chat_template(
    tiny_qwen2_vl_dir: Path, tmp_path: Path
) -> None:
    """A checkpoint whose chat template is only in chat_template.json (older processors) loads."""
    import json
    import shutil

    d = tmp_path / "json_template"
    shutil.copytree(tiny_qwen2_vl_dir, d)
    template = (d / "chat_template.jinja").read_text()
    (d / "chat_template.jinja").unlink()
    (d / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    m = load_model(f"hf:{d}", device="cpu")
    assert m.processor.chat_template == template  # type: ignore[attr-defined]
    (g,) = m.generate_batch(  # type: ignore[attr-defined]
        [GenerateRequest("what is it ?", images=tuple(_images(1)), max_new_tokens=3)]
    )
    assert g.ok


def test_processor_needing_a_missing_package_is_one_line(
    tiny_idefics3_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A processor that cannot be built for a missing package (torchvision) is one clear line."""
    import transformers

    from vlmtrust.core.errors import ModelSpecError

    def missing(*a: Any, **k: Any) -> Any:
        raise ImportError("Video processor cannot be loaded - requested backend is not available.")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", missing)
    with pytest.raises(ModelSpecError) as e:
        load_model(f"hf:{tiny_idefics3_dir}", device="cpu")
    assert "\n" not in str(e.value) and "install the package it needs" in str(e.value)


def test_max_images_from_family_and_context_and_the_processor_gets_them_all(
    tiny_llava: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LLaVA declares several images; in-context examples reach processor and prompt."""
    from vlmtrust.core.mitigation import get_mitigation
    from vlmtrust.models.hf_generative import MAX_IMAGES, images_that_fit

    assert tiny_llava.max_images == 8  # 16 tokens per 32-px image, 256 positions: 128 // 16
    assert images_that_fit("paligemma", 8192, 256) == 1  # a one-image family stays at 1
    assert images_that_fit("qwen2_vl", 32768, 64) == MAX_IMAGES
    assert images_that_fit("llava", 64, 577) == 1
    calls: list[tuple[list[str], int]] = []
    processor = tiny_llava.processor

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(processor, name)

        def __call__(self, *, text: list[str], images: Any = None, **kw: Any) -> Any:
            calls.append((text, len(images or [])))
            return processor(text=text, images=images, **kw)

    monkeypatch.setattr(tiny_llava, "processor", Spy())
    model = get_mitigation("robustness/in_context")({"k": 3}).wrap(tiny_llava)
    assert model.layout == "multi_image"
    req = GenerateRequest("what shape is it ?", images=tuple(_images(1)), max_new_tokens=3)
    [gen] = generate_sync(model, [req])
    assert gen.ok, gen.error
    [(texts, n_images)] = calls
    assert n_images == 4 and texts[0].count("<image>") == 4
    shown = [*(im for im, _ in model.examples), *req.images]
    enc = processor(text=texts, images=shown, return_tensors="pt")
    image_id = tiny_llava.tokenizer.convert_tokens_to_ids("<image>")
    assert int((enc["input_ids"] == image_id).sum()) == 4 * 16  # every image expanded
