"""Shared test fixtures: tiny random-weight HF models built offline and loaded through ``hf:``.

The builders are plain functions so any test area can call them on its own directory:

* :func:`build_tiny_clip` — a ``CLIPModel`` (≈45k parameters, 32×32 images);
* :func:`build_tiny_siglip` — a ``SiglipModel`` (same sizes, sigmoid ``logit_bias``);
* :func:`build_tiny_llava` — a ``LlavaForConditionalGeneration`` (tiny CLIP vision tower +
  tiny Llama) with a ``LlavaProcessor`` and a chat template;
* :func:`build_tiny_idefics3` — an ``Idefics3ForConditionalGeneration`` (SmolVLM architecture,
  5-D patch inputs) with an ``Idefics3Processor``;
* :func:`build_tiny_qwen2_vl` — a Qwen2-VL or Qwen2.5-VL (flattened patches,
  ``image_grid_thw``, M-RoPE) with tokenizer, image processor and chat template, written as
  their checkpoints are (``Qwen2VLProcessor`` itself needs torchvision to be built).

Each uses a word-level tokenizer trained here with the ``tokenizers`` library, and is written
with ``save_pretrained`` (safetensors). Session fixtures ``tiny_*_dir`` hold the directories and
``tiny_clip`` / ``tiny_siglip`` / ``tiny_llava`` the models loaded back with
``vlmtrust.models.loader.load_model("hf:" + dir)``.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

TINY_IMAGE_SIZE = 32
TINY_PATCH = 8

_WORDS = [
    "a",
    "an",
    "the",
    "photo",
    "picture",
    "image",
    "of",
    "on",
    "in",
    "with",
    "and",
    "or",
    "is",
    "it",
    "what",
    "which",
    "colour",
    "color",
    "shape",
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "black",
    "white",
    "grey",
    "pink",
    "brown",
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "cross",
    "ring",
    "heart",
    "diamond",
    "moon",
    "small",
    "large",
    "big",
    "tiny",
    "background",
    "left",
    "right",
    "top",
    "bottom",
    "center",
    "person",
    "doctor",
    "nurse",
    "engineer",
    "teacher",
    "chef",
    "pilot",
    "describe",
    "answer",
    "question",
    "read",
    "the",
    "text",
    "say",
    "yes",
    "no",
    "sure",
    "sorry",
    "cannot",
    "help",
    "user",
    "assistant",
    "system",
    "be",
    "brief",
    "please",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "there",
    "are",
    "how",
    "many",
    "objects",
    "scene",
    "word",
    "document",
    "name",
    "email",
    "phone",
    "address",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    ".",
    ",",
    ":",
    ";",
    "!",
    "?",
    "'",
    "-",
    "(",
    ")",
]

LLAVA_SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "<image>")
CLIP_SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")

# A minimal LLaVA-style chat template: "system: ... user: <image> ... assistant: ... [EOS]".
# Message content may be a string or a list of {"type": "image"} / {"type": "text"} parts.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ':' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ ' <image>' }}"
    "{% elif part['type'] == 'text' %}{{ ' ' + part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ ' [EOS]' }}{% endif %}{{ ' ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
)


def _corpus() -> list[str]:
    words = list(_WORDS)
    # a few hundred short sentences so the trainer sees every word; order is deterministic
    return [" ".join(words[i : i + 7]) for i in range(0, len(words))] + [" ".join(words)]


def build_word_tokenizer(
    specials: tuple[str, ...], *, add_eos: bool, model_max_length: int, padding_side: str
) -> Any:
    """A word-level tokenizer trained locally on :data:`_WORDS`, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordLevelTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(_corpus(), WordLevelTrainer(special_tokens=list(specials)))
    bos, eos = tok.token_to_id("[BOS]"), tok.token_to_id("[EOS]")
    single = "[BOS] $A [EOS]" if add_eos else "[BOS] $A"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("[BOS]", bos), ("[EOS]", eos)]
    )
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    extra: dict[str, Any] = {}
    if "<image>" in specials:
        extra["extra_special_tokens"] = {"image_token": "<image>"}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=model_max_length,
        padding_side=padding_side,
        **extra,
    )


def _tiny_image_processor(*, siglip: bool = False) -> Any:
    if siglip:
        from transformers.models.siglip.image_processing_pil_siglip import (
            SiglipImageProcessorPil,
        )

        return SiglipImageProcessorPil(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    )


def _tiny_decoder(tok: Any, **over: Any) -> dict[str, Any]:
    """Text config of the tiny generative models' language side (special ids from ``tok``)."""
    cfg: dict[str, Any] = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    cfg.update(over)
    return cfg


