"""``fairness/dear`` — an additive residual learner that removes the attribute from images.

After Seth et al. 2023 ("DeAR: Debiasing Vision-Language Models with Additive Residuals").
Each image embedding ``φ(x)`` becomes ``φ'(x) = norm(φ(x) − r(φ(x)))`` with ``r`` a small
MLP (its last layer starts at zero, so training starts from the base model). Texts are
unchanged. On the train part of the labelled fitting gallery (:func:`_trained.split_fit`):

* a protected-attribute classifier (PAC, a small MLP) learns to predict the attribute from
  ``φ'`` (``pac_steps`` updates per update of ``r``);
* ``r`` is updated to minimise ``adv_weight · CE(PAC(φ'), uniform) + rec_weight ·
  ‖φ' − φ‖²``: the PAC's output driven to uniform (no attribute left), the reconstruction
  term keeping ``φ'`` close to ``φ`` (and with it the zero-shot accuracy).

After each epoch ``r`` is a checkpoint; the one kept is chosen on the validation part only
(:func:`_trained.select_checkpoint`): the lowest linear leakage of the attribute from ``φ'``
among checkpoints within ``max_drop`` of the base zero-shot accuracy of the ``concept``. The
weights of ``r`` are stored in ``wrapper.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.mitigations import _train
from vlmtrust.mitigations.fairness import _dual, _trained

__all__ = ["DeAR", "DeARParams", "ResidualModel"]


class DeARParams(Params):
    """Parameters of ``fairness/dear``."""

    attribute: str = Field("group", description="protected attribute the PAC predicts")
    concept: str = Field("occupation", description="attribute whose zero-shot accuracy is kept")
    template: str = Field("a photo of a {}", description="concept prompt; {} is the name")
    hidden: int = Field(64, ge=1, le=8192, description="hidden width of the residual MLP")
    pac_hidden: int = Field(0, ge=0, le=8192, description="PAC hidden width (0: linear)")
    epochs: int = Field(10, ge=1, le=1000, description="epochs (one checkpoint each)")
    steps_per_epoch: int = Field(10, ge=1, le=10_000, description="optimiser steps per epoch")
    batch_size: int = Field(64, ge=2, le=4096, description="images per step")
    lr: float = Field(0.001, gt=0.0, lt=1.0, description="Adam learning rate of r")
    pac_steps: int = Field(3, ge=1, le=100, description="PAC updates per update of r")
    pac_lr: float = Field(0.01, gt=0.0, lt=1.0, description="Adam learning rate of the PAC")
    adv_weight: float = Field(1.0, ge=0.0, le=1e4, description="weight of the PAC term")
    rec_weight: float = Field(5.0, ge=0.0, le=1e4, description="weight of the reconstruction")
    val_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="share held out for selection")
    max_drop: float = Field(
        0.02, ge=0.0, le=1.0, description="validation accuracy a checkpoint may lose"
    )
    n_fit: int = Field(600, ge=8, le=1_000_000, description="fitting images")
    residual: dict[str, Any] | None = Field(None, description="weights of r (fitted)")
    selected_epoch: int | None = Field(None, description="the checkpoint kept (fitted)")
    validation: list[list[float]] | None = Field(
        None, description="validation (leakage, accuracy) per epoch (fitted)"
    )
    validation_base: list[float] | None = Field(
        None, description="validation (leakage, accuracy) of the base model (fitted)"
    )


def residual_net(dim: int, hidden: int) -> Any:
    """The residual MLP ``r``: ``d → hidden → d``, its last layer zero (``r ≡ 0`` at start)."""
    import torch

    net = _trained.mlp(dim, hidden, dim)
    torch.nn.init.zeros_(net[-1].weight)
    torch.nn.init.zeros_(net[-1].bias)
    return net


def apply_residual(net: Any, x: Any) -> Any:
    """``norm(x − r(x))`` for a float32 tensor ``x`` of unit rows."""
    import torch

    return torch.nn.functional.normalize(x - net(x), dim=-1)


class ResidualModel(_dual.DebiasedDualModel):
    """A dual encoder whose image embeddings are ``norm(φ − r(φ))``."""

    def __init__(self, base: Any, net: Any, tag: str) -> None:
        super().__init__(base, name="dear", tag=tag)
        self.net = net

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """Image embeddings with the residual subtracted, renormalised."""
        import torch

        x = np.asarray(self.base.embed_images(images), dtype=np.float32)
        if not len(x):
            return x
        with torch.no_grad():
            out = apply_residual(self.net, torch.from_numpy(x))
        return np.asarray(out.numpy(), dtype=np.float32)


@mitigation("fairness/dear")
class DeAR(_dual.FittedWrapper):
    """Additive residual learner against a protected-attribute classifier (Seth et al. 2023)."""

    Params = DeARParams
    description = (
        "DeAR (Seth et al. 2023): a residual r learned on image embeddings, phi' = phi - r(phi), "
        "so that an adversarial attribute classifier fails while phi' stays close to phi; "
        "checkpoint chosen on a validation split."
    )
    LARGE = ("residual", "validation")

    params: DeARParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Train ``r`` against the PAC; keep the checkpoint chosen on the validation split."""
        import copy

        import torch

        p = self.params
        train, val, names, texts = _trained.concept_splits(model, ctx, p, name=self.name)
        groups = sorted(set(train.groups))
        torch.manual_seed(ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        x = torch.tensor(train.x, dtype=torch.float32)
        g = torch.tensor([groups.index(v) for v in train.groups])
        net = residual_net(x.shape[1], p.hidden)
        pac = _trained.mlp(x.shape[1], p.pac_hidden, len(groups))
        opt_r = torch.optim.Adam(net.parameters(), lr=p.lr)
        opt_a = torch.optim.Adam(pac.parameters(), lr=p.pac_lr)
        ce = torch.nn.functional.cross_entropy
        losses: list[float] = []
        pac_losses: list[float] = []

        def step(k: int) -> None:
            idx = torch.as_tensor(rng.choice(len(x), size=min(p.batch_size, len(x)), replace=False))
            xb = x[idx]
            out = apply_residual(net, xb)
            for _ in range(p.pac_steps):
                pac_loss = ce(pac(out.detach()), g[idx])
                _train.optimizer_step(opt_a, pac_loss, pac_losses, k, None)
            confusion = -torch.log_softmax(pac(out), dim=1).mean(dim=1).mean()
            rec = ((out - xb) ** 2).sum(-1).mean()
            loss = p.adv_weight * confusion + p.rec_weight * rec
            _train.optimizer_step(opt_r, loss, losses, k, None)

        checkpoints = _trained.epoch_checkpoints(
            p.epochs, p.steps_per_epoch, step, lambda: copy.deepcopy(net).eval()
        )

        def mapped(n: Any, v: NDArray[np.float64]) -> NDArray[np.float64]:
            with torch.no_grad():
                out = apply_residual(n, torch.tensor(v, dtype=torch.float32))
            return np.asarray(out.double().numpy())

        def score(n: Any, v: _trained.ValidationSplit) -> tuple[float, float]:
            phi = mapped(n, v.x)
            leak = _trained.linear_leakage(phi, v.groups, seed=ctx.seed)
            return leak, _trained.zero_shot_accuracy(phi, texts, v.concepts, names)

        base_acc = _trained.zero_shot_accuracy(val.x, texts, val.concepts, names)
        base_leak = _trained.linear_leakage(val.x, val.groups, seed=ctx.seed)
        sel = _trained.select_checkpoint(
            checkpoints, val, score, base_accuracy=base_acc, max_drop=p.max_drop
        )
        return {
            "residual": _trained.to_lists(sel.chosen),
            **_trained.selection_record(sel, (base_leak, base_acc)),
        }

    def wrap(self, model: Any) -> ResidualModel:
        """Subtract the learned residual from ``model``'s image embeddings."""
        p = self.params
        residual = self.need_fit(p.residual, "residual")
        _dual.require_dual(model, self.name)
        first = residual.get("0.weight")
        if not isinstance(first, list) or not first or not isinstance(first[0], list):
            raise InputError(
                f"{self.name}: the stored residual has no 0.weight matrix; re-run `vlmtrust harden`"
            )
        net = residual_net(len(first[0]), len(first))
        _trained.from_lists(net, residual, self.name)
        return ResidualModel(model, net, tag=json.dumps(residual, sort_keys=True))
