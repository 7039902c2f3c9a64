"""``fairness/sfid`` — selective feature imputation of the attribute's dimensions (images).

After Jung et al. 2024 ("A Unified Debiasing Approach for Vision-Language Models across
Modalities and Tasks", SFID). On the labelled fitting gallery a random forest (scikit-learn)
predicts the protected attribute from the image embeddings; the ``n_features`` embedding
dimensions it finds most important are then *imputed*: every image gets, in those dimensions,
their mean over the fitting images the forest is least sure about (the ``low_confidence``
share with the lowest top-class probability, out of bag) — values that carry little of the
attribute. Other dimensions are kept; the result is L2-normalised again. No model weights
change and nothing is trained but the forest.

This implementation debiases the image side (the paper also imputes text and decoder
features). The fitting gallery is SynthWorld people from a world disjoint from the probes'
(:data:`~vlmtrust.mitigations.fairness._dual.FIT_SEED_OFFSET`) or ``--data``; the chosen
dimensions and their values are stored in ``wrapper.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.mitigations.fairness import _dual

__all__ = ["SFID", "ImputedModel", "SFIDParams"]


class SFIDParams(Params):
    """Parameters of ``fairness/sfid``."""

    attribute: str = Field("group", description="protected attribute")
    n_features: int = Field(16, ge=1, le=4096, description="embedding dimensions imputed")
    low_confidence: float = Field(
        0.2, gt=0.0, le=1.0, description="share of least-confident fit images giving the values"
    )
    trees: int = Field(200, ge=10, le=5000, description="random forest size")
    n_fit: int = Field(600, ge=8, le=1_000_000, description="fitting images")
    dims: list[int] | None = Field(None, description="imputed dimensions (fitted)")
    values: list[float] | None = Field(None, description="their imputed values (fitted)")


class ImputedModel(_dual.DebiasedDualModel):
    """A dual encoder whose image embeddings have fixed values in ``dims`` (renormalised)."""

    def __init__(self, base: Any, dims: Sequence[int], values: Sequence[float]) -> None:
        super().__init__(base, name="sfid", tag=repr((list(dims), list(values))))
        self.dims = np.asarray(dims, dtype=np.intp)
        self.values = np.asarray(values, dtype=np.float64)

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """Image embeddings with the attribute's dimensions imputed, renormalised."""
        x = np.asarray(self.base.embed_images(images), dtype=np.float64)
        if len(x):
            x = x.copy()
            x[:, self.dims] = self.values
            x = _dual.normalise(x)
        return np.asarray(x, dtype=np.float32)


@mitigation("fairness/sfid")
class SFID(_dual.FittedWrapper):
    """Selective feature imputation of the attribute's most important dimensions (Jung 2024)."""

    Params = SFIDParams
    description = (
        "Selective feature imputation (Jung et al. 2024): the image-embedding dimensions a "
        "random forest finds most predictive of the attribute are replaced by their mean over "
        "low-confidence fitting images; training-free for the model."
    )
    LARGE = ("dims", "values")

    params: SFIDParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Fit the forest; pick the dimensions and their imputed values."""
        from sklearn.ensemble import RandomForestClassifier

        p = self.params
        x, y = self.labelled(model, ctx)
        if p.n_features >= x.shape[1]:
            raise InputError(
                f"{self.name}: n_features={p.n_features} is not below the embedding size "
                f"{x.shape[1]}; impute fewer dimensions"
            )
        forest = RandomForestClassifier(
            n_estimators=p.trees, oob_score=True, random_state=ctx.seed, n_jobs=1
        )
        forest.fit(x, y)
        dims = np.argsort(-forest.feature_importances_, kind="stable")[: p.n_features]
        oob = np.nan_to_num(np.asarray(forest.oob_decision_function_), nan=1.0)
        confidence = oob.max(axis=1)
        m = max(1, int(round(p.low_confidence * len(x))))
        unsure = np.argsort(confidence, kind="stable")[:m]
        values = x[np.ix_(unsure, dims)].mean(axis=0)
        return {
            "dims": [int(d) for d in dims],
            "values": [float(f"{v:.9g}") for v in values],
        }

    def wrap(self, model: Any) -> ImputedModel:
        """Impute ``model``'s image embeddings; needs the fit from `vlmtrust harden`."""
        p = self.params
        dims = self.need_fit(p.dims, "fitted dimensions", "fit them")
        values = self.need_fit(p.values, "fitted dimensions", "fit them")
        if len(dims) != len(values):
            raise InputError(
                f"{self.name}: {len(dims)} dims but {len(values)} values stored; re-run "
                "`vlmtrust harden`"
            )
        _dual.require_dual(model, self.name)
        return ImputedModel(model, dims, values)
