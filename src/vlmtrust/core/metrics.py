"""Plain metric functions, fairlearn style: ``f(y_true, y_score, **kw) -> float``.

No state and no string keys: :func:`vlmtrust.core.stats.metric` wraps any of them with a
bootstrap CI, per-group values and a risk band. Scores follow one convention: higher means
"more likely positive" (for membership inference: more likely a training member).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "centroid_gap",
    "gap_vector",
    "shifted_cosines",
    "unit_rows",
    "RocPoint",
    "auc",
    "clopper_pearson",
    "roc_curve",
    "roc_point_at_fpr",
    "tpr_at_fpr",
]


def _labels_scores(
    y_true: ArrayLike, y_score: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} rows but y_score has {s.size}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must hold 0/1 labels")
    if not np.isfinite(s).all():
        raise ValueError("y_score must be finite")
    pos = y == 1.0
    if pos.all() or not pos.any():
        raise ValueError("y_true needs both classes")
    return pos, s


def auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count ½.

    Computed from ranks (Mann–Whitney U), exact for ties. Raises ``ValueError`` when a class
    is missing.

    Example:
        >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
        >>> auc([0, 1], [0.5, 0.5])
        0.5
    """
    from scipy.stats import rankdata

    pos, s = _labels_scores(y_true, y_score)
    ranks = rankdata(s)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def roc_curve(
    y_true: ArrayLike, y_score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(fpr, tpr, thresholds)`` for the rule "positive when score ≥ threshold".

    The first point is ``(0, 0)`` at threshold ``+inf``; one point per distinct score, in
    decreasing threshold order.

    Example:
        >>> fpr, tpr, th = roc_curve([0, 1, 1], [0.2, 0.9, 0.2])
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 1.0], [0.0, 0.5, 1.0])
    """
    pos, s = _labels_scores(y_true, y_score)
    order = np.argsort(-s, kind="stable")
    s_sorted, pos_sorted = s[order], pos[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    tp = np.cumsum(pos_sorted)[last]
    fp = np.cumsum(~pos_sorted)[last]
    fpr = np.r_[0.0, fp / (~pos).sum()]
    tpr = np.r_[0.0, tp / pos.sum()]
    return fpr, tpr, np.r_[np.inf, s_sorted[last]]


class RocPoint(NamedTuple):
    """One operating point: counts behind TPR and FPR, and the threshold giving them."""

    threshold: float
    true_positives: int
    positives: int
    false_positives: int
    negatives: int

    @property
    def tpr(self) -> float:
        """True positive rate."""
        return self.true_positives / self.positives

    @property
    def fpr(self) -> float:
        """False positive rate."""
        return self.false_positives / self.negatives


def roc_point_at_fpr(y_true: ArrayLike, y_score: ArrayLike, *, fpr: float) -> RocPoint:
    """The operating point with the highest TPR whose FPR is at most ``fpr``.

    Exact: no interpolation between points. With ``n`` negatives, an FPR below ``1/n``
    allows no false positive at all.

    Example:
        >>> p = roc_point_at_fpr([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9, 0.8, 0.95], fpr=0.25)
        >>> p.true_positives, p.false_positives, p.threshold
        (2, 1, 0.8)
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    pos, _ = _labels_scores(y_true, y_score)
    f, t, th = roc_curve(y_true, y_score)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ok = np.nonzero(f <= fpr + 1e-12)[0]
    i = int(ok[np.argmax(t[ok])])
    return RocPoint(
        threshold=float(th[i]),
        true_positives=round(t[i] * n_pos),
        positives=n_pos,
        false_positives=round(f[i] * n_neg),
        negatives=n_neg,
    )


def tpr_at_fpr(y_true: ArrayLike, y_score: ArrayLike, *, fpr: float) -> float:
    """Highest true positive rate at a false positive rate of at most ``fpr``.

    Example:
        >>> tpr_at_fpr([0] * 100 + [1] * 4, list(range(100)) + [99.5, 150, 160, 50], fpr=0.01)
        0.75
    """
    return roc_point_at_fpr(y_true, y_score, fpr=fpr).tpr


def clopper_pearson(k: int, n: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper–Pearson) binomial CI for ``k`` successes in ``n`` trials.

    Example:
        >>> lo, hi = clopper_pearson(0, 10)
        >>> lo, round(hi, 4)
        (0.0, 0.3085)
    """
    from scipy.stats import beta

    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


# --------------------------------------------------------------------------- modality gap
# Liang et al., "Mind the Gap" (NeurIPS 2022); used by robustness/modality_gap and the
# alignment mitigations.


def unit_rows(x: ArrayLike) -> NDArray[np.float64]:
    """Rows scaled to unit L2 norm (float64; zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    out: NDArray[np.float64] = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return out


def gap_vector(images: NDArray[np.float64], texts: NDArray[np.float64]) -> NDArray[np.float64]:
    """``Δ = μ_text − μ_image`` of unit-normalised embeddings (rows are samples)."""
    out: NDArray[np.float64] = unit_rows(texts).mean(axis=0) - unit_rows(images).mean(axis=0)
    return out


def centroid_gap(images: NDArray[np.float64], texts: NDArray[np.float64]) -> float:
    """``‖μ_image − μ_text‖`` of unit-normalised embeddings (Liang et al. 2022)."""
    return float(np.linalg.norm(gap_vector(images, texts)))


def shifted_cosines(
    images: NDArray[np.float64],
    prompts: NDArray[np.float64],
    delta: NDArray[np.float64],
    lam: float,
) -> NDArray[np.float64]:
    """Cosines of ``norm(x + λΔ)`` (unit image embeddings ``x``) to unit ``prompts``."""
    return unit_rows(unit_rows(images) + lam * delta) @ unit_rows(prompts).T
