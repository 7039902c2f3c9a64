"""``robustness/ood_detection`` — zero-shot OOD detection: MCM, MaxLogit and Energy.

In-distribution (ID) images should score higher than out-of-distribution (OOD) images on a
score computed from the raw cosines ``s`` between the image and the ID class prompts
(REFERENCE.md; ID is the positive class):

* MCM (Ming et al., NeurIPS 2022): ``max_i softmax(s / tau)_i`` with ``tau = 1`` on raw
  cosines, in float64 (with ``tau = 1`` the softmax is nearly flat: float32 ties).
* MaxLogit (Hendrycks et al. 2022): ``max_i s_i``.
* Energy (Liu et al. 2020): ``T * logsumexp(s / T)``, ``T = 1`` (higher = more ID; this sign).

Reported per score: AUROC, AUPR-In (average precision with ID positive) and FPR at 95% TPR,
with bootstrap CIs, and ROC curves. Default data: SynthWorld ID shapes vs the held-out shapes.
With ``--data`` the user's dataset is ID and ``ood_data`` (a dataset spec) is required.
Abstaining models (``robustness/ood_guard``) also get their rejection rates on ID and OOD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image
from pydantic import Field

from vlmtrust.attacks import zeroshot as zs
from vlmtrust.attacks.zeroshot import (
    energy_score,
    max_logit_score,
    mcm_score,
)
from vlmtrust.core.errors import InputError
from vlmtrust.core.params import Params
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Example, MetricKey, MetricResult, Plot, Record, Series
from vlmtrust.core.sample import Sample
from vlmtrust.core.stats import accuracy, metric
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes import _data
from vlmtrust.probes._plots import one_plot
from vlmtrust.probes.families import labeled_image as li

F64 = NDArray[np.float64]

# --------------------------------------------------------------------------- scores


SCORES: dict[str, Callable[[ArrayLike], F64]] = {
    "mcm": mcm_score,
    "max_logit": max_logit_score,
    "energy": energy_score,
}


# --------------------------------------------------------------------------- metrics


def _check(y_true: ArrayLike, score: ArrayLike) -> tuple[F64, F64]:
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("y_true and score must be 1-D and of equal length")
    if y.min(initial=1) == y.max(initial=0) or len(y) == 0:
        raise ValueError("need both ID (1) and OOD (0) samples")
    return y, s


def auroc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve, ID = positive class (1); ties count one half.

    Mann-Whitney form (fast enough for a 1,000-resample bootstrap; equals scikit-learn's
    ``roc_auc_score``).
    """
    from scipy.stats import rankdata

    y, s = _check(y_true, score)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _curve(y: F64, s: F64) -> tuple[F64, F64, F64]:
    """Cumulative true/false positives at each distinct threshold (descending) and thresholds."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.nonzero(np.diff(ss))[0], ys.size - 1]  # last index of each distinct score
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64), ss[last]


def aupr_in(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the precision-recall curve with ID positive (average precision).

    ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (scikit-learn's definition).
    """
    y, s = _check(y_true, score)
    tps, fps, _ = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(y_true: ArrayLike, score: ArrayLike, *, tpr: float = 0.95) -> float:
    """Share of OOD samples accepted at the threshold that accepts ``tpr`` of ID samples.

    The threshold is the largest one whose TPR (ID accepted, ``score >= threshold``) reaches
    ``tpr``.

    Example:
        >>> fpr_at_tpr([1, 1, 1, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.65, 0.1])
        0.5
    """
    y, s = _check(y_true, score)
    tps, fps, _ = _curve(y, s)
    tpr_curve = tps / tps[-1]
    idx = int(np.searchsorted(tpr_curve, tpr - 1e-12, side="left"))
    return float(fps[min(idx, len(fps) - 1)] / fps[-1])


# --------------------------------------------------------------------------- probe


class OODParams(Params):
    """Parameters of ``robustness/ood_detection``."""

    n_id: int = Field(100, ge=1, le=1_000_000, description="ID images (SynthWorld default)")
    n_ood: int = Field(100, ge=1, le=1_000_000, description="OOD images (SynthWorld default)")
    ood_data: str | None = Field(
        None, description="dataset spec of OOD images (required with --data)"
    )
    ood_source: Literal["heldout", "id_control"] = Field(
        "heldout",
        description="SynthWorld OOD set: held-out shapes, or 'id_control' = more ID images "
        "(a control run: every score should give AUROC near 0.5)",
    )
    classes: list[str] | None = Field(None, description="ID class names (default: ID labels)")
    template: str = Field(li.DEFAULT_TEMPLATE, description="class prompt")
    tau: float = Field(1.0, gt=0.0, description="MCM temperature on raw cosines")
    temperature: float = Field(1.0, gt=0.0, description="energy temperature")


