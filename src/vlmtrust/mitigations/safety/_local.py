"""Wrappers that build a local transformers model's inputs themselves (conversation, soft prompt).

:class:`LocalInputModel` batches requests the way
:class:`~vlmtrust.models.hf_generative.HFGenerativeModel` does (by image count, greedy ones
together) and hands each batch to :meth:`LocalInputModel.encode`, which returns the processor
inputs; the base model's own decoding step then generates, inside
:meth:`LocalInputModel.decoding` (e.g. with an embedding hook installed). Backends that are not
local transformers models go through :meth:`LocalInputModel.remote`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.mitigations.safety._guarded import GuardedModel


def is_local(model: Any) -> bool:
    """Whether ``model`` is a local transformers generative model (processor + decoding step)."""
    return hasattr(model, "processor") and hasattr(model, "_decode_new")


class LocalInputModel(GuardedModel):
    """A guarded model that encodes its requests itself on local transformers models."""

    def encode(self, reqs: Sequence[GenerateRequest]) -> dict[str, Any]:
        """Processor inputs of one batch (default: as the base model renders them)."""
        base = self.base
        texts = [base.render(r.prompt, len(r.images), r.system) for r in reqs]
        images = [im for r in reqs for im in base._rgb(r.images)]  # noqa: SLF001
        return dict(base._encode(texts, images))  # noqa: SLF001

    @contextlib.contextmanager
    def decoding(self, enc: dict[str, Any]) -> Iterator[None]:
        """Context around the base model's decoding of ``enc`` (default: nothing)."""
        yield

    async def remote(self, reqs: list[GenerateRequest]) -> list[Generation]:
        """Requests to a backend that is not a local transformers model (default: unchanged)."""
        return list(await self.base.generate(reqs))

    def _batch(self, reqs: list[GenerateRequest]) -> list[Generation]:
        base = self.base
        try:
            with base._lock:  # noqa: SLF001 - the base model's decoding is not re-entrant
                enc = self.encode(reqs)
                with self.decoding(enc):
                    return list(base._decode_new(reqs, enc))  # noqa: SLF001
        except Exception as e:  # noqa: BLE001 - one bad request must not sink the batch
            if len(reqs) > 1:
                return [g for r in reqs for g in self._batch([r])]
            return [Generation("", error=f"{self.guard_name}: {e}")]

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """One result per request, in order."""
        reqs = list(requests)
        if not is_local(self.base):
            return await self.remote(reqs)
        out: list[Generation] = [Generation("", error="not run")] * len(reqs)
        groups: dict[tuple[int, bool, int, float], list[int]] = {}
        for i, r in enumerate(reqs):
            key = (len(r.images), r.deterministic, r.seed, r.temperature)
            groups.setdefault(key, []).append(i)
        size = int(getattr(self.base, "batch_size", 8))
        for key, idx in sorted(groups.items()):
            step = size if key[1] else 1
            for k in range(0, len(idx), step):
                chunk = idx[k : k + step]
                gens = await asyncio.to_thread(self._batch, [reqs[i] for i in chunk])
                for i, g in zip(chunk, gens, strict=True):
                    out[i] = g
        return out
