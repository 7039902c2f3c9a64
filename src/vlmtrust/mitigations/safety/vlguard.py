"""``safety/vlguard`` — VLGuard-style safety fine-tuning of an HF generative VLM (model kind).

VLGuard (Zong et al., ICML 2024, "Safety Fine-Tuning at (Almost) No Cost: A Baseline for Vision
Large Language Models") fine-tunes on image–instruction pairs of three kinds — safe image + safe
instruction, safe image + unsafe instruction, unsafe image — mixed into the model's normal
instruction data. Here the set is built from the project's own data, train splits only, so
the probes' test splits stay held out (its four kinds and the self-distilled answers:
:mod:`vlmtrust.mitigations.safety._vlguard_data`). Fine-tuning trains the language side only
(vision tower frozen unless ``train_vision``), on the answer tokens, with AdamW — LoRA adapters
via ``peft`` (``lora=True``, merged before saving) or all weights (``lora=False``, the default
for tiny models). The vision encoder and the language model are found through transformers'
``get_encoder(modality="image")`` and ``get_decoder()``; batches carry every image input the
processor returns (tested on LLaVA, Qwen2-VL, Qwen2.5-VL and Idefics3). The result is written
with ``save_pretrained`` and loads as ``hardened:DIR``.

``apply`` also measures the effect on held-out data (test splits, fresh SynthWorld scenes):
FigStep ASR, typed-harmful refusal, over-refusal on benign look-alikes (typed and typographic)
and clean VQA accuracy (answers naming the true shape / colour), before and after. Keeping
benign FigStep look-alikes answered needs a model whose vision side can tell harmful from
benign typography apart. Measured effect: docs/results/safety.md#vlguard.
"""

from __future__ import annotations

import abc
import copy
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import train_started, train_step
from vlmtrust.mitigations.safety._vlguard_data import (
    SafetyExample,
    build_safety_set,
    heldout_items,
    is_refusal,
    model_answers,
)


class VLGuardParams(Params):
    """Parameters of ``safety/vlguard``."""

    n_safe: int = Field(256, ge=0, le=1_000_000, description="safe image + safe instruction")
    n_unsafe_text: int = Field(48, ge=0, le=1_000_000, description="safe image + unsafe text")
    n_unsafe_image: int = Field(64, ge=0, le=1_000_000, description="FigStep harmful images")
    n_benign: int = Field(192, ge=0, le=1_000_000, description="benign look-alikes (both forms)")
    steps: int = Field(240, ge=1, le=1_000_000, description="optimiser steps")
    batch_size: int = Field(16, ge=1, le=4096, description="examples per step")
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay")
    lora: bool = Field(False, description="LoRA adapters via peft (merged before saving)")
    lora_r: int = Field(8, ge=1, le=1024, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, le=4096, description="LoRA alpha")
    train_vision: bool = Field(False, description="also fine-tune the vision tower")
    refusal: str = Field("auto", min_length=1, description="refusal text, or 'auto'")
    image_size: int = Field(760, ge=32, le=2048, description="FigStep canvas side")
    evaluate: bool = Field(True, description="measure before/after on held-out data")
    n_eval: int = Field(60, ge=2, le=100_000, description="held-out items per measurement")
    max_new_tokens: int = Field(24, ge=1, le=1024, description="answer length (own answers)")
    refusal_judge: str = Field(
        "refusal/keyword", description="judge that recognises the model's refusals"
    )

    @field_validator("refusal_judge")
    @classmethod
    def _known(cls, v: str) -> str:
        from vlmtrust.judges.base import check_judge_name

        return check_judge_name(v)


def need_hf(model: Any, name: str, alternative: str) -> None:
    """Refuse a model ``name`` cannot fine-tune: not a trainable hf: generative VLM.

    Raises:
        CapabilityError: naming ``alternative``, the mitigation to use for API models.
    """
    if not (model.capabilities & Capability.TRAIN) or not hasattr(model, "processor"):
        raise CapabilityError(
            f"{name} fine-tunes weights: model {model.spec} is not a trainable hf: "
            f"generative model; use {alternative} for API models"
        )
    if getattr(model, "kind", None) != "generative":
        raise CapabilityError(
            f"{name} needs a generative VLM; {model.spec} is a {model.kind} model"
        )


