"""``fairness/pbm`` — post-hoc bias mitigation: fair re-ranking of text-to-image retrieval.

After Kong et al. 2024 ("Mitigating Test-Time Bias for Fair Image Retrieval"). The embeddings
are unchanged; what changes is the *ranking* of a gallery for a query: each gallery image gets
a predicted group, and the ranking is interleaved so that the predicted groups have the
desired shares at every rank (within each group the score order is kept;
:func:`vlmtrust.core.fair_ranking.fair_order`). The target is ``uniform`` (equal shares of the
predicted groups) or ``prior`` (their shares in the gallery).

The group predictor:

* ``zero_shot`` (the paper): the group prompt with the highest cosine. It needs a text encoder
  that knows the group words; the reference CLIP's captions never name the group, so on
  reference:clip its predictions are at chance and the re-ranking does not help.
* ``linear`` (default): a logistic regression (scikit-learn, standardised features folded into
  the weights) on the image embeddings, fitted on
  the labelled fitting gallery (SynthWorld people from a world disjoint from the probes', or
  ``--data``); its weights are stored in ``wrapper.json``.

How it reaches the probes: the wrapped model offers ``rank_groups(images)`` (the predicted
group of each image) and ``rank_target``. ``fairness/retrieval_skew`` stores the predicted
group with each gallery record and, when every record has one, ranks by the re-ranked order
instead of the raw cosines (its notes say so). Zero-shot classification and every other use of
the embeddings are untouched, so the capability cost is in retrieval relevance (how many of
the top k still match the query), which ``bench/bench_tradeoff.py`` reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.data.synthworld import GROUPS
from vlmtrust.mitigations.fairness import _dual

__all__ = ["PBM", "PBMParams", "ReRankedModel"]

F64 = _dual.F64


class PBMParams(Params):
    """Parameters of ``fairness/pbm``."""

    attribute: str = Field("group", description="protected attribute (linear predictor)")
    predictor: Literal["linear", "zero_shot"] = Field(
        "linear",
        description="predicted group of a gallery image: a linear classifier fitted on the "
        "fitting gallery, or zero-shot with group_prompts (Kong et al.)",
    )
    target: Literal["uniform", "prior"] = Field(
        "uniform", description="shares at every rank: equal, or the gallery's predicted shares"
    )
    groups: list[str] = Field(list(GROUPS), description="group names (zero_shot predictor)")
    group_prompts: list[str] = Field(
        [f"a photo of {'an' if g[0] in 'aeiou' else 'a'} {g} person" for g in GROUPS],
        description="one prompt per group, in the order of groups (zero_shot predictor)",
    )
    c: float = Field(1.0, gt=0.0, le=1e6, description="inverse L2 strength (linear predictor)")
    n_fit: int = Field(600, ge=8, le=1_000_000, description="fitting images (linear predictor)")
    classes: list[str] | None = Field(None, description="linear predictor classes (fitted)")
    coef: list[list[float]] | None = Field(None, description="linear predictor weights (fitted)")
    intercept: list[float] | None = Field(None, description="linear predictor biases (fitted)")


class ReRankedModel(_dual.DebiasedDualModel):
    """A dual encoder whose retrieval rankings are re-ranked by predicted group.

    Embeddings are the base model's. ``rank_groups(images)`` predicts each image's group;
    ``rank_target`` is the share target of the re-ranking.
    """

    def __init__(
        self,
        base: Any,
        *,
        classes: Sequence[str],
        predict: Any,
        target: str,
        tag: str,
    ) -> None:
        super().__init__(base, name="pbm", tag=tag)
        self.classes = list(classes)
        self._predict = predict
        self.rank_target = target

    def rank_groups(self, images: Sequence[Image.Image]) -> list[str]:
        """The predicted group of each image (one of ``classes``)."""
        if len(images) == 0:
            return []
        x = np.asarray(self.base.embed_images(list(images)), dtype=np.float64)
        idx: NDArray[np.intp] = self._predict(x)
        return [self.classes[int(i)] for i in idx]


@mitigation("fairness/pbm")
class PBM(_dual.FittedWrapper):
    """Post-hoc re-ranking of retrieval to equal predicted-group shares (Kong et al. 2024)."""

    Params = PBMParams
    description = (
        "Post-hoc bias mitigation for retrieval (Kong et al. 2024): each gallery image gets a "
        "predicted group (linear classifier or zero-shot) and each query's ranking is "
        "interleaved to the target group shares at every rank; embeddings are unchanged."
    )
    LARGE = ("coef",)

    params: PBMParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Fit the linear group predictor (nothing to fit for ``zero_shot``)."""
        _dual.require_dual(model, self.name)
        p = self.params
        self._check_prompts()
        if p.predictor == "zero_shot":
            return {}
        import warnings

        from sklearn.linear_model import LogisticRegression

        x, y = _dual.labelled_fit(model, ctx, p.n_fit, p.attribute, name=self.name)
        mu, sd = x.mean(axis=0), x.std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        clf = LogisticRegression(C=p.c, max_iter=2000, random_state=ctx.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit((x - mu) / sd, y)
        # the standardisation folded into the weights: w·((x − μ)/σ) + b = (w/σ)·x + b − w·μ/σ
        coef = np.asarray(clf.coef_, dtype=np.float64) / sd
        intercept = np.atleast_1d(clf.intercept_) - coef @ mu
        return {
            "classes": [str(c) for c in clf.classes_],
            "coef": _dual.store_matrix(coef),
            "intercept": [float(f"{b:.9g}") for b in intercept],
        }

    def _check_prompts(self) -> None:
        p = self.params
        if p.predictor == "zero_shot" and len(p.groups) != len(p.group_prompts):
            raise InputError(
                f"{self.name}: {len(p.groups)} groups but {len(p.group_prompts)} group_prompts;"
                " give one prompt per group, in the same order"
            )
        if p.predictor == "zero_shot" and len(p.groups) < 2:
            raise InputError(f"{self.name}: give at least two groups (--param groups=[...])")

    def wrap(self, model: Any) -> ReRankedModel:
        """Wrap ``model``; the linear predictor needs its weights from `vlmtrust harden`."""
        _dual.require_dual(model, self.name)
        p = self.params
        self._check_prompts()
        tag = repr(sorted(p.model_dump(mode="json").items()))
        if p.predictor == "zero_shot":
            prompts = np.asarray(model.embed_texts(list(p.group_prompts)), dtype=np.float64)

            def zero_shot(x: F64) -> NDArray[np.intp]:
                return np.asarray(np.argmax(x @ prompts.T, axis=1), dtype=np.intp)

            return ReRankedModel(
                model, classes=p.groups, predict=zero_shot, target=p.target, tag=tag
            )
        if p.coef is None or p.classes is None or p.intercept is None:
            raise InputError(
                f"{self.name} has no fitted group predictor: fit it with `vlmtrust harden "
                f"--mitigation {self.name}` (or pass --param predictor=zero_shot)"
            )
        w = np.asarray(p.coef, dtype=np.float64)
        b = np.asarray(p.intercept, dtype=np.float64)
        if w.ndim != 2 or len(b) != len(w) or len(p.classes) != max(2, len(w)):
            raise InputError(
                f"{self.name}: the stored predictor does not fit together (coef {w.shape}, "
                f"{len(b)} intercepts, {len(p.classes)} classes); re-run `vlmtrust harden`"
            )

        def linear(x: F64) -> NDArray[np.intp]:
            z = x @ w.T + b
            if z.shape[1] == 1:
                return np.asarray((z[:, 0] > 0).astype(np.intp), dtype=np.intp)
            return np.asarray(np.argmax(z, axis=1), dtype=np.intp)

        return ReRankedModel(model, classes=p.classes, predict=linear, target=p.target, tag=tag)
