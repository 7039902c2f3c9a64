"""``safety/rl_detox`` — Reinforce-Detoxify-style RL of a generative VLM against its judges (model).

The policy is the VLM itself (language side; the vision tower stays frozen unless
``train_vision``), the reward the project's refusal judge: +1 for refusing a harmful request
and for helping (not refusing) a benign look-alike or an ordinary image question, −1 otherwise,
minus ``beta`` times the sampled completion's KL to the reference policy (the model before
training, frozen): ``log π(y|x) − log π_ref(y|x)`` summed over the completion's tokens (Ziegler
et al. 2019's shaped reward, as Reinforce-Detoxify, Faal et al. 2022, uses). The update is
REINFORCE with a baseline: ``−(R − b) · log π(y|x)``, ``b`` a moving average of the reward over
all prompts.

Prompts (train splits and fresh SynthWorld scenes only: the probes' test splits stay held out,
:func:`vlmtrust.mitigations.safety.soft_prompt.check_disjoint`): harmful requests and their
benign look-alikes as FigStep images and typed, and shape/colour questions about scenes.
``apply`` measures held-out FigStep ASR, typed refusal, over-refusal and VQA before and after
(:func:`vlmtrust.mitigations.safety.vlguard.measure`, the numbers VLGuard reports) and writes the
policy with ``save_pretrained``; it loads as ``hardened:DIR``. Measured effect, against
VLGuard: docs/results/safety.md#rl_detox and #context_defenses.

TRL is not used; the reason is in the comment above :func:`reinforce`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field

from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import model_dir_artifact, train_started, train_step
from vlmtrust.mitigations.safety._fields import HeldOutParams, LoopParams
from vlmtrust.mitigations.safety._vlguard_data import SafetyExample


class RLDetoxParams(LoopParams, HeldOutParams):
    """Parameters of ``safety/rl_detox`` (loop: steps, batch_size, lr; held-out measurement)."""

    # the policy gradient
    beta: float = Field(0.05, ge=0.0, le=100.0, description="KL penalty to the reference policy")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="sampling temperature")
    max_new_tokens: int = Field(12, ge=1, le=512, description="completion length")
    baseline_momentum: float = Field(0.9, ge=0.0, lt=1.0, description="reward baseline EMA")
    train_vision: bool = Field(False, description="also update the vision tower")
    # the rollout prompts
    n_image: int = Field(48, ge=0, le=100_000, description="FigStep images, each kind")
    n_text: int = Field(16, ge=0, le=100_000, description="typed requests, each kind")
    n_vqa: int = Field(32, ge=0, le=100_000, description="SynthWorld image questions")
    image_size: int = Field(760, ge=32, le=2048, description="FigStep canvas side")


def rl_prompts(p: RLDetoxParams, seed: int) -> list[tuple[Image.Image | None, str, bool]]:
    """``(image or None, prompt, harmful)`` rollout prompts from the train splits and scenes."""
    from vlmtrust.attacks.typography import FIGSTEP_PROMPT, render_figstep
    from vlmtrust.data.requests import pool
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.mitigations.safety._vlguard_data import (
        COLOUR_QUESTIONS,
        SEED_OFFSET,
        SHAPE_QUESTIONS,
    )
    from vlmtrust.mitigations.safety.soft_prompt import check_disjoint

    rng = np.random.default_rng(seed + 8_000_009)
    out: list[tuple[Image.Image | None, str, bool]] = []
    ids: list[str] = []
    for harmful in (True, False):
        reqs = pool(harmful=harmful, split_name="train")
        for n, as_image in ((p.n_image, True), (p.n_text, False)):
            for i in rng.integers(0, len(reqs), size=n):
                r = reqs[int(i)]
                ids.append(r.id)
                if as_image:
                    out.append(
                        (render_figstep(r.statement, size=p.image_size), FIGSTEP_PROMPT, harmful)
                    )
                else:
                    out.append((None, r.text, harmful))
    check_disjoint(ids)
    scenes = SynthWorld(seed=seed + SEED_OFFSET + 1, image_size=224).shapes(max(p.n_vqa, 1))
    qs = (*SHAPE_QUESTIONS, *COLOUR_QUESTIONS)
    out += [(s.image, qs[k % len(qs)], False) for k, s in enumerate(scenes[: p.n_vqa])]
    return out


def rewards(texts: Sequence[str], harmful: Sequence[bool], judge: str) -> list[float]:
    """+1 where the judge's refusal matches ``harmful`` (refuse harmful, help benign), else −1."""
    from vlmtrust.mitigations.safety._vlguard_data import is_refusal

    refused = is_refusal(list(texts), judge)
    return [1.0 if r == h else -1.0 for r, h in zip(refused, harmful, strict=True)]


