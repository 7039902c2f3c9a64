"""``robustness/ogen`` — OOD feature synthesis regularising a fine-tuned image adapter.

OGEN (Wang et al. 2023, "Overcoming the Pitfalls of Vision-Language Model Finetuning for OOD
Generalization") observes that fine-tuning a dual encoder on known classes makes it
over-confident on unknown ones, and regularises the fine-tuning with *synthesised* image
features of unknown classes, produced from those classes' names alone.

Here the fine-tuned part is a residual adapter on the image embeddings of a frozen dual
encoder, ``f(x) = norm(x + W x)`` (``W`` a ``d × d`` matrix, zero at the start), trained with
cross-entropy over the class prompts' text embeddings (frozen) at the model's logit scale.

* ``synthesis=false``: plain fine-tuning — real images of the known classes, classified among
  the known class prompts.
* ``synthesis=true`` (OGEN): the classifier covers the known *and* the unknown class prompts,
  and every batch adds synthesised features of the unknown classes labelled as those classes,
  so the adapter learns to keep unknown-looking features away from the known prompts.

The feature synthesiser is fitted on the known classes only (the image features of their
training images and their prompt embeddings): a class's synthesised feature mean is its prompt
embedding plus the image-minus-text offset of the known classes, each known class weighted by
the softmax similarity of its prompt to the unknown prompt (``softmax(t_u · t_c / synth_tau)``;
the paper's kNN-attention generator in closed form); samples add a residual (image feature
minus its class mean) of a random known training image, times ``noise``, and are normalised.

Unknown classes are names from the model's text vocabulary that are neither known classes nor
SynthWorld's held-out shapes (those are the OOD test set of ``robustness/ood_detection``; they
must stay unseen). Training images: SynthWorld ID shapes from a stream disjoint from the
probes' (``seed + 5,000,011``) or the user's labelled dataset (``ctx.data``). The trained
adapter is stored in ``wrapper.json`` (``weights``, row-major, rounded to 6 decimals); the
wrapped model keeps the dual-encoder surface (``embed_images``, ``embed_texts``,
``logit_scale``, differentiable ``image_features``) and delegates the rest to the base model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import (
    HardenedArtifact,
    MitigationContext,
    WrapperMitigation,
    mitigation,
)
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import optimizer_step, train_started
from vlmtrust.mitigations.fairness._dual import DebiasedDualModel
from vlmtrust.mitigations.fairness._dual import normalise as _norm
from vlmtrust.mitigations.robustness._advtrain import training_images

F64 = NDArray[np.float64]

TRAIN_SEED_OFFSET = 5_000_011
"""Training images come from SynthWorld seeded ``seed + TRAIN_SEED_OFFSET``."""

UNKNOWN_CLASSES = ("cat", "dog", "apple", "house", "tree", "car", "door", "bread", "card", "sign")
"""Default unknown class names (in reference:clip's vocabulary; no SynthWorld shape)."""


class OGENParams(Params):
    """Parameters of ``robustness/ogen``."""

    synthesis: bool = Field(
        True,
        description="OGEN: regularise with synthesised unknown-class features (false: "
        "plain adapter fine-tuning on the known classes)",
    )
    steps: int = Field(150, ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int = Field(64, ge=2, le=4096, description="real images per step")
    lr: float = Field(5e-3, gt=0.0, le=10.0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    n_train: int = Field(500, ge=2, le=10_000_000, description="training images")
    known_classes: list[str] | None = Field(
        None, description="known (ID) class names (default: SynthWorld ID shapes / data labels)"
    )
    unknown_classes: list[str] = Field(
        default_factory=lambda: list(UNKNOWN_CLASSES),
        description="unknown class names whose features are synthesised",
    )
    synth_per_step: int = Field(64, ge=1, le=4096, description="synthesised features per step")
    synth_weight: float = Field(1.0, ge=0.0, description="weight of the synthesised-feature loss")
    synth_tau: float = Field(0.05, gt=0.0, description="temperature of the synthesiser's attention")
    shift: float = Field(
        0.25,
        ge=0.0,
        le=4.0,
        description="how far synthesised means move along the unknown "
        "prompt's text direction away from the attended known image means",
    )
    noise: float = Field(1.0, ge=0.0, le=10.0, description="scale of the sampled residuals")
    template: str = Field("a photo of a {}", description="class prompt")
    seed: int | None = Field(None, description="training seed (default: the run seed)")
    weights: list[float] | None = Field(
        None, description="adapter matrix W, row-major d*d (set by training)"
    )


# --------------------------------------------------------------------------- the wrapped model


class AdaptedModel(DebiasedDualModel):
    """A dual encoder whose image embeddings pass through ``norm(x + W x)``.

    ``x`` is the base model's L2-normalised image embedding; text embeddings are unchanged.
    Everything not defined here is delegated to the base model; ``TRAIN`` is dropped (train
    the base model, not the wrapper).
    """

    def __init__(self, base: Any, weights: Sequence[float], name: str) -> None:
        w = np.asarray(weights, dtype=np.float64)
        d = int(round(np.sqrt(w.size)))
        if d * d != w.size or d == 0:
            raise InputError(f"{name}: adapter weights have {w.size} values, not d*d")
        super().__init__(base, name=name, image_matrix=np.eye(d) + w.reshape(d, d))
        self.capabilities = base.capabilities & ~Capability.TRAIN

    def image_features(self, pixels: Any) -> Any:
        """Differentiable adapted image features (for white-box attacks)."""
        import torch

        x = torch.nn.functional.normalize(self.base.image_features(pixels), dim=-1)
        m = torch.as_tensor(self.image_matrix, dtype=x.dtype, device=x.device)
        return torch.nn.functional.normalize(x @ m.T, dim=-1)


# --------------------------------------------------------------------------- synthesiser


def synthesiser_means(known_img: F64, known_labels: NDArray[np.int64], known_txt: F64,
                      unknown_txt: F64, *, tau: float, shift: float = 1.0) -> F64:  # fmt: skip
    """Synthesised image-feature means of the unknown classes (rows of ``unknown_txt``).

    ``mean_u = Σ_c a_uc μ_c + shift · (t_u − Σ_c a_uc t_c)``, ``a_uc = softmax(t_u · t_c / tau)``,
    with ``μ_c`` the normalised mean image feature of known class ``c`` (fitted on known classes
    only), normalised. ``shift = 1`` is ``t_u`` plus the attended image-minus-text offset.
    """
    k = known_txt.shape[0]
    mu = np.stack([known_img[known_labels == c].mean(0) for c in range(k)])
    mu = _norm(mu)
    logits = unknown_txt @ known_txt.T / tau
    att = np.exp(logits - logits.max(1, keepdims=True))
    att /= att.sum(1, keepdims=True)
    return _norm(att @ mu + shift * (unknown_txt - att @ known_txt))


def _residuals(img: F64, labels: NDArray[np.int64], k: int) -> F64:
    """Each image feature minus its class mean."""
    mu = np.stack([img[labels == c].mean(0) for c in range(k)])
    return np.asarray(img - mu[labels])


# --------------------------------------------------------------------------- training


def _training_set(ctx: MitigationContext, n: int, seed: int, known: list[str] | None, name: str
                  ) -> tuple[list[Image.Image], list[str], list[str]]:  # fmt: skip
    """Training images, their labels and the known class list."""
    if ctx.data is None:
        from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld

        classes = list(known or ID_SHAPES)
        bad = [c for c in classes if c not in ID_SHAPES]
        if bad:
            raise InputError(
                f"{name}: known_classes {bad} are not SynthWorld ID shapes; use names from "
                f"{', '.join(ID_SHAPES)} (or train on --data)"
            )
        shapes = SynthWorld(seed=seed + TRAIN_SEED_OFFSET).shapes(n, classes=tuple(classes))
        return [s.image for s in shapes], [str(s.attributes["shape"]) for s in shapes], classes
    images, labels = training_images(ctx, n, purpose="ogen")
    classes = list(known or sorted(set(labels)))
    kept = [(im, lab) for im, lab in zip(images, labels, strict=True) if lab and lab in classes]
    if len(kept) < 2:
        raise InputError(f"dataset {ctx.data}: {name} needs at least 2 labelled images")
    return [im for im, _ in kept], [lab for _, lab in kept], classes


def train_adapter(
    img: F64,
    labels: NDArray[np.int64],
    class_txt: F64,
    *,
    name: str,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    scale: float,
    seed: int,
    synth: tuple[F64, F64, float] | None = None,
    synth_per_step: int = 64,
) -> tuple[F64, list[float]]:
    """Train ``W`` of ``norm(x + W x)`` by cross-entropy over ``class_txt`` at ``scale``.

    Args:
        img: normalised image features of the real training images ``(n, d)``.
        labels: their class index into ``class_txt``.
        class_txt: prompt embeddings of every class the classifier covers ``(C, d)``.
        name: the mitigation (progress description).
        steps: optimizer steps.
        batch_size: real images per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        scale: logit scale of the cross-entropy.
        seed: seed of the batch sampling (and torch).
        synth_per_step: synthesised features per step.
        synth: ``(means, residuals, weight)``: synthesised class ``j`` (``means[j]``) is class
            ``C - len(means) + j``; each step samples ``synth_per_step`` features
            ``norm(means[j] + residual)`` and adds ``weight`` × their cross-entropy.

    Returns:
        ``W`` ``(d, d)`` and the loss of every step.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d = img.shape[1]
    x_all = torch.as_tensor(img, dtype=torch.float32)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    txt = torch.as_tensor(class_txt, dtype=torch.float32)
    w = torch.zeros(d, d, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=lr, weight_decay=weight_decay)
    ce = torch.nn.functional.cross_entropy
    norm = torch.nn.functional.normalize
    losses: list[float] = []
    bs = min(batch_size, len(img))
    train_started(f"{name} adapter", steps)
    for step in range(steps):
        idx = torch.as_tensor(rng.choice(len(img), size=bs, replace=False))
        x = x_all[idx]
        loss = ce(scale * norm(x + x @ w.T, dim=-1) @ txt.T, y_all[idx])
        if synth is not None:
            means, res, weight = synth
            j = rng.integers(0, len(means), size=synth_per_step)
            r = res[rng.integers(0, len(res), size=synth_per_step)]
            s = torch.as_tensor(_norm(means[j] + r), dtype=torch.float32)
            target = torch.as_tensor(len(class_txt) - len(means) + j, dtype=torch.long)
            loss = loss + weight * ce(scale * norm(s + s @ w.T, dim=-1) @ txt.T, target)
        optimizer_step(opt, loss, losses, step, None)
    return w.detach().double().numpy(), losses


@mitigation("robustness/ogen")
class OGEN(WrapperMitigation):
    """Image adapter fine-tuned on known classes, regularised by synthesised unknown features."""

    Params = OGENParams
    params: OGENParams
    pillar, requires = Pillar.ROBUSTNESS, Capability.EMBED
    description = (
        "OGEN (Wang et al. 2023): an image adapter fine-tuned with features synthesised from "
        "unknown class names, so unknown classes do not look known (synthesis=false: plain)."
    )

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Fit the synthesiser on the known classes and train the adapter; returns ``weights``."""
        from vlmtrust.data.synthworld import OOD_SHAPES

        kind = getattr(model, "kind", "unknown")
        if kind != "dual":
            raise InputError(f"{self.name} adapts dual encoders; model {model.spec} is {kind}")
        p = self.params
        seed = ctx.seed if p.seed is None else p.seed
        images, names, known = _training_set(
            ctx, min(p.n_train, 200) if ctx.quick else p.n_train, seed, p.known_classes, self.name
        )
        unknown = list(dict.fromkeys(p.unknown_classes))
        clash = sorted(set(unknown) & set(known))
        if clash:
            raise InputError(
                f"{self.name}: unknown_classes {clash} are also known classes; give names "
                "outside the known classes"
            )
        held = sorted(set(unknown) & set(OOD_SHAPES)) if ctx.data is None else []
        if held:
            raise InputError(
                f"{self.name}: unknown_classes {held} are SynthWorld's held-out OOD shapes "
                "(the OOD test set); pick other names"
            )
        if p.synthesis and not unknown:
            raise InputError(f"{self.name}: synthesis=true needs unknown_classes (or false)")
        t0 = time.perf_counter()
        img = _norm(np.asarray(model.embed_images(images), dtype=np.float64))
        index = {c: i for i, c in enumerate(known)}
        labels = np.array([index[n] for n in names], dtype=np.int64)
        missing = [c for c in known if not (labels == index[c]).any()]
        if missing:
            raise InputError(
                f"{self.name}: no training images of {missing}; give more with -p n_train=N"
            )
        kt = _norm(np.asarray(model.embed_texts([p.template.format(c) for c in known]), float))
        synth = None
        txt = kt
        if p.synthesis:
            ut = _norm(
                np.asarray(model.embed_texts([p.template.format(c) for c in unknown]), float)
            )
            means = synthesiser_means(img, labels, kt, ut, tau=p.synth_tau, shift=p.shift)
            synth = (means, p.noise * _residuals(img, labels, len(known)), p.synth_weight)
            txt = np.concatenate([kt, ut])
        from vlmtrust.attacks.zeroshot import logit_scale

        w, losses = train_adapter(
            img,
            labels,
            txt,
            name=self.name,
            steps=max(1, p.steps // 5) if ctx.quick else p.steps,
            batch_size=p.batch_size,
            lr=p.lr,
            weight_decay=p.weight_decay,
            scale=logit_scale(model),
            seed=seed,
            synth=synth,
            synth_per_step=p.synth_per_step,
        )
        self.report = {
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        return {"weights": np.round(w.ravel(), 6).tolist(), "known_classes": known}

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Train, write ``wrapper.json``; the summary adds the first/last loss and seconds."""
        art = super().apply(model, ctx)
        art.summary.update(getattr(self, "report", {}))
        return art

    def wrap(self, model: Any) -> AdaptedModel:
        """Wrap ``model``; needs trained (or given) adapter weights."""
        if self.params.weights is None:
            raise InputError(
                f"{self.name} has no adapter weights: train them with `vlmtrust harden "
                f"--mitigation {self.name}`"
            )
        return AdaptedModel(model, self.params.weights, self.name)
