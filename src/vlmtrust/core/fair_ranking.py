"""Fair re-ranking: interleave a ranking so that every prefix has the desired group shares.

Used by the post-hoc bias mitigation (``fairness/pbm``) and by the retrieval probes that rank
with a model's own re-ranking; it lives in ``core`` so both sides use the same order.

The rule: within each group the items keep their score order; the ``j``-th best item of group
``g`` (``j = 0, 1, ...``) gets the key ``(j + 1) / p_g`` and the items are ordered by key,
ties by the original rank. Every prefix of ``i`` items then holds within one item of
``i · p_g`` of each group that still has items (the shares are equalised at each rank), and a
group with no items left simply stops contributing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["fair_order", "fair_rerank_scores", "target_shares"]


def target_shares(groups: Sequence[str], target: str | Mapping[str, float]) -> dict[str, float]:
    """Desired share of each group present.

    ``uniform``: equal shares; ``prior``: the gallery's shares; a mapping: those shares,
    normalised over the groups present.

    Example:
        >>> target_shares(["a", "a", "a", "b"], "prior")
        {'a': 0.75, 'b': 0.25}
    """
    values = sorted(set(groups))
    if not values:
        return {}
    if target == "uniform":
        return {v: 1.0 / len(values) for v in values}
    if target == "prior":
        return {v: sum(g == v for g in groups) / len(groups) for v in values}
    if isinstance(target, str):
        raise ValueError(f"unknown target {target!r}: use 'uniform', 'prior' or group shares")
    given = {v: float(target.get(v, 0.0)) for v in values}
    total = sum(given.values())
    if total <= 0 or min(given.values()) < 0:
        raise ValueError(f"target shares {dict(target)} give no positive mass to {values}")
    return {v: s / total for v, s in given.items()}


def fair_order(
    scores: ArrayLike,
    groups: Sequence[str],
    target: str | Mapping[str, float] = "uniform",
) -> NDArray[np.intp]:
    """Per row of ``scores`` ``(Q, N)``, the gallery indices in the re-ranked order.

    Example:
        >>> fair_order([[4.0, 3.0, 2.0, 1.0]], ["a", "a", "b", "b"]).tolist()
        [[0, 2, 1, 3]]
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (queries, gallery), got shape {s.shape}")
    n = s.shape[1]
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for a gallery of {n}")
    shares = target_shares(groups, target)
    values = list(shares)
    index = {v: i for i, v in enumerate(values)}
    codes = np.fromiter((index[g] for g in groups), dtype=np.intp, count=n)
    p = np.asarray([shares[v] for v in values], dtype=np.float64)
    s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-s, axis=1, kind="stable")  # (Q, N): original ranking
    g = codes[order]
    within = np.zeros(order.shape, dtype=np.float64)
    for a in range(len(values)):
        hit = g == a
        within[hit] = (np.cumsum(hit, axis=1) - 1)[hit]
    with np.errstate(divide="ignore"):
        key = (within + 1.0) / p[g]  # a zero target share ranks that group last
    rank = np.arange(n)[None, :].repeat(len(s), axis=0)
    new = np.lexsort((rank, key), axis=1)
    return np.asarray(np.take_along_axis(order, new, axis=1), dtype=np.intp)


def fair_rerank_scores(
    scores: ArrayLike,
    groups: Sequence[str],
    target: str | Mapping[str, float] = "uniform",
) -> NDArray[np.float64]:
    """Scores ``(Q, N)`` whose descending order is :func:`fair_order` (``N − position``).

    Example:
        >>> fair_rerank_scores([[4.0, 3.0, 2.0, 1.0]], ["a", "a", "b", "b"]).tolist()
        [[4.0, 2.0, 3.0, 1.0]]
    """
    order = fair_order(scores, groups, target)
    q, n = order.shape
    out = np.empty((q, n), dtype=np.float64)
    np.put_along_axis(out, order, np.arange(n, 0, -1, dtype=np.float64)[None, :], axis=1)
    return out