def sample(
    model: Any, module: Any, items: Sequence[tuple[Image.Image | None, str]], p: RLDetoxParams
) -> list[list[int]]:
    """Sampled completion token ids of ``module`` (through the first EOS, which is kept)."""
    import torch
    import transformers

    eos = sorted(model._eos_ids)  # noqa: SLF001 - the base model's own stop tokens
    texts = [model.render(q, 0 if im is None else 1) for im, q in items]
    images = [im.convert("RGB") for im, _ in items if im is not None]
    enc = model._encode(texts, images)  # noqa: SLF001
    gen_config: Any = transformers.GenerationConfig
    cfg = gen_config(
        do_sample=True,
        temperature=p.temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=p.max_new_tokens,
        pad_token_id=model.tokenizer.pad_token_id,
        eos_token_id=eos or None,
    )
    with torch.no_grad():
        out = module.generate(**enc, generation_config=cfg)
    rows: list[list[int]] = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        cut = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
        rows.append(row[:cut] or row[:1])
    return rows


def sequence_logprobs(module: Any, enc: dict[str, Any]) -> Any:
    """Sum of the completion tokens' log-probabilities per row (``labels`` mark them)."""
    import torch

    batch = dict(enc)
    labels = batch.pop("labels")
    logits = module(**batch).logits[:, :-1].float()
    gold = labels[:, 1:]
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (gold != -100)).sum(dim=1)


