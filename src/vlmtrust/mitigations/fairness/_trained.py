"""The protocol the trained fairness debiasers share: splits, model selection, paired intervals.

* :func:`split_fit` cuts the labelled fitting gallery (:func:`_dual.fit_gallery`: SynthWorld
  people of the fitting world, or ``--data``) into a :class:`TrainSplit` and a
  :class:`ValidationSplit`, stratified by the attribute. Nothing else can make a
  :class:`ValidationSplit` (its constructor needs a private token).
* :func:`select_checkpoint` picks a training checkpoint (an epoch, a strength) from a score
  computed **on a ValidationSplit only**: any other object — the probes' evaluation gallery,
  raw arrays, a train split — is refused with a ``TypeError``. The evaluation data (the
  probes' world, ``seed + EVAL_SEED_OFFSET``) is never an input of a mitigation, so the
  selection cannot see it.
* :func:`paired_interval` is how a trained debiaser is reported: the per-seed differences
  hardened − base, measured on the same evaluation samples, with a paired-t 95% interval.
* Small torch pieces: :func:`mlp`, :func:`to_lists` / :func:`from_lists` to store weights in
  ``wrapper.json``, :func:`linear_leakage` (cross-validated balanced accuracy of a linear probe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext
from vlmtrust.mitigations.fairness import _dual

F64 = _dual.F64
_TOKEN = object()
_C = TypeVar("_C")


@dataclass(frozen=True)
class TrainSplit:
    """Training rows of the fitting gallery: embeddings, attribute and concept labels."""

    x: F64
    groups: NDArray[Any]
    concepts: NDArray[Any]


class ValidationSplit:
    """Held-out rows of the fitting gallery, the only input model selection accepts.

    Made only by :func:`split_fit` (direct construction raises ``TypeError``).
    """

    def __init__(
        self, x: F64, groups: NDArray[Any], concepts: NDArray[Any], *, _token: object = None
    ) -> None:
        if _token is not _TOKEN:
            raise TypeError("a ValidationSplit is made by split_fit() from the fitting gallery")
        self.x = x
        self.groups = groups
        self.concepts = concepts

    def __len__(self) -> int:
        return len(self.x)


def split_fit(
    model: Any,
    ctx: MitigationContext,
    n_fit: int,
    attribute: str,
    concept: str,
    val_fraction: float,
    *,
    name: str,
) -> tuple[TrainSplit, ValidationSplit]:
    """Embed the fitting gallery and split it (stratified by ``attribute``, seed ``ctx.seed``).

    Rows without the attribute or the concept are dropped.

    Raises:
        InputError: fewer than two values of either label, or too few rows to split.
    """
    from sklearn.model_selection import train_test_split

    fit = _dual.fit_gallery(
        model, ctx, _dual.fit_size(n_fit, ctx), need=[attribute, concept], name=name
    )
    g, c = np.asarray(fit.values(attribute)), np.asarray(fit.values(concept))
    keep = (g != "") & (c != "")
    try:
        xt, xv, gt, gv, ct, cv = train_test_split(
            fit.embeddings[keep],
            g[keep],
            c[keep],
            test_size=val_fraction,
            stratify=g[keep],
            random_state=ctx.seed,
        )
    except ValueError as e:
        raise InputError(
            f"{name}: cannot split the fitting data by {attribute!r} ({e}); give more images of "
            "each value or another val_fraction"
        ) from None
    return TrainSplit(xt, gt, ct), ValidationSplit(xv, gv, cv, _token=_TOKEN)


def concept_splits(
    model: Any, ctx: MitigationContext, p: Any, *, name: str
) -> tuple[TrainSplit, ValidationSplit, list[str], F64]:
    """A trained debiaser's inputs: :func:`split_fit` by ``p``, the concepts and their prompts.

    ``p`` carries ``n_fit``, ``attribute``, ``concept``, ``val_fraction`` and ``template``
    (a ``{}`` placeholder for the concept). Returns the splits, the concept names of both
    (sorted) and the embedded ``template`` prompt of each.

    Raises:
        CapabilityError: ``model`` is not a dual encoder.
        InputError: the template has no placeholder, or as :func:`split_fit`.
    """
    _dual.require_dual(model, name)
    if "{}" not in p.template:
        raise InputError(f"{name}: template {p.template!r} needs a '{{}}' placeholder")
    train, val = split_fit(model, ctx, p.n_fit, p.attribute, p.concept, p.val_fraction, name=name)
    names = sorted(set(train.concepts) | set(val.concepts))
    texts = np.asarray(model.embed_texts([p.template.format(c) for c in names]), np.float64)
    return train, val, names, texts


def epoch_checkpoints(
    epochs: int, steps_per_epoch: int, step: Callable[[int], None], snapshot: Callable[[], _C]
) -> list[_C]:
    """Run ``step(k)`` for ``k = 0, 1, …`` ``steps_per_epoch`` times per epoch; a checkpoint
    (``snapshot()``) after each epoch."""
    checkpoints: list[_C] = []
    k = 0
    for _epoch in range(epochs):
        for _ in range(steps_per_epoch):
            step(k)
            k += 1
        checkpoints.append(snapshot())
    return checkpoints


@dataclass(frozen=True)
class Selection(Generic[_C]):
    """The chosen checkpoint, its index, and every candidate's validation (bias, accuracy)."""

    chosen: _C
    index: int
    scores: list[tuple[float, float]]


