"""LiRA and RMIA on synthetic score distributions whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from vlmtrust.core.metrics import auc
from vlmtrust.probes.privacy._attacks import (
    fit_rmia_a,
    lira_offline,
    lira_online,
    logit,
    phi_from_nll,
    rmia,
)


def world(
    n: int, r: int, *, gap: float, spread: float, sd: float = 1.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Candidates with their own difficulty ``mu``; training on one lifts its φ by ``gap``.

    Half the candidates are members of the target. Each of ``r`` references trains on a
    random half of the candidates (every candidate IN for exactly ``r / 2`` of them).
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, spread, n)
    member = np.arange(n) < n // 2
    inside = np.zeros((n, r), dtype=bool)
    for i in range(n):
        inside[i, rng.permutation(r)[: r // 2]] = True
    ref = mu[:, None] + gap * inside + rng.normal(0.0, sd, (n, r))
    target = mu + gap * member + rng.normal(0.0, sd, n)
    return {"mu": mu, "y": member.astype(float), "inside": inside, "ref": ref, "target": target}


def test_lira_online_reaches_the_likelihood_ratio_optimum() -> None:
    # Per-candidate shift `gap` with noise sd 1: the optimal test on one draw has
    # AUC = Phi(gap / sqrt(2)); a global threshold is blinded by the difficulty spread.
    w = world(4000, 64, gap=1.0, spread=3.0)
    online = lira_online(w["target"], w["ref"], w["inside"], fixed_variance=False)
    optimum = float(norm.cdf(1.0 / np.sqrt(2)))
    assert auc(w["y"], online) == pytest.approx(optimum, abs=0.02)
    assert auc(w["y"], w["target"]) < 0.62  # the uncalibrated threshold attack


def test_lira_offline_calibrates_difficulty_with_out_models_only() -> None:
    w = world(4000, 64, gap=1.0, spread=3.0)
    offline = lira_offline(w["target"], w["ref"], w["inside"])
    # (phi - mu_out) / sd_out ~ N(gap, 1) for members and N(0, 1) for non-members.
    assert auc(w["y"], offline) == pytest.approx(float(norm.cdf(1 / np.sqrt(2))), abs=0.02)


def test_lira_with_few_references_pools_the_variance() -> None:
    w = world(2000, 4, gap=2.0, spread=3.0, seed=1)
    online = lira_online(w["target"], w["ref"], w["inside"])  # 2 IN, 2 OUT: fixed variance
    assert np.isfinite(online).all()
    assert auc(w["y"], online) > 0.8


def test_lira_on_no_signal_is_chance() -> None:
    w = world(3000, 8, gap=0.0, spread=3.0, seed=2)
    for s in (
        lira_online(w["target"], w["ref"], w["inside"]),
        lira_offline(w["target"], w["ref"], w["inside"]),
    ):
        assert auc(w["y"], s) == pytest.approx(0.5, abs=0.03)


def test_lira_by_hand() -> None:
    ref = np.array([[1.0, 3.0, 0.0, 2.0]])
    inside = np.array([[True, True, False, False]])
    # IN: mean 2, sd sqrt(2); OUT: mean 1, sd sqrt(2); target 2.5.
    s = lira_online([2.5], ref, inside, fixed_variance=False)
    want = norm.logpdf(2.5, 2, np.sqrt(2)) - norm.logpdf(2.5, 1, np.sqrt(2))
    assert s[0] == pytest.approx(want)
    assert lira_offline([2.5], ref, inside, fixed_variance=False)[0] == pytest.approx(
        1.5 / np.sqrt(2)
    )
    # no IN reference: online is undefined, offline still works
    assert np.isnan(lira_online([2.5], ref, np.zeros_like(inside))[0])
    # one OUT reference per candidate: the spread over candidates is the variance
    z = lira_offline([1.0, 2.0], [[0.0], [2.0]])
    assert z.tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        lira_online([1.0], [[1.0, 2.0]], [[True]])


def test_rmia_matches_the_likelihood_ratio_test() -> None:
    # Probabilities p = sigmoid(phi) from the Gaussian world; population z = fresh
    # non-members. RMIA's pairwise ratio test ranks like the optimal per-candidate test.
    w = world(3000, 16, gap=1.5, spread=2.0, seed=3)
    z = world(1000, 16, gap=1.5, spread=2.0, seed=4)
    z_target = z["mu"] + np.random.default_rng(5).normal(0, 1, 1000)  # never trained on

    def sig(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))

    s = rmia(
        sig(w["target"]), sig(w["ref"]), w["inside"], sig(z_target), sig(z["ref"]), z["inside"]
    )
    assert s.min() >= 0 and s.max() <= 1
    online = lira_online(w["target"], w["ref"], w["inside"])
    assert auc(w["y"], s) == pytest.approx(auc(w["y"], online), abs=0.03)
    assert auc(w["y"], s) > auc(w["y"], w["target"]) + 0.1


def test_rmia_gamma_and_offline_a_by_hand() -> None:
    # p(x|theta) = 0.9 and 0.5 against references at 0.5; population ratio 1.
    args = ([0.9, 0.5], [[0.5], [0.5]], None, [0.5, 0.5], [[0.5], [0.5]], None)
    assert rmia(*args).tolist() == [1.0, 1.0]
    assert rmia(*args, gamma=1.5).tolist() == [1.0, 0.0]  # 0.9/0.5 = 1.8 >= 1.5 > 1
    # offline: p(x) = ½((1 + a) p_out + 1 − a); with a = 0 it is ½(p_out + 1) = 0.75
    s = rmia([0.9], [[0.5]], None, [0.75], [[0.5]], None, a=0.0, gamma=1.2)
    assert s.tolist() == [1.0]  # (0.9/0.75) / (0.75/0.75) = 1.2
    with pytest.raises(ValueError, match="population"):
        rmia([0.9], [[0.5]], None, [], np.zeros((0, 1)), None)


def test_fit_rmia_a_recovers_the_slope() -> None:
    rng = np.random.default_rng(0)
    p_out = rng.uniform(0.05, 0.6, 500)
    p_in = 0.4 * p_out + 0.6 + rng.normal(0, 0.01, 500)
    assert fit_rmia_a(p_in, p_out) == pytest.approx(0.4, abs=0.02)
    assert fit_rmia_a([1.0, 1.0], [1.0, 1.0]) == 1.0  # degenerate: no information


def test_phi_transforms() -> None:
    p = np.array([0.1, 0.5, 0.99])
    assert phi_from_nll(-np.log(p)) == pytest.approx(logit(p))
    assert np.isfinite(phi_from_nll([0.0, 1e-20, 50.0])).all()
    assert phi_from_nll([1e-6])[0] > phi_from_nll([1e-3])[0]  # lower loss, higher φ