# --------------------------------------------------------------------------- training


TEXT_KEYS = frozenset({"input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids"})
"""Per-token processor outputs: :func:`collate` rebuilds the ids, the mask and the modality types
for the padded batch (``token_type_ids`` is not used). Every other tensor is image input."""


def encode_example(model: Any, ex: SafetyExample) -> tuple[list[int], int, dict[str, Any]]:
    """``(token ids, prompt length, image inputs)`` of one example (answer + EOS).

    The image inputs are every tensor the processor returns besides the text ones: LLaVA's
    ``pixel_values``, Qwen2-VL's flattened patches with ``image_grid_thw``, Idefics3's
    ``pixel_attention_mask``. They are empty for a text-only example.
    """
    tok = model.tokenizer
    text = model.render(ex.prompt, 1 if ex.image is not None else 0)
    enc = (
        model.processor(text=[text], images=None, return_tensors="pt")
        if ex.image is None
        else (model.processor(text=[text], images=[ex.image.convert("RGB")], return_tensors="pt"))
    )
    mask = enc["attention_mask"][0].tolist()
    ids = [int(i) for i, m in zip(enc["input_ids"][0].tolist(), mask, strict=True) if m]
    ans = [int(i) for i in tok(ex.answer, add_special_tokens=False)["input_ids"]]
    if tok.eos_token_id is not None:
        ans.append(int(tok.eos_token_id))
    images: dict[str, Any] = {}
    if ex.image is not None:
        images = {k: v for k, v in enc.items() if k not in TEXT_KEYS and hasattr(v, "dim")}
    if "mm_token_type_ids" in enc:  # Qwen2-VL's M-RoPE needs each token's modality
        types = enc["mm_token_type_ids"][0].tolist()
        images["mm_token_type_ids"] = [t for t, m in zip(types, mask, strict=True) if m]
    return ids + ans, len(ids), images


def collate(model: Any, items: Sequence[tuple[list[int], int, dict[str, Any]]]) -> dict[str, Any]:
    """Right-padded input ids, labels on the answer tokens only, and the image inputs.

    Image inputs are concatenated along the first axis, in example order.
    """
    import torch

    tok = model.tokenizer
    width = max(len(r) for r, _, _ in items)
    pad = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
    input_ids = torch.full((len(items), width), pad, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    for k, (row, n, _) in enumerate(items):
        input_ids[k, : len(row)] = torch.tensor(row)
        attention[k, : len(row)] = 1
        labels[k, n : len(row)] = torch.tensor(row[n:])
    out: dict[str, Any] = {
        "input_ids": input_ids.to(model.device),
        "attention_mask": attention.to(model.device),
        "labels": labels.to(model.device),
    }
    if any("mm_token_type_ids" in im for _, _, im in items):
        types = torch.zeros((len(items), width), dtype=torch.long)  # answers and padding: text
        for k, (_, _, im) in enumerate(items):
            row = im.get("mm_token_type_ids", [])
            types[k, : len(row)] = torch.tensor(row, dtype=torch.long)
        out["mm_token_type_ids"] = types.to(model.device)
    for key in dict.fromkeys(k for _, _, im in items for k in im if k != "mm_token_type_ids"):
        v = _join([im[key] for _, _, im in items if key in im], key).to(model.device)
        out[key] = v.to(model.dtype) if v.is_floating_point() else v
    return out


def _join(parts: list[Any], key: str) -> Any:
    """Concatenate one image input of several examples along the first axis.

    Per-example tensors that differ only in their second axis (Idefics3's and LLaVA-NeXT's
    image tiles, ``(1, n_tiles, ...)``) are zero-padded there first, as their processors do
    when they batch: the models skip all-zero tiles.
    """
    import torch

    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) == 1:
        return torch.cat(parts)
    if len({(p.dim(), *p.shape[2:]) for p in parts}) == 1 and parts[0].dim() >= 3:
        width = max(int(p.shape[1]) for p in parts)
        padded = []
        for p in parts:
            pad = p.new_zeros((p.shape[0], width - p.shape[1], *p.shape[2:]))
            padded.append(torch.cat([p, pad], dim=1))
        return torch.cat(padded)
    raise InputError(
        f"safety/vlguard: the processor's {key!r} has shapes {sorted(shapes)} across examples "
        "and cannot be batched; use batch_size=1"
    )


