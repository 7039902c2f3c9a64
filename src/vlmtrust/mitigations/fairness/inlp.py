"""``fairness/inlp`` — iterative nullspace projection of the attribute on image embeddings.

After Ravfogel et al. 2020 ("Null It Out: Guarding Protected Attributes by Iterative Nullspace
Projection"). On the labelled fitting gallery (split into a train and a dev part, stratified by
the attribute), each iteration fits a linear classifier (scikit-learn logistic regression) that
predicts the attribute from the projected train embeddings ``X P``, adds the directions of its
weights to the removed subspace and sets ``P = I − WᵀW`` over an orthonormal basis ``W`` of
every direction so far. It stops after ``iterations`` rounds, or earlier once the classifier's
balanced accuracy on the dev part is within ``tolerance`` of chance (``1 / #values``).

The wrapper maps every image embedding ``x`` to ``norm(P x)``; texts are unchanged. The
attribute_leakage probe measures what is left (its linear probe is cross-validated on the
evaluation gallery, which the fit never saw). The fitting gallery is SynthWorld people from a
world disjoint from the probes' (:data:`~vlmtrust.mitigations.fairness._dual.FIT_SEED_OFFSET`)
or ``--data`` with the attribute in the manifest. The matrix is stored in ``wrapper.json``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.mitigations.fairness import _dual

__all__ = ["INLP", "INLPParams", "InlpFit", "nullspace_projection"]

F64 = _dual.F64


class INLPParams(Params):
    """Parameters of ``fairness/inlp``."""

    attribute: str = Field("group", description="protected attribute to remove")
    iterations: int = Field(10, ge=1, le=256, description="most classifier rounds")
    tolerance: float = Field(
        0.02, ge=0.0, le=0.5, description="stop when dev balanced accuracy ≤ chance + this"
    )
    c: float = Field(1.0, gt=0.0, le=1e6, description="inverse L2 strength of each classifier")
    dev_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="share of the fit data for dev")
    n_fit: int = Field(600, ge=8, le=1_000_000, description="fitting images")
    matrix: list[list[float]] | None = Field(
        None, description="the nullspace projection P (set by `vlmtrust harden`)"
    )


class InlpFit:
    """The result of :func:`nullspace_projection`: ``matrix`` and the dev accuracy per round."""

    def __init__(self, matrix: F64, dev_accuracy: list[float], directions: int) -> None:
        self.matrix = matrix
        self.dev_accuracy = dev_accuracy
        self.directions = directions


def _balanced_accuracy(y: Any, pred: Any) -> float:
    yy, pp = np.asarray(y), np.asarray(pred)
    return float(np.mean([np.mean(pp[yy == c] == c) for c in np.unique(yy)]))


def nullspace_projection(
    x_train: F64,
    y_train: Any,
    x_dev: F64,
    y_dev: Any,
    *,
    iterations: int,
    tolerance: float,
    c: float = 1.0,
    seed: int = 0,
) -> InlpFit:
    """INLP: the projection onto the nullspace of every round's classifier weights.

    ``dev_accuracy[i]`` is the balanced dev accuracy of round ``i``'s classifier (on the
    embeddings projected by the rounds before it); a round at or below chance + ``tolerance``
    ends the loop without adding its directions.
    """
    from sklearn.linear_model import LogisticRegression

    d = x_train.shape[1]
    classes = np.unique(np.asarray(y_train))
    chance = 1.0 / len(classes)
    removed = np.zeros((0, d))
    p = np.eye(d)
    dev: list[float] = []
    for _ in range(iterations):
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(x_train @ p, y_train)
        acc = _balanced_accuracy(y_dev, clf.predict(x_dev @ p))
        dev.append(acc)
        if acc <= chance + tolerance:
            break
        removed = _dual.orthonormal_rows(np.vstack([removed, clf.coef_ @ p]))
        p = np.eye(d) - removed.T @ removed
    return InlpFit(np.asarray(p, dtype=np.float64), dev, len(removed))


@mitigation("fairness/inlp")
class INLP(_dual.FittedWrapper):
    """Iterative nullspace projection of a protected attribute (Ravfogel et al. 2020)."""

    Params = INLPParams
    description = (
        "Iterative nullspace projection (Ravfogel et al. 2020): image embeddings are projected "
        "onto the nullspace of linear attribute classifiers fitted round by round on a "
        "labelled fitting split, until the attribute is no longer linearly decodable."
    )

    params: INLPParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Fit the projection on the fitting gallery (train / dev split by the attribute)."""
        from sklearn.model_selection import train_test_split

        p = self.params
        x, y = self.labelled(model, ctx)
        try:
            xt, xd, yt, yd = train_test_split(
                x, y, test_size=p.dev_fraction, stratify=y, random_state=ctx.seed
            )
        except ValueError as e:
            raise InputError(
                f"{self.name}: cannot split the fitting data by {p.attribute!r} ({e}); give "
                "more images of each value or another dev_fraction"
            ) from None
        res = nullspace_projection(
            xt, yt, xd, yd, iterations=p.iterations, tolerance=p.tolerance, c=p.c, seed=ctx.seed
        )
        return {"matrix": _dual.store_matrix(res.matrix)}

    def wrap(self, model: Any) -> _dual.DebiasedDualModel:
        """Project ``model``'s image embeddings; needs the matrix from `vlmtrust harden`."""
        return self.matrix_model(model, "image")
