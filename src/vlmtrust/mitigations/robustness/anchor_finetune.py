"""``robustness/anchor_finetune`` — fine-tuning that keeps OOD generalisation with text anchors.

Anchor-based robust fine-tuning (Han et al. 2024, ARF) observes that fine-tuning a dual encoder
on class names alone narrows its image features to the class semantics and loses the open
vocabulary that carried its OOD generalisation and calibration; it regularises fine-tuning
with *anchors*: rich caption-like texts whose similarity structure the image features must
keep.

Here the image tower of the dual encoder is fine-tuned (the text tower stays frozen, so class
prompts and anchors keep their meaning) on SynthWorld ID shapes from a stream disjoint from the
probes' (``seed + 7,000,003``) with

* the fine-tuning loss: cross-entropy of ``logit_scale · cos(image, class prompt)`` over the
  known classes (the same for ``anchors=false``, plain fine-tuning), plus
* with ``anchors=true``: ``anchor_weight · KL(p₀ ‖ p_θ)``, where ``p = softmax(logit_scale ·
  cos(image, anchor texts))`` over a fixed pool of anchor captions (SynthWorld captions of other
  training scenes: shape, colour, size, texture, background), ``p₀`` from the frozen model's
  image features and ``p_θ`` from the model being fine-tuned.

The fine-tuned model is written with ``save_pretrained`` (safetensors) and loads with
``--model hardened:DIR``; the summary has the loss curve's ends, the anchor count and seconds.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.model import require
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import optimizer_step, save_finetuned, train_started, training
from vlmtrust.mitigations.robustness._contrastive import ContrastiveReport

TRAIN_SEED_OFFSET = 7_000_003
"""Training scenes come from SynthWorld seeded ``seed + TRAIN_SEED_OFFSET``."""


class AnchorFinetuneParams(Params):
    """Parameters of ``robustness/anchor_finetune``."""

    anchors: bool = Field(
        True, description="regularise with text anchors (false: plain fine-tuning, same data)"
    )
    steps: int = Field(30, ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay")
    n_train: int = Field(400, ge=2, le=10_000_000, description="training scenes")
    n_anchors: int = Field(256, ge=2, le=100_000, description="anchor captions in the pool")
    anchor_weight: float = Field(20.0, ge=0.0, description="weight of the anchor KL term")
    template: str = Field("a photo of a {}", description="class prompt")
    seed: int | None = Field(None, description="training seed (default: the run seed)")


def _kl(p0: Any, logits: Any) -> Any:
    """``KL(p0 ‖ softmax(logits))`` averaged over rows."""
    import torch

    logp = torch.log_softmax(logits, dim=-1)
    return (p0 * (torch.log(p0.clamp_min(1e-12)) - logp)).sum(-1).mean()


@mitigation("robustness/anchor_finetune")
class AnchorFinetune(Mitigation):
    """Image-tower fine-tuning on class prompts, kept near the frozen anchor similarities."""

    Params = AnchorFinetuneParams
    params: AnchorFinetuneParams
    pillar, kind = Pillar.ROBUSTNESS, "model"
    requires = Capability.EMBED | Capability.TRAIN | Capability.GRADIENT
    description = (
        "Anchor-based robust fine-tuning (Han et al. 2024): image-tower fine-tuning plus a KL "
        "term keeping the frozen model's caption-anchor similarities (anchors=false: plain)."
    )

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Fine-tune ``model`` in place and write it (safetensors) to ``ctx.out_dir``."""
        import torch

        from vlmtrust.attacks.zeroshot import class_prompts, logit_scale
        from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld

        kind = getattr(model, "kind", "unknown")
        if kind != "dual":
            raise InputError(f"{self.name} fine-tunes dual encoders; model {model.spec} is {kind}")
        require(model, self.requires, self.name, "it needs a trainable hf: dual encoder")
        p = self.params
        seed = ctx.seed if p.seed is None else p.seed
        steps = max(1, p.steps // 5) if ctx.quick else p.steps
        n = min(p.n_train, 128) if ctx.quick else p.n_train
        world = SynthWorld(seed=seed + TRAIN_SEED_OFFSET)
        scenes = world.shapes(n)
        pool = list(dict.fromkeys(s.caption for s in world.shapes(p.n_anchors, start=n)))
        classes = list(ID_SHAPES)
        labels = torch.as_tensor([classes.index(str(s.attributes["shape"])) for s in scenes])
        scale = logit_scale(model)
        with torch.no_grad():
            cls_txt = model.text_features(class_prompts(classes, p.template)).float()
            anc_txt = model.text_features(pool).float()
        pixels = model.to_pixels([s.image for s in scenes]).cpu()
        net = model.model
        with torch.no_grad():
            p0 = torch.cat(
                [
                    torch.softmax(
                        scale
                        * model.image_features(pixels[i : i + 64].to(model.device)).float()
                        @ anc_txt.T,
                        dim=-1,
                    )
                    for i in range(0, len(pixels), 64)
                ]
            )
        tower = [q for k, q in net.named_parameters() if k.startswith(("vision_model", "visual"))]
        if not tower:
            raise InputError(f"{self.name}: model {model.spec} has no vision tower to fine-tune")
        opt = torch.optim.AdamW(tower, lr=p.lr, weight_decay=p.weight_decay)
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        bs = min(p.batch_size, n)
        report = ContrastiveReport(steps=steps)
        train_started(f"{self.name} fine-tuning", steps)
        t0 = time.perf_counter()
        with training(net, tower):
            for step in range(steps):
                idx = torch.as_tensor(rng.choice(n, size=bs, replace=False))
                img = model.image_features(pixels[idx].to(model.device)).float()
                loss = torch.nn.functional.cross_entropy(scale * img @ cls_txt.T, labels[idx])
                if p.anchors:
                    loss = loss + p.anchor_weight * _kl(p0[idx], scale * img @ anc_txt.T)
                optimizer_step(opt, loss, report.losses, step, None)
        report.seconds = time.perf_counter() - t0
        tag = "anchor_finetune" if p.anchors else "plain_finetune"
        model.fingerprint = f"{model.fingerprint}+{tag}:s{seed}n{steps}"
        return save_finetuned(model, ctx, self.name, report, p, anchors=len(pool))
