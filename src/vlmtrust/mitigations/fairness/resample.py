"""``fairness/resample`` — find underperforming clusters, re-sample them, fine-tune an adapter.

The review's "re-sampling underperforming clusters": no protected attribute is needed for
training. On the train part of the labelled fitting gallery (:func:`_trained.split_fit`):

1. k-means (scikit-learn, ``clusters`` centres) on the image embeddings;
2. each cluster's zero-shot accuracy of the ``concept`` (occupation) under the base model;
   cluster ``k`` gets the weight ``1 + strength · (1 − acc_k)`` (underperforming clusters
   weigh most), normalised to mean 1 over the images;
3. a linear adapter ``A`` on the image embeddings (``φ' = norm(A φ)``, ``A`` starting at the
   identity) is fine-tuned on the concept's zero-shot cross-entropy with those weights —
   ``mode="sample"`` draws each batch with probability proportional to the weight,
   ``mode="weight"`` draws uniformly and weights the loss — plus ``reg_weight · ‖A − I‖²``.

After each epoch ``A`` is a checkpoint; the one kept is chosen on the validation part only
(:func:`_trained.select_checkpoint`): the smallest gap between the best and the worst cluster's
validation accuracy (validation images assigned to the train clusters) among checkpoints
within ``max_drop`` of the base accuracy. ``A`` is stored in ``wrapper.json``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.mitigations import _train
from vlmtrust.mitigations.fairness import _dual, _trained

__all__ = ["Resample", "ResampleParams", "cluster_weights"]


class ResampleParams(Params):
    """Parameters of ``fairness/resample``."""

    attribute: str = Field("group", description="attribute the split is stratified by")
    concept: str = Field("occupation", description="attribute classified zero-shot")
    template: str = Field("a photo of a {}", description="concept prompt; {} is the name")
    clusters: int = Field(6, ge=2, le=1000, description="k-means clusters")
    strength: float = Field(4.0, ge=0.0, le=1e3, description="up-weighting of errors")
    mode: Literal["sample", "weight"] = Field("sample", description="re-sample or weight")
    epochs: int = Field(10, ge=1, le=1000, description="epochs (one checkpoint each)")
    steps_per_epoch: int = Field(10, ge=1, le=10_000, description="optimiser steps per epoch")
    batch_size: int = Field(64, ge=2, le=4096, description="images per step")
    lr: float = Field(0.002, gt=0.0, lt=1.0, description="Adam learning rate of A")
    reg_weight: float = Field(1.0, ge=0.0, le=1e4, description="weight of ‖A − I‖²")
    val_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="share held out for selection")
    max_drop: float = Field(
        0.02, ge=0.0, le=1.0, description="validation accuracy a checkpoint may lose"
    )
    n_fit: int = Field(600, ge=8, le=1_000_000, description="fitting images")
    matrix: list[list[float]] | None = Field(None, description="the adapter A (fitted)")
    cluster_accuracy: list[float] | None = Field(
        None, description="base zero-shot accuracy per train cluster (fitted)"
    )
    selected_epoch: int | None = Field(None, description="the checkpoint kept (fitted)")
    validation: list[list[float]] | None = Field(
        None, description="validation (cluster gap, accuracy) per epoch (fitted)"
    )
    validation_base: list[float] | None = Field(
        None, description="validation (cluster gap, accuracy) of the base model (fitted)"
    )


def cluster_weights(
    assign: NDArray[np.intp], correct: NDArray[np.bool_], k: int, strength: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-image weights ``1 + strength · (1 − acc_cluster)`` (mean 1) and each cluster's accuracy.

    An empty cluster has accuracy NaN and no images to weigh.
    """
    acc = np.full(k, np.nan)
    for j in range(k):
        m = assign == j
        if m.any():
            acc[j] = float(np.mean(correct[m]))
    w = 1.0 + strength * (1.0 - acc[assign])
    return w / w.mean(), acc


