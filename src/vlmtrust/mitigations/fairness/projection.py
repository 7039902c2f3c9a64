"""``fairness/projection`` — calibrated projection of text embeddings off the bias directions.

After Chuang et al. 2023 ("Debiasing Vision-Language Models via Biased Prompts"), training-free:
every text embedding ``t`` (queries, class prompts) becomes ``norm(P t)`` with the calibrated
matrix

    P = P0 (I + λ S)^-1,   P0 = I − B (BᵀB)^-1 Bᵀ,   S = (1/M) Σ_(i,j) (z_i − z_j)(z_i − z_j)ᵀ

where the columns of ``B`` span the bias directions and ``(z_i, z_j)`` are the *positive pairs*:
two embeddings of the same concept that differ only in the protected group. ``P0`` removes the
bias subspace; the regulariser ``λ S`` additionally shrinks what still tells the two members of
a pair apart (Chuang et al.'s calibration loss ``‖P0 − P‖² + λ/M Σ ‖P z_i − P z_j‖²`` has this
closed form). Image embeddings are unchanged. Two sources of ``B`` and of the pairs:

* ``prompts`` (the paper): ``B`` = the embeddings of the spurious prompts (``a photo of a round
  person``, ...); pairs = ``pair_prompt`` with each concept and two groups. No labelled
  images. It only works when the text encoder knows the group words: the reference CLIP's
  captions never name the group, so on reference:clip it barely moves the skew (see
  ``bench/bench_tradeoff.py``).
* ``images`` (default): pairs = the mean image embeddings of two groups within one concept
  (``concept_attribute``, e.g. the occupation) on the labelled fitting gallery; ``B`` = the top
  ``n_directions`` singular directions of the pair differences. Still training-free (closed
  form); the fitting gallery is SynthWorld people from a world disjoint from the probes'
  (:data:`~vlmtrust.mitigations.fairness._dual.FIT_SEED_OFFSET`) or ``--data`` with the
  attributes in the manifest.

Since ``(P t)·x = t·(Pᵀx)``, projecting the texts re-ranks every image for a query the way the
retrieval_skew probe measures. The matrix is stored in ``wrapper.json``; ``hardened:DIR`` loads
the base model and projects again.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Literal

import numpy as np
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.data.synthworld import GROUPS, OCCUPATIONS
from vlmtrust.mitigations.fairness import _dual

__all__ = ["Projection", "ProjectionParams", "calibrated_projection"]

F64 = _dual.F64


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class ProjectionParams(Params):
    """Parameters of ``fairness/projection``."""

    source: Literal["images", "prompts"] = Field(
        "images",
        description="bias directions and positive pairs from group-mean image embeddings of a "
        "labelled fitting gallery ('images'), or from spurious text prompts ('prompts', "
        "Chuang et al.; needs a text encoder that knows the group words)",
    )
    attribute: str = Field("group", description="protected attribute (images source)")
    concept_attribute: str = Field(
        "occupation", description="attribute whose values form the positive pairs (images)"
    )
    n_directions: int = Field(1, ge=1, le=64, description="bias directions removed (images)")
    lam: float = Field(10.0, ge=0.0, le=1e8, description="λ of the positive-pair regulariser")
    spurious_prompts: list[str] = Field(
        [f"a photo of {_article(g)} {g} person" for g in GROUPS],
        description="prompts naming only the protected groups (prompts source)",
    )
    groups: list[str] = Field(list(GROUPS), description="group words of the pairs (prompts)")
    concepts: list[str] = Field(list(OCCUPATIONS), description="concepts of the pairs (prompts)")
    pair_prompt: str = Field(
        "a photo of a {group} {concept}", description="positive-pair prompt (prompts source)"
    )
    n_fit: int = Field(600, ge=8, le=1_000_000, description="fitting images (images source)")
    matrix: list[list[float]] | None = Field(
        None, description="the calibrated projection P (set by `vlmtrust harden`)"
    )


def calibrated_projection(bias: F64, pair_diffs: F64, lam: float) -> F64:
    """``P0 (I + λ S)^-1`` for bias directions (rows of ``bias``) and pair differences (rows).

    Example:
        >>> p = calibrated_projection(np.array([[1.0, 0.0]]), np.zeros((0, 2)), 0.0)
        >>> p.round(6).tolist()
        [[0.0, 0.0], [0.0, 1.0]]
    """
    d = bias.shape[1]
    basis = _dual.orthonormal_rows(bias)
    p0 = np.eye(d) - basis.T @ basis
    if lam == 0.0 or len(pair_diffs) == 0:
        return np.asarray(p0, dtype=np.float64)
    s = pair_diffs.T @ pair_diffs / len(pair_diffs)
    return np.asarray(p0 @ np.linalg.inv(np.eye(d) + lam * s), dtype=np.float64)


@mitigation("fairness/projection")
class Projection(_dual.FittedWrapper):
    """Project text embeddings off the bias subspace (calibrated; Chuang et al. 2023)."""

    Params = ProjectionParams
    description = (
        "Biased-prompts projection (Chuang et al. 2023), training-free: text embeddings are "
        "projected orthogonally to the bias directions with the positive-pair calibration; "
        "directions from group-mean image embeddings (default) or from spurious prompts."
    )

    params: ProjectionParams

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Compute the calibrated matrix (from prompts, or from the fitting gallery)."""
        _dual.require_dual(model, self.name)
        p = self.params
        if p.source == "prompts":
            bias, diffs = self._from_prompts(model)
        else:
            bias, diffs = self._from_images(model, ctx)
        return {"matrix": _dual.store_matrix(calibrated_projection(bias, diffs, p.lam))}

    def _from_prompts(self, model: Any) -> tuple[F64, F64]:
        p = self.params
        if len(p.groups) < 2:
            raise InputError(f"{self.name}: give at least two groups (--param groups=[...])")
        if "{group}" not in p.pair_prompt or "{concept}" not in p.pair_prompt:
            raise InputError(
                f"{self.name}: pair_prompt {p.pair_prompt!r} needs both {{group}} and "
                "{concept}, e.g. 'a photo of a {group} {concept}'"
            )
        bias = np.asarray(model.embed_texts(list(p.spurious_prompts)), dtype=np.float64)
        diffs: list[F64] = []
        for c in p.concepts:
            emb = np.asarray(
                model.embed_texts([p.pair_prompt.format(group=g, concept=c) for g in p.groups]),
                dtype=np.float64,
            )
            diffs.extend(emb[i] - emb[j] for i, j in combinations(range(len(emb)), 2))
        return bias, np.asarray(diffs, dtype=np.float64).reshape(-1, bias.shape[1])

    def _from_images(self, model: Any, ctx: MitigationContext) -> tuple[F64, F64]:
        p = self.params
        fit = _dual.fit_gallery(
            model,
            ctx,
            _dual.fit_size(p.n_fit, ctx),
            need=[p.attribute, p.concept_attribute],
            name=self.name,
        )
        groups = np.asarray(fit.values(p.attribute))
        concepts = np.asarray(fit.values(p.concept_attribute))
        diffs: list[F64] = []
        for c in sorted(set(concepts) - {""}):
            in_c = concepts == c
            present = sorted(set(groups[in_c]) - {""})
            means = {g: fit.embeddings[in_c & (groups == g)].mean(axis=0) for g in present}
            diffs.extend(means[a] - means[b] for a, b in combinations(present, 2))
        if not diffs:
            raise InputError(
                f"{self.name}: no {p.concept_attribute!r} value of the fitting data has images "
                f"of two {p.attribute!r} values; give data where each concept has both groups"
            )
        d = np.asarray(diffs, dtype=np.float64)
        _, _, vt = np.linalg.svd(d, full_matrices=False)
        return np.asarray(vt[: p.n_directions], dtype=np.float64), d

    def wrap(self, model: Any) -> _dual.DebiasedDualModel:
        """Project ``model``'s text embeddings; needs the matrix from `vlmtrust harden`."""
        return self.matrix_model(model, "text", how="compute it")
