"""Federated head fine-tuning with Flower's FedAvg / FedProx: split, budget, crashes."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("flwr", reason="needs the federated extra: pip install 'vlmtrust[federated]'")
pytest.importorskip("torch", reason="the head trains with torch (the hf extra)")

from vlmtrust.core.errors import InputError  # noqa: E402
from vlmtrust.federated.fedtune import (  # noqa: E402
    HeadTask,
    dirichlet_split,
    federated_finetune,
)


def _task(seed: int = 0) -> HeadTask:
    """4 classes of Gaussian clusters in 12-d features; a random 6-d head to start from."""
    rng = np.random.default_rng(seed)
    n_cls, h, d = 4, 12, 6
    centres = rng.standard_normal((n_cls, h)) * 2
    y = rng.integers(0, n_cls, 240)
    x = (centres[y] + rng.standard_normal((240, h))).astype(np.float32)
    emb = rng.standard_normal((n_cls, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return HeadTask(
        train_x=x[:160],
        train_y=y[:160],
        test_x=x[160:],
        test_y=y[160:],
        class_emb=emb.astype(np.float32),
        head=(rng.standard_normal((d, h)) * 0.1).astype(np.float32),
        logit_scale=10.0,
    )


def test_dirichlet_split_skews_with_small_alpha() -> None:
    y = np.repeat(np.arange(5), 40)
    even = dirichlet_split(y, 4, math.inf)
    skew = dirichlet_split(y, 4, 0.1, seed=1)
    assert sorted(np.concatenate(skew).tolist()) == list(range(200))  # a partition
    assert {len(p) for p in even} == {50}

    def classes_per_client(parts: list[np.ndarray]) -> float:
        return float(np.mean([len(np.unique(y[p])) for p in parts if len(p)]))

    assert classes_per_client(skew) < classes_per_client(even) == 5
    with pytest.raises(InputError, match="alpha 0 must be > 0"):
        dirichlet_split(y, 4, 0)


def test_fedavg_iid_reaches_the_centralised_accuracy_and_counts_bytes() -> None:
    task = _task()
    r = federated_finetune(task, n_clients=4, alpha=math.inf, rounds=6, lr=0.5)
    assert r.final > r.initial + 0.2
    assert r.rounds_to(0.95) is not None
    assert r.centralised > r.initial + 0.2
    # weights down to 4 clients and back from 4: 8 head copies per round
    assert r.bytes_per_round == 8 * task.head.nbytes


def test_a_client_that_crashes_mid_round_leaves_the_round_to_the_others() -> None:
    task = _task(1)
    r = federated_finetune(
        task, n_clients=4, alpha=0.5, strategy="fedprox", rounds=3, lr=0.5, crash={2: [1, 3]}
    )
    second = r.rounds[1]
    assert sorted(second.failed) == [1, 3] and "crashed after" in second.failed[1]
    assert sorted(second.completed) == [0, 2]
    assert r.crashes == [(2, 1), (2, 3)]
    assert second.bytes == 4 * task.head.nbytes + 2 * task.head.nbytes
    assert len(r.rounds) == 3 and r.rounds[2].failed == {}


def test_bad_arguments_are_one_line_each() -> None:
    task = _task()
    with pytest.raises(InputError, match="strategy 'fedsgd' is unknown"):
        federated_finetune(task, strategy="fedsgd")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"crash names clients \[7\]"):
        federated_finetune(task, n_clients=3, crash={1: [7]})
