"""Image-only processors for checkpoints whose own processor cannot be built without torchvision.

``Qwen2VLProcessor`` and ``Qwen2_5_VLProcessor`` (transformers 5) insist on a video processor,
and every video processor needs torchvision, even for image-only input. Measured here with
transformers 5.23: ``AutoProcessor.from_pretrained`` on a Qwen2-VL directory raises
``ImportError: Video processor cannot be loaded - requested pil backend is not available``, and
building ``Qwen2VLProcessor(image_processor, tokenizer)`` by hand fails on the same missing
video class. torchvision cannot be installed here without a CUDA torch. So for these model types,
and only after the real processor has failed to load, :class:`ImageOnlyProcessor` does the
processor's image work: the image processor's PIL backend and the tokenizer, with each image
placeholder expanded to ``prod(image_grid_thw) // merge_size**2`` tokens, and each token's
modality in ``mm_token_type_ids``, which Qwen2-VL's M-RoPE reads. A test checks both against
transformers' own code (``Qwen2VLProcessor.replace_image_token`` and
``ProcessorMixin.create_mm_token_type_ids``). Videos are not supported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmtrust.core.errors import InputError, ModelSpecError

if TYPE_CHECKING:
    from vlmtrust.models.hf_common import HFTarget

IMAGE_ONLY_TYPES: dict[str, tuple[str, str, str]] = {
    "qwen2_vl": ("Qwen2VLProcessor", "<|image_pad|>", "<|video_pad|>"),
    "qwen2_5_vl": ("Qwen2_5_VLProcessor", "<|image_pad|>", "<|video_pad|>"),
}
"""``model_type`` → (the processor class it replaces, image placeholder, video placeholder)."""


class ImageOnlyProcessor:
    """A Qwen2-VL-style processor for images and text only (see the module docstring).

    It exposes what :class:`~vlmtrust.models.hf_generative.HFGenerativeModel` uses of a
    processor: ``tokenizer``, ``image_processor``, ``chat_template``, ``image_token``,
    ``apply_chat_template``, ``__call__`` and ``save_pretrained``.
    """

    def __init__(
        self, model_type: str, tokenizer: Any, image_processor: Any, chat_template: str | None
    ) -> None:
        if model_type not in IMAGE_ONLY_TYPES:
            known = ", ".join(IMAGE_ONLY_TYPES)
            raise ModelSpecError(
                f"no image-only processor for model_type {model_type!r} (known: {known})"
            )
        self.model_type = model_type
        self.processor_class, self.image_token, self.video_token = IMAGE_ONLY_TYPES[model_type]
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.merge_size = int(getattr(image_processor, "merge_size", 2))

    def apply_chat_template(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool, tokenize: bool
    ) -> str:
        """Render ``messages`` with the chat template (text only: ``tokenize`` must be False)."""
        if tokenize:
            raise InputError("ImageOnlyProcessor.apply_chat_template renders text only")
        text = self.tokenizer.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
        return str(text)

    def __call__(
        self,
        *,
        text: list[str],
        images: list[Any] | None = None,
        padding: bool = True,
        return_tensors: str = "pt",
    ) -> dict[str, Any]:
        """Tokenise ``text`` (one image placeholder per image, in order) and process ``images``."""
        images = list(images or [])
        if any(self.video_token in t for t in text):
            raise InputError(
                f"the prompt holds the video placeholder {self.video_token!r}; videos need the "
                "model's own processor (install torchvision), or remove the placeholder"
            )
        n_slots = sum(t.count(self.image_token) for t in text)
        if n_slots != len(images):
            raise InputError(
                f"the prompts hold {n_slots} image placeholders for {len(images)} images; "
                "pass one image per placeholder"
            )
        out: dict[str, Any] = {}
        if images:
            pix = self.image_processor(images=images, return_tensors=return_tensors)
            out.update(pix)
            counts = iter(
                int(g.prod()) // self.merge_size**2 for g in pix["image_grid_thw"]
            )  # one count per image, in prompt order
            marker = "\x00IMG\x00"  # expanded tokens must not be matched again
            expanded = []
            for t in text:
                while self.image_token in t:
                    t = t.replace(self.image_token, marker * next(counts), 1)
                expanded.append(t.replace(marker, self.image_token))
            text = expanded
        enc = self.tokenizer(text, padding=padding, return_tensors=return_tensors)
        out.update(enc)
        # Modality of each token (0 text, 1 image), as ProcessorMixin.create_mm_token_type_ids
        # builds it: without it Qwen2-VL silently gives image tokens text positions (M-RoPE).
        image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        out["mm_token_type_ids"] = (enc["input_ids"] == image_id).long()
        return out

    def save_pretrained(self, out_dir: str | os.PathLike[str]) -> None:
        """Write tokenizer, image processor, chat template and ``processor_config.json``.

        The directory loads back here, and with ``AutoProcessor`` where torchvision is present.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)
        if self.chat_template:
            (out / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")
        (out / "processor_config.json").write_text(
            json.dumps({"processor_class": self.processor_class}, indent=2) + "\n",
            encoding="utf-8",
        )


def image_only_processor(model_type: str, t: HFTarget) -> ImageOnlyProcessor:
    """Build an :class:`ImageOnlyProcessor` for target ``t``.

    It reads the tokenizer, the image processor (PIL backend) and the chat template: the
    tokenizer's, else ``chat_template.jinja`` or ``chat_template.json`` beside the weights, as
    processors store it.
    """
    from transformers import AutoImageProcessor, AutoTokenizer

    from vlmtrust.models.hf_common import from_pretrained, pil_backend_kwargs

    tokenizer = from_pretrained(AutoTokenizer, t)
    image_processor = from_pretrained(AutoImageProcessor, t, **pil_backend_kwargs())
    template = getattr(tokenizer, "chat_template", None) or _template_file(t)
    return ImageOnlyProcessor(model_type, tokenizer, image_processor, template)


def _template_file(t: HFTarget) -> str | None:
    """The processor-level chat template stored beside the weights, if any."""
    from transformers.utils.hub import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        try:
            path = cached_file(
                t.name_or_path, name, _raise_exceptions_for_missing_entries=False,
                **t.pretrained_kwargs(),
            )  # fmt: skip
        except OSError:
            path = None
        if path:
            text = Path(path).read_text(encoding="utf-8")
            if name.endswith(".jinja"):
                return text
            value = json.loads(text).get("chat_template")
            return value if isinstance(value, str) else None
    return None