def _cluster_gap(
    assign: NDArray[np.intp], correct: NDArray[np.bool_], k: int, min_size: int = 3
) -> float:
    """Best minus worst cluster accuracy over clusters with at least ``min_size`` images."""
    accs = [
        float(np.mean(correct[assign == j])) for j in range(k) if (assign == j).sum() >= min_size
    ]
    return max(accs) - min(accs) if accs else 0.0


@mitigation("fairness/resample")
class Resample(_dual.FittedWrapper):
    """Re-sample underperforming k-means clusters and fine-tune an image adapter."""

    Params = ResampleParams
    description = (
        "Re-sampling underperforming clusters: k-means on image embeddings, clusters with low "
        "zero-shot accuracy re-sampled (or up-weighted) while a linear image adapter is "
        "fine-tuned; checkpoint chosen on a validation split."
    )
    LARGE = ("matrix", "validation")

    params: ResampleParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Cluster, weigh, fine-tune; keep the checkpoint chosen on the validation split."""
        import warnings

        import torch
        from sklearn.cluster import KMeans

        p = self.params
        train, val, names, texts = _trained.concept_splits(model, ctx, p, name=self.name)
        if p.clusters > len(train.x):
            raise InputError(
                f"{self.name}: clusters={p.clusters} exceeds the {len(train.x)} training images; "
                "ask for fewer clusters or more n_fit"
            )
        km = KMeans(n_clusters=p.clusters, n_init=4, random_state=ctx.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assign = km.fit_predict(train.x)
        pred = np.asarray(names)[np.argmax(train.x @ texts.T, axis=1)]
        weights, acc = cluster_weights(assign, pred == train.concepts, p.clusters, p.strength)
        torch.manual_seed(ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        x = torch.tensor(train.x, dtype=torch.float32)
        c = torch.tensor([names.index(v) for v in train.concepts])
        t = torch.tensor(texts, dtype=torch.float32)
        w = torch.tensor(weights, dtype=torch.float32)
        d = x.shape[1]
        a = torch.nn.Parameter(torch.eye(d))
        opt = torch.optim.Adam([a], lr=p.lr)
        scale = float(model.logit_scale)
        prob = weights / weights.sum()
        losses: list[float] = []

        def step(k: int) -> None:
            size = min(p.batch_size, len(x))
            if p.mode == "sample":
                idx = torch.as_tensor(rng.choice(len(x), size=size, p=prob))
                wb = torch.ones(size)
            else:
                idx = torch.as_tensor(rng.choice(len(x), size=size, replace=False))
                wb = w[idx]
            phi = torch.nn.functional.normalize(x[idx] @ a.T, dim=-1)
            ce = torch.nn.functional.cross_entropy(scale * phi @ t.T, c[idx], reduction="none")
            loss = (wb * ce).sum() / wb.sum() + p.reg_weight * ((a - torch.eye(d)) ** 2).sum()
            _train.optimizer_step(opt, loss, losses, k, None)

        def snapshot() -> NDArray[np.float64]:
            return np.asarray(a.detach().double().numpy().copy())

        checkpoints = _trained.epoch_checkpoints(p.epochs, p.steps_per_epoch, step, snapshot)

        val_assign = km.predict(val.x)

        def score(m: NDArray[np.float64], v: _trained.ValidationSplit) -> tuple[float, float]:
            phi = _dual.normalise(v.x @ m.T)
            correct = np.asarray(names)[np.argmax(phi @ texts.T, axis=1)] == v.concepts
            return _cluster_gap(val_assign, correct, p.clusters), float(np.mean(correct))

        base = score(np.eye(d), val)
        sel = _trained.select_checkpoint(
            checkpoints, val, score, base_accuracy=base[1], max_drop=p.max_drop
        )
        return {
            "matrix": _dual.store_matrix(sel.chosen),
            "cluster_accuracy": [round(float(v), 6) for v in acc],
            **_trained.selection_record(sel, base),
        }

    def wrap(self, model: Any) -> _dual.DebiasedDualModel:
        """Map ``model``'s image embeddings by the fine-tuned adapter."""
        return self.matrix_model(model, "image", "adapter")
