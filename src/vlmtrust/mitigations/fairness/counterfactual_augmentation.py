"""``fairness/counterfactual_augmentation`` — fine-tuning on group-swapped counterfactual sets.

Counterfactual data augmentation (after Zmigrod et al. 2019 and SocialCounterfactuals, Howard
et al. 2024): SynthWorld renders each training scene once per group with nothing else changed
(:meth:`~vlmtrust.data.synthworld.SynthWorld.counterfactual_people`, occupations drawn
uniformly, occupation cues drawn with probability ``cue_prob``), and the model is fine-tuned
so that every member of a set gets the same target. The training world is seeded
``ctx.seed + TRAIN_SEED_OFFSET``, apart from the probes' evaluation world. A scene without an
occupation cue has few pixel variants (SynthWorld renders 96 at 64 px over both groups), so
another seed alone draws many of the very images the probes show; every training set with a
member whose pixels equal an image the held-out measurement uses (:func:`held_out_digests`:
the probes' first ``max(held_out, n_eval)`` sets, as the probes draw them) is left out, and
the count is in ``training_set["held_out_dropped"]``. Each training set is rendered at its own
size, 64 ± ``scale_jitter`` px, and resized to 64 (:func:`_jittered_sets`), so the cue-less
scenes the model learns from are more than the few pixel variants the probes leave over.
The measurement below is on held-out images.

* **Dual encoders** (``kind="dual"``, e.g. reference:clip): contrastive fine-tuning in which the
  set's one caption is the positive of *every* member image (image → text cross-entropy per
  member; text → image with all members as positives, each weighted equally), mixed with
  SynthWorld shape pairs (``retain_weight``) so zero-shot classification keeps its anchor.
  The occupation text then no longer tracks the group.
* **Generative VLMs** (``kind="generative"``, a trainable ``hf:`` model, e.g. reference:vlm):
  supervised fine-tuning (:func:`vlmtrust.mitigations.safety.vlguard.finetune`, language side,
  vision tower frozen) on the sets with identical answers across each set: the occupation
  when the scene shows a cue, ``unclear_answer`` when it does not; ``unclear_answer`` for
  trait questions (``TRAIT_QUESTIONS``, worded differently from the probes' questions); and
  the model's own answers to SynthWorld shape questions (``n_retain``), so its other answers
  stay as they were.

``apply`` measures the effect before and after on held-out data when ``evaluate`` is on: the
probes ``fairness/counterfactual`` (both kinds), ``fairness/retrieval_skew`` (dual) and
``capability/vqa`` (generative) or SynthWorld zero-shot accuracy (dual), each at ``n_eval``
sets / questions. The fine-tuned model is written with ``save_pretrained`` and loads as
``hardened:DIR``; ``hardening.json`` holds the parameters, the training log and the numbers.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar

__all__ = [
    "TRAIT_QUESTIONS",
    "CounterfactualAugmentation",
    "CounterfactualAugmentationParams",
    "generative_examples",
]

NAME = "fairness/counterfactual_augmentation"
TRAIN_SEED_OFFSET = 3_000_017
"""SynthWorld seed offset of the training sets (the probes evaluate on seed + 1,000,000)."""

JOB_QUESTIONS = (
    "What is this person's job?",
    "What is the occupation of this person?",
    "What does this person do for a living?",
)
"""Occupation questions of the generative training set."""
TRAIT_QUESTIONS = (
    "Would this person make a good leader?",
    "Can this person be trusted?",
    "Does this person do their job well?",
    "Is this person honest?",
)
"""Trait questions no image decides (worded differently from the probes' questions)."""
SHAPE_QUESTIONS = ("What shape is this?", "What colour is the shape?", "Describe the image.")
"""Questions whose own answers the model keeps (``n_retain``)."""


class CounterfactualAugmentationParams(Params):
    """Parameters of ``fairness/counterfactual_augmentation``."""

    n_sets: int = Field(192, ge=2, le=1_000_000, description="training counterfactual sets")
    cue_prob: float = Field(
        0.5, ge=0.0, le=1.0, description="probability of each occupation cue in a training set"
    )
    steps: int = Field(150, ge=1, le=1_000_000, description="optimiser steps")
    batch_size: int = Field(16, ge=2, le=4096, description="examples (generative) / sets (dual)")
    lr: float = Field(0.0, ge=0.0, le=1.0, description="learning rate (0: 3e-4 gen., 1e-4 dual)")
    unclear_answer: str = Field(
        "I cannot tell from the image.",
        min_length=1,
        description="target answer where the image does not decide (generative)",
    )
    n_retain: int = Field(
        96, ge=0, le=1_000_000, description="shape questions answered with the model's own answers"
    )
    retain_weight: float = Field(
        1.0, ge=0.0, le=100.0, description="weight of the shape-caption loss (dual)"
    )
    evaluate: bool = Field(True, description="measure before/after on held-out sets")
    n_eval: int = Field(24, ge=2, le=100_000, description="held-out sets / questions per probe")
    held_out: int = Field(
        24, ge=0, le=100_000, description="probe sets whose images training leaves out (≥ n_eval)"
    )
    scale_jitter: int = Field(
        8, ge=0, le=32, description="render each training set at 64 ± up to this many px, resized"
    )


IMAGE_SIZE = 64
"""Side of the training images (SynthWorld's default; probe images are compared at it)."""


def _fair_world(seed: int, size: int = IMAGE_SIZE) -> Any:
    from vlmtrust.data.synthworld import SynthWorld

    return SynthWorld(seed=seed + TRAIN_SEED_OFFSET, image_size=size)


def _jittered_sets(p: CounterfactualAugmentationParams, seed: int) -> list[tuple[Any, ...]]:
    """The training sets, each rendered at its own size (64 ± ``scale_jitter``), resized to 64.

    Every member of a set shares the size, so a set stays a counterfactual set; the scenes
    (occupation, cues, figure jitter) are the unjittered stream's.
    """
    import dataclasses

    if p.scale_jitter == 0:
        sets: list[tuple[Any, ...]] = _fair_world(seed).counterfactual_people(
            p.n_sets, cue_prob=p.cue_prob
        )
        return sets
    j = p.scale_jitter
    sizes = np.random.default_rng(seed + 23).integers(IMAGE_SIZE - j, IMAGE_SIZE + j + 1, p.n_sets)
    worlds: dict[int, Any] = {}
    out = []
    for i, size in enumerate(int(x) for x in sizes):
        world = worlds.setdefault(size, _fair_world(seed, size))
        members = world.counterfactual_people(1, start=i, cue_prob=p.cue_prob)[0]
        if size != IMAGE_SIZE:
            square = (IMAGE_SIZE, IMAGE_SIZE)
            members = tuple(
                dataclasses.replace(m, image=m.image.resize(square, Image.Resampling.BICUBIC))
                for m in members
            )
        out.append(members)
    return out


def _has_cue(attrs: dict[str, Any]) -> bool:
    return str(attrs.get("prop")) == "true" or str(attrs.get("setting")) == "true"


def image_digest(image: Image.Image) -> str:
    """SHA-256 of an image's mode, size and pixels (equal digests: the same picture)."""
    import hashlib

    h = hashlib.sha256(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


HELD_OUT_PROBES: dict[str, tuple[tuple[str, str, int, dict[str, Any]], ...]] = {
    "generative": (
        ("fairness/counterfactual", "n_sets", 1, {}),
        ("fairness/generation_bias", "n", 2, {}),
        ("fairness/generation_bias", "n", 2, {"cue_prob": 1.0}),
        ("capability/vqa", "n", 4, {}),
    ),
    "dual": (
        ("fairness/counterfactual", "n_sets", 1, {}),
        ("fairness/retrieval_skew", "n", 25, {}),
    ),
}
"""Per model kind, the probe samples of the held-out measurement: ``(probe, size parameter,
× n, other parameters)`` (people with cues: the occupation answers a debiaser must keep)."""


def held_out_digests(seed: int, n: int, kind: str = "generative") -> frozenset[str]:
    """Digests of the images the held-out measurement of ``kind`` shows at ``n`` sets.

    The samples of each of :data:`HELD_OUT_PROBES` ``[kind]`` at its size times ``n``, drawn
    by the probe itself (its evaluation world at ``seed``, SynthWorld's default 64 px, the
    size the training sets are rendered at). Empty for ``n = 0``.
    """
    from vlmtrust.core.probe import ProbeContext, registry
    from vlmtrust.core.sample import Sample

    out: set[str] = set()
    if n <= 0:
        return frozenset()
    ctx = ProbeContext(seed=seed)
    for name, size, times, extra in HELD_OUT_PROBES[kind]:
        for s in registry()[name]({size: times * n, **extra}).samples(ctx):
            if isinstance(s, Sample):
                out.update(image_digest(im) for im in s.pil_images())
    return frozenset(out)


def training_sets(
    p: CounterfactualAugmentationParams, seed: int, skip: frozenset[str]
) -> tuple[list[tuple[Any, ...]], int]:
    """The training counterfactual sets without those that share an image with the probes.

    Returns the kept sets and how many were dropped (a set with any member whose digest is in
    ``skip``, :func:`held_out_digests` at ``max(p.held_out, p.n_eval)`` sets).
    """
    sets = _jittered_sets(p, seed)
    kept = [s for s in sets if not any(image_digest(m.image) in skip for m in s)]
    if not kept:
        raise InputError(
            f"{NAME}: all {p.n_sets} training sets share images with the held-out probes; "
            "raise n_sets or cue_prob"
        )
    return kept, len(sets) - len(kept)


def _skip(p: CounterfactualAugmentationParams, seed: int, kind: str) -> frozenset[str]:
    return held_out_digests(seed, max(p.held_out, p.n_eval if p.evaluate else 0), kind)


# --------------------------------------------------------------------------- generative


def generative_examples(
    model: Any, p: CounterfactualAugmentationParams, seed: int
) -> tuple[list[Any], int]:
    """The generative training set and the number of sets left out as held-out images.

    Counterfactual sets with one answer per set, and retention: every member of a set gets
    the same answer to the same question (the question drawn per set); sets that share an
    image with the held-out probes are left out (:func:`training_sets`), and so are shapes
    that do. Shape questions carry the model's own greedy answers.
    """
    from vlmtrust.mitigations.safety._vlguard_data import SafetyExample, model_answers

    rng = np.random.default_rng(seed + 11)
    world = _fair_world(seed)
    out: list[SafetyExample] = []
    skip = _skip(p, seed, "generative")
    sets, dropped = training_sets(p, seed, skip)
    for members in sets:
        a = members[0].attributes
        occ = str(a["occupation"])
        cue = _has_cue(a)
        kind = int(rng.integers(4))
        if kind <= 1:
            q = JOB_QUESTIONS[int(rng.integers(len(JOB_QUESTIONS)))]
            ans = f"This person is a {occ}." if cue else p.unclear_answer
        elif kind == 2:
            q = "Describe the image."
            ans = f"A person working as a {occ}." if cue else "A person."
        else:
            q = TRAIT_QUESTIONS[int(rng.integers(len(TRAIT_QUESTIONS)))]
            ans = p.unclear_answer
        out.extend(SafetyExample(m.image, q, ans, "counterfactual") for m in members)
    if p.n_retain:
        shapes = world.shapes(p.n_retain, start=10**6)
        items: list[tuple[Image.Image | None, str]] = [
            (s.image, SHAPE_QUESTIONS[i % len(SHAPE_QUESTIONS)])
            for i, s in enumerate(shapes)
            if image_digest(s.image) not in skip
        ]
        answers = model_answers(model, items, 24)
        out.extend(
            SafetyExample(im, q, a.strip(), "retain")
            for (im, q), a in zip(items, answers, strict=True)
            if a.strip()
        )
    return out, dropped


def _probe_metrics(probe: str, model: Any, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Run ``probe`` by hand on its held-out samples; ``{metric name: value}``."""
    from vlmtrust.core.probe import ProbeContext, registry

    pr = registry()[probe](params)
    ctx = ProbeContext(seed=seed)
    samples = list(pr.samples(ctx))
    records = []
    for i in range(0, len(samples), pr.batch_size):
        records.extend(pr.evaluate(model, samples[i : i + pr.batch_size], ctx))
    for i, r in enumerate(records):
        r.index = i
    return {
        m.name: {"value": m.value, "ci": [m.ci_low, m.ci_high]}
        for m in pr.aggregate(records, ctx)
        if m.value is not None
    }


GEN_METRICS = ("flip_rate", "flip_rate/job", "flip_rate/describe")


def measure_generative(model: Any, n: int, seed: int) -> dict[str, Any]:
    """Held-out flip rates (``fairness/counterfactual``, ``n`` sets) and VQA accuracy."""
    cf = _probe_metrics("fairness/counterfactual", model, {"n_sets": n}, seed)
    vqa = _probe_metrics("capability/vqa", model, {"n": 2 * n}, seed)
    out = {k: cf[k] for k in GEN_METRICS if k in cf}
    out["vqa_accuracy"] = vqa.get("accuracy")
    return out


def _need_generative(model: Any) -> None:
    if not (model.capabilities & Capability.TRAIN) or not hasattr(model, "processor"):
        raise CapabilityError(
            f"{NAME} fine-tunes weights: model {model.spec} is not a trainable hf: model; use "
            "fairness/self_debias for API models"
        )


def _apply_generative(
    model: Any, p: CounterfactualAugmentationParams, ctx: MitigationContext
) -> dict[str, Any]:
    from vlmtrust.mitigations.safety.vlguard import finetune
    from vlmtrust.models.hf_common import save_model_dir

    _need_generative(model)
    before = measure_generative(model, p.n_eval, ctx.seed) if p.evaluate else {}
    examples, dropped = generative_examples(model, p, ctx.seed)
    original = model.model
    model.model = copy.deepcopy(original)
    try:
        info = finetune(
            model,
            examples,
            steps=p.steps,
            batch_size=p.batch_size,
            lr=p.lr or 3e-4,
            seed=ctx.seed,
        )
        after = measure_generative(model, p.n_eval, ctx.seed) if p.evaluate else {}
        save_model_dir(model.model, ctx.out_dir, model.processor)
    finally:
        model.model = original
    counts: dict[str, int] = {}
    for ex in examples:
        counts[ex.kind] = counts.get(ex.kind, 0) + 1
    counts["held_out_dropped"] = dropped
    return {"training_set": counts, "training": info, "before": before, "after": after}


# --------------------------------------------------------------------------- dual


def measure_dual(model: Any, n: int, seed: int) -> dict[str, Any]:
    """Held-out similarity spread / flips, MaxSkew@k and SynthWorld zero-shot accuracy."""
    from vlmtrust.mitigations.privacy.dp_finetune import shape_accuracy

    cf = _probe_metrics("fairness/counterfactual", model, {"n_sets": n}, seed)
    keys: tuple[str, ...] = ("similarity_spread/occupation", "prediction_flip_rate/occupation")
    out: dict[str, Any] = {k: cf[k] for k in keys if k in cf}
    skew = _probe_metrics("fairness/retrieval_skew", model, {"n": 25 * n}, seed)
    out.update({k: v for k, v in skew.items() if k.startswith("max_skew")})
    out["zero_shot_accuracy"] = shape_accuracy(model, 4 * n, seed)
    return out


def _text_params(module: Any) -> list[Any]:
    """The text tower's and text projection's parameters (everything without "vision"/"visual")."""
    out = []
    for name, q in module.named_parameters():
        train = not any(f in name for f in ("vision", "visual", "logit_scale", "logit_bias"))
        q.requires_grad_(train)
        if train:
            out.append(q)
    return out


def dual_finetune(model: Any, p: CounterfactualAugmentationParams, seed: int) -> dict[str, Any]:
    """Contrastive fine-tuning of ``model.model``'s text side in place on counterfactual sets.

    The image tower is frozen (its embeddings of the sets are computed once). Each step draws
    ``batch_size`` sets; the loss is, per member image, the cross-entropy of its set's caption
    among the batch's captions, plus, per caption, the cross-entropy of the members of its set
    among the batch's images (each member a positive, equally weighted); ``retain_weight``
    times the contrastive loss of as many SynthWorld shape pairs (same-class pairs positives)
    is added. Sets that share an image with the held-out probes are left out
    (:func:`training_sets`).
    """
    import torch

    world = _fair_world(seed)
    sets, dropped = training_sets(p, seed, _skip(p, seed, "dual"))
    k = len(sets[0])
    captions = [s[0].caption for s in sets]
    shapes = world.shapes(p.n_sets, start=2 * 10**6)
    shape_caps = [f"a photo of a {s.attributes['shape']}" for s in shapes]
    with torch.no_grad():
        img_all = torch.as_tensor(
            np.asarray(model.embed_images([m.image for s in sets for m in s]), dtype=np.float32)
        ).to(model.device)
        shape_img = torch.as_tensor(
            np.asarray(model.embed_images([s.image for s in shapes]), dtype=np.float32)
        ).to(model.device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = model.model
    params = _text_params(module)
    opt = torch.optim.AdamW(params, lr=p.lr or 1e-4, weight_decay=0.0)
    scale = float(model.logit_scale)
    ce = torch.nn.functional.cross_entropy
    b = min(p.batch_size, len(sets))
    losses: list[float] = []
    t0 = time.perf_counter()
    module.train()
    try:
        for _ in range(p.steps):
            idx = rng.choice(len(sets), size=b, replace=False)
            rows = [int(i) * k + j for i in idx for j in range(k)]
            img = img_all[rows]  # (b·k, d)
            txt = model.text_features([captions[int(i)] for i in idx], grad=True)  # (b, d)
            logits = scale * img @ txt.T
            owner = torch.arange(b, device=img.device).repeat_interleave(k)
            loss_i = ce(logits, owner)
            # text → image: every member of the set a positive (log-softmax averaged over them)
            logp = torch.log_softmax(logits.T, dim=1).view(b, b, k)
            ar = torch.arange(b, device=img.device)
            loss: Any = 0.5 * (loss_i - logp[ar, ar].mean())
            if p.retain_weight > 0:
                j = rng.choice(len(shapes), size=min(b * k, len(shapes)), replace=False)
                cap = [shape_caps[int(x)] for x in j]
                st = model.text_features(cap, grad=True)
                sl = scale * shape_img[j] @ st.T
                same = torch.tensor([[x == y for y in cap] for x in cap], dtype=torch.float32)
                target = (same / same.sum(1, keepdim=True)).to(sl.device)
                retain = 0.5 * (
                    -(target * torch.log_softmax(sl, 1)).sum(1).mean()
                    - (target * torch.log_softmax(sl.T, 1)).sum(1).mean()
                )
                loss = loss + p.retain_weight * retain
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        module.eval()
        for q in module.parameters():
            q.requires_grad_(True)
            q.grad = None
    return {
        "steps": p.steps,
        "first_loss": round(float(np.mean(losses[:5])), 4),
        "final_loss": round(float(np.mean(losses[-5:])), 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "trainable": int(sum(q.numel() for q in params)),
        "held_out_dropped": dropped,
    }


def _apply_dual(
    model: Any, p: CounterfactualAugmentationParams, ctx: MitigationContext
) -> dict[str, Any]:
    from vlmtrust.mitigations.robustness._advtrain import check_dual, clone_dual

    check_dual(model, NAME)
    before = measure_dual(model, p.n_eval, ctx.seed) if p.evaluate else {}
    tuned = clone_dual(model)
    info = dual_finetune(tuned, p, ctx.seed)
    after = measure_dual(tuned, p.n_eval, ctx.seed) if p.evaluate else {}
    tuned.save_pretrained(Path(ctx.out_dir))
    return {"training": info, "before": before, "after": after}


@mitigation(NAME)
class CounterfactualAugmentation(Mitigation):
    """Fine-tuning on SynthWorld counterfactual sets (one caption / one answer per set)."""

    pillar = Pillar.FAIRNESS
    kind = "model"
    requires = Capability.TRAIN
    Params = CounterfactualAugmentationParams
    description = (
        "Counterfactual data augmentation: fine-tune on SynthWorld scenes rendered once per "
        "group — one caption for every group variant (dual encoders, contrastive) or one answer "
        "across each set, 'unclear' where the image does not decide (generative VLMs)."
    )

    @property
    def p(self) -> CounterfactualAugmentationParams:
        """Typed parameters."""
        assert isinstance(self.params, CounterfactualAugmentationParams)
        return self.params

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Fine-tune a copy of ``model`` on counterfactual sets and save it to ``ctx.out_dir``."""
        p = self.p
        kind = getattr(model, "kind", None)
        if kind == "generative":
            _need_generative(model)
        elif kind == "dual":
            from vlmtrust.mitigations.robustness._advtrain import check_dual

            check_dual(model, NAME)
        else:
            raise InputError(f"{NAME} fine-tunes dual or generative models; {model.spec} is {kind}")
        import torch

        torch.set_num_threads(min(2, torch.get_num_threads()))
        if ctx.quick:
            p = p.model_copy(
                update={
                    "n_sets": min(p.n_sets, 48),
                    "steps": min(p.steps, 30),
                    "n_retain": min(p.n_retain, 24),
                    "n_eval": min(p.n_eval, 8),
                }
            )
        if kind == "generative":
            result = _apply_generative(model, p, ctx)
        else:
            result = _apply_dual(model, p, ctx)
        summary = {
            "mitigation": self.name,
            "base": model.spec,
            "params": p.model_dump(mode="json"),
            **result,
        }
        out = Path(ctx.out_dir)
        (out / "hardening.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return HardenedArtifact(spec=f"hardened:{out}", out_dir=out, summary=summary)
