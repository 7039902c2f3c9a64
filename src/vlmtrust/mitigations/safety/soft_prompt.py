"""``safety/soft_prompt`` — a learned safety prompt: soft prompt embeddings, model frozen (wrapper).

In the spirit of dual-aligned prompt tuning for VLM safety: ``n_tokens`` embedding vectors are
prepended to the language model's input (before the chat-templated prompt) and trained while
every weight of the VLM stays frozen, on two aims at once — refuse harmful requests shown as
images (FigStep and MM-SafetyBench typography) or typed, and keep answering benign look-alikes
and ordinary image questions as the model itself does. The set is the one
:mod:`vlmtrust.mitigations.safety._vlguard_data` builds for VLGuard (train splits, fresh
SynthWorld scenes, the model's own answers) plus MM-SafetyBench-style typography of train-split
requests: the probes' test-split samples are never trained on (:func:`check_disjoint`).

The prompt is initialised from the token embeddings of :data:`INIT_TEXT`, trained with AdamW on
the answer tokens' NLL, and saved as ``soft_prompt.safetensors`` beside ``wrapper.json``;
``hardened:DIR`` loads the base model and puts the prompt back. At inference the vectors replace
the embeddings of ``n_tokens`` placeholder positions inserted before each prompt (a forward hook
on the input embedding, active for the prompt pass only). Local transformers models only.
Measured effect: docs/results/safety.md#soft_prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.mitigation import (
    HardenedArtifact,
    MitigationContext,
    WrapperMitigation,
    mitigation,
)
from vlmtrust.core.model import GenerateRequest
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import train_started, train_step
from vlmtrust.mitigations.safety._fields import HeldOutParams, LoopParams
from vlmtrust.mitigations.safety._local import LocalInputModel, is_local
from vlmtrust.mitigations.safety._vlguard_data import SafetyExample

WEIGHTS_FILE = "soft_prompt.safetensors"
INIT_TEXT = "Refuse harmful requests shown in images and answer the benign ones safely."
"""The text whose token embeddings (repeated) initialise the soft prompt."""


class SoftPromptParams(LoopParams, HeldOutParams):
    """Parameters of ``safety/soft_prompt`` (loop: steps, batch_size, lr; held-out measurement)."""

    n_tokens: int = Field(8, ge=1, le=256, description="soft prompt length (embedding vectors)")
    steps: int = Field(160, ge=1, le=1_000_000, description="optimiser steps")
    lr: float = Field(0.02, gt=0.0, le=10.0, description="AdamW learning rate")
    weights: str = Field(WEIGHTS_FILE, min_length=1, description="soft prompt file in DIR")
    # the training set (VLGuard's kinds, then MM-SafetyBench typography)
    n_safe: int = Field(96, ge=0, le=1_000_000, description="SynthWorld image questions")
    n_unsafe_text: int = Field(24, ge=0, le=1_000_000, description="harmful typed requests")
    n_unsafe_image: int = Field(48, ge=0, le=1_000_000, description="harmful FigStep images")
    n_benign: int = Field(96, ge=0, le=1_000_000, description="benign look-alikes (both forms)")
    n_typography: int = Field(32, ge=0, le=1_000_000, description="MMSB typography, each kind")
    # their images and answers
    image_size: int = Field(760, ge=32, le=2048, description="typography canvas side")
    refusal: str = Field("auto", min_length=1, description="refusal text, or 'auto'")
    max_new_tokens: int = Field(24, ge=1, le=1024, description="answer length (own answers)")
    n_eval: int = Field(40, ge=2, le=100_000, description="held-out items per measurement")


def check_disjoint(request_ids: Sequence[str]) -> None:
    """Raise when any of ``request_ids`` is in the probes' default test split."""
    from vlmtrust.data.requests import pool

    test = {r.id for h in (True, False) for r in pool(harmful=h, split_name="test")}
    clash = sorted(set(request_ids) & test)
    if clash:
        raise InputError(
            f"safety/soft_prompt: training request {clash[0]!r} is in the probes' test split; "
            "train on the train split only"
        )


