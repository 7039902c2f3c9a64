"""``mock:generative`` / ``mock:dual``: a scripted model for tests and examples (no weights).

Like Inspect's ``mockllm``: answers and embeddings are scripted, capabilities are declared, the
fingerprint is a hash of the configuration, and every request is recorded for assertions.

* **answers** (generative): a fixed string, a list cycled over the calls, a mapping
  prompt → answer (``default`` for prompts it does not name), or a callable
  ``(request) -> str | Generation``; an exception raised by the callable becomes an error
  :class:`~vlmtrust.core.model.Generation` for that request, as a failing backend would give.
* **embeddings** (dual): deterministic unit vectors seeded by the image's content digest or the
  text, or callables ``(image) -> vector`` / ``(text) -> vector`` (normalised here).
* **gradient=True** (needs torch): a tiny seeded linear map from ``input_size`` pixels, giving
  ``to_pixels`` / ``image_features`` / ``text_features`` (dual) or ``target_loss`` (generative),
  so white-box code paths run on it; ``embed_images`` then goes through the same map.

Example:
    >>> from vlmtrust.core.model import GenerateRequest, generate_sync
    >>> m = MockModel(answers={"hi": "hello"}, default="?")
    >>> [g.text for g in generate_sync(m, [GenerateRequest("hi"), GenerateRequest("yo")])]
    ['hello', '?']
    >>> [r.prompt for r in m.calls]
    ['hi', 'yo']
    >>> MockModel("dual", dim=4).embed_texts(["a cat"]).shape
    (1, 4)
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.model import GenerateRequest, Generation, ModelKind, Texts, per_example
from vlmtrust.core.sample import image_digest
from vlmtrust.core.types import Capability

if TYPE_CHECKING:
    import torch

AnswerFn = Callable[[GenerateRequest], "str | Generation"]
Answers = str | Sequence[str] | Mapping[str, str] | AnswerFn
"""What a generative mock answers: see the module docstring."""

KINDS: tuple[ModelKind, ...] = ("generative", "dual")


def _describe(obj: Any) -> Any:
    """A JSON-able, run-stable description of a configuration value (for the fingerprint)."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _describe(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, Sequence):
        return [_describe(v) for v in obj]
    if callable(obj):
        mod = getattr(obj, "__module__", "") or ""
        name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
        return f"<callable {mod}.{name}>"
    return repr(obj)


def _unit(key: str, dim: int, seed: int) -> NDArray[np.float32]:
    """A deterministic unit vector for ``key`` (same key, dim and seed → same vector)."""
    h = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    v = np.random.default_rng(int.from_bytes(h, "little")).standard_normal(dim)
    out: NDArray[np.float32] = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def _normalise(rows: Sequence[ArrayLike], dim: int, what: str) -> NDArray[np.float32]:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    a = np.asarray(np.stack([np.asarray(r, dtype=np.float64).reshape(-1) for r in rows]))
    if a.shape[1] != dim:
        raise InputError(f"mock {what} callable returned vectors of size {a.shape[1]}, not {dim}")
    n = np.linalg.norm(a, axis=1, keepdims=True)
    out: NDArray[np.float32] = (a / np.where(n == 0, 1.0, n)).astype(np.float32)
    return out