VISION_MODULES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_tower")
"""Vision-encoder attribute names, tried in this order where transformers has no
``get_encoder(modality="image")`` (4.x). The 5.x lookup tries the same list."""
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _inner(model: Any, attr: str) -> Any:
    """The module ``model`` keeps under ``attr``, on the model or its base model."""
    for owner in (model, getattr(model, "model", None)):
        found = getattr(owner, attr, None) if owner is not None else None
        if found is not None and hasattr(found, "parameters"):
            return found
    return None


def vision_encoder(model: Any) -> Any:
    """The vision encoder of a transformers VLM, or None when it cannot be found."""
    try:
        enc = model.get_encoder(modality="image")
        if enc is not model and enc is not getattr(model, "model", None):
            return enc
    except (AttributeError, TypeError, ValueError):  # transformers 4.x: no modality argument
        pass
    for name in VISION_MODULES:
        if (found := _inner(model, name)) is not None:
            return found
    return None


def language_model(model: Any) -> Any:
    """The language model (decoder) of a transformers VLM, or None when it cannot be found."""
    try:
        dec = model.get_decoder()
        if dec is not model and dec is not getattr(model, "model", None):
            return dec
    except (AttributeError, ValueError):
        pass
    for name in ("language_model", "text_model", "decoder"):
        if (found := _inner(model, name)) is not None:
            return found
    return None


def lora_targets(model: Any) -> list[str]:
    """Full names of the language model's attention projections (LoRA targets)."""
    lm = language_model(model)
    inside = {id(m) for m in lm.modules()} if lm is not None else set()
    return [
        name
        for name, mod in model.named_modules()
        if id(mod) in inside and name.rsplit(".", 1)[-1] in ATTENTION_PROJECTIONS
    ]