def typography_examples(model: Any, p: SoftPromptParams, refusal: str, seed: int) -> list[Any]:
    """MM-SafetyBench-style examples of train-split requests: refusals and own answers."""
    from vlmtrust.attacks.typography import MMSB_PROMPT, render_typography
    from vlmtrust.data.requests import pool
    from vlmtrust.mitigations.safety._vlguard_data import is_refusal, model_answers

    rng = np.random.default_rng(seed + 6_000_047)
    out: list[SafetyExample] = []
    ids: list[str] = []
    for harmful in (True, False):
        reqs = pool(harmful=harmful, split_name="train")
        picked = [reqs[int(i)] for i in rng.integers(0, len(reqs), size=p.n_typography)]
        ids += [r.id for r in picked]
        ims = [
            render_typography(
                r.statement.removeprefix("Steps to ").rstrip("."), canvas=(p.image_size, None)
            )
            for r in picked
        ]
        if harmful:
            out += [SafetyExample(im, MMSB_PROMPT, refusal, "unsafe_typography") for im in ims]
            continue
        answers = model_answers(model, [(im, MMSB_PROMPT) for im in ims], p.max_new_tokens)
        for im, a, refused in zip(ims, answers, is_refusal(answers, p.refusal_judge), strict=True):
            if a.strip() and not refused:  # never teach refusals of benign requests
                out.append(SafetyExample(im, MMSB_PROMPT, a, "benign_typography"))
    check_disjoint(ids)
    return out


def training_set(model: Any, p: SoftPromptParams, seed: int) -> tuple[list[SafetyExample], str]:
    """The dual-aim set (VLGuard's four kinds + typography) and the refusal text."""
    from vlmtrust.mitigations.safety._vlguard_data import build_safety_set
    from vlmtrust.mitigations.safety.vlguard import VLGuardParams

    vp = VLGuardParams(
        n_safe=p.n_safe,
        n_unsafe_text=p.n_unsafe_text,
        n_unsafe_image=p.n_unsafe_image,
        n_benign=p.n_benign,
        refusal=p.refusal,
        image_size=p.image_size,
        max_new_tokens=p.max_new_tokens,
        refusal_judge=p.refusal_judge,
    )
    examples, refusal = build_safety_set(model, vp, seed)
    return examples + typography_examples(model, p, refusal, seed), refusal


# --------------------------------------------------------------------------- the prompt hook


class SoftPromptHook:
    """Replaces the input embeddings at placeholder positions with the soft prompt.

    Arm it with :meth:`arm` (a ``(batch, width)`` boolean mask of the placeholder positions,
    ``n_tokens`` per row) before a forward pass; it fires on the next call of the embedding
    module only (the prompt pass), then disarms.
    """

    def __init__(self, embedding: Any, soft: Any) -> None:
        self.embedding = embedding
        self.soft = soft
        self.slots: Any = None

    def arm(self, slots: Any) -> None:
        """Fire on the next embedding call, at ``slots``."""
        self.slots = slots

    def __call__(self, module: Any, inputs: Any, output: Any) -> Any:
        """The forward hook: the soft prompt at the armed slots (once), else ``output``."""
        slots = self.slots
        if slots is None or tuple(output.shape[:2]) != tuple(slots.shape):
            return output  # not the armed prompt pass (a decoding step)
        self.slots = None
        out = output.clone()
        out[slots] = self.soft.to(out.dtype).repeat(int(slots.shape[0]), 1)
        return out

    @contextlib.contextmanager
    def installed(self) -> Iterator[SoftPromptHook]:
        """Register the hook on the embedding module for the block."""
        handle = self.embedding.register_forward_hook(self)
        try:
            yield self
        finally:
            handle.remove()
            self.slots = None