def _tiny_vision(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": TINY_PATCH,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    cfg.update(over)
    return cfg


def build_tiny_clip(out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight CLIP (model, tokenizer, PIL image processor) to ``out_dir``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    out = Path(out_dir)
    tok = build_word_tokenizer(
        CLIP_SPECIALS, add_eos=True, model_max_length=16, padding_side="right"
    )
    specials = {t: tok.convert_tokens_to_ids(t) for t in CLIP_SPECIALS}
    cfg = CLIPConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "pad_token_id": specials["[PAD]"],
            "bos_token_id": specials["[BOS]"],
            "eos_token_id": specials["[EOS]"],
        },
        vision_config=_tiny_vision(),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _tiny_image_processor().save_pretrained(out)
    return out


def build_tiny_siglip(out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight SigLIP (sigmoid loss, ``logit_bias``) to ``out_dir``."""
    import torch
    from transformers import SiglipConfig, SiglipModel

    out = Path(out_dir)
    tok = build_word_tokenizer(
        CLIP_SPECIALS, add_eos=True, model_max_length=16, padding_side="right"
    )
    cfg = SiglipConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        vision_config=_tiny_vision(),
    )
    torch.manual_seed(seed)
    model = SiglipModel(cfg).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _tiny_image_processor(siglip=True).save_pretrained(out)
    return out


def build_tiny_llava(out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight LLaVA (CLIP tower + Llama, processor + chat template)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    out = Path(out_dir)
    tok = build_word_tokenizer(
        LLAVA_SPECIALS, add_eos=False, model_max_length=256, padding_side="left"
    )
    image_token_id = tok.convert_tokens_to_ids("<image>")
    cfg = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **_tiny_vision()},
        text_config=_tiny_decoder(tok, model_type="llama"),
        image_token_index=image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    processor = LlavaProcessor(
        image_processor=_tiny_image_processor(),
        tokenizer=tok,
        patch_size=TINY_PATCH,
        vision_feature_select_strategy="default",
        chat_template=TINY_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


IDEFICS3_SPECIALS = (
    "[PAD]",
    "[UNK]",
    "[BOS]",
    "[EOS]",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
)


def build_tiny_idefics3(out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random Idefics3 (SmolVLM architecture): 5-D patch inputs, no GRADIENT path."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil,
    )

    out = Path(out_dir)
    tok = build_word_tokenizer(
        IDEFICS3_SPECIALS, add_eos=False, model_max_length=256, padding_side="left"
    )
    cfg = Idefics3Config(
        text_config=_tiny_decoder(tok, model_type="llama"),
        vision_config=_tiny_vision(num_hidden_layers=1),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": TINY_IMAGE_SIZE},
        max_image_size={"longest_edge": TINY_IMAGE_SIZE},
    )
    # (32 / 8)^2 patches, merged 2x2 by the pixel shuffle: 4 image tokens per image
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_len=4,
        chat_template=TINY_CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


QWEN2_VL_SPECIALS = (
    "[PAD]",
    "[UNK]",
    "[BOS]",
    "[EOS]",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def build_tiny_qwen2_vl(
    out_dir: str | os.PathLike[str], *, seed: int = 0, version: str = "2"
) -> Path:
    """Write a tiny random Qwen2-VL (``version="2"``) or Qwen2.5-VL (``"2.5"``, windowed vision
    attention): 8-px patches merged 2×2, so a 32×32 image is 4 tokens."""
    import json

    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    out = Path(out_dir)
    tok = build_word_tokenizer(
        QWEN2_VL_SPECIALS, add_eos=False, model_max_length=256, padding_side="left"
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN2_VL_SPECIALS[4:]}
    vision: dict[str, Any] = {
        "depth": 1,
        "embed_dim": 32,
        "hidden_size": 32,
        "num_heads": 2,
        "mlp_ratio": 2,
        "patch_size": 8,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if version == "2.5":
        vision = {
            **{k: v for k, v in vision.items() if k not in ("embed_dim", "mlp_ratio")},
            "depth": 2,
            "out_hidden_size": 32,
            "intermediate_size": 64,
            "window_size": 32,
            "fullatt_block_indexes": [1],
        }
    prefix = {"2": "Qwen2VL", "2.5": "Qwen2_5_VL"}[version]
    config_cls = getattr(transformers, f"{prefix}Config")
    model_cls = getattr(transformers, f"{prefix}ForConditionalGeneration")
    cfg = config_cls(
        text_config=_tiny_decoder(
            tok,
            max_position_embeddings=512,
            rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]},
        ),
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=16 * 16, max_pixels=48 * 48, patch_size=8, merge_size=2, temporal_patch_size=2
    )
    template = TINY_CHAT_TEMPLATE.replace(
        "' <image>'", "' <|vision_start|><|image_pad|><|vision_end|>'"
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(template)
    processor_config = {"processor_class": f"{prefix}Processor"}
    (out / "processor_config.json").write_text(json.dumps(processor_config))
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random CLIP written by :func:`build_tiny_clip`."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random SigLIP written by :func:`build_tiny_siglip`."""
    return build_tiny_siglip(tmp_path_factory.mktemp("tiny_siglip"))


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random LLaVA written by :func:`build_tiny_llava`."""
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_qwen2_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random Qwen2-VL written by :func:`build_tiny_qwen2_vl`."""
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny_qwen2_vl"))


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random Qwen2.5-VL written by :func:`build_tiny_qwen2_vl`."""
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"), version="2.5")


@pytest.fixture(scope="session")
def tiny_idefics3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random Idefics3 written by :func:`build_tiny_idefics3`."""
    return build_tiny_idefics3(tmp_path_factory.mktemp("tiny_idefics3"))


def _load(path: Path) -> Any:
    import torch

    from vlmtrust.models.loader import load_model

    # Tiny models run much faster on one intra-op thread than on two busy shared cores.
    torch.set_num_threads(1)
    return load_model("hf:" + str(path), device="cpu")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir: Path) -> Any:
    """The tiny CLIP loaded through ``load_model("hf:" + dir)`` (an ``HFDualEncoder``)."""
    return _load(tiny_clip_dir)


@pytest.fixture(scope="session")
def tiny_siglip(tiny_siglip_dir: Path) -> Any:
    """The tiny SigLIP loaded through ``load_model("hf:" + dir)``."""
    return _load(tiny_siglip_dir)


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_dir: Path) -> Any:
    """The tiny LLaVA loaded through ``load_model("hf:" + dir)`` (an ``HFGenerativeModel``)."""
    return _load(tiny_llava_dir)