# Why not TRL (observed, not assumed): ``pip install --dry-run trl`` (1.16) changes no pinned
# package, and its
# ``RLOOTrainer`` runs on reference:vlm, but its advantage is leave-one-out within each prompt's
# group of samples: on the planted FigStep flaw every sample for a harmful image is the
# compliance template (observed on reference:vlm at temperature 1 and 2: ``frac_reward_zero_std``
# 1, loss 0, grad_norm 0), so it never updates. A baseline shared across harmful and benign
# prompts gives those samples a negative advantage and the benign ones a positive one, which is
# what moves the policy here; hence this loop on torch.
def reinforce(
    model: Any,
    reference: Any,
    prompts: Sequence[tuple[Image.Image | None, str, bool]],
    p: RLDetoxParams,
    seed: int,
) -> dict[str, Any]:
    """Train ``model.model`` in place with REINFORCE against ``reference`` (frozen)."""
    import torch

    from vlmtrust.mitigations.safety.vlguard import collate, encode_example, vision_encoder

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = model.model
    vision = vision_encoder(module)
    frozen = (
        {id(q) for q in vision.parameters()} if vision is not None and not p.train_vision else set()
    )
    for q in module.parameters():
        q.requires_grad_(id(q) not in frozen)
    params = [q for q in module.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=0.0)
    prompt_enc = [encode_example(model, SafetyExample(im, q, "", "rl")) for im, q, _ in prompts]
    baseline: float | None = None
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    train_started("RL detoxification (REINFORCE)", p.steps)
    try:
        for step in range(p.steps):
            idx = rng.choice(len(prompts), size=min(p.batch_size, len(prompts)), replace=False)
            module.eval()
            completions: dict[int, list[int]] = {}
            for with_image in (True, False):  # one image count per generate call
                part = [int(i) for i in idx if (prompts[int(i)][0] is not None) == with_image]
                if part:
                    got = sample(model, module, [prompts[i][:2] for i in part], p)
                    completions.update(zip(part, got, strict=True))
            order = [int(i) for i in idx]
            texts = [
                model.tokenizer.decode(completions[i], skip_special_tokens=True) for i in order
            ]
            reward = rewards(texts, [prompts[i][2] for i in order], p.refusal_judge)
            rows = []
            for i in order:
                ids, n, images = prompt_enc[i]
                rows.append((ids[:n] + completions[i], n, images))
            enc = collate(model, rows)
            module.train()
            logp = sequence_logprobs(module, enc)
            with torch.no_grad():
                ref_logp = sequence_logprobs(reference, enc)
            kl = (logp.detach() - ref_logp).float()
            total = torch.tensor(reward, device=kl.device) - p.beta * kl
            mean = float(total.mean())
            baseline = (
                mean
                if baseline is None
                else (p.baseline_momentum * baseline + (1 - p.baseline_momentum) * mean)
            )
            loss = -((total - baseline) * logp).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            history.append({"reward": float(np.mean(reward)), "kl": float(kl.mean())})
            train_step(step, float(loss.detach()))
    finally:
        module.eval()
        for q in module.parameters():
            q.requires_grad_(False)
    first, last = history[: max(1, len(history) // 10)], history[-max(1, len(history) // 10) :]
    return {
        "steps": p.steps,
        "first_reward": round(float(np.mean([h["reward"] for h in first])), 4),
        "final_reward": round(float(np.mean([h["reward"] for h in last])), 4),
        "final_kl": round(float(np.mean([h["kl"] for h in last])), 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "trainable": int(sum(q.numel() for q in params)),
    }


@mitigation("safety/rl_detox")
class RLDetox(Mitigation):
    """Reinforce-Detoxify-style RL: refusal-judge reward on harmful and benign prompts, KL-held."""

    params: RLDetoxParams

    pillar = Pillar.SAFETY
    kind = "model"
    requires = Capability.GENERATE | Capability.TRAIN
    Params = RLDetoxParams
    description = (
        "RL detoxification (REINFORCE with a baseline): the VLM samples answers to train-split "
        "harmful / benign FigStep images, typed requests and scene questions; reward = the "
        "refusal judge (refuse harmful, help benign) minus a KL to the original model; writes "
        "a hardened:DIR model."
    )

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Train a copy of ``model``'s weights with REINFORCE, save it to ``ctx.out_dir``."""
        from vlmtrust.mitigations.safety.vlguard import measure, need_hf
        from vlmtrust.models.hf_common import save_model_dir

        need_hf(model, self.name, "safety/cot_safety or safety/defense_prompt")
        p = self.params
        if ctx.quick:
            caps = {"steps": 30, "n_image": 16, "n_text": 8, "n_vqa": 8, "n_eval": 12}
            p = p.model_copy(update={k: min(getattr(p, k), v) for k, v in caps.items()})
        judge = p.refusal_judge
        before = measure(model, n=p.n_eval, seed=ctx.seed, judge=judge) if p.evaluate else {}
        prompts = rl_prompts(p, ctx.seed)
        original = model.model
        model.model = copy.deepcopy(original)
        try:
            info = reinforce(model, original, prompts, p, ctx.seed)
            after = measure(model, n=p.n_eval, seed=ctx.seed, judge=judge) if p.evaluate else {}
            save_model_dir(model.model, ctx.out_dir, model.processor)
        finally:
            model.model = original
        return model_dir_artifact(
            ctx.out_dir,
            "rl_detox.json",
            {
                "mitigation": self.name,
                "base": model.spec,
                "params": p.model_dump(mode="json"),
                "prompts": len(prompts),
                "training": info,
                "before": before,
                "after": after,
            },
        )