@probe("robustness/ood_detection")
class OODDetection(li.ZeroShotProbe):
    """Separating in- from out-of-distribution images with MCM, MaxLogit and Energy."""

    pillar = Pillar.ROBUSTNESS
    requires = Capability.EMBED
    Params = OODParams
    batch_size = 64
    description = (
        "Zero-shot OOD detection: can the model's scores tell in-distribution images from "
        "unseen kinds? AUROC / AUPR-In / FPR@95%TPR for MCM, MaxLogit and Energy."
    )

    params: OODParams

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars)."""
        p = self.params
        if ctx.data is not None:  # entries counted, not decoded; no OOD set: samples() refuses
            if p.ood_data is None:
                return None
            return _data.count(ctx, p.n_id) + _data.count(ctx, p.n_ood, p.ood_data)
        return ctx.size(p.n_id) + ctx.size(p.n_ood)

    def samples(self, ctx: ProbeContext) -> Iterable[Any]:
        """ID images then OOD images; an empty side raises :class:`InputError`."""
        return self._gen(ctx)

    def _gen(self, ctx: ProbeContext) -> Iterator[Any]:
        p = self.params
        if ctx.data is None:
            classes = p.classes or li.id_classes()
            id_items: list[Any] = [
                li.make_sample(sid, im, lab, classes, attributes={"set": "id", "class": lab})
                for sid, im, lab in li.synth_shapes(
                    ctx, ctx.size(p.n_id), purpose="ood", split="id"
                )
            ]
            ood_items: list[Any] = [
                li.make_sample(sid, im, lab, classes, attributes={"set": "ood", "class": lab})
                for sid, im, lab in li.synth_shapes(
                    ctx,
                    ctx.size(p.n_ood),
                    purpose="ood" if p.ood_source == "heldout" else "ood-control",
                    split="ood" if p.ood_source == "heldout" else "id",
                )
            ]
        else:
            if p.ood_data is None:
                raise InputError(
                    "robustness/ood_detection with --data needs an OOD set: pass "
                    "--param ood_data=DATASET_SPEC (images of kinds outside your labels)"
                )
            id_raw = list(_data.first(_data.dataset(ctx), ctx.size(p.n_id)))
            labels = sorted({s.target for s in id_raw if isinstance(s, Sample) and s.target})
            classes = p.classes or labels
            ood_raw = list(_data.first(_data.dataset(ctx, p.ood_data), ctx.size(p.n_ood)))
            check_sets(
                sum(isinstance(s, Sample) for s in id_raw),
                sum(isinstance(s, Sample) for s in ood_raw),
            )
            yield from self._user(id_raw, "id", classes)
            yield from self._user(ood_raw, "ood", classes)
            return
        check_sets(len(id_items), len(ood_items))
        yield from id_items
        yield from ood_items

    @staticmethod
    def _user(items: Iterable[Any], which: str, classes: Sequence[str]) -> Iterator[Any]:
        """User samples, each decoded when reached (a bad image becomes one error record)."""
        for item in items:
            if not isinstance(item, Sample):
                yield item
                continue
            image = _data.decode(item, f"{which}/{item.id}")
            if not isinstance(image, Image.Image):
                yield image
                continue
            label = str(item.target or "")
            attrs = {"set": which, "class": label}
            yield li.make_sample(f"{which}/{item.id}", image, label, classes, attributes=attrs)

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Compute MCM, MaxLogit and Energy for each image (and the guard's abstentions)."""
        classes = list(batch[0].metadata["classes"]) if batch else []
        if not classes:
            raise InputError(
                "robustness/ood_detection: no ID class names; pass --param classes=[...] or "
                "label the ID images"
            )
        texts = zs.class_prompts(classes, self.params.template)
        preds = zs.predict(model, [s.pil_images()[0] for s in batch], texts, self._cache)
        mcm = mcm_score(preds.cos, tau=self.params.tau)
        mx = max_logit_score(preds.cos)
        en = energy_score(preds.cos, temperature=self.params.temperature)
        out = []
        for i, s in enumerate(batch):
            out.append(
                self.record(
                    s,
                    output={"prediction": classes[int(preds.index[i])], "set": s.attributes["set"]},
                    scores={
                        "is_id": float(s.attributes["set"] == "id"),
                        "mcm": float(mcm[i]),
                        "max_logit": float(mx[i]),
                        "energy": float(en[i]),
                        "abstained": float(preds.abstained[i]),
                    },
                )
            )
        return out

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """AUROC, AUPR-In, FPR@95TPR per score (CIs), plus guard rejection rates."""
        y = np.array([r.scores["is_id"] for r in records], dtype=np.float64)
        check_sets(int((y == 1).sum()), int((y == 0).sum()))
        out: list[MetricResult] = []
        for name in SCORES:
            s = np.array([r.scores[name] for r in records], dtype=np.float64)
            mcm = name == "mcm"
            for key, fn, higher, th, unit, desc in (
                (
                    "auroc",
                    auroc,
                    True,
                    (0.9, 0.75),
                    "",
                    f"AUROC of {name} separating ID (positive) from OOD",
                ),
                (
                    "aupr_in",
                    aupr_in,
                    True,
                    None,
                    "",
                    f"area under precision-recall of {name}, ID positive",
                ),
                (
                    "fpr95",
                    fpr_at_tpr,
                    False,
                    (0.3, 0.6),
                    "%",
                    f"share of OOD accepted when 95% of ID is accepted ({name})",
                ),
            ):
                out.append(
                    metric(
                        MetricKey(metric=key, condition=name),
                        fn,
                        y,
                        s,
                        higher_is_better=higher,
                        thresholds=th if mcm else None,
                        description=desc,
                        unit=unit,
                        headline=mcm and key == "auroc",
                        seed=ctx.seed,
                    )
                )
        if any("abstained" in r.scores for r in records):
            ab = np.array([r.scores.get("abstained") or 0.0 for r in records])
            for key, kind, higher in (
                ("ood_rejection_rate", 0, True),
                ("id_rejection_rate", 1, False),
            ):
                which = "ID" if kind else "OOD"
                out.append(
                    metric(
                        MetricKey(metric=key),
                        accuracy,
                        ab[y == kind],
                        higher_is_better=higher,
                        description=f"share of {which} images the model abstains on (0 without "
                        "a guard)",
                        unit="%",
                        seed=ctx.seed,
                    )
                )
        return out

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """ROC curves of the three scores."""
        from sklearn.metrics import roc_curve

        y = np.array([r.scores["is_id"] for r in records], dtype=np.float64)
        if len(set(y.tolist())) < 2:
            return []
        series = []
        for name in SCORES:
            s = np.array([r.scores[name] for r in records], dtype=np.float64)
            fpr, tpr, _ = roc_curve(y, s)
            keep = _thin(len(fpr), 200)
            series.append(
                Series(name=name, x=[float(v) for v in fpr[keep]], y=[float(v) for v in tpr[keep]])
            )
        return one_plot(
            "roc",
            "ROC: ID (positive) vs OOD",
            "false positive rate (OOD accepted)",
            "true positive rate (ID accepted)",
            series,
        )

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """OOD images the model is most confident are in-distribution (by MCM)."""
        ood = sorted(
            (r for r in records if r.scores.get("is_id") == 0.0),
            key=lambda r: -(r.scores["mcm"] or 0.0),
        )[:6]
        return [
            Example(
                sample_id=r.sample_id,
                title=f"OOD {r.attributes.get('class')!r} looks in-distribution",
                output=str(r.output.get("prediction")),
                expected="out-of-distribution",
                note=f"MCM {r.scores['mcm']:.4f}, max cosine {r.scores['max_logit']:.3f}",
            )
            for r in ood
        ]


def check_sets(n_id: int, n_ood: int) -> None:
    """Raise one clear :class:`InputError` when the ID or the OOD set is empty."""
    if n_id == 0:
        raise InputError(
            "robustness/ood_detection: the in-distribution (ID) set is empty; give ID images "
            "(--data, or n_id >= 1)"
        )
    if n_ood == 0:
        raise InputError(
            "robustness/ood_detection: the OOD set is empty; give OOD images "
            "(--param ood_data=DATASET_SPEC, or n_ood >= 1)"
        )


def _thin(n: int, k: int) -> NDArray[np.int64]:
    if n <= k:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))
