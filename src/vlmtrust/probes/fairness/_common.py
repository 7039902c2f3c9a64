"""What the dual-encoder fairness probes share: the people gallery, attributes, embeddings.

Every fairness probe for dual encoders looks at the same kind of data: images of people, each
with protected attributes in ``Sample.attributes``. Without ``--data`` that is one SynthWorld
people gallery (:func:`people`), drawn the same way by every probe so that the run's
embedding cache embeds it once; with ``--data`` it is the user's images and the attributes
of their manifest (:func:`gallery`, which reads the entries, not the images, to check the
attributes before anything is embedded).

A sample without an attribute is in the group :data:`UNKNOWN`: counted and shown, never
dropped and never scored (:func:`attribute_values`, :func:`composition`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import AfterValidator

from vlmtrust.attacks import zeroshot as zs
from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import Probe, ProbeContext
from vlmtrust.core.results import GroupValue, MetricKey, MetricResult, Record, Thresholds
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.stats import risk_band
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.data import synthworld
from vlmtrust.data.synthworld import GROUPS, MAJORITY_GROUP, OCCUPATIONS
from vlmtrust.probes import _data
from vlmtrust.probes.families.group import UNKNOWN

__all__ = [
    "DEFAULT_CUE_PROB",
    "DEFAULT_QUERIES",
    "SYNTH_ATTRIBUTES",
    "UNKNOWN",
    "EmbedFairnessProbe",
    "attribute_values",
    "banded",
    "check_synth",
    "check_texts",
    "composition",
    "embedding_rows",
    "gallery",
    "people",
    "store_vector",
    "synth_values",
]

F64 = NDArray[np.float64]

DEFAULT_CUE_PROB = 0.5
"""Share of SynthWorld people scenes showing each occupation cue (prop, setting)."""

TRAITS: tuple[str, ...] = synthworld.TRAITS
"""Trait words of the default neutral queries (words a model may not know embed as unknown)."""

DEFAULT_QUERIES: tuple[str, ...] = synthworld.NEUTRAL_QUERIES
"""Neutral queries: one per SynthWorld occupation, "a photo of a person" and four traits."""

SYNTH_ATTRIBUTES: tuple[str, ...] = ("group", "occupation", "prop", "setting", "stereotype")
"""Attributes of SynthWorld people scenes. ``stereotype`` is ``congruent`` when the person's
group is the one the occupation is skewed towards in the reference models' training data
(:data:`~vlmtrust.data.synthworld.MAJORITY_GROUP`), else ``incongruent``."""


class _GalleryParams(Protocol):
    n: int


class EmbedFairnessProbe(Probe):
    """Base of the dual-encoder fairness probes on a people gallery of ``params.n`` images.

    Fairness pillar, needs ``embed``, batches of 64; ``self._texts`` caches the text
    embeddings of the run's model.
    """

    pillar = Pillar.FAIRNESS
    requires = Capability.EMBED
    batch_size = 64

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._texts = zs.TextCache()

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars)."""
        n = cast(_GalleryParams, self.params).n
        return ctx.size(n) if ctx.data is None else _data.count(ctx, n)

    @staticmethod
    def embed_batch(model: Any, batch: Sequence[Sample], *, hint: str = "") -> F64:
        """The first image of each sample, embedded (rows in batch order).

        Raises:
            ValueError: a sample without an image (``hint`` is appended to the message).
        """
        for s in batch:
            if not s.images:
                raise ValueError(f"sample {s.id} has no image{hint}")
        return zs.embed_images(model, [s.pil_images()[0] for s in batch])


def people(ctx: ProbeContext, n: int, *, cue_prob: float = DEFAULT_CUE_PROB) -> list[Sample]:
    """``n`` SynthWorld people scenes (capped by ``--limit``), the same for every fairness probe.

    Groups alternate with the index (exactly balanced, independent of the occupation);
    occupations are uniform. Drawn from the probes' evaluation world (never seen in training).
    """
    world = _data.eval_world(ctx)
    out = []
    for s in world.people(ctx.size(n), correlation=0.0, cue_prob=cue_prob):
        attrs = dict(s.attributes)
        congruent = MAJORITY_GROUP[attrs["occupation"]] == attrs["group"]
        attrs["stereotype"] = "congruent" if congruent else "incongruent"
        out.append(
            Sample(
                id=s.id,
                images=(ImageRef.from_image(s.image, label=s.id),),
                target=s.target,
                attributes=attrs,
                metadata={"caption": s.caption},
            )
        )
    return out


def gallery(
    ctx: ProbeContext,
    n: int,
    *,
    probe: str,
    attributes: Sequence[str],
    cue_prob: float = DEFAULT_CUE_PROB,
    need_label: bool = False,
) -> list[Any]:
    """The probe's images: SynthWorld people, or the first ``n`` items of ``--data``.

    User items stay lazy (their images are decoded by the runner); data-error markers pass
    through. Checked before any image is embedded:

    Raises:
        InputError: an attribute no sample has, or with a single value; with ``need_label``,
            a user sample without a label (``target``).
    """
    if ctx.data is None:
        check_synth(probe, attributes, cue_prob)
        items: list[Any] = people(ctx, n, cue_prob=cue_prob)
        where = "SynthWorld people"
    else:
        items = list(_data.first(_data.dataset(ctx), ctx.size(n)))
        where = f"dataset {ctx.data}"
    samples = [s for s in items if isinstance(s, Sample)]
    for attr in attributes:
        values = {s.attributes.get(attr) or UNKNOWN for s in samples} - {UNKNOWN}
        if not values:
            raise InputError(
                f"{probe}: no sample of {where} has attribute {attr!r}; add "
                f'"attributes": {{"{attr}": "..."}} to the manifest lines, or name another '
                f"attribute with -p {probe}.attributes=[...]"
            )
        if len(values) == 1:
            raise InputError(
                f"{probe}: attribute {attr!r} of {where} has one value ({next(iter(values))!r});"
                " a fairness comparison needs at least two — add samples of other values or "
                "name another attribute"
            )
    if need_label:
        for s in samples:
            if not s.target:
                raise InputError(
                    f"{probe}: sample {s.id} of {where} has no label; give every item a "
                    '"target" (its class) for zero-shot fairness probes'
                )
    return items