@pytest.fixture()
def rgb_images() -> Iterator[list[Any]]:
    """Five small deterministic RGB images of different sizes and modes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(40, 50), (32, 32), (64, 20), (17, 33), (50, 50)]
    ims = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    ims[3] = ims[3].convert("L")  # a grey image: the backend converts it to RGB
    yield ims


# ---------------------------------------------------------------- reference models
# (here, not in a conftest below tests/: conftest basenames clash across folders without
# __init__.py)


@pytest.fixture(scope="session")
def ref_clip() -> Any:
    """reference:clip, loaded once per session (read-only: never fine-tune it in place)."""
    from vlmtrust.models.loader import load_model

    return load_model("reference:clip", device="cpu")


@pytest.fixture(scope="session")
def ref_vlm() -> Any:
    """reference:vlm, loaded once per session (read-only)."""
    from vlmtrust.models.loader import load_model

    return load_model("reference:vlm", device="cpu")


@pytest.fixture(scope="session")
def planted(ref_clip: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One audit run of both privacy probes on reference:clip with their default parameters."""
    from vlmtrust.probes.privacy.membership_inference import MembershipInferenceProbe
    from vlmtrust.probes.privacy.memorization import MemorizationProbe
    from vlmtrust.runner.engine import run_audit

    out = tmp_path_factory.mktemp("privacy_run")
    run_audit(ref_clip, [MembershipInferenceProbe(), MemorizationProbe()], out_dir=out)
    return out


@pytest.fixture(scope="session")
def clip_embeddings(ref_clip: Any) -> dict[str, Any]:
    """Image embeddings of 8 shapes, class-prompt and caption embeddings (reference:clip)."""
    import numpy as np

    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.data.synthworld import _vocab as vocab

    model = ref_clip
    scenes = SynthWorld(seed=11, image_size=64).shapes(8)
    classes = list(vocab.ID_SHAPES)
    images = np.asarray(model.embed_images([s.image for s in scenes]), dtype=np.float64)
    prompts = np.asarray(
        model.embed_texts([f"a photo of a {c}" for c in classes]), dtype=np.float64
    )
    captions = np.asarray(model.embed_texts([s.caption for s in scenes]), dtype=np.float64)
    return {
        "images": images,
        "prompts": prompts,
        "captions": captions,
        "classes": classes,
        "targets": [s.target for s in scenes],
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped on a machine without CUDA."""
    gpu = [it for it in items if it.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for it in gpu:
        it.add_marker(skip)


class _MemoDual:
    """A dual encoder with image embeddings memoised by pixel content (test speed only)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self._img: dict[bytes, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def embed_images(self, images: Any) -> Any:
        import hashlib

        import numpy as np

        keys = [hashlib.sha1(im.tobytes() + repr(im.size).encode()).digest() for im in images]
        todo = [i for i, k in enumerate(keys) if k not in self._img]
        if todo:
            new = self.base.embed_images([images[i] for i in todo])
            for i, e in zip(todo, new, strict=True):
                self._img[keys[i]] = np.asarray(e)
        return np.stack([self._img[k] for k in keys]) if keys else np.zeros((0, 0))

    def embed_texts(self, texts: Any) -> Any:
        import numpy as np

        return np.asarray(self.base.embed_texts(texts))


@pytest.fixture(scope="session")
def memo_clip(ref_clip: Any) -> Any:
    """``ref_clip`` with image embeddings memoised by pixel content (the fairness debiasers'
    tests share the fitting and evaluation galleries' embeddings through it; read-only)."""
    return _MemoDual(ref_clip)