def select_checkpoint(
    candidates: Sequence[_C],
    val: ValidationSplit,
    score: Callable[[_C, ValidationSplit], tuple[float, float]],
    *,
    base_accuracy: float,
    max_drop: float,
) -> Selection[_C]:
    """The candidate with the lowest validation bias among those within ``max_drop`` accuracy.

    ``score(candidate, val)`` returns ``(bias, accuracy)`` measured on ``val``. Candidates whose
    accuracy is below ``base_accuracy − max_drop`` are passed over; if every one is, the most
    accurate wins. Ties go to the earlier candidate.

    Raises:
        TypeError: ``val`` is not a :class:`ValidationSplit` (evaluation data cannot be used).
        ValueError: no candidates.
    """
    if not isinstance(val, ValidationSplit):
        raise TypeError(
            f"model selection takes a ValidationSplit from split_fit(), not "
            f"{type(val).__name__}: the evaluation split is never used for selection"
        )
    if not candidates:
        raise ValueError("select_checkpoint needs at least one candidate")
    scores = [tuple(map(float, score(c, val))) for c in candidates]
    ok = [i for i, (_, a) in enumerate(scores) if a >= base_accuracy - max_drop]
    if ok:
        best = min(ok, key=lambda i: (scores[i][0], i))
    else:
        best = max(range(len(scores)), key=lambda i: (scores[i][1], -i))
    pairs = [(b, a) for b, a in scores]
    return Selection(chosen=candidates[best], index=best, scores=pairs)


def selection_record(sel: Selection[Any], base: tuple[float, float]) -> dict[str, Any]:
    """What ``wrapper.json`` records of a selection: the 1-based epoch chosen, every epoch's
    validation (bias, accuracy) and the base model's, rounded to 6 digits."""
    return {
        "selected_epoch": sel.index + 1,
        "validation": [[round(b, 6), round(a, 6)] for b, a in sel.scores],
        "validation_base": [round(base[0], 6), round(base[1], 6)],
    }


@dataclass(frozen=True)
class PairedInterval:
    """Mean per-seed difference (hardened − base) with its paired-t 95% interval."""

    mean: float
    low: float
    high: float
    n: int


def paired_interval(base: Sequence[float], hardened: Sequence[float]) -> PairedInterval:
    """Paired t 95% interval of ``hardened − base`` over seeds (pairs on the same samples).

    Raises:
        InputError: different lengths or fewer than two pairs.
    """
    from scipy import stats

    b, h = np.asarray(base, dtype=np.float64), np.asarray(hardened, dtype=np.float64)
    if b.shape != h.shape or b.ndim != 1 or len(b) < 2:
        raise InputError(
            f"paired_interval needs two equal-length lists of ≥ 2 values, got {b.shape} and "
            f"{h.shape}; run each seed for both models"
        )
    d = h - b
    m = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    half = float(stats.t.ppf(0.975, len(d) - 1)) * se
    return PairedInterval(mean=m, low=m - half, high=m + half, n=len(d))


def linear_leakage(x: F64, y: NDArray[Any], seed: int = 0) -> float:
    """Balanced accuracy over chance of a 2-fold cross-validated linear probe of ``y`` on ``x``."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes = np.unique(y)
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=folds)
    bal = float(np.mean([np.mean(pred[y == c] == c) for c in classes]))
    return bal - 1.0 / len(classes)


def zero_shot_accuracy(
    images: F64, texts: F64, concepts: NDArray[Any], names: Sequence[str]
) -> float:
    """Share of ``images`` whose most similar row of ``texts`` (one per name) is their concept."""
    pred = np.asarray(names)[np.argmax(images @ texts.T, axis=1)]
    return float(np.mean(pred == concepts))


def mlp(d_in: int, hidden: int, d_out: int) -> Any:
    """``Linear → ReLU → Linear`` (torch), or one ``Linear`` when ``hidden`` is 0."""
    import torch

    if hidden == 0:
        return torch.nn.Linear(d_in, d_out)
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d_out)
    )


def to_lists(module: Any) -> dict[str, Any]:
    """A module's state as nested JSON lists (9 significant digits), by parameter name."""
    out: dict[str, Any] = {}
    for k, v in module.state_dict().items():
        arr = v.detach().cpu().double().numpy()
        out[k] = np.vectorize(lambda z: float(f"{z:.9g}"))(arr).tolist() if arr.size else []
    return out


def from_lists(module: Any, state: dict[str, Any], what: str) -> Any:
    """Load :func:`to_lists` output into ``module``; a shape mismatch is one line."""
    import torch

    own = module.state_dict()
    if set(own) != set(state):
        raise InputError(
            f"{what}: stored weights {sorted(state)} do not fit {sorted(own)}; re-run "
            "`vlmtrust harden`"
        )
    new = {}
    for k, v in own.items():
        t = torch.tensor(state[k], dtype=v.dtype)
        if tuple(t.shape) != tuple(v.shape):
            raise InputError(
                f"{what}: stored {k} has shape {tuple(t.shape)}, expected {tuple(v.shape)}; "
                "re-run `vlmtrust harden`"
            )
        new[k] = t
    module.load_state_dict(new)
    return module.eval()