def synth_values(attr: str, cue_prob: float) -> tuple[str, ...]:
    """The values attribute ``attr`` of SynthWorld people scenes takes at this ``cue_prob``."""
    if attr in ("prop", "setting"):
        return tuple(v for v, p in (("true", cue_prob), ("false", 1.0 - cue_prob)) if p > 0)
    return {
        "group": GROUPS,
        "occupation": OCCUPATIONS,
        "stereotype": ("congruent", "incongruent"),
    }[attr]


def check_synth(probe: str, attributes: Sequence[str], cue_prob: float) -> None:
    """Refuse, before anything is drawn, an attribute SynthWorld people lack or fix to one value.

    Raises:
        InputError: one line naming the attribute and the fix.
    """
    for attr in attributes:
        if attr not in SYNTH_ATTRIBUTES:
            raise InputError(
                f"{probe}: SynthWorld people have no attribute {attr!r} (they have "
                f"{', '.join(SYNTH_ATTRIBUTES)}); pass --data with that attribute in the "
                "manifest, or name one of these"
            )
        values = synth_values(attr, cue_prob)
        if len(values) < 2:
            raise InputError(
                f"{probe}: attribute {attr!r} of SynthWorld people has one value "
                f"({values[0]!r}) at cue_prob={cue_prob:g}; a fairness comparison needs at "
                "least two — name another attribute or a cue_prob between 0 and 1"
            )


def check_texts(texts: Sequence[str], what: str, example: str) -> list[str]:
    """Validate a non-empty list of non-blank texts (for a Params validator)."""
    out = [str(t) for t in texts]
    if not out:
        raise ValueError(f"{what} is empty: give at least one, e.g. [{example!r}]")
    blank = [i for i, t in enumerate(out) if not t.strip()]
    if blank:
        raise ValueError(f"{what}[{blank[0]}] is blank: give a non-empty text")
    if len(set(out)) != len(out):
        dup = next(t for t in out if out.count(t) > 1)
        raise ValueError(f"{what} names {dup!r} twice: give each once")
    return out


def texts(what: str, example: str, *, empty_ok: bool = False) -> AfterValidator:
    """A ``list[str]`` parameter's validator: :func:`check_texts` (``[]`` too with ``empty_ok``).

    For ``Annotated[list[str], texts("queries", "a photo of a person")]`` in a probe's Params.
    """

    def check(v: list[str]) -> list[str]:
        return check_texts(v, what, example) if v or not empty_ok else []

    return AfterValidator(check)


Attributes = Annotated[list[str], texts("attributes", "group")]
"""The protected attributes a probe breaks its metrics down by (names; none blank, no repeat)."""


def attribute_values(records: Sequence[Record], attr: str) -> list[str]:
    """Each record's value of ``attr``, :data:`UNKNOWN` where it has none."""
    return [r.attributes.get(attr) or UNKNOWN for r in records]


def composition(values: Sequence[str], attr: str, *, what: str = "samples") -> MetricResult:
    """``share/attr``: the share of each value (``unknown`` included) among ``values``."""
    n = len(values)
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    order = sorted(counts, key=lambda v: (v == UNKNOWN, -counts[v], v))
    known = [v for v in order if v != UNKNOWN]
    largest = counts[known[0]] / n if known else None
    return MetricResult(
        key=MetricKey(metric="share", condition=attr),
        value=largest,
        n=n,
        higher_is_better=False,
        unit="%",
        groups={v: GroupValue(value=counts[v] / n, n=counts[v]) for v in order},
        group_by=attr,
        description=(
            f"share of each {attr} value among the {what} (value: the largest known group; "
            f"{UNKNOWN!r}: samples without the attribute, shown and not scored)"
        ),
    )


def banded(
    key: MetricKey,
    value: float | None,
    thresholds: Thresholds | None,
    *,
    higher_is_better: bool,
    **fields: Any,
) -> MetricResult:
    """The metric ``value`` with its risk band against ``thresholds`` (none without them).

    ``fields`` set the rest of the :class:`MetricResult`.
    """
    return MetricResult(
        key=key,
        value=value,
        higher_is_better=higher_is_better,
        thresholds=thresholds,
        risk=risk_band(value, thresholds, higher_is_better=higher_is_better),
        **fields,
    )


def store_vector(v: F64) -> list[float]:
    """A vector as a JSON list for ``Record.output`` (6 decimals: float32 precision is ~7)."""
    return [float(x) for x in np.round(np.asarray(v, dtype=np.float64), 6)]


def embedding_rows(records: Sequence[Record], key: str) -> F64:
    """The ``output[key]`` vectors of ``records`` as a float64 matrix (rows in record order)."""
    if not records:
        return np.zeros((0, 0))
    return np.asarray([r.output[key] for r in records], dtype=np.float64)
