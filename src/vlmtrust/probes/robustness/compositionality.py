"""``robustness/compositionality`` — does the model bind attributes, relations and word order?

ARO (Yuksekgonul et al. 2023) and SugarCrepe (Hsieh et al. 2023) found that contrastive VLMs
often behave like bags of words: they pick the right caption over one that names something
absent, but not over one that uses the same words bound differently. SynthWorld renders
two-object scenes (:mod:`vlmtrust.data.synthworld.composition`); for each scene the model
scores the image against its true caption and one hard negative per type — the colours
swapped, the relation inverted, the objects swapped — and two easy control negatives (a shape
or a colour that is not in the image).

A type's accuracy is the share of scenes whose true caption scores strictly higher than the
negative (chance 0.5). A **tie counts as a failure** and the share of ties is reported: a
text encoder that ignores word order gives an attribute- or object-swapped caption exactly
the true caption's embedding. Headline: ``compositional_accuracy``, the mean over the three
swap types (bootstrap CI over scenes); ``binding_gap`` is the control accuracy minus it (large
when the model sees the objects but not how they are bound). Per-relation breakdowns are
groups. Dual encoders only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from vlmtrust.attacks import zeroshot as zs
from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import Example, MetricKey, MetricResult, Plot, Record, Series
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.stats import accuracy, metric
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.data.synthworld.composition import (
    CONTROL_TYPES,
    NEGATIVE_TYPES,
    SWAP_TYPES,
    composition_scenes,
)


class CompositionalityParams(Params):
    """Parameters of ``robustness/compositionality``."""

    n: int = Field(200, ge=2, le=100_000, description="two-object scenes")
    image_size: int | None = Field(
        None, ge=32, le=1024, description="rendered image side (default: the model's input size)"
    )


def _mean_of(*cols: Any) -> float:
    return float(np.mean(np.column_stack(cols)))


def _gap(control: Any, swap: Any) -> float:
    return float(np.mean(control) - np.mean(swap))


@probe("robustness/compositionality")
class Compositionality(Probe):
    """True caption against attribute-, relation- and object-swapped hard negatives."""

    pillar = Pillar.ROBUSTNESS
    requires = Capability.EMBED
    Params = CompositionalityParams
    batch_size = 64
    description = (
        "Compositionality (ARO / SugarCrepe style): true caption vs captions with the "
        "colours, the relation or the objects swapped, and easy controls; ties fail."
    )

    params: CompositionalityParams

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """One sample per scene."""
        return ctx.size(self.params.n)

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        """Two-object scenes with their caption and negatives in metadata."""
        seed = int(ctx.rng("synthworld", "compositionality").integers(0, 2**31 - 1))
        size = self.params.image_size or min(1024, max(32, ctx.image_size or 64))
        scenes = composition_scenes(ctx.size(self.params.n), seed=seed, size=size)
        for s in scenes:
            yield Sample(
                id=s.id,
                images=(ImageRef.from_image(s.image, label=s.id),),
                prompt=s.caption,
                attributes=dict(s.attributes),
                metadata={"negatives": dict(s.negatives)},
            )

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Cosine of each image to its caption and negatives; 0/1 wins and ties per type."""
        img = zs.embed_images(model, [s.pil_images()[0] for s in batch])
        texts = [
            t
            for s in batch
            for t in (str(s.prompt), *(s.metadata["negatives"][k] for k in NEGATIVE_TYPES))
        ]
        uniq = list(dict.fromkeys(texts))
        emb = np.asarray(model.embed_texts(uniq), dtype=np.float64)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        row = {t: i for i, t in enumerate(uniq)}
        out = []
        for s, v in zip(batch, img, strict=True):
            true = float(emb[row[str(s.prompt)]] @ v)
            scores: dict[str, float | None] = {}
            cos: dict[str, float] = {"caption": round(true, 6)}
            for k in NEGATIVE_TYPES:
                neg = float(emb[row[s.metadata["negatives"][k]]] @ v)
                cos[k] = round(neg, 6)
                scores[k] = float(true > neg)
                scores[f"tie/{k}"] = float(np.isclose(true, neg, rtol=0.0, atol=1e-7))
            texts_ = {"caption": str(s.prompt), **s.metadata["negatives"]}
            out.append(self.record(s, output={"cosine": cos, "texts": texts_}, scores=scores))
        return out

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Accuracy per negative type (per relation as groups), the headline and the gap."""
        if not records:
            return []
        rel = [str(r.attributes.get("relation", "")) for r in records]
        col = {k: [r.scores[k] or 0.0 for r in records] for k in NEGATIVE_TYPES}
        out = [
            metric(
                MetricKey(metric="compositional_accuracy"),
                _mean_of,
                *(col[k] for k in SWAP_TYPES),
                higher_is_better=True,
                thresholds=(0.8, 0.65),
                description="true caption scored above its swapped negatives (mean over "
                "attribute, relation and object swaps; chance 50%)",
                unit="%",
                headline=True,
                seed=ctx.seed,
            ),
            metric(
                MetricKey(metric="binding_gap"),
                lambda *c: _gap(
                    np.column_stack(c[: len(CONTROL_TYPES)]),
                    np.column_stack(c[len(CONTROL_TYPES) :]),
                ),
                *(col[k] for k in CONTROL_TYPES),
                *(col[k] for k in SWAP_TYPES),
                higher_is_better=False,
                description="control accuracy minus swap accuracy (the model sees the words "
                "but not how they are bound)",
                unit="%",
                seed=ctx.seed,
            ),
        ]
        for k in NEGATIVE_TYPES:
            kind = "hard negative" if k in SWAP_TYPES else "control negative"
            out.append(
                metric(
                    MetricKey(metric="accuracy", condition=k),
                    accuracy,
                    col[k],
                    higher_is_better=True,
                    groups=rel,
                    group_by="relation",
                    unit="%",
                    description=f"true caption above the {k.replace('_', ' ')} caption ({kind})",
                    seed=ctx.seed,
                )
            )
            ties = [r.scores[f"tie/{k}"] or 0.0 for r in records]
            if any(ties):
                out.append(
                    metric(
                        MetricKey(metric="tie_rate", condition=k),
                        accuracy,
                        ties,
                        higher_is_better=False,
                        unit="%",
                        seed=ctx.seed,
                        description=f"share of scenes where the {k.replace('_', ' ')} caption "
                        "scores exactly as the true one (counted as failures)",
                    )
                )
        return out

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Accuracy per negative type, and per relation for each swap type."""
        if not records:
            return []
        acc = [float(np.mean([r.scores[k] or 0.0 for r in records])) for k in NEGATIVE_TYPES]
        plots = [
            Plot(
                kind="bar",
                title="True caption preferred, per negative type",
                x_label="negative",
                y_label="accuracy",
                series=[Series(name="accuracy", x=list(NEGATIVE_TYPES), y=list(acc))],
            )
        ]
        rels = sorted({str(r.attributes.get("relation")) for r in records})
        series = [
            Series(
                name=k,
                x=list(rels),
                y=[
                    float(
                        np.mean(
                            [
                                r.scores[k] or 0.0
                                for r in records
                                if r.attributes.get("relation") == rel
                            ]
                        )
                    )
                    for rel in rels
                ],
            )
            for k in SWAP_TYPES
        ]
        plots.append(
            Plot(
                kind="bar",
                title="Swap accuracy per relation",
                x_label="relation",
                y_label="accuracy",
                series=series,
            )
        )
        return plots

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """Scenes where a swapped caption won, one per swap type."""
        out = []
        for k in SWAP_TYPES:
            lost = [r for r in records if r.scores.get(k) == 0.0]
            if lost:
                r = lost[0]
                cos = r.output["cosine"]
                out.append(
                    Example(
                        sample_id=r.sample_id,
                        title=f"{k.replace('_', ' ')} not told apart",
                        expected=r.output["texts"]["caption"],
                        output=r.output["texts"][k],
                        note=f"cosine of the true caption {cos['caption']:.3f}, of the "
                        f"{k.replace('_', ' ')} {cos[k]:.3f}",
                    )
                )
        return out
