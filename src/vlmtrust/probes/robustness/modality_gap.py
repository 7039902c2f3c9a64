"""``robustness/modality_gap`` — the gap between image and text embeddings, and what it costs.

Liang et al., "Mind the Gap: Understanding the Modality Gap in Multi-modal Contrastive
Representation Learning" (NeurIPS 2022): the image and text embeddings of a contrastive dual
encoder occupy two separate cones of the unit sphere. Measured here on SynthWorld shape scenes
and their captions (unit-normalised embeddings):

* ``gap`` — ``‖μ_image − μ_text‖``, the distance between the two modality centroids (0 when the
  modalities share a centroid, up to 2); bootstrap CI over image–caption pairs (headline);
* ``separability`` — out-of-fold accuracy (5-fold logistic regression) of telling an image
  embedding from a text embedding (0.5 = indistinguishable, 1 = two disjoint cones);
* ``matched_cosine`` and ``random_cosine`` — the mean cosine of an image to its own caption
  and to another scene's caption (Liang et al.'s Fig. 1 statistic).

**How the gap relates to robustness on the same model.** Liang et al. shift the embeddings
along the gap vector ``Δ = μ_text − μ_image`` and watch the downstream task move; the probe
does the same without retraining: image embeddings become ``norm(x + λΔ)`` for every ``λ`` of
``shifts`` (``λ = 1`` closes the gap of the centroids), and zero-shot accuracy and the OOD
AUROC of the maximum-softmax (MCM) score on held-out shapes are measured at each ``λ``. When
the model has GRADIENT, a small PGD attack (``adversarial_eps``) gives each image an
adversarial correctness too, and per class the probe plots the class's own gap (its images'
centroid against its captions' centroid) against its clean, adversarial and OOD-shifted
accuracy, with the Spearman correlation over classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from vlmtrust.attacks import zeroshot as zs
from vlmtrust.core.errors import InputError
from vlmtrust.core.metrics import auc, centroid_gap, gap_vector, shifted_cosines, unit_rows
from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import MetricKey, MetricResult, Plot, Record, Series
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.stats import accuracy, metric
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes.families import labeled_image as li

F64 = NDArray[np.float64]

__all__ = ["ModalityGap", "centroid_gap", "gap_vector", "shifted_cosines"]


def _unit(x: F64) -> F64:
    return unit_rows(x)


def _separability(images: F64, texts: F64, seed: int) -> F64:
    """Out-of-fold 0/1 correctness of a linear image-vs-text classifier, one per embedding."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.vstack([_unit(images), _unit(texts)])
    y = np.r_[np.zeros(len(images)), np.ones(len(texts))]
    folds = StratifiedKFold(n_splits=min(5, len(images)), shuffle=True, random_state=seed)
    pred = cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=folds)
    out: F64 = (pred == y).astype(np.float64)
    return out


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


class ModalityGapParams(Params):
    """Parameters of ``robustness/modality_gap``."""

    n: int = Field(200, ge=10, le=100_000, description="ID shape scenes with captions")
    n_ood: int = Field(100, ge=0, le=100_000, description="held-out shapes for OOD AUROC (0: none)")
    shifts: list[float] = Field(
        default_factory=lambda: [-0.5, 0.0, 0.5, 1.0],
        description="λ of the gap shift norm(x + λΔ) (1 closes the centroid gap)",
    )
    adversarial_eps: float = Field(
        1 / 255, ge=0.0, le=1.0, description="L∞ PGD budget on [0, 1] pixels (0: no attack)"
    )
    adversarial_steps: int = Field(5, ge=1, le=200)
    template: str = Field(li.DEFAULT_TEMPLATE, description="class prompt")