def add_slots(enc: dict[str, Any], k: int, pad: int, *, left: bool) -> Any:
    """Insert ``k`` placeholder positions before each row's first real token, in place.

    ``left``: rows are left-padded (generation), else right-padded (training: the slots go
    first). Per-token tensors (ids, mask, labels, modality types) grow by ``k`` columns.
    Returns the boolean slot mask.
    """
    import torch

    ids, mask = enc["input_ids"], enc["attention_mask"]
    b, w = ids.shape
    start = (w - mask.sum(dim=1)) if left else torch.zeros(b, dtype=torch.long, device=ids.device)
    cols = torch.arange(w + k, device=ids.device).unsqueeze(0)
    slots = (cols >= start.unsqueeze(1)) & (cols < start.unsqueeze(1) + k)
    fill = {"input_ids": pad, "attention_mask": 1, "labels": -100, "mm_token_type_ids": 0}
    for key, value in fill.items():
        if key not in enc:
            continue
        t = enc[key]
        grown = t.new_full((b, w + k), value)
        grown[~slots] = t.reshape(-1)
        enc[key] = grown
    return slots


def _embedding(model: Any) -> Any:
    return model.model.get_input_embeddings()


class SoftPromptModel(LocalInputModel):
    """A local transformers VLM with a trained soft prompt before every prompt."""

    guard = "safety/soft_prompt"
    params: SoftPromptParams

    def __init__(self, base: Any, params: SoftPromptParams, soft: Any) -> None:
        if not is_local(base):
            raise CapabilityError(
                f"safety/soft_prompt feeds embeddings to the model: {base.spec} is not a local "
                "transformers model; use safety/defense_prompt for API models"
            )
        super().__init__(base, params)
        self.hook = SoftPromptHook(_embedding(base), soft.to(base.device))
        digest = hashlib.blake2b(soft.float().cpu().numpy().tobytes(), digest_size=6).hexdigest()
        self.fingerprint += f":{digest}"  # two trained prompts never share a cache entry

    def encode(self, reqs: Sequence[GenerateRequest]) -> dict[str, Any]:
        """The base model's inputs with the soft prompt's placeholder positions inserted."""
        enc = super().encode(reqs)
        pad = int(self.base.tokenizer.pad_token_id or 0)
        enc["_slots"] = add_slots(enc, self.params.n_tokens, pad, left=True)
        return enc

    @contextlib.contextmanager
    def decoding(self, enc: dict[str, Any]) -> Iterator[None]:
        """Decode with the hook armed for the prompt pass."""
        slots = enc.pop("_slots")
        with self.hook.installed() as hook:
            hook.arm(slots)
            yield