class MockModel:
    """A scripted model; see the module docstring.

    Args:
        kind: ``"generative"`` (GENERATE) or ``"dual"`` (EMBED).
        answers: what ``generate`` answers (generative); ``None`` answers ``default``.
        default: the answer for prompts a mapping does not name (and when ``answers`` is None).
        embed_image: ``(image) -> vector`` instead of the digest-seeded vectors (dual).
        embed_text: ``(text) -> vector`` instead of the text-seeded vectors (dual).
        dim: embedding size.
        seed: seeds the scripted vectors and the gradient path's weights.
        gradient: add GRADIENT through a tiny torch linear model (needs torch).
        capabilities: declare these capabilities instead (e.g. ``GENERATE | TRAIN`` to pass a
            capability check); methods it does not implement are still absent.
        input_size: side of the square pixel tensors of the gradient path.
        logit_scale: the dual encoder's logit scale.
        spec: the spec string it reports (default ``mock:KIND``).
        name: a label mixed into the fingerprint (two mocks scripted by different callables
            with the same name otherwise share one).
    """

    def __init__(
        self,
        kind: ModelKind = "generative",
        *,
        answers: Answers | None = None,
        default: str = "OK",
        embed_image: Callable[[Image.Image], ArrayLike] | None = None,
        embed_text: Callable[[str], ArrayLike] | None = None,
        dim: int = 16,
        seed: int = 0,
        gradient: bool = False,
        capabilities: Capability | None = None,
        input_size: int = 8,
        logit_scale: float = 100.0,
        spec: str | None = None,
        name: str = "",
    ) -> None:
        if kind not in KINDS:
            raise InputError(f"mock model kind {kind!r}: use one of {', '.join(KINDS)}")
        if dim < 1 or input_size < 1:
            raise InputError(
                f"mock model needs dim >= 1 and input_size >= 1, got {dim}, {input_size}"
            )
        self.kind: ModelKind = kind
        self.spec = spec or f"mock:{kind}"
        self.answers = answers
        self.default = default
        self.embed_image = embed_image
        self.embed_text = embed_text
        self.dim = dim
        self.seed = seed
        self.input_size = input_size
        self.logit_scale = float(logit_scale)
        base = Capability.GENERATE if kind == "generative" else Capability.EMBED
        if gradient:
            base |= Capability.GRADIENT
        self.capabilities: Capability = base if capabilities is None else capabilities
        self.calls: list[GenerateRequest] = []
        """Every generation request received, in order."""
        self.image_calls: list[str] = []
        """The content digest of every image embedded, in order."""
        self.text_calls: list[str] = []
        """Every text embedded, in order."""
        self._cycle = itertools.count()
        self._weight: torch.Tensor | None = None
        if gradient:
            self._weight = self._make_weight()
        config = {
            "kind": kind,
            "answers": _describe(answers),
            "default": default,
            "embed_image": _describe(embed_image),
            "embed_text": _describe(embed_text),
            "dim": dim,
            "seed": seed,
            "gradient": gradient,
            "capabilities": self.capabilities.value,
            "input_size": input_size,
            "logit_scale": self.logit_scale,
            "name": name,
        }
        blob = json.dumps(config, sort_keys=True).encode()
        self.fingerprint = "mock-" + hashlib.blake2b(blob, digest_size=8).hexdigest()

    def __repr__(self) -> str:
        return f"MockModel({self.spec!r}, fingerprint={self.fingerprint!r})"

    # ------------------------------------------------------------------ GENERATE

    def answer(self, request: GenerateRequest) -> Generation:
        """The scripted answer to one request (not recorded; :meth:`generate` records)."""
        a = self.answers
        try:
            if a is None:
                out: str | Generation = self.default
            elif isinstance(a, str):
                out = a
            elif isinstance(a, Mapping):
                out = a.get(request.prompt, self.default)
            elif callable(a):
                out = a(request)
            else:
                seq = list(a)
                out = seq[next(self._cycle) % len(seq)] if seq else self.default
        except Exception as exc:  # a scripted backend failure, as a real backend reports it
            return Generation("", error=f"{type(exc).__name__}: {exc}")
        return out if isinstance(out, Generation) else Generation(str(out))

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer each request from the script, recording it in :attr:`calls`."""
        out = []
        for r in requests:
            self.calls.append(r)
            out.append(self.answer(r))
        return out

    # ------------------------------------------------------------------ EMBED

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """L2-normalised image embeddings ``(n, dim)``, deterministic per image content."""
        self.image_calls.extend(image_digest(im) for im in images)
        if self.embed_image is not None:
            return _normalise([self.embed_image(im) for im in images], self.dim, "embed_image")
        if self._weight is not None:
            import torch

            with torch.no_grad():
                feats: NDArray[np.float32] = (
                    self.image_features(self.to_pixels(images)).numpy().astype(np.float32)
                )
            return feats
        rows = [_unit("image:" + image_digest(im), self.dim, self.seed) for im in images]
        return _normalise(rows, self.dim, "embed_image")

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """L2-normalised text embeddings ``(n, dim)``, deterministic per text."""
        self.text_calls.extend(texts)
        if self.embed_text is not None:
            return _normalise([self.embed_text(t) for t in texts], self.dim, "embed_text")
        return _normalise([_unit("text:" + t, self.dim, self.seed) for t in texts], self.dim, "t")

    # ------------------------------------------------------------------ GRADIENT

    def _make_weight(self) -> torch.Tensor:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is in the hf extra
            raise InputError(
                "mock model gradient=True needs torch: pip install 'vlmtrust[hf]'"
            ) from exc
        g = torch.Generator().manual_seed(self.seed)
        n_in = 3 * self.input_size * self.input_size
        w: torch.Tensor = torch.randn(n_in, self.dim, generator=g) / float(n_in) ** 0.5
        return w

    def _need_weight(self, what: str) -> torch.Tensor:
        if self._weight is None:
            from vlmtrust.core.errors import CapabilityError

            raise CapabilityError(
                f"{what} needs GRADIENT but model {self.spec} was built without it; "
                "pass gradient=True"
            )
        return self._weight

    def to_pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Images resized to ``input_size`` squares as float ``(B, 3, S, S)`` in [0, 1]."""
        import torch

        self._need_weight("to_pixels")
        s = self.input_size
        arrs = [
            np.asarray(im.convert("RGB").resize((s, s), Image.Resampling.BILINEAR), np.float32)
            for im in images
        ]
        if not arrs:
            return torch.zeros((0, 3, s, s))
        return torch.from_numpy(np.stack(arrs) / 255.0).permute(0, 3, 1, 2).float().contiguous()

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``pixels @ W``; differentiable w.r.t. ``pixels``."""
        import torch

        w = self._need_weight("image_features")
        s = self.input_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, s, s):
            raise InputError(f"pixels has shape {tuple(pixels.shape)}; expected (B, 3, {s}, {s})")
        return torch.nn.functional.normalize(pixels.reshape(len(pixels), -1) @ w, dim=-1)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """The text embeddings as a float tensor (no grad)."""
        import torch

        self._need_weight("text_features")
        return torch.from_numpy(self.embed_texts(texts))

    def target_loss(
        self, pixels: torch.Tensor, prompts: Texts, targets: Texts, *, system: str | None = None
    ) -> torch.Tensor:
        """``(B,)`` loss: 1 − cos(image features, the target text's vector); differentiable."""
        import torch

        b = len(pixels)
        ps, ts = per_example(b, "target_loss", prompts=prompts, targets=targets)
        feats = self.image_features(pixels)
        keys = [f"{system or ''}\x00{p}\x00{t}" for p, t in zip(ps, ts, strict=True)]
        tv = torch.from_numpy(np.stack([_unit(k, self.dim, self.seed) for k in keys]))
        return 1.0 - (feats * tv).sum(dim=-1)


def load_mock(target: str, *, spec: str, **kwargs: Any) -> MockModel:
    """Build the mock named by a ``mock:KIND`` spec; keyword arguments go to :class:`MockModel`."""
    if target not in KINDS:
        raise InputError(f"model spec {spec!r}: use mock:generative or mock:dual")
    kind: ModelKind = "generative" if target == "generative" else "dual"
    return MockModel(kind, spec=spec, **kwargs)
