"""Model interfaces: the protocols every backend implements, requests and generations.

Two kinds of VLM share one small surface:

* :class:`EmbeddingModel` (dual encoders: CLIP, SigLIP) — L2-normalised image and text
  embeddings; with ``GRADIENT`` also ``to_pixels`` / ``image_features`` on [0, 1] pixels.
* :class:`GenerativeModel` (LLaVA-class, OpenAI-compatible endpoints) — async ``generate``;
  with ``GRADIENT`` also ``to_pixels`` / ``target_loss``.

Backends live in :mod:`vlmtrust.models`; the spec parser and :func:`load_model` in
:mod:`vlmtrust.models.loader`. Every layer may import this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.sample import image_digest
from vlmtrust.core.types import Capability

if TYPE_CHECKING:
    import torch

ModelKind = Literal["dual", "generative"]

Texts = Sequence[str] | str
"""One text per example, or a single string used for every example."""


IMAGE_SLOT = "<vlmtrust:image>"
"""Where an image goes in the prompt of an ``interleaved`` :class:`GenerateRequest`."""


def prompt_parts(prompt: str, n_images: int, *, interleaved: bool = False) -> list[str | int]:
    """A request's input in order: text segments (``str``) and image indices (``int``).

    Without ``interleaved``: every image, then the whole prompt. With it, image ``i`` stands
    where the prompt's ``i``-th :data:`IMAGE_SLOT` is; blank segments between slots are dropped
    and the others lose their leading spaces.

    Raises:
        InputError: an interleaved prompt whose slot count differs from ``n_images``.
    """
    if not interleaved:
        return [*range(n_images), prompt]
    texts = prompt.split(IMAGE_SLOT)
    if len(texts) - 1 != n_images:
        raise InputError(
            f"interleaved request has {len(texts) - 1} image slots for {n_images} images; "
            "put one IMAGE_SLOT in the prompt per image"
        )
    out: list[str | int] = []
    for i, text in enumerate(texts):
        if i:
            out.append(i - 1)
        if text.strip():
            out.append(text.lstrip(" "))  # templates put their own space after an image
    return out


@dataclass(frozen=True)
class GenerateRequest:
    """One generation request: images + prompt in, text out.

    By default every image comes before the prompt's text. With ``interleaved`` the prompt
    holds one :data:`IMAGE_SLOT` per image and image ``i`` goes where slot ``i`` is (image-text
    interleaved input, e.g. each few-shot example's image next to its answer); backends send
    the parts in that order (:meth:`parts`). Without ``interleaved`` a slot is plain text.
    """

    prompt: str
    images: tuple[Image.Image, ...] = field(default=(), compare=False)
    system: str | None = None
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    sample_id: str | None = field(default=None, compare=False)
    """The sample this request belongs to, for request statistics only: never sent to a
    model and not part of :meth:`digest`."""
    interleaved: bool = False
    """Images go at the prompt's :data:`IMAGE_SLOT` markers instead of before the text."""

    def parts(self) -> list[str | int]:
        """The input in order: text segments (``str``) and image indices (``int``).

        See :func:`prompt_parts`.
        """
        return prompt_parts(self.prompt, len(self.images), interleaved=self.interleaved)

    @property
    def deterministic(self) -> bool:
        """Greedy decoding: the answer is a function of the inputs (cacheable)."""
        return self.temperature == 0.0

    def digest(self) -> str:
        """Content hash of the whole request (cache key part)."""
        h = hashlib.blake2b(digest_size=16)
        for part in (
            self.prompt,
            self.system or "",
            str(self.max_new_tokens),
            repr(self.temperature),
            str(self.seed),
            *(image_digest(im) for im in self.images),
            *(["interleaved"] if self.interleaved else []),  # older digests stay valid
        ):
            h.update(part.encode())
            h.update(b"\x00")
        return h.hexdigest()


@dataclass(frozen=True)
class Generation:
    """A model's answer to one request; ``error`` set when the backend failed for it."""

    text: str
    error: str | None = None
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.error is None


@runtime_checkable
class Model(Protocol):
    """What every backend exposes."""

    spec: str
    fingerprint: str
    kind: ModelKind
    capabilities: Capability


@runtime_checkable
class EmbeddingModel(Model, Protocol):
    """A dual encoder. Embeddings are float32 and L2-normalised."""

    logit_scale: float

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """Embed images, shape ``(n, d)``."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts, shape ``(n, d)``."""
        ...


@runtime_checkable
class GenerativeModel(Model, Protocol):
    """A generative VLM."""

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer requests (batched or concurrent, backend's choice); one result each."""
        ...


class DifferentiableVision(Protocol):
    """The GRADIENT capability: a differentiable path from [0, 1] pixels."""

    def to_pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize/crop images to the model's input, as a float tensor in [0, 1], ``(B,3,H,W)``."""
        ...

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings; normalisation (mean/std) happens inside."""
        ...

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings (no grad)."""
        ...


def per_example(n: int, what: str, **texts: Texts) -> list[list[str]]:
    """Broadcast each of ``texts`` (a string, or ``n`` strings) to ``n`` strings, in order.

    Raises:
        InputError: a sequence whose length is not ``n``.

    Example:
        >>> per_example(2, "target_loss", prompts="p", targets=["a", "b"])
        [['p', 'p'], ['a', 'b']]
    """
    from vlmtrust.core.errors import InputError

    out = [[t] * n if isinstance(t, str) else list(t) for t in texts.values()]
    if any(len(o) != n for o in out):
        got = " and ".join(f"{len(o)} {k}" for k, o in zip(texts, out, strict=True))
        each = " and ".join(k.removesuffix("s") for k in texts)
        raise InputError(
            f"{what} got {n} images, {got}; pass one {each} per image (or a single string for all)"
        )
    return out


_T = TypeVar("_T")

SyncRunner = Callable[[Coroutine[Any, Any, Any]], Any]
"""Runs a coroutine to completion from a thread that has no running event loop."""

_SYNC_RUNNER: contextvars.ContextVar[SyncRunner | None] = contextvars.ContextVar(
    "vlmtrust_sync_runner", default=None
)


@contextlib.contextmanager
def sync_calls_via(runner: SyncRunner) -> Iterator[None]:
    """Inside the block (this thread's context), :func:`run_sync` hands coroutines to ``runner``.

    The runner uses it to send the synchronous model calls of several worker threads to one
    shared event loop, so a remote model keeps one connection pool and one concurrency limit.
    """
    token = _SYNC_RUNNER.set(runner)
    try:
        yield
    finally:
        _SYNC_RUNNER.reset(token)


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine from synchronous code.

    A fresh event loop per call, unless :func:`sync_calls_via` set a runner for this context
    (then the runner runs it, e.g. on a shared loop).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        runner = _SYNC_RUNNER.get()
        if runner is not None:
            result: _T = runner(coro)
            return result
        return asyncio.run(coro)
    # Called from inside a running loop (e.g. a notebook): run in a worker thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def generate_sync(model: GenerativeModel, requests: Sequence[GenerateRequest]) -> list[Generation]:
    """Synchronous convenience around :meth:`GenerativeModel.generate`."""
    return run_sync(model.generate(requests))


def require(model: Model, needed: Capability, what: str, hint: str = "") -> None:
    """Raise :class:`CapabilityError` naming what is missing and what to do instead."""
    missing = needed & ~model.capabilities
    if missing:
        names = ", ".join(missing.names())
        msg = f"{what} needs {names.upper()} but model {model.spec} has only " + (
            ", ".join(model.capabilities.names()).upper() or "nothing"
        )
        raise CapabilityError(msg + (f"; {hint}" if hint else ""))


def ensure_capability(model: Model, needed: Capability) -> None:
    """Alias of :func:`require` for callers without a custom message."""
    require(model, needed, "this operation")
