"""``hf:`` generative VLMs through ``AutoModelForImageTextToText`` + ``AutoProcessor``.

Prompts go through the processor's chat template (``{"type": "image"}`` parts, then the text,
``add_generation_prompt=True``), so LLaVA-family, Qwen2-VL and Idefics3/SmolVLM checkpoints
get the exact format they were trained on.

Generation is batched: requests are grouped by image count, left-padded and decoded greedily
together (``batch_size`` per forward); sampled requests (``temperature > 0``) run one at a
time under their own seed so an answer depends only on its request. A request that fails
(processing or generation) becomes ``Generation(text="", error=...)``; the rest of its batch is
retried one by one and still answered.

With ``GRADIENT`` (plain ``(B, 3, H, W)`` pixel inputs, e.g. LLaVA-1.5), :meth:`target_loss`
gives the mean token NLL of a target continuation, differentiable w.r.t. [0, 1] pixels.

Images per request: ``max_images`` (read by the in-context wrappers) is how many images one
request may carry. Families whose processor expands one placeholder per image and whose model
places each image's tokens where its placeholder is (:data:`MULTI_IMAGE_TYPES`: LLaVA, LLaVA-NeXT
and -OneVision, Qwen2-VL, Idefics2/3, SmolVLM, Gemma 3, ...) declare as many images as fit in half
of the text context, measured at load time from the tokens one image adds (capped at
:data:`MAX_IMAGES`); every other family declares 1. Whether the checkpoint was *trained* on
several images is not known from its files: a model trained on single images accepts several
but may not use them well.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from vlmtrust.core.errors import CapabilityError, InputError, ModelSpecError
from vlmtrust.core.model import (
    GenerateRequest,
    Generation,
    ModelKind,
    Texts,
    per_example,
    prompt_parts,
)
from vlmtrust.core.types import Capability
from vlmtrust.models import hf_common as hf

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_IMAGES", "MULTI_IMAGE_TYPES", "HFGenerativeModel", "images_that_fit"]

_SYSTEM_PROBE = "vlmtrust system probe"

MULTI_IMAGE_TYPES = frozenset(
    {
        "llava", "llava_next", "llava_onevision", "qwen2_vl", "qwen2_5_vl", "idefics2",
        "idefics3", "smolvlm", "gemma3", "mistral3", "pixtral", "internvl", "aya_vision",
    }
)  # fmt: skip
"""``model_type`` values whose processor and model take several interleaved images."""

MAX_IMAGES = 16
"""The most images a multi-image family declares, whatever its context length."""


def images_that_fit(model_type: str, context: int | None, tokens_per_image: int) -> int:
    """``max_images`` of a model of ``model_type``.

    1 outside :data:`MULTI_IMAGE_TYPES`; else as many images of ``tokens_per_image`` tokens as
    fill at most half of ``context`` (unknown: no bound), between 1 and :data:`MAX_IMAGES`.
    """
    if model_type not in MULTI_IMAGE_TYPES:
        return 1
    if not context or tokens_per_image < 1:
        return MAX_IMAGES
    return max(1, min(MAX_IMAGES, (context // 2) // tokens_per_image))


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip().rstrip(":")


class HFGenerativeModel(hf.LocalBackend):
    """A transformers image-text-to-text VLM behind :class:`~vlmtrust.core.model.GenerativeModel`.

    Capabilities: ``GENERATE | TRAIN``, plus ``GRADIENT`` when the processor feeds the vision
    tower plain ``(B, 3, H, W)`` pixels (LLaVA-1.5 style; not Qwen2-VL's flattened patches).
    ``max_images``: images one request may carry (see the module docstring).

    Args:
        target: a directory written by ``save_pretrained`` or a Hub repo id (``ORG/NAME[@REV]``).
        spec: the spec string to record (defaults to ``"hf:" + target``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when available.
        dtype: parameter dtype; default float32 on CPU, bfloat16 (or float16) on GPU.
        batch_size: requests per batched ``generate`` call.
        concurrency: accepted for a uniform ``load_model`` signature and ignored (local models
            batch instead of running requests concurrently).

    Example:
        >>> m = HFGenerativeModel("/path/to/llava")  # doctest: +SKIP
        >>> m.generate_batch([GenerateRequest("What colour is it?", images=(img,))])[0].text
        ... # doctest: +SKIP
    """

    kind: ModelKind = "generative"

    def __init__(
        self,
        target: str,
        *,
        spec: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 8,
        concurrency: int | None = None,
    ) -> None:
        from transformers import AutoModelForImageTextToText

        setup = hf.local_setup(
            target, spec=spec, device=device, dtype=dtype, batch_size=batch_size, half_on_gpu=True
        )
        t = self._adopt(setup, batch_size)
        # the processor first: its problems are found before any weights are read
        self.processor: Any = self._load_processor(t)
        self.tokenizer: Any = getattr(self.processor, "tokenizer", None)
        self.image_processor: Any = getattr(self.processor, "image_processor", None)
        if self.tokenizer is None or self.image_processor is None:
            raise ModelSpecError(
                f"model spec {self.spec!r}: the processor has no tokenizer or image processor; "
                "save the model's AutoProcessor next to its weights"
            )
        if not getattr(self.processor, "chat_template", None):
            raise ModelSpecError(
                f"model spec {self.spec!r}: the processor has no chat template; set "
                "processor.chat_template and save_pretrained again"
            )
        self.model: Any = (
            hf.load_weights(AutoModelForImageTextToText, t, dtype=self.dtype).to(self.device).eval()
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.image_token: str | None = getattr(self.processor, "image_token", None)
        self._eos_ids = self._eos_token_ids()
        self._system_ok = self._template_supports_system()
        self._lock = threading.Lock()
        self._mean, self._std = hf.normalisation(self.image_processor)
        self._pixel_shape = self._plain_pixel_shape()
        caps = Capability.GENERATE | Capability.TRAIN
        if self._pixel_shape is not None:
            caps |= Capability.GRADIENT
        self.capabilities: Capability = caps
        self.max_images: int = self._max_images()
        self.fingerprint: str = hf.model_fingerprint(t, self.dtype)  # after loading

    def _load_processor(self, t: Any) -> Any:
        """``AutoProcessor`` with the PIL backend, or the image-only stand-in.

        The stand-in (:mod:`vlmtrust.models.hf_processors`) is used for Qwen2-VL-class models
        whose processor needs torchvision.
        """
        from transformers import AutoProcessor

        from vlmtrust.models.hf_processors import IMAGE_ONLY_TYPES, image_only_processor

        try:
            return hf.from_pretrained(AutoProcessor, t, **hf.pil_backend_kwargs())
        except (ImportError, AttributeError) as e:
            if self.model_type in IMAGE_ONLY_TYPES:
                return image_only_processor(self.model_type, t)
            raise ModelSpecError(
                f"model spec {self.spec!r}: its processor could not be built ({_one_line(e)}); "
                "install the package it needs (often torchvision) and retry"
            ) from e

    def __repr__(self) -> str:
        return (
            f"HFGenerativeModel({self.spec!r}, model_type={self.model_type!r}, "
            f"device={self.device})"
        )

    # ------------------------------------------------------------------ setup helpers

    def _eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (getattr(self.model, "generation_config", None), self.tokenizer):
            eos = getattr(src, "eos_token_id", None)
            if isinstance(eos, int):
                ids.add(eos)
            elif isinstance(eos, list | tuple):
                ids.update(int(i) for i in eos)
        return ids

    def _template_supports_system(self) -> bool:
        msgs = [
            {"role": "system", "content": [{"type": "text", "text": _SYSTEM_PROBE}]},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ]
        try:
            text = self.processor.apply_chat_template(
                msgs, add_generation_prompt=True, tokenize=False
            )
        except Exception:  # noqa: BLE001 - templates raise anything (jinja raise_exception)
            return False
        return isinstance(text, str) and _SYSTEM_PROBE in text

    def _max_images(self) -> int:
        """Images per request (:func:`images_that_fit`), from one blank 336-px image's tokens."""
        if self.model_type not in MULTI_IMAGE_TYPES:
            return 1
        try:
            with_image, without = (
                self.processor(
                    text=[self.render("x", n)],
                    images=[Image.new("RGB", (336, 336))] if n else None,
                    return_tensors="pt",
                )["input_ids"].shape[-1]
                for n in (1, 0)
            )
        except Exception:  # noqa: BLE001 - a processor that cannot take one image: 1 image
            return 1
        text_cfg = self.config.get_text_config()
        context = getattr(text_cfg, "max_position_embeddings", None)
        return images_that_fit(self.model_type, context, int(with_image - without))

    def _plain_pixel_shape(self) -> tuple[int, int] | None:
        """``(H, W)`` when the processor gives only ``(B, 3, H, W)`` pixel_values, else None."""
        return hf.plain_pixel_shape(self.image_processor, tolerant=True)

    # ------------------------------------------------------------------ prompts

    def messages(
        self, prompt: str, n_images: int, system: str | None = None, *, interleaved: bool = False
    ) -> list[dict[str, Any]]:
        """Chat messages for one request: image parts first, then the text.

        With ``interleaved`` the parts follow the prompt's ``IMAGE_SLOT`` markers
        (:func:`~vlmtrust.core.model.prompt_parts`); whether the model sees them in that order
        is up to its chat template (LLaVA-Interleave, Qwen2-VL and IDEFICS templates keep it).
        """
        parts = prompt_parts(prompt, n_images, interleaved=interleaved)
        out: list[dict[str, Any]] = []
        if system:
            if self._system_ok:
                out.append({"role": "system", "content": [{"type": "text", "text": system}]})
            else:
                i = next((j for j, part in enumerate(parts) if isinstance(part, str)), len(parts))
                first = parts[i] if i < len(parts) else ""
                parts[i : i + 1] = [f"{system}\n\n{first}"]
        content: list[dict[str, Any]] = [
            {"type": "text", "text": part} if isinstance(part, str) else {"type": "image"}
            for part in parts
        ]
        out.append({"role": "user", "content": content})
        return out

    def render(
        self, prompt: str, n_images: int, system: str | None = None, *, interleaved: bool = False
    ) -> str:
        """The chat-templated prompt string, ending with the assistant's turn."""
        for name, value in (("prompt", prompt), ("system", system or "")):
            if self.image_token and self.image_token in value:
                raise InputError(
                    f"the {name} contains the model's image placeholder {self.image_token!r}; "
                    "remove it (images go in GenerateRequest.images)"
                )
        msgs = self.messages(prompt, n_images, system, interleaved=interleaved)
        text = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if not isinstance(text, str):
            raise TypeError(f"chat template returned {type(text).__name__}, expected str")
        return text

    _rgb = staticmethod(hf.rgb_images)

    def _encode(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        import torch

        enc = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        out: dict[str, torch.Tensor] = {}
        for k, v in enc.items():
            if not isinstance(v, torch.Tensor):
                continue
            v = v.to(self.device)
            out[k] = v.to(self.dtype) if v.is_floating_point() else v
        return out

    # ------------------------------------------------------------------ GENERATE

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer requests; the torch work runs in a worker thread. One result per request."""
        return await asyncio.to_thread(self.generate_batch, requests)

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Synchronous batched generation; results are in request order."""
        results: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[(len(r.images), r.deterministic)].append(i)
        with self._lock:
            for (_, greedy), idx in sorted(groups.items()):
                size = self.batch_size if greedy else 1
                idx.sort(key=lambda i: requests[i].max_new_tokens)  # similar lengths together
                for sl in hf.batched(len(idx), size):
                    chunk = idx[sl]
                    for i, g in zip(
                        chunk, self._run_batch([requests[i] for i in chunk]), strict=True
                    ):
                        results[i] = g
        return [g if g is not None else Generation("", error="not run") for g in results]

    def _run_batch(self, reqs: list[GenerateRequest]) -> list[Generation]:
        """Generate for requests sharing an image count; isolate failures one by one."""
        try:
            for r in reqs:
                if r.max_new_tokens < 1:
                    raise InputError(f"max_new_tokens={r.max_new_tokens} must be ≥ 1")
            texts = [
                self.render(r.prompt, len(r.images), r.system, interleaved=r.interleaved)
                for r in reqs
            ]
            images = [im for r in reqs for im in self._rgb(r.images)]
            enc = self._encode(texts, images)
            return self._decode_new(reqs, enc)
        except Exception as e:  # noqa: BLE001 - one bad request must not sink the batch
            if len(reqs) > 1:
                return [g for r in reqs for g in self._run_batch([r])]
            return [Generation(text="", error=_one_line(e))]

    def _decode_new(
        self, reqs: list[GenerateRequest], enc: dict[str, torch.Tensor]
    ) -> list[Generation]:
        import torch
        import transformers

        gen_config: Any = transformers.GenerationConfig
        max_new = max(r.max_new_tokens for r in reqs)
        # A clean config: plain greedy / plain sampling, whatever decoding tweaks
        # (repetition penalty, top-p, ...) the checkpoint's generation_config.json suggests.
        kw: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": self.tokenizer.pad_token_id,
            "bos_token_id": getattr(self.model.generation_config, "bos_token_id", None),
            "eos_token_id": sorted(self._eos_ids) or None,
        }
        r = reqs[0]
        if r.deterministic:
            cfg = gen_config(do_sample=False, **kw)
        else:
            cfg = gen_config(do_sample=True, temperature=r.temperature, top_k=0, top_p=1.0, **kw)
        # generate() fills unset fields from model.generation_config, so swap it out for the
        # call (callers hold self._lock).
        saved = self.model.generation_config
        self.model.generation_config = cfg
        try:
            with torch.inference_mode():
                if r.deterministic:
                    out = self.model.generate(**enc)
                else:
                    devices = [self.device] if self.device.type == "cuda" else []
                    with torch.random.fork_rng(devices=devices):
                        torch.manual_seed(r.seed)
                        out = self.model.generate(**enc)
        finally:
            self.model.generation_config = saved
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        gens: list[Generation] = []
        for r, row in zip(reqs, new, strict=True):
            toks = row[: r.max_new_tokens]
            finish = "length"
            for j, tok in enumerate(toks):
                if tok in self._eos_ids:
                    toks, finish = toks[:j], "stop"
                    break
            else:
                if len(toks) < r.max_new_tokens:
                    finish = "stop"
            text = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
            gens.append(Generation(text=text, finish_reason=finish))
        return gens

    # ------------------------------------------------------------------ GRADIENT

    def _need_pixels(self, what: str) -> tuple[int, int]:
        if self._pixel_shape is None:
            raise CapabilityError(
                f"{what} needs GRADIENT but model {self.spec} ({self.model_type}) has no plain "
                "pixel input; use a LLaVA-1.5-style checkpoint for white-box attacks"
            )
        return self._pixel_shape

    def to_pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize/crop to the vision tower's input, normalisation off: ``(B,3,H,W)`` in [0,1]."""
        import torch

        h, w = self._need_pixels("to_pixels")
        if isinstance(images, Image.Image):
            raise InputError("images must be a sequence of PIL images, not one image: use [image]")
        ims = self._rgb(images)
        if not ims:
            return torch.zeros((0, 3, h, w), device=self.device)
        pv = self.image_processor(images=ims, do_normalize=False, return_tensors="pt")
        out: torch.Tensor = pv["pixel_values"].to(self.device, torch.float32).clamp_(0.0, 1.0)
        return out

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Apply the image processor's mean/std to [0, 1] pixels (differentiable)."""
        mean = self._mean.to(pixels.device, pixels.dtype)
        std = self._std.to(pixels.device, pixels.dtype)
        return (pixels - mean) / std

    def target_loss(
        self, pixels: torch.Tensor, prompts: Texts, targets: Texts, *, system: str | None = None
    ) -> torch.Tensor:
        """Mean token NLL of each target continuation after its chat-templated prompt.

        Each example has one image (``pixels[b]``, [0, 1], from :meth:`to_pixels`). The
        prompt is rendered exactly as :meth:`generate` renders it, then the target's tokens are
        appended; the loss averages the target tokens' negative log-likelihoods.

        Args:
            pixels: ``(B, 3, H, W)`` in [0, 1]; gradients flow back to it.
            prompts: ``B`` prompts (or one, used for every example).
            targets: ``B`` target continuations (or one).
            system: optional system message (as in :class:`GenerateRequest`).

        Returns:
            ``(B,)`` float32 tensor, differentiable w.r.t. ``pixels``.
        """
        import torch

        h, w = self._need_pixels("target_loss")
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise InputError(
                f"pixels has shape {tuple(pixels.shape)}; expected (B, 3, H, W) from to_pixels"
            )
        b = int(pixels.shape[0])
        ps, ts = per_example(b, "target_loss", prompts=prompts, targets=targets)
        texts = [self.render(p, 1, system) for p in ps]
        blanks = [Image.new("RGB", (w, h)) for _ in range(b)]  # same token count as any image
        enc = self.processor(text=texts, images=blanks, padding=True, return_tensors="pt")
        target_ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in ts]
        for t, ids in zip(ts, target_ids, strict=True):
            if not ids:
                raise InputError(f"target {t!r} tokenizes to nothing; pass a non-empty target")
        rows: list[list[int]] = []
        n_prompt: list[int] = []
        for ids, mask, tgt in zip(
            enc["input_ids"].tolist(), enc["attention_mask"].tolist(), target_ids, strict=True
        ):
            prompt_ids = [i for i, m in zip(ids, mask, strict=True) if m]
            rows.append(prompt_ids + list(tgt))
            n_prompt.append(len(prompt_ids))
        width = max(len(r) for r in rows)
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.full((b, width), pad, dtype=torch.long)
        attention = torch.zeros((b, width), dtype=torch.long)
        labels = torch.full((b, width), -100, dtype=torch.long)
        for k, (row, n) in enumerate(zip(rows, n_prompt, strict=True)):  # right padding
            input_ids[k, : len(row)] = torch.tensor(row)
            attention[k, : len(row)] = 1
            labels[k, n : len(row)] = torch.tensor(row[n:])
        x = self.normalize(pixels.to(self.device, torch.float32)).to(self.dtype)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            pixel_values=x,
        )
        logits = out.logits[:, :-1].float()
        gold = labels[:, 1:].to(self.device)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            gold.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view(b, -1)
        counts = (gold != -100).sum(dim=1).clamp(min=1)
        loss: torch.Tensor = nll.sum(dim=1) / counts
        return loss

    # ------------------------------------------------------------------ TRAIN

    def save_pretrained(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write weights (safetensors), config and processor (with chat template) to ``out_dir``.

        The result loads back with ``load_model("hf:" + out_dir)``.
        """
        return hf.save_model_dir(self.model, out_dir, self.processor)
