"""Membership inference of federated vs centralised heads, and DP-FedAvg (Opacus) ε and MIA."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("flwr", reason="needs the federated extra: pip install 'vlmtrust[federated]'")
pytest.importorskip("torch", reason="the head trains with torch (the hf extra)")

from vlmtrust.core.errors import InputError  # noqa: E402
from vlmtrust.federated.fedtune import FedResult, HeadTask, federated_finetune  # noqa: E402
from vlmtrust.federated.membership import (  # noqa: E402
    MembershipComparison,
    federated_membership,
    head_membership,
)

ROUNDS = 6


def _overfit_task() -> HeadTask:
    """48 train / 48 held-out points of 4 weakly separated classes in 64-d: heads memorise."""
    rng = np.random.default_rng(1)
    n, n_cls, h, d = 48, 4, 64, 8
    centres = rng.standard_normal((n_cls, h)) * 0.4
    y = rng.integers(0, n_cls, 2 * n)
    x = (centres[y] + rng.standard_normal((2 * n, h))).astype(np.float32)
    emb = rng.standard_normal((n_cls, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return HeadTask(
        train_x=x[:n],
        train_y=y[:n],
        test_x=x[n:],
        test_y=y[n:],
        class_emb=emb.astype(np.float32),
        head=(rng.standard_normal((d, h)) * 0.1).astype(np.float32),
        logit_scale=10.0,
    )


@pytest.fixture(scope="module")
def task() -> HeadTask:
    return _overfit_task()


@pytest.fixture(scope="module")
def plain(task: HeadTask) -> tuple[FedResult, MembershipComparison]:
    r = federated_finetune(task, n_clients=3, alpha=math.inf, rounds=ROUNDS, lr=1.0)
    return r, federated_membership(task, r)


def test_membership_auc_of_the_federated_and_centralised_heads_with_cis(
    task: HeadTask, plain: tuple[FedResult, MembershipComparison]
) -> None:
    r, m = plain
    for side in (m.federated, m.centralised):
        assert side.n_members == 48 and side.n_non_members == 48
        for attack in ("threshold", "loss"):
            a = side.get("auc", attack)
            assert a.ci_low is not None and a.ci_high is not None
            assert a.ci_low <= a.value <= a.ci_high  # type: ignore[operator]
            assert a.n == 96
        assert side.get("tpr_at_fpr", step="fpr=10%").value is not None
    # the trained heads memorise: their training examples sit closer to their captions
    assert m.federated.auc.value is not None and m.federated.auc.value > 0.55
    assert m.centralised.auc.value is not None and m.centralised.auc.value > 0.55
    # the initial head was trained on nothing: members and non-members look alike
    untouched = head_membership(task, task.head)
    assert untouched.auc.ci_low is not None and untouched.auc.ci_high is not None
    assert untouched.auc.ci_low < 0.5 < untouched.auc.ci_high
    assert r.head is not None and r.central_head is not None


def test_dp_fedavg_reports_a_finite_epsilon_per_client_and_round_and_no_more_leakage(
    task: HeadTask, plain: tuple[FedResult, MembershipComparison]
) -> None:
    pytest.importorskip("opacus", reason="DP-FedAvg needs the privacy-train extra (opacus)")
    dp = federated_finetune(
        task, n_clients=3, alpha=math.inf, rounds=ROUNDS, lr=1.0, dp_epsilon=1.0, dp_delta=1e-3
    )
    assert dp.dp is not None and dp.dp.delta == 1e-3 and dp.dp.target_epsilon == 1.0
    assert sorted(dp.dp.noise_multipliers) == [0, 1, 2]
    assert all(s > 0.5 for s in dp.dp.noise_multipliers.values())
    per_round = [[r.epsilon[k] for r in dp.rounds] for k in range(3)]
    for eps in per_round:
        assert all(math.isfinite(e) and e > 0 for e in eps)
        assert eps == sorted(eps)  # ε only accumulates
        assert eps[-1] <= 1.0 + 1e-6  # the accountant keeps the target
        assert eps[-1] > 0.8  # … and the calibration spends most of it
    assert dp.epsilon == {k: per_round[k][-1] for k in range(3)}
    assert plain[0].dp is None and plain[0].epsilon == {}
    assert dp.head is not None
    leak = head_membership(task, dp.head).auc
    base = plain[1].federated.auc
    assert leak.value is not None and base.ci_high is not None
    assert leak.value <= base.ci_high  # noise does not raise the AUC beyond the CI


def test_dp_parameters_out_of_range_are_one_line_each(task: HeadTask) -> None:
    pytest.importorskip("opacus", reason="DP-FedAvg needs the privacy-train extra (opacus)")
    bad = [
        ({"dp_epsilon": 0.0}, r"dp_epsilon 0.0 must be > 0"),
        ({"dp_epsilon": -math.inf}, r"dp_epsilon -inf must be > 0"),
        ({"dp_epsilon": 1.0, "dp_delta": 0.5}, r"dp_delta 0.5 must be in \(0, 1/n\)"),
        ({"dp_epsilon": 1.0, "dp_clip": 0.0}, r"dp_clip 0.0 must be a finite norm > 0"),
        ({"dp_epsilon": 1e-9}, r"dp_epsilon 1e-09 at dp_delta 1e-05 cannot be reached"),
    ]
    for kw, msg in bad:
        with pytest.raises(InputError, match=msg) as e:
            federated_finetune(task, n_clients=2, rounds=1, **kw)  # type: ignore[arg-type]
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=r"head has shape \(2, 2\)"):
        head_membership(task, np.zeros((2, 2), np.float32))