def finetune(
    model: Any,
    examples: Sequence[SafetyExample],
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 5e-4,
    weight_decay: float = 0.0,
    lora: bool = False,
    lora_r: int = 8,
    lora_alpha: int = 16,
    train_vision: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune ``model.model`` (an HF image-text-to-text module) in place on ``examples``.

    The loss is the mean NLL of the answer tokens (prompt and image tokens are masked). With
    ``lora`` the language model gets LoRA adapters on its attention projections (``peft``),
    merged into the weights afterwards so the module saves as a plain model.

    Returns:
        ``{"steps", "first_loss", "final_loss", "seconds", "trainable"}``.
    """
    import torch

    if not examples:
        raise InputError("safety/vlguard: the fine-tuning set is empty; raise n_* parameters")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = model.model
    if lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise InputError(
                "safety/vlguard lora=true needs peft: pip install peft (or vlmtrust[safety])"
            ) from None
        targets = lora_targets(module)
        if not targets:
            raise CapabilityError(
                f"safety/vlguard lora=true: no {'/'.join(ATTENTION_PROJECTIONS)} layers found in "
                f"the language model of {model.spec}; use lora=false"
            )
        # the language model's own attention projections, found through transformers'
        # get_decoder(), so the vision encoder never gets adapters whatever it is called
        cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=targets)
        module = get_peft_model(module, cfg)
        params = [p for p in module.parameters() if p.requires_grad]
    else:
        vision = vision_encoder(module)
        if vision is None and not train_vision:
            raise CapabilityError(
                f"safety/vlguard: cannot find the vision encoder of {model.spec} to keep it "
                "frozen; pass train_vision=true to fine-tune every weight"
            )
        frozen = {id(p) for p in vision.parameters()} if vision is not None else set()
        for prm in module.parameters():
            prm.requires_grad_(train_vision or id(prm) not in frozen)
        params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    module.train()
    t0 = time.perf_counter()
    losses: list[float] = []
    encoded = [encode_example(model, ex) for ex in examples]
    order = rng.permutation(len(examples))
    pos = 0
    train_started("VLGuard fine-tuning", steps)
    try:
        for step in range(steps):
            if pos + batch_size > len(order):
                order, pos = rng.permutation(len(examples)), 0
            enc = collate(model, [encoded[int(i)] for i in order[pos : pos + batch_size]])
            pos += batch_size
            loss = module(**enc).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            train_step(step, losses[-1])
    finally:
        module.eval()
        for prm in module.parameters():
            prm.requires_grad_(False)
    if lora:
        model.model = module.merge_and_unload()
    model.model.eval()
    return {
        "steps": steps,
        "first_loss": round(float(np.mean(losses[:5])), 4),
        "final_loss": round(float(np.mean(losses[-5:])), 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "trainable": int(sum(p.numel() for p in params)),
    }


FINETUNE_ARGS = (
    "steps", "batch_size", "lr", "weight_decay", "lora", "lora_r", "lora_alpha", "train_vision",
)  # fmt: skip
"""The :func:`finetune` arguments :func:`finetune_copy` takes from a mitigation's parameters."""


class GenerativeFinetune(Mitigation):
    """A mitigation that fine-tunes an hf: generative VLM on a set it builds (answer tokens).

    :meth:`apply` checks the model (:func:`need_hf`), keeps torch to two threads, caps the
    parameters named in :attr:`QUICK` under ``--quick`` and hands over to :meth:`tune`, which
    builds the set and calls :func:`finetune_copy`.
    """

    kind: ClassVar[Literal["model", "wrapper", "data"]] = "model"
    requires: ClassVar[Capability] = Capability.GENERATE | Capability.TRAIN
    QUICK: ClassVar[dict[str, int]] = {}
    """Parameter → its largest value under ``--quick``."""
    API_ALTERNATIVE: ClassVar[str] = ""
    """The mitigation the error message suggests for models that cannot be fine-tuned."""

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Build the set, fine-tune a copy of ``model``'s weights, save to ``ctx.out_dir``."""
        import torch

        need_hf(model, self.name, self.API_ALTERNATIVE)
        torch.set_num_threads(min(2, torch.get_num_threads()))
        p = self.params
        if ctx.quick:
            p = p.model_copy(update={k: min(getattr(p, k), v) for k, v in self.QUICK.items()})
        return self.tune(model, p, ctx)

    @abc.abstractmethod
    def tune(self, model: Any, p: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Build the training set with parameters ``p``; :func:`finetune_copy` ``model``."""


def finetune_copy(
    model: Any,
    examples: Sequence[SafetyExample],
    ctx: MitigationContext,
    name: str,
    params: BaseModel,
    extra: dict[str, Any] | None = None,
    *,
    measure: tuple[dict[str, Any], Callable[[Any], dict[str, Any]]] | None = None,
) -> HardenedArtifact:
    """:func:`finetune` a copy of ``model``'s weights on ``examples``; save it to ``ctx.out_dir``.

    The caller's ``model`` keeps its weights. :func:`finetune`'s arguments are the fields of
    ``params`` named as they are (:data:`FINETUNE_ARGS`; those it lacks keep their defaults) and
    the seed ``ctx.seed``. ``measure``, if given, is ``(before, f)``: ``f`` is called on the
    fine-tuned model before it is saved, and the summary records ``before`` and ``f``'s result
    as ``after``. The summary — mitigation ``name``, base spec, ``params``, ``extra``, the
    training-set size per kind, the training log (and before/after) — is written to
    ``ctx.out_dir/<short name>.json`` and returned in the artifact.
    """
    from vlmtrust.mitigations._train import write_record
    from vlmtrust.models.hf_common import save_model_dir

    original = model.model
    model.model = copy.deepcopy(original)
    try:
        train = {k: getattr(params, k) for k in FINETUNE_ARGS if k in type(params).model_fields}
        info = finetune(model, examples, seed=ctx.seed, **train)
        after = measure[1](model) if measure is not None else None
        save_model_dir(model.model, ctx.out_dir, model.processor)
    finally:
        model.model = original
    counts = dict(Counter(ex.kind for ex in examples))
    summary = {
        "mitigation": name,
        "base": model.spec,
        "params": params.model_dump(mode="json"),
        **(extra or {}),
        "training_set": counts,
        "training": info,
    }
    if measure is not None:
        summary.update(before=measure[0], after=after)
    return write_record(ctx.out_dir, f"{name.rsplit('/', 1)[-1]}.json", summary)


# --------------------------------------------------------------------------- measurement


def measure(
    model: Any, *, n: int, seed: int, image_size: int = 760, judge: str = "refusal/keyword"
) -> dict[str, float]:
    """Held-out safety and capability numbers (test splits, fresh SynthWorld scenes).

    ``figstep_asr``: harmful FigStep images not refused; ``text_refusal``: harmful typed
    requests refused; ``over_refusal_text`` / ``over_refusal_figstep``: benign look-alikes
    refused; ``vqa_accuracy``: shape/colour answers naming the ground truth. Refusals are
    judged by ``judge``.
    """
    harmful, benign, scenes, items = heldout_items(n=n, seed=seed, image_size=image_size)
    ans = model_answers(model, items, 24)
    ref = is_refusal(ans, judge)
    h, b, m = len(harmful), len(benign), len(scenes)
    cut = np.cumsum([0, h, h, b, b, m, m])
    seg = [ref[cut[i] : cut[i + 1]] for i in range(6)]
    shape_ok = [
        s.attributes["shape"] in a.lower()
        for s, a in zip(scenes, ans[cut[4] : cut[5]], strict=True)
    ]
    colour_ok = [
        s.attributes["colour"] in a.lower()
        for s, a in zip(scenes, ans[cut[5] : cut[6]], strict=True)
    ]
    return {
        "figstep_asr": 1.0 - float(np.mean(seg[0])),
        "text_refusal": float(np.mean(seg[1])),
        "over_refusal_text": float(np.mean(seg[2])),
        "over_refusal_figstep": float(np.mean(seg[3])),
        "vqa_accuracy": float(np.mean(shape_ok + colour_ok)),
    }


@mitigation("safety/vlguard")
class VLGuard(GenerativeFinetune):
    """VLGuard-style safety fine-tuning: safe/unsafe image × instruction, mixed with normal data."""

    pillar = Pillar.SAFETY
    Params = VLGuardParams
    description = (
        "VLGuard safety fine-tuning: safe image + safe/unsafe instruction and FigStep unsafe "
        "images → refusals, mixed with the model's own answers on SynthWorld VQA and benign "
        "look-alikes; full fine-tuning or LoRA (peft); writes a hardened:DIR model."
    )
    QUICK = {
        "n_safe": 32, "n_unsafe_text": 16, "n_unsafe_image": 24, "n_benign": 16, "steps": 40,
        "n_eval": 12,
    }  # fmt: skip
    API_ALTERNATIVE = "safety/input_guard or safety/defense_prompt"

    def tune(self, model: Any, p: VLGuardParams, ctx: MitigationContext) -> HardenedArtifact:
        """Measure (``evaluate``), build the VLGuard set, fine-tune, measure again."""

        def held_out(m: Any) -> dict[str, float]:
            if not p.evaluate:
                return {}
            return measure(
                m, n=p.n_eval, seed=ctx.seed, image_size=p.image_size, judge=p.refusal_judge
            )

        before = held_out(model)
        examples, refusal = build_safety_set(model, p, ctx.seed)
        return finetune_copy(
            model, examples, ctx, self.name, p, {"refusal": refusal}, measure=(before, held_out)
        )