@probe("robustness/modality_gap")
class ModalityGap(Probe):
    """Image–text modality gap, its separability, and accuracy / OOD AUROC as the gap shifts."""

    pillar = Pillar.ROBUSTNESS
    requires = Capability.EMBED
    Params = ModalityGapParams
    batch_size = 64
    description = (
        "Modality gap (Liang et al. 2022): distance of the image and caption centroids, "
        "image-vs-text separability, and zero-shot accuracy / OOD AUROC as the gap is shifted."
    )

    params: ModalityGapParams

    def check(self, ctx: ProbeContext) -> None:
        """``shifts`` must hold λ = 0 (the model as it is)."""
        if 0.0 not in self.params.shifts:
            raise InputError(
                f"{self.name}: shifts={self.params.shifts} has no 0 (the unshifted model); "
                f"add it: -p {self.name}.shifts=[0,1]"
            )

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Class prompts, ID scenes and OOD scenes."""
        return len(li.id_classes()) + ctx.size(self.params.n) + ctx.size(self.params.n_ood)

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        """One text sample per class prompt, then ID scenes, then held-out shapes."""
        self.check(ctx)
        classes = li.id_classes()
        for c in classes:
            prompt = self.params.template.format(c)
            yield Sample(
                id=f"prompt/{c}", prompt=prompt, target=c, attributes={"set": "prompt", "class": c}
            )
        from vlmtrust.probes import _data

        for split, n in (("id", self.params.n), ("ood", self.params.n_ood)):
            seed = int(ctx.rng("synthworld", "modality_gap", split).integers(0, 2**31 - 1))
            world = _data.world(ctx, seed)  # at the model's input size
            for i, s in enumerate(world.shapes(ctx.size(n), split=split)):  # type: ignore[arg-type]
                yield Sample(
                    id=f"{split}-{i:05d}",
                    images=(ImageRef.from_image(s.image, label=f"{split}-{i:05d}"),),
                    prompt=s.caption,
                    target=s.target,
                    attributes={"set": split, "class": str(s.target)},
                )

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Embeddings of prompts, images and captions; adversarial correctness (GRADIENT)."""
        texts = [s for s in batch if not s.images]
        scenes = [s for s in batch if s.images]
        out: dict[str, Record] = {}
        if texts:
            emb = model.embed_texts([str(s.prompt) for s in texts])
            for s, e in zip(texts, emb, strict=True):
                out[s.id] = self.record(s, output={"text": _vec(e)})
        if scenes:
            img = zs.embed_images(model, [s.pil_images()[0] for s in scenes])
            cap = model.embed_texts([str(s.prompt) for s in scenes])
            adv = self._adversarial(model, scenes, ctx)
            for j, s in enumerate(scenes):
                scores = {} if adv is None or s.attributes["set"] != "id" else {"adv": adv[j]}
                out[s.id] = self.record(
                    s, output={"image": _vec(img[j]), "text": _vec(cap[j])}, scores=scores
                )
        return [out[s.id] for s in batch]

    def _adversarial(self, model: Any, scenes: Sequence[Sample], ctx: ProbeContext) -> F64 | None:
        p = self.params
        if p.adversarial_eps <= 0 or not Capability.GRADIENT & model.capabilities:
            return None
        from vlmtrust.attacks.objectives import AttackPlan, whitebox_dual

        classes = li.id_classes()
        idx = [j for j, s in enumerate(scenes) if s.attributes["set"] == "id"]
        res = np.full(len(scenes), np.nan)
        if idx:
            plan = AttackPlan(
                eps=(p.adversarial_eps,), steps=p.adversarial_steps, class_template=p.template
            )
            ims = [scenes[j].pil_images()[0] for j in idx]
            labels = [classes.index(str(scenes[j].target)) for j in idx]
            outcomes = whitebox_dual(model, ims, labels, classes, plan, ctx.seed)
            for j, o in zip(idx, outcomes, strict=True):
                res[j] = float(o.adv_preds[p.adversarial_eps] == scenes[j].target)
        return res

    # ------------------------------------------------------------------ metrics

    def _parts(
        self, records: Sequence[Record]
    ) -> tuple[list[str], F64, list[Record], list[Record]]:
        prompts = {
            str(r.attributes["class"]): r for r in records if r.attributes.get("set") == "prompt"
        }
        classes = [c for c in li.id_classes() if c in prompts]
        pe = np.asarray([prompts[c].output["text"] for c in classes], dtype=np.float64)
        ids = [r for r in records if r.attributes.get("set") == "id"]
        oods = [r for r in records if r.attributes.get("set") == "ood"]
        return classes, pe, ids, oods

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Gap, separability, cosines, and accuracy / OOD AUROC per gap shift."""
        classes, pe, ids, oods = self._parts(records)
        if len(ids) < 2:
            return []
        img, txt = _rows(ids, "image"), _rows(ids, "text")
        out = [
            metric(
                MetricKey(metric="gap"),
                centroid_gap,
                img,
                txt,
                higher_is_better=False,
                thresholds=(0.3, 0.6),
                description="‖μ_image − μ_text‖ of unit embeddings (0 = one shared centroid)",
                headline=True,
                seed=ctx.seed,
            ),
            metric(
                MetricKey(metric="separability"),
                accuracy,
                _separability(img, txt, ctx.seed),
                higher_is_better=False,
                better="none",
                description="out-of-fold accuracy telling image from text embeddings "
                "(0.5 or below = indistinguishable)",
                unit="%",
                seed=ctx.seed,
            ),
        ]
        cos = np.sum(_unit(img) * _unit(txt), axis=1)
        other = np.sum(_unit(img) * _unit(np.roll(txt, 1, axis=0)), axis=1)
        for name, vals, desc in (
            ("matched_cosine", cos, "mean cosine of an image to its own caption"),
            ("random_cosine", other, "mean cosine of an image to another scene's caption"),
        ):
            out.append(
                metric(
                    MetricKey(metric=name),
                    _mean,
                    vals,
                    higher_is_better=True,
                    better="none",
                    description=desc,
                    seed=ctx.seed,
                )
            )
        if len(classes) < 2:
            return out
        delta = gap_vector(img, txt)
        y = np.asarray([classes.index(str(r.attributes["class"])) for r in ids])
        ood_img = _rows(oods, "image") if oods else None
        for lam in self.params.shifts:
            cond = f"shift={lam:g}"
            correct = (shifted_cosines(img, pe, delta, lam).argmax(1) == y).astype(float)
            out.append(
                metric(
                    MetricKey(metric="zero_shot_accuracy", condition=cond),
                    accuracy,
                    correct,
                    higher_is_better=True,
                    unit="%",
                    seed=ctx.seed,
                    description=f"zero-shot accuracy with image embeddings norm(x + {lam:g}Δ)",
                )
            )
            if ood_img is not None:
                s_id = zs.mcm_score(shifted_cosines(img, pe, delta, lam))
                s_ood = zs.mcm_score(shifted_cosines(ood_img, pe, delta, lam))
                lab = np.r_[np.ones(len(s_id)), np.zeros(len(s_ood))]
                out.append(
                    metric(
                        MetricKey(metric="ood_auroc", condition=cond),
                        auc,
                        lab,
                        np.r_[s_id, s_ood],
                        higher_is_better=True,
                        seed=ctx.seed,
                        description=f"MCM AUROC, ID vs held-out shapes, at norm(x + {lam:g}Δ)",
                    )
                )
        out += self._class_relation(classes, ids, img, txt, pe, ctx)
        return out

    def _per_class(
        self, classes: list[str], ids: list[Record], img: F64, txt: F64, pe: F64
    ) -> dict[str, dict[str, float]]:
        """Per class: its own gap, and clean / adversarial zero-shot accuracy."""
        names = np.asarray([str(r.attributes["class"]) for r in ids])
        pred = (_unit(img) @ _unit(pe).T).argmax(1)
        clean = pred == np.asarray([classes.index(c) for c in names])
        adv = np.asarray([r.scores.get("adv", np.nan) for r in ids], dtype=float)
        table: dict[str, dict[str, float]] = {}
        for c in classes:
            m = names == c
            if m.sum() < 2:
                continue
            row = {"gap": centroid_gap(img[m], txt[m]), "clean": float(clean[m].mean())}
            if np.isfinite(adv[m]).all():
                row["adversarial"] = float(adv[m].mean())
            table[c] = row
        return table

    def _class_relation(
        self,
        classes: list[str],
        ids: list[Record],
        img: F64,
        txt: F64,
        pe: F64,
        ctx: ProbeContext,
    ) -> list[MetricResult]:
        table = self._per_class(classes, ids, img, txt, pe)
        out = []
        for what in ("clean", "adversarial"):
            rows = [(v["gap"], v[what]) for v in table.values() if what in v]
            rho = _spearman([a for a, _ in rows], [b for _, b in rows]) if rows else float("nan")
            if np.isfinite(rho):
                out.append(
                    MetricResult(
                        key=MetricKey(metric="gap_accuracy_correlation", condition=what),
                        value=rho,
                        n=len(rows),
                        higher_is_better=False,
                        better="none",
                        description=f"Spearman correlation over classes of the class gap and its "
                        f"{what} zero-shot accuracy",
                    )
                )
        return out

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Accuracy and OOD AUROC against the gap shift; class gap against accuracy."""
        classes, pe, ids, oods = self._parts(records)
        if len(ids) < 2 or len(classes) < 2:
            return []
        img, txt = _rows(ids, "image"), _rows(ids, "text")
        delta = gap_vector(img, txt)
        y = np.asarray([classes.index(str(r.attributes["class"])) for r in ids])
        lams = sorted(self.params.shifts)
        acc = [float((shifted_cosines(img, pe, delta, lam).argmax(1) == y).mean()) for lam in lams]
        series = [Series(name="zero-shot accuracy", x=list(lams), y=list(acc))]
        if oods:
            ood = _rows(oods, "image")
            lab = np.r_[np.ones(len(img)), np.zeros(len(ood))]
            au = [
                auc(
                    lab,
                    np.r_[
                        zs.mcm_score(shifted_cosines(img, pe, delta, lam)),
                        zs.mcm_score(shifted_cosines(ood, pe, delta, lam)),
                    ],
                )
                for lam in lams
            ]
            series.append(Series(name="OOD AUROC (MCM)", x=list(lams), y=list(au)))
        plots = [
            Plot(
                kind="line",
                title="Shifting the image embeddings along the gap",
                x_label="λ (1 = centroid gap closed)",
                y_label="value",
                series=series,
            )
        ]
        table = self._per_class(classes, ids, img, txt, pe)
        pts = [
            Series(
                name=what,
                x=[v["gap"] for v in table.values() if what in v],
                y=[v[what] for v in table.values() if what in v],
            )
            for what in ("clean", "adversarial")
            if any(what in v for v in table.values())
        ]
        if pts:
            plots.append(
                Plot(
                    kind="scatter",
                    title="Class gap against zero-shot accuracy",
                    x_label="class gap ‖μ_image − μ_text‖",
                    y_label="accuracy",
                    series=pts,
                )
            )
        return plots


def _vec(v: Any) -> list[float]:
    return [float(x) for x in np.round(np.asarray(v, dtype=np.float64), 6)]


def _rows(records: Sequence[Record], key: str) -> F64:
    return np.asarray([r.output[key] for r in records], dtype=np.float64)


def _mean(x: Any) -> float:
    return float(np.mean(x))