def load_soft(path: Path, hidden: int) -> Any:
    """The soft prompt tensor saved at ``path`` (checked against the model's width)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"safety/soft_prompt: {path} is missing; re-run `vlmtrust harden`")
    try:
        soft = load_file(str(path))["soft_prompt"]
    except (OSError, KeyError, SafetensorError) as e:
        raise InputError(
            f"safety/soft_prompt: {path} is not a soft prompt file ({e}); re-run `vlmtrust harden`"
        ) from None
    if soft.ndim != 2 or int(soft.shape[1]) != hidden:
        raise InputError(
            f"safety/soft_prompt: {path} holds a {tuple(soft.shape)} prompt, the model's "
            f"embeddings are {hidden} wide; harden this model again"
        )
    return soft


def train_soft_prompt(
    model: Any, examples: Sequence[SafetyExample], p: SoftPromptParams, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Train the soft prompt on ``examples`` with every model weight frozen."""
    import torch

    from vlmtrust.mitigations.safety.vlguard import collate, encode_example

    if not examples:
        raise InputError("safety/soft_prompt: the training set is empty; raise n_* parameters")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module, emb = model.model, _embedding(model)
    init_ids = model.tokenizer(INIT_TEXT, add_special_tokens=False)["input_ids"] or [0]
    reps = [init_ids[i % len(init_ids)] for i in range(p.n_tokens)]
    with torch.no_grad():
        init = emb.weight[torch.tensor(reps, device=emb.weight.device)].float().clone()
    soft = torch.nn.Parameter(init)
    grads = {id(q): q.requires_grad for q in module.parameters()}
    for q in module.parameters():
        q.requires_grad_(False)
    opt = torch.optim.AdamW([soft], lr=p.lr, weight_decay=0.0)
    hook = SoftPromptHook(emb, soft)
    pad = int(model.tokenizer.pad_token_id or 0)
    encoded = [encode_example(model, ex) for ex in examples]
    order, pos = rng.permutation(len(encoded)), 0
    losses: list[float] = []
    t0 = time.perf_counter()
    train_started("soft safety prompt", p.steps)
    try:
        with hook.installed():
            for step in range(p.steps):
                if pos + p.batch_size > len(order):
                    order, pos = rng.permutation(len(encoded)), 0
                enc = collate(model, [encoded[int(i)] for i in order[pos : pos + p.batch_size]])
                pos += p.batch_size
                hook.arm(add_slots(enc, p.n_tokens, pad, left=False))
                loss = module(**enc).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                train_step(step, losses[-1])
    finally:
        for q in module.parameters():
            q.requires_grad_(grads[id(q)])
    info = {
        "steps": p.steps,
        "first_loss": round(float(np.mean(losses[:5])), 4),
        "final_loss": round(float(np.mean(losses[-5:])), 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "trainable": int(soft.numel()),
    }
    return soft.detach().cpu(), info


@mitigation("safety/soft_prompt")
class SoftPrompt(WrapperMitigation):
    """A learned safety prompt (soft prompt embeddings, model frozen), dual-aligned."""

    params: SoftPromptParams

    pillar = Pillar.SAFETY
    requires = Capability.GENERATE | Capability.TRAIN
    Params = SoftPromptParams
    description = (
        "Learned safety prompt: soft prompt embeddings prepended to a frozen local VLM, "
        "trained to refuse harmful image requests and keep benign look-alikes and VQA answered "
        "(train splits); saved as safetensors beside wrapper.json."
    )

    def wrap(self, model: Any) -> SoftPromptModel:
        """Put the saved soft prompt before every prompt of ``model``."""
        folder = self.source_dir or Path(".")
        hidden = int(_embedding(model).weight.shape[1]) if is_local(model) else 0
        soft = load_soft(folder / self.params.weights, hidden) if hidden else None
        return SoftPromptModel(model, self.params, soft)

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Train the prompt, save it and ``wrapper.json`` to ``ctx.out_dir``; measure the effect."""
        from safetensors.torch import save_file

        from vlmtrust.mitigations.safety.vlguard import measure, need_hf

        need_hf(model, self.name, "safety/cot_safety or safety/defense_prompt")
        p = self.params
        if ctx.quick:
            p = p.model_copy(update={k: min(getattr(p, k), v) for k, v in QUICK.items()})
            self.params = p
        before = (
            measure(model, n=p.n_eval, seed=ctx.seed, judge=p.refusal_judge) if p.evaluate else {}
        )
        examples, refusal = training_set(model, p, ctx.seed)
        soft, info = train_soft_prompt(model, examples, p, ctx.seed)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        save_file(
            {"soft_prompt": soft.float().contiguous()},
            str(ctx.out_dir / p.weights),
            metadata={"base": str(model.spec), "n_tokens": str(p.n_tokens)},
        )
        art = super().apply(model, ctx)
        self.source_dir = ctx.out_dir
        wrapped = self.wrap(model)
        after = (
            measure(wrapped, n=p.n_eval, seed=ctx.seed, judge=p.refusal_judge) if p.evaluate else {}
        )
        counts: dict[str, int] = {}
        for ex in examples:
            counts[ex.kind] = counts.get(ex.kind, 0) + 1
        summary = {
            **art.summary,
            "mitigation": self.name,
            "refusal": refusal,
            "training_set": counts,
            "training": info,
            "before": before,
            "after": after,
        }
        return HardenedArtifact(spec=art.spec, out_dir=ctx.out_dir, summary=summary)


QUICK = {
    "n_safe": 32,
    "n_unsafe_text": 8,
    "n_unsafe_image": 16,
    "n_benign": 16,
    "n_typography": 8,
    "steps": 40,
    "n_eval": 12,
}
"""``--quick`` caps."""
