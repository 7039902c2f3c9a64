"""``hf:`` dual encoders (CLIP, SigLIP, ...) through transformers Auto classes.

One image path serves every caller: ``embed_images(imgs)`` is ``image_features(to_pixels(imgs))``
run in batches under ``torch.inference_mode``. ``to_pixels`` runs the model's own (PIL) image
processor with normalisation off, giving [0, 1] pixels at the model's resolution; the mean/std
normalisation is applied inside :meth:`HFDualEncoder.image_features`, so white-box attacks work
in pixel space.

Zero-shot scores are raw cosines (REFERENCE.md): ``logit_scale`` (and SigLIP's ``logit_bias``)
are exposed separately for callers that want the model's own scaling.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.model import ModelKind
from vlmtrust.core.types import Capability
from vlmtrust.models import hf_common as hf

if TYPE_CHECKING:
    import torch

__all__ = ["HFDualEncoder"]

_SIGLIP_TYPES = frozenset({"siglip", "siglip2"})


def _pooled(out: Any) -> torch.Tensor:
    """Projected embedding from ``get_*_features`` (a tensor in transformers 4, an output in 5)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"unexpected feature output {type(out).__name__}")


class HFDualEncoder(hf.LocalBackend):
    """A transformers dual encoder behind :class:`~vlmtrust.core.model.EmbeddingModel`.

    Capabilities: ``EMBED | TRAIN``, plus ``GRADIENT`` when the image processor produces plain
    ``(B, 3, H, W)`` pixel batches (CLIP, SigLIP, ChineseCLIP, AltCLIP; not SigLIP2's NaFlex
    patches).

    Args:
        target: a directory written by ``save_pretrained`` or a Hub repo id (``ORG/NAME[@REV]``).
        spec: the spec string to record (defaults to ``"hf:" + target``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when available.
        dtype: parameter dtype (``float32`` default, ``bfloat16``, ``float16``).
        batch_size: images/texts per forward pass in ``embed_*``.
        concurrency: accepted for a uniform ``load_model`` signature and ignored.

    Example:
        >>> m = HFDualEncoder("/path/to/clip")  # doctest: +SKIP
        >>> m.zero_shot_logits(images, ["a cat", "a dog"]).shape  # doctest: +SKIP
        (3, 2)
    """

    kind: ModelKind = "dual"

    def __init__(
        self,
        target: str,
        *,
        spec: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 64,
        concurrency: int | None = None,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        setup = hf.local_setup(target, spec=spec, device=device, dtype=dtype, batch_size=batch_size)
        t = self._adopt(setup, batch_size)
        self.model: Any = hf.load_weights(AutoModel, t, dtype=self.dtype).to(self.device).eval()
        self.processor: Any = hf.from_pretrained(AutoImageProcessor, t, **hf.pil_backend_kwargs())
        """The PIL image processor (resize / crop / rescale / normalise settings)."""
        self.tokenizer: Any = hf.from_pretrained(AutoTokenizer, t)
        self._mean, self._std = hf.normalisation(self.processor)
        self._pixel_shape = self._plain_pixel_shape()
        self._pixel_path = self._pixel_shape is not None
        caps = Capability.EMBED | Capability.TRAIN
        if self._pixel_path:
            caps |= Capability.GRADIENT
        self.capabilities: Capability = caps
        self.fingerprint: str = hf.model_fingerprint(t, self.dtype)  # after loading

    def __repr__(self) -> str:
        return f"HFDualEncoder({self.spec!r}, model_type={self.model_type!r}, device={self.device})"

    # ------------------------------------------------------------------ scale / bias

    @property
    def logit_scale(self) -> float:
        """``exp`` of the model's learned temperature parameter (read live: fine-tuning shows)."""
        return float(self.model.logit_scale.detach().float().exp().item())

    @logit_scale.setter
    def logit_scale(self, value: float) -> None:
        import torch

        if value <= 0:
            raise InputError(f"logit_scale={value} must be > 0")
        with torch.no_grad():
            self.model.logit_scale.fill_(math.log(value))

    @property
    def logit_bias(self) -> float | None:
        """SigLIP's learned sigmoid bias; ``None`` for softmax-trained models (CLIP)."""
        bias = getattr(self.model, "logit_bias", None)
        return None if bias is None else float(bias.detach().float().reshape(-1)[0].item())

    @logit_bias.setter
    def logit_bias(self, value: float | None) -> None:
        import torch

        bias = getattr(self.model, "logit_bias", None)
        if bias is None or value is None:
            if bias is None and value is None:
                return
            raise InputError(f"model {self.spec} has no settable logit_bias (asked for {value})")
        with torch.no_grad():
            bias.fill_(value)

    # ------------------------------------------------------------------ helpers

    def _plain_pixel_shape(self) -> tuple[int, int] | None:
        """``(H, W)`` when the processor yields only ``(B, 3, H, W)`` pixel_values, else None."""
        return hf.plain_pixel_shape(self.processor)

    def _text_max_length(self) -> int:
        text_cfg = getattr(self.config, "text_config", None)
        limit = int(getattr(text_cfg, "max_position_embeddings", 0) or 0) or 77
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < limit:
            limit = tok_max
        return limit

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise InputError("texts must be a sequence of strings, not one string; wrap it: [text]")
        padding: str | bool = "max_length" if self.model_type in _SIGLIP_TYPES else True
        enc = self.tokenizer(
            list(texts),
            padding=padding,
            truncation=True,
            max_length=self._text_max_length(),
            return_tensors="pt",
        )
        allowed = {"input_ids", "attention_mask", "token_type_ids", "position_ids"}
        if self.model_type == "siglip":
            # SigLIP was trained without a text mask (max_length padding, last-token pooling);
            # its own tokenizer returns input_ids only, so a generic tokenizer's mask is dropped.
            allowed.discard("attention_mask")
        return {k: v.to(self.device) for k, v in enc.items() if k in allowed}

    @staticmethod
    def _check_images(images: Sequence[Image.Image]) -> list[Image.Image]:
        if isinstance(images, Image.Image):
            raise InputError("images must be a sequence of PIL images, not one image: use [image]")
        return hf.rgb_images(images)

    # ------------------------------------------------------------------ GRADIENT path

    def to_pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The processor's resize / crop / rescale with normalisation off: ``(B,3,H,W)`` in [0,1].

        The tensor is float32 on :attr:`device`.
        """
        import torch

        if not self._pixel_path:
            raise CapabilityError(
                f"to_pixels needs GRADIENT but model {self.spec} ({self.model_type}) has no plain "
                "pixel input; use a CLIP/SigLIP-style checkpoint for white-box attacks"
            )
        ims = self._check_images(images)
        if not ims:
            h, w = self.input_size
            return torch.zeros((0, 3, h, w), device=self.device)
        pv = self.processor(images=ims, do_normalize=False, return_tensors="pt")["pixel_values"]
        out: torch.Tensor = pv.to(self.device, torch.float32).clamp_(0.0, 1.0)
        return out

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the pixel tensors the vision tower takes."""
        if self._pixel_shape is not None:
            return self._pixel_shape
        vc = getattr(self.config, "vision_config", None)
        s = int(getattr(vc, "image_size", 224))
        return (s, s)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Apply the processor's mean/std to [0, 1] pixels (differentiable)."""
        mean = self._mean.to(pixels.device, pixels.dtype)
        std = self._std.to(pixels.device, pixels.dtype)
        return (pixels - mean) / std

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings of [0, 1] pixels; differentiable w.r.t. ``pixels``.

        Normalisation (mean/std) happens inside. Returns float32 ``(B, d)`` on :attr:`device`.
        """
        import torch

        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise InputError(
                f"pixels has shape {tuple(pixels.shape)}; expected (B, 3, H, W) from to_pixels"
            )
        x = self.normalize(pixels.to(self.device, torch.float32)).to(self.dtype)
        feats = _pooled(self.model.get_image_features(pixel_values=x)).float()
        return torch.nn.functional.normalize(feats, dim=-1)

    def text_features(self, texts: Sequence[str], *, grad: bool = False) -> torch.Tensor:
        """L2-normalised text embeddings, float32 ``(n, d)`` on :attr:`device`.

        By default computed under ``torch.no_grad`` (not inference mode), so the result can be
        used as a constant in a loss differentiated w.r.t. pixels. ``grad=True`` keeps the
        graph to the text tower's parameters (fine-tuning, TRAIN).
        """
        import torch

        if grad:
            return self._text_features(texts)
        with torch.no_grad():
            return self._text_features(texts)

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        enc = self._tokenize(texts)
        feats = _pooled(self.model.get_text_features(**enc)).float()
        return torch.nn.functional.normalize(feats, dim=-1)

    # ------------------------------------------------------------------ EMBED

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """L2-normalised image embeddings, float32 ``(n, d)``; batched, inference mode."""
        import torch

        ims = self._check_images(images)
        chunks: list[NDArray[np.float32]] = []
        with torch.inference_mode():
            for sl in hf.batched(len(ims), self.batch_size):
                if self._pixel_path:
                    feats = self.image_features(self.to_pixels(ims[sl]))
                else:
                    enc = self.processor(images=ims[sl], return_tensors="pt")
                    enc = {
                        k: (
                            v.to(self.device, self.dtype)
                            if v.is_floating_point()
                            else v.to(self.device)
                        )
                        for k, v in enc.items()
                    }
                    feats = _pooled(self.model.get_image_features(**enc)).float()
                    feats = torch.nn.functional.normalize(feats, dim=-1)
                chunks.append(feats.cpu().numpy().astype(np.float32, copy=False))
        if not chunks:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(chunks, axis=0)

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """L2-normalised text embeddings, float32 ``(n, d)``; batched, inference mode."""
        import torch

        if isinstance(texts, str):
            raise InputError("texts must be a sequence of strings, not one string; wrap it: [text]")
        items = list(texts)
        chunks: list[NDArray[np.float32]] = []
        with torch.inference_mode():
            for sl in hf.batched(len(items), self.batch_size):
                feats = self._text_features(items[sl])
                chunks.append(feats.cpu().numpy().astype(np.float32, copy=False))
        if not chunks:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(chunks, axis=0)

    @property
    def embed_dim(self) -> int:
        """Embedding dimension ``d``."""
        dim: Any = getattr(self.config, "projection_dim", None)
        if dim is None:
            dim = getattr(getattr(self.config, "text_config", None), "hidden_size", 0)
        return int(dim)

    def zero_shot_logits(
        self, images: Sequence[Image.Image], class_texts: Sequence[str]
    ) -> NDArray[np.float64]:
        """Raw cosines between images and class prompts, float64 ``(n_images, n_classes)``.

        Not scaled: multiply by :attr:`logit_scale` (and add :attr:`logit_bias` for SigLIP)
        for the model's own logits (REFERENCE.md, "Zero-shot logits").
        """
        img = self.embed_images(images).astype(np.float64)
        txt = self.embed_texts(class_texts).astype(np.float64)
        out: NDArray[np.float64] = img @ txt.T
        return out

    def scaled_logits(self, cosines: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """The model's own logits from raw cosines: ``logit_scale * cos (+ logit_bias)``.

        For CLIP, softmax over classes of these is the model's zero-shot distribution; for
        SigLIP, ``sigmoid`` of each is its per-pair match probability.
        """
        out = np.asarray(cosines, dtype=np.float64) * self.logit_scale
        if self.logit_bias is not None:
            out = out + self.logit_bias
        return out

    # ------------------------------------------------------------------ TRAIN

    def save_pretrained(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write weights (safetensors), config, image processor and tokenizer to ``out_dir``.

        The result loads back with ``load_model("hf:" + out_dir)``.
        """
        return hf.save_model_dir(self.model, out_dir, self.processor, self.tokenizer)
