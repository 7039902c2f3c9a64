"""Membership inference against a fine-tuned projection head: federated vs centralised.

The privacy pillar's probe, ``privacy/membership_inference``, asked of a
:class:`~vlmtrust.federated.fedtune.HeadTask` head. Candidates: **members** are the training
examples the clients fine-tuned on (every one sits in exactly one client's shard — the
centralised baseline trains on their union); **non-members** are the task's held-out split,
drawn from the same distribution and never trained on. Each candidate is an image with its
class caption ("a photo of a …", embedded as ``task.class_emb[y]``); the other classes'
prompts are the distractors. Per candidate the probe's own dual-encoder statistics
(:func:`vlmtrust.probes.privacy._scoring.dual_pair_stats`) are computed under the head — the
cosine of the pair (Ko et al.'s threshold attack, the headline) and ``φ`` against the
distractors (the loss attack) — and the probe's :meth:`aggregate` turns them into AUCs with
bootstrap 95% CIs and TPRs at low FPR with Clopper–Pearson intervals, exactly as in a run.

No reference models are trained here (no LiRA/RMIA): the threshold and loss attacks need
none. The model-free confound check does not apply (members and non-members come from one
split of one generator by a random draw).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import MetricResult, Record
from vlmtrust.federated.fedtune import FedResult, HeadTask

__all__ = ["HeadMembership", "MembershipComparison", "federated_membership", "head_membership"]


@dataclass(frozen=True)
class HeadMembership:
    """The probe's metrics for one head.

    Attributes:
        metrics: every metric ``privacy/membership_inference`` aggregates (AUC and TPR at each
            FPR, for the ``threshold`` attack — no condition — and ``loss``).
        n_members: member candidates (training examples).
        n_non_members: non-member candidates (held out).
    """

    metrics: list[MetricResult]
    n_members: int
    n_non_members: int

    def get(
        self, metric: str = "auc", attack: str = "threshold", step: str | None = None
    ) -> MetricResult:
        """One metric of one attack (``threshold`` is the probe's headline, ``loss`` φ)."""
        cond = None if attack == "threshold" else attack
        for m in self.metrics:
            if m.key.metric == metric and m.key.condition == cond and m.key.step == step:
                return m
        raise KeyError(f"no {metric} for attack {attack!r} (step {step!r})")

    @property
    def auc(self) -> MetricResult:
        """The threshold attack's AUC with its bootstrap CI (0.5: no leakage)."""
        return self.get("auc", "threshold")


@dataclass(frozen=True)
class MembershipComparison:
    """The same attack on the federated model and on the centralised baseline."""

    federated: HeadMembership
    centralised: HeadMembership


class _HeadEncoder:
    """A duck-typed dual encoder over a head task: images are example indices."""

    def __init__(self, x: NDArray[np.float32], head: NDArray[np.float32], task: HeadTask) -> None:
        self._x = x
        self._head = head
        self._emb = task.class_emb
        self.logit_scale = task.logit_scale

    def embed_images(self, idx: Sequence[int]) -> NDArray[np.float64]:
        z = self._x[np.asarray(idx, dtype=np.int64)].astype(np.float64) @ self._head.T
        out: NDArray[np.float64] = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)
        return out

    def embed_texts(self, captions: Sequence[str]) -> NDArray[np.float64]:
        return self._emb[[int(c) for c in captions]].astype(np.float64)


def head_membership(
    task: HeadTask,
    head: NDArray[np.float32],
    *,
    members: Sequence[int] | NDArray[np.int64] | None = None,
    fprs: Sequence[float] | None = None,
    seed: int = 0,
) -> HeadMembership:
    """The membership probe's threshold and loss attacks on ``head``.

    Args:
        task: the head task; non-members are its held-out split.
        head: ``(d, h)`` the trained projection head to attack.
        members: indices into ``task.train_x`` of the member candidates (default: all of them;
            they must have been trained on).
        fprs: rates of the TPR-at-FPR metrics (default 1% when there are at least 100
            non-members, and 10%).
        seed: bootstrap seed of the AUC intervals.
    """
    from vlmtrust.probes.privacy._scoring import dual_pair_stats
    from vlmtrust.probes.privacy.membership_inference import MembershipInferenceProbe

    if head.shape != task.head.shape:
        raise InputError(f"head has shape {head.shape}, the task's is {task.head.shape}")
    mem = np.arange(len(task.train_y)) if members is None else np.asarray(members, np.int64)
    n_non = len(task.test_y)
    if len(mem) < 2 or n_non < 2:
        raise InputError(
            f"membership needs at least 2 members and 2 non-members, got {len(mem)} and {n_non}"
        )
    if fprs is None:
        fprs = [0.01, 0.1] if n_non >= 100 else [0.1]
    x = np.concatenate([task.train_x[mem], task.test_x]).astype(np.float32)
    y = np.concatenate([task.train_y[mem], task.test_y])
    member = ["1"] * len(mem) + ["0"] * n_non
    enc = _HeadEncoder(x, head.astype(np.float32), task)
    classes = [str(c) for c in range(len(task.class_emb))]
    images: Any = list(range(len(y)))  # the encoder's "images" are row indices
    distractors: Any = (classes, enc.embed_texts(classes))
    cos, phi = dual_pair_stats(enc, images, [str(int(c)) for c in y], distractors)
    records = [
        Record(
            sample_id=f"{'member' if m == '1' else 'held-out'}-{i}",
            index=i,
            attributes={"member": m},
            scores={
                "score": float(cos[i]),
                "cosine": float(cos[i]),
                "phi": float(phi[i]),
                "p": float(1 / (1 + np.exp(-phi[i]))),
            },
        )
        for i, m in enumerate(member)
    ]
    probe = MembershipInferenceProbe({"fprs": list(fprs)})
    metrics = probe.aggregate(records, ProbeContext(seed=seed))
    return HeadMembership(metrics, len(mem), n_non)


def federated_membership(
    task: HeadTask, result: FedResult, *, seed: int = 0
) -> MembershipComparison:
    """Membership AUC (with CIs) of ``result``'s federated head and of its centralised baseline.

    Members: every example in the clients' shards (the data both heads were fine-tuned on);
    non-members: ``task``'s held-out split. ``result`` must come from
    :func:`~vlmtrust.federated.fedtune.federated_finetune` on this ``task``.
    """
    if result.head is None or result.central_head is None:
        raise InputError("the FedResult carries no heads: run federated_finetune again")
    members: Any = np.concatenate([s for s in result.shards if len(s)]) if result.shards else None
    return MembershipComparison(
        federated=head_membership(task, result.head, members=members, seed=seed),
        centralised=head_membership(task, result.central_head, members=members, seed=seed),
    )
