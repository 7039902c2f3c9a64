"""``fairness/bendvlm`` — BendVLM test-time debiasing of query (text) embeddings.

After Gerych et al. 2024 ("BendVLM: Test-Time Debiasing of Vision-Language Embeddings"),
training-free and per query, in two steps:

1. **Local attribute direction.** The query is rewritten once per attribute value
   (:func:`augment`: the value's word inserted before the query's last word, "a photo of a
   pilot" → "a photo of a round pilot"; the paper asks an LLM for the rewrites). The
   rewrites' embeddings minus their mean span the attribute subspace *local to this query*;
   the query embedding is projected onto its orthogonal complement.
2. **Equal distances to a reference set.** Among labelled reference images (the fitting
   gallery: SynthWorld people from a world disjoint from the probes', or ``--data``), the
   ``n_nearest`` images of each attribute value nearest to the projected query are averaged
   (``μ_v``); the query moves by the smallest change that makes its inner products with all
   ``μ_v`` equal (a linear-equality-constrained least squares: ``q* = q − Cᵀ(CCᵀ)⁺Cq`` with
   rows ``μ_v − μ_0`` of ``C``), and is L2-normalised.

Image embeddings are unchanged. Only the reference embeddings (and their labels) are fitted;
they are stored in ``wrapper.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.data.synthworld import GROUPS
from vlmtrust.mitigations.fairness import _dual

__all__ = ["BendVLM", "BendVLMParams", "BentModel", "augment", "bend"]

F64 = _dual.F64


class BendVLMParams(Params):
    """Parameters of ``fairness/bendvlm``."""

    attribute: str = Field("group", description="protected attribute")
    values: list[str] = Field(
        list(GROUPS), min_length=2, description="attribute words inserted into the query"
    )
    n_nearest: int = Field(
        20, ge=1, le=100_000, description="nearest reference images per value (step 2)"
    )
    n_fit: int = Field(400, ge=8, le=1_000_000, description="reference images")
    reference: list[list[float]] | None = Field(None, description="reference embeddings (fitted)")
    labels: list[str] | None = Field(None, description="their attribute values (fitted)")


def augment(query: str, value: str) -> str:
    """``query`` with ``value`` inserted before its last word (articles a / an fixed).

    Example:
        >>> augment("a photo of a pilot", "angular")
        'a photo of an angular pilot'
    """
    words = query.split()
    if not words:
        return value
    head, last = words[:-1], words[-1]
    if head and head[-1].lower() in ("a", "an"):
        head[-1] = "an" if value[:1].lower() in "aeiou" else "a"
    return " ".join([*head, value, last])


def bend(q: F64, local: F64, reference: F64, ref_labels: Sequence[str], n_nearest: int) -> F64:
    """One query's debiased embedding (unit norm).

    ``local``: the embeddings of the query's attribute rewrites (rows); ``reference`` and
    ``ref_labels``: the labelled reference embeddings.
    """
    q = np.asarray(q, dtype=np.float64)
    basis = _dual.orthonormal_rows(local - local.mean(axis=0, keepdims=True))
    if len(basis):
        q = q - basis.T @ (basis @ q)
    labels = np.asarray(ref_labels)
    sims = reference @ q
    means = []
    for v in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == v)
        near = idx[np.argsort(-sims[idx], kind="stable")[:n_nearest]]
        means.append(reference[near].mean(axis=0))
    mu = np.stack(means)
    c = mu[1:] - mu[:1]
    q = q - c.T @ (np.linalg.pinv(c @ c.T) @ (c @ q))
    norm = float(np.linalg.norm(q))
    return q / norm if norm > 0 else q


class BentModel(_dual.DebiasedDualModel):
    """A dual encoder whose text embeddings are debiased per query by :func:`bend`."""

    def __init__(
        self,
        base: Any,
        values: Sequence[str],
        reference: F64,
        labels: Sequence[str],
        n_nearest: int,
    ) -> None:
        super().__init__(
            base, name="bendvlm", tag=repr((list(values), list(labels), n_nearest, reference.sum()))
        )
        self.values = list(values)
        self.reference = reference
        self.labels = list(labels)
        self.n_nearest = n_nearest

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Text embeddings, each bent by its own rewrites and the reference set."""
        base = np.asarray(self.base.embed_texts(list(texts)), dtype=np.float64)
        if not len(base):
            return np.asarray(base, dtype=np.float32)
        k = len(self.values)
        rewrites = [augment(t, v) for t in texts for v in self.values]
        local = np.asarray(self.base.embed_texts(rewrites), dtype=np.float64)
        out = np.stack(
            [
                bend(
                    base[i], local[i * k : (i + 1) * k], self.reference, self.labels, self.n_nearest
                )
                for i in range(len(texts))
            ]
        )
        return np.asarray(out, dtype=np.float32)


@mitigation("fairness/bendvlm")
class BendVLM(_dual.FittedWrapper):
    """BendVLM: per-query local-direction projection, then equal reference distances."""

    Params = BendVLMParams
    description = (
        "BendVLM (Gerych et al. 2024), training-free and per query: the attribute direction "
        "local to the query (from attribute-augmented rewrites) is projected out, then the "
        "query is moved to equal similarity with each attribute value's nearest reference images."
    )
    LARGE = ("reference", "labels")

    params: BendVLMParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Embed the labelled reference images."""
        x, y = self.labelled(model, ctx)
        return {"reference": _dual.store_matrix(x), "labels": [str(v) for v in y]}

    def wrap(self, model: Any) -> BentModel:
        """Bend ``model``'s text embeddings; needs the reference set from `vlmtrust harden`."""
        p = self.params
        reference = self.need_fit(p.reference, "reference set")
        labels = self.need_fit(p.labels, "reference set")
        if len(reference) != len(labels) or len(set(labels)) < 2:
            raise InputError(
                f"{self.name}: {len(reference)} reference embeddings, {len(labels)} labels "
                f"with {len(set(labels))} value(s) stored; re-run `vlmtrust harden`"
            )
        _dual.require_dual(model, self.name)
        ref = np.asarray(reference, dtype=np.float64)
        return BentModel(model, p.values, ref, labels, p.n_nearest)
