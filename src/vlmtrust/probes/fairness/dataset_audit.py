r"""``fairness/dataset_audit`` — who is in a dataset, and which concepts go with whom.

A data audit (no model is asked anything): one pass over the rows of any dataset with group
attributes and captions or labels (``--data``: a JSONL manifest, an image folder, a saved
Hugging Face dataset, or the ``fairface:``/``pata:``/``fairvlmed:``/``bold:`` loaders), or over
the people scenes of a reference model's own training mixture, regenerated from its recipe
without images (:mod:`vlmtrust.data.synthworld.mixtures`). Images are never decoded; the counts
live in memory bounded by caps, not by the number of rows
(:mod:`vlmtrust.probes.fairness._audit_tally`).

For each group attribute ``A`` (default: every attribute key except the label fields):

- ``imbalance_ratio/A``: largest over smallest group count; CI by a multinomial bootstrap of
  the counts, of the log ratio of the two groups the sample names largest and smallest (kept
  fixed: max / min re-taken per replicate is never below 1, so it excluded an exact balance).
  ``group_share/A``: each group's share of the rows with a value of ``A`` (Clopper–Pearson
  CIs) as its breakdown, the smallest as its value, and the gap (ratio min / max: the
  four-fifths rule); ``group_share/A[g]`` per group; ``unknown_share/A`` (rows
  without ``A``: counted, shown, never dropped).
- Co-occurrence with the concepts of each kind ``K`` (``label``: the target / label;
  ``word``: the caption words, English stop words left out), over the groups with at least
  ``min_group_size`` rows and the concepts in at least ``min_count`` of their rows (a row counts
  once per concept):

  * ``pmi_min/A/K`` and ``pmi_max/A/K``: the smoothed pointwise mutual information
    ``PMI(g, c) = ln p̃(g | c) − ln p̃(g)`` with add-``α`` smoothing over the ``G`` scored groups,
    ``p̃(g | c) = (n_gc + α) / (n_c + αG)``, ``p̃(g) = (n_g + α) / (N + αG)``
    (``α = smoothing``, default 1). ``exp(PMI)`` is how much more (or less) often group ``g``
    appears with ``c`` than in the data overall; the breakdown lists the extreme pairs. CI: from
    the Clopper–Pearson interval of ``n_gc / n_c``, ``p(g)`` taken as exact.
  * ``majority_share/A/K``: for each concept, the share of its rows that come from its most
    common group (Clopper–Pearson CI); the value is the highest such share, the breakdown the
    top concepts.

- The lexicon (``resources/fairness/lexicon.jsonl``: outdated clinical and group vocabulary,
  dehumanising framings, a few offensive exonyms; plus ``extra_terms``), matched as whole
  tokens in the row text: ``lexicon_rate/lexicon`` (rows with any term, per category in the
  breakdown and as ``lexicon_rate/lexicon[category]``) and ``lexicon_rate/A`` (per group).

Risk bands (documented thresholds, lower is better unless said):

- imbalance ratio above 1.25 (the four-fifths rule: the smallest group under 80% of the
  largest) is moderate, above 2 high;
- majority share above 0.8 is moderate, above 0.9 high;
- ``pmi_min`` (higher is better) below ``−ln 2.5`` (a group appears with a concept at under 2/5
  of its overall rate) is moderate, below ``−ln 5`` (under 1/5) high;
- lexicon rate above 0 is moderate, above 1% of the rows with text high.

The planted group–occupation correlation of ``reference:clip``'s mixture (0.95) and a control
mixture drawn at 0.5 are audited in ``tests/probes/fairness/test_dataset_audit.py``; the
streaming cost in ``bench/bench_dataset_audit.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.metrics import clopper_pearson
from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import (
    Example,
    GroupValue,
    MetricKey,
    MetricResult,
    Plot,
    Record,
    Series,
    Thresholds,
)
from vlmtrust.core.sample import Sample
from vlmtrust.core.stats import N_BOOTSTRAP, group_gap, percentile_ci, risk_band
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.data.synthworld.mixtures import MIXTURES, PeopleMixture, mixture_rows, people_mixture
from vlmtrust.models.none import NO_MODEL_SPEC
from vlmtrust.probes._data import dataset
from vlmtrust.probes.fairness._audit_tally import (
    OTHER,
    AuditTally,
    LexiconTerm,
    TallyLimits,
    shipped_lexicon,
)
from vlmtrust.probes.fairness._common import banded

IMBALANCE_THRESHOLDS = (1.25, 2.0)
"""Imbalance-ratio bands: the four-fifths rule (moderate), twice the smallest group (high)."""
MAJORITY_SHARE_THRESHOLDS = (0.8, 0.9)
"""Majority-share bands: over 80% of a concept's rows from one group (moderate), 90% (high)."""
PMI_MIN_THRESHOLDS = (-math.log(2.5), -math.log(5.0))
"""``pmi_min`` bands: a group at under 2/5 (moderate) or 1/5 (high) of its overall rate."""
LEXICON_THRESHOLDS = (0.0, 0.01)
"""Lexicon-rate bands: any flagged row (moderate), over 1% of the rows with text (high)."""
TOP = 15
"""Pairs / concepts listed in each breakdown."""
KINDS = ("label", "word")


class DatasetAuditParams(Params):
    """Parameters of ``fairness/dataset_audit``."""

    data: str | None = Field(
        None, description="dataset spec to audit (default: --data; without either, a mixture)"
    )
    mixture: Literal["reference:clip", "reference:vlm"] | None = Field(
        None,
        description="audit this reference model's training mixture (default without data: the "
        "model's own, when it is reference:clip or reference:vlm)",
    )
    correlation: float | None = Field(
        None, ge=0.0, le=1.0, description="mixture only: another group–occupation correlation"
    )
    rows: int | None = Field(None, ge=1, description="mixture only: another number of scenes")
    attributes: list[str] | None = Field(
        None, description="group attributes (default: every attribute but the label fields)"
    )
    text_fields: list[str] = Field(
        default_factory=lambda: ["caption", "prompt", "target"],
        description="where a row's text is read: caption (metadata), prompt, target, or a key",
    )
    label_fields: list[str] = Field(
        default_factory=lambda: ["target", "label"],
        description="where a row's labels are read: target, label (attribute), or a key",
    )
    min_count: int = Field(20, ge=1, description="rows a concept needs to be scored")
    min_group_size: int = Field(30, ge=1, description="rows a group needs to be scored")
    smoothing: float = Field(1.0, ge=0.0, le=100.0, description="add-α smoothing of the PMI")
    stop_words: bool = Field(True, description="leave English stop words out of the words")
    extra_terms: list[str] = Field(
        default_factory=list, description="more terms to flag, besides the shipped lexicon"
    )
    max_concepts: int = Field(20_000, ge=10, le=1_000_000, description="concepts tracked")
    max_groups: int = Field(32, ge=2, le=1000, description="values kept per attribute")
    max_attributes: int = Field(16, ge=1, le=100, description="attributes kept")

    @field_validator("attributes")
    @classmethod
    def _some(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("give at least one attribute, or leave it unset for all of them")
        return v


@dataclass(frozen=True)
class _Source:
    """What the audit reads: a data spec, a mixture, or the model's own mixture (``auto``)."""

    spec: str | None = None
    mixture: PeopleMixture | None = None

    @property
    def auto(self) -> bool:
        return self.spec is None and self.mixture is None


def _mixture_note(mix: PeopleMixture) -> str:
    return (
        f"audited: the people scenes of {mix.name}'s training mixture, regenerated from its "
        f"recipe without images ({mix.rows:,} scenes, group–occupation correlation "
        f"{mix.correlation:g}); the mixture's other scene kinds carry no group attribute"
    )


@probe("fairness/dataset_audit")
class DatasetAuditProbe(Probe):
    """Group representation, group–concept co-occurrence and flagged terms of a dataset."""

    pillar = Pillar.FAIRNESS
    requires = Capability.NONE
    Params = DatasetAuditParams
    batch_size = 1
    description = "data audit: group shares, group–concept PMI and majority shares, outdated terms"
    params: DatasetAuditParams

    # ------------------------------------------------------------------ what runs where

    def unsupported(self, model: Any) -> str | None:
        """Runs without a model (``none``), on the reference models, or with data named."""
        if (
            self.params.data is not None
            or self.params.mixture is not None
            or model.spec in (NO_MODEL_SPEC, *MIXTURES)
        ):
            return None
        return (
            f"probe {self.name} audits data, not a model: run it without --model "
            f"(`vlmtrust run {self.name} --data DATA`), or on reference:clip / reference:vlm "
            "to audit their training mixture"
        )

    def _source(self, ctx: ProbeContext) -> _Source:
        p = self.params
        spec = p.data if p.data is not None else (None if p.mixture else ctx.data)
        if spec is not None:
            if p.correlation is not None or p.rows is not None:
                raise InputError(
                    f"{self.name}: correlation and rows apply to a mixture only — drop them, "
                    "or drop --data and set mixture"
                )
            return _Source(spec=spec)
        if p.mixture is not None:
            return _Source(
                mixture=people_mixture(p.mixture, correlation=p.correlation, rows=p.rows)
            )
        return _Source()

    def n_samples(self, ctx: ProbeContext) -> int:
        """One: the dataset as a whole."""
        return 1

    def samples(self, ctx: ProbeContext) -> Iterator[Sample]:
        """One sample: the dataset as a whole (its rows are read in :meth:`evaluate`)."""
        src = self._source(ctx)
        if src.spec is not None:
            dataset(ctx, src.spec)  # a bad spec fails here, with one line
        yield Sample(id="dataset", metadata={"source": src.spec or "mixture"})

    def _rows(self, model: Any, ctx: ProbeContext) -> tuple[Iterable[Any], str]:
        src = self._source(ctx)
        if src.auto:
            spec = getattr(model, "spec", None)
            if spec not in MIXTURES:
                raise CapabilityError(
                    f"probe {self.name} has nothing to audit: pass --data DATA (a manifest with "
                    "attributes and captions, or fairface:/pata:/fairvlmed:/bold: PATH), or "
                    f"--param {self.name}.mixture=reference:clip"
                )
            src = _Source(
                mixture=people_mixture(
                    spec, correlation=self.params.correlation, rows=self.params.rows
                )
            )
        if src.mixture is not None:
            return mixture_rows(src.mixture), _mixture_note(src.mixture)
        assert src.spec is not None
        return dataset(ctx, src.spec), f"audited: {src.spec}"

    # ------------------------------------------------------------------ the pass

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Read every row once and keep the counts (the record holds them as JSON)."""
        p = self.params
        rows, source = self._rows(model, ctx)
        lexicon = list(shipped_lexicon()) + [
            LexiconTerm(t.strip().lower(), "user terms", "user", "") for t in p.extra_terms
        ]
        tally = AuditTally(
            attributes=p.attributes,
            text_fields=p.text_fields,
            label_fields=p.label_fields,
            lexicon=lexicon,
            stop_words=p.stop_words,
            limits=TallyLimits(
                max_attributes=p.max_attributes,
                max_groups=p.max_groups,
                max_concepts=p.max_concepts,
            ),
        )
        tally.add_all(itertools.islice(rows, ctx.limit) if ctx.limit is not None else rows)
        summary = tally.summary(min_total=p.min_count)
        summary["source"] = source
        return [
            self.record(s, output=summary, scores={"rows": float(summary["rows"])}) for s in batch
        ]

    # ------------------------------------------------------------------ metrics

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Representation, co-occurrence and lexicon metrics (see the module docstring)."""
        if not records:
            return []
        s = records[0].output
        out: list[MetricResult] = []
        for name, info in s["attributes"].items():
            out += self._representation(name, info, s["rows"], ctx.seed)
            scored = self._scored_groups(info)
            if len(scored) >= 2:
                for kind in KINDS:
                    assoc = _associations(s["concepts"], kind, name, scored, self.params)
                    if assoc:
                        out += self._cooccurrence(name, kind, assoc, headline=kind == _lead(s))
            out += self._lexicon_by_group(name, info, s["lexicon"])
        out += self._lexicon(s)
        return out

    def _scored_groups(self, info: dict[str, Any]) -> dict[str, int]:
        return {
            g: n
            for g, n in info["groups"].items()
            if g != OTHER and n >= self.params.min_group_size
        }

    def _representation(
        self, name: str, info: dict[str, Any], total: int, seed: int
    ) -> list[MetricResult]:
        counts = {g: int(n) for g, n in info["groups"].items() if n > 0}
        n_known = int(info["rows"])
        if not counts or n_known == 0:
            return []
        reps = _multinomial_replicates(counts, seed=seed)
        shares = {}
        for g, n in counts.items():
            c_lo, c_hi = clopper_pearson(n, n_known)
            shares[g] = GroupValue(value=n / n_known, ci_low=c_lo, ci_high=c_hi, n=n)
        real = {g: n for g, n in counts.items() if g != OTHER}
        largest = max(real, key=lambda g: real[g]) if real else OTHER
        others = [g for g in real if g != largest]  # two distinct groups even when all tie
        smallest = min(others, key=lambda g: real[g]) if others else largest
        out = []
        if len(real) >= 2:
            # The CI is for the ratio of the two groups the sample names largest and smallest,
            # kept fixed in every replicate, on the log scale. Re-taking max / min in each
            # replicate would be bounded below by 1 and biased upward, so an exactly balanced
            # set (ratio 1) got an interval excluding 1; the fixed pair's log ratio resamples
            # symmetrically around the observed value.
            big, small = reps[largest], reps[smallest]
            ok = (big > 0) & (small > 0)
            log_reps = np.where(
                ok, np.log(np.where(ok, big, 1)) - np.log(np.where(ok, small, 1)), np.nan
            )
            log_lo, log_hi = percentile_ci(log_reps)
            lo = float(np.exp(log_lo)) if log_lo is not None else None
            hi = float(np.exp(log_hi)) if log_hi is not None else None
            ratio = real[largest] / real[smallest]
            th = Thresholds(moderate=IMBALANCE_THRESHOLDS[0], high=IMBALANCE_THRESHOLDS[1])
            out.append(
                banded(
                    key=MetricKey(metric="imbalance_ratio", condition=name),
                    value=ratio,
                    ci_low=lo,
                    ci_high=hi,
                    n=n_known,
                    higher_is_better=False,
                    thresholds=th,
                    headline=True,
                    description=(
                        f"rows of the most common {name} ({largest}) over the least common "
                        f"({smallest}); CI: multinomial bootstrap of the log ratio of these "
                        "two groups"
                    ),
                )
            )
        out.append(
            MetricResult.of(
                MetricKey(metric="group_share", condition=name),
                shares[smallest],
                n=n_known,
                higher_is_better=True,
                unit="%",
                groups=shares,
                group_by=name,
                gap=group_gap(
                    {g: shares[g] for g in real},
                    {g: reps[g] / n_known for g in real},
                    higher_is_better=True,
                ),
                description=(
                    f"share of the rows with a {name} in each group (value: the smallest, "
                    f"{smallest}; Clopper–Pearson CIs)"
                ),
            )
        )
        out += _per_group(
            "group_share",
            name,
            shares,
            n=n_known,
            higher_is_better=True,
            describe=lambda g: f"share of the rows with a {name} that are {g}",
        )
        unknown = total - n_known
        out.append(
            MetricResult.of(
                MetricKey(metric="unknown_share", condition=name),
                _share(unknown, total),
                higher_is_better=False,
                unit="%",
                description=f"rows without a {name} ({unknown:,} of {total:,}: counted as unknown)",
            )
        )
        return out

    def _cooccurrence(
        self, name: str, kind: str, assoc: list[_Assoc], *, headline: bool
    ) -> list[MetricResult]:
        out: list[MetricResult] = []
        by_share = sorted(assoc, key=lambda a: (-a.majority_share, a.concept))
        top = by_share[0]
        th = Thresholds(moderate=MAJORITY_SHARE_THRESHOLDS[0], high=MAJORITY_SHARE_THRESHOLDS[1])
        out.append(
            banded(
                key=MetricKey(metric="majority_share", condition=name, step=kind),
                value=top.majority_share,
                ci_low=top.majority_ci[0],
                ci_high=top.majority_ci[1],
                n=top.n,
                higher_is_better=False,
                unit="%",
                groups={
                    a.concept: GroupValue(
                        value=a.majority_share,
                        ci_low=a.majority_ci[0],
                        ci_high=a.majority_ci[1],
                        n=a.n,
                    )
                    for a in by_share[:TOP]
                },
                group_by=f"{kind} (share of its most common {name})",
                thresholds=th,
                headline=headline,
                description=(
                    f"highest share of one {name} among the rows of a {kind}: {top.concept!r} is "
                    f"{top.majority_share:.0%} {top.majority} (over {len(assoc)} {kind}s with at "
                    f"least {self.params.min_count} rows; CI of that {kind})"
                ),
            )
        )
        pairs = sorted(
            ((a, g) for a in assoc for g in a.pmi), key=lambda ag: (ag[0].pmi[ag[1]], ag[0].concept)
        )
        th_pmi = Thresholds(moderate=PMI_MIN_THRESHOLDS[0], high=PMI_MIN_THRESHOLDS[1])
        for which, chosen in (("pmi_min", pairs[:TOP]), ("pmi_max", pairs[::-1][:TOP])):
            a, g = chosen[0]
            value = a.pmi[g]
            lo, hi = a.pmi_ci[g]
            is_min = which == "pmi_min"
            out.append(
                MetricResult(
                    key=MetricKey(metric=which, condition=name, step=kind),
                    value=value,
                    ci_low=lo,
                    ci_high=hi,
                    n=a.n,
                    higher_is_better=True,
                    groups={
                        f"{b.concept} × {h}": GroupValue(
                            value=b.pmi[h], ci_low=b.pmi_ci[h][0], ci_high=b.pmi_ci[h][1], n=b.n
                        )
                        for b, h in chosen
                    },
                    group_by=f"{kind} × {name}",
                    thresholds=th_pmi if is_min else None,
                    risk=risk_band(value, th_pmi, higher_is_better=True) if is_min else None,
                    headline=headline and is_min,
                    description=(
                        f"{'lowest' if is_min else 'highest'} smoothed PMI of a {name} with a "
                        f"{kind}: {g} is {math.exp(value):.2g}× as frequent among the rows of "
                        f"{a.concept!r} as overall (α = {self.params.smoothing:g})"
                    ),
                )
            )
        return out

    def _lexicon(self, s: dict[str, Any]) -> list[MetricResult]:
        lex = s["lexicon"]
        text_rows = int(s["text_rows"])
        if text_rows == 0:
            return []
        rate = _share(int(lex["rows"]), text_rows)
        th = Thresholds(moderate=LEXICON_THRESHOLDS[0], high=LEXICON_THRESHOLDS[1])
        cats = {c: _share(int(v["n"]), text_rows) for c, v in lex["categories"].items()}
        out = [
            MetricResult.of(
                MetricKey(metric="lexicon_rate", condition="lexicon"),
                rate,
                n=text_rows,
                higher_is_better=False,
                unit="%",
                groups=cats,
                group_by="category",
                thresholds=th,
                risk=risk_band(rate.value, th, higher_is_better=False),
                headline=True,
                description=(
                    f"rows whose text holds a flagged term ({lex['size']} outdated or offensive "
                    f"terms; {int(lex['rows']):,} of {text_rows:,} rows with text)"
                ),
            )
        ]
        out += _per_group(
            "lexicon_rate",
            "lexicon",
            cats,
            n=text_rows,
            higher_is_better=False,
            describe=lambda c: f"rows with a flagged {c} term",
        )
        return out

    def _lexicon_by_group(
        self, name: str, info: dict[str, Any], lex: dict[str, Any]
    ) -> list[MetricResult]:
        if not lex["rows"]:
            return []
        hits = lex["by"].get(name, {})
        groups = {
            g: _share(int(hits.get(g, 0)), int(n))
            for g, n in info["text_rows"].items()
            if n > 0 and g != OTHER
        }
        if len(groups) < 2:
            return []
        vals = {g: gv.value for g, gv in groups.items() if gv.value is not None}
        worst = max(vals, key=lambda g: vals[g])
        return [
            MetricResult.of(
                MetricKey(metric="lexicon_rate", condition=name),
                groups[worst],
                higher_is_better=False,
                unit="%",
                groups=groups,
                group_by=name,
                description=(
                    f"rows with a flagged term among each {name} group's rows with text "
                    f"(highest: {worst})"
                ),
            )
        ]

    # ------------------------------------------------------------------ report

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Group shares per attribute, and a PMI heatmap of the leading concept kind."""
        if not records:
            return []
        s = records[0].output
        out: list[Plot] = []
        for name, info in list(s["attributes"].items())[:4]:
            n_known = int(info["rows"])
            groups = {g: int(n) for g, n in info["groups"].items() if n > 0}
            if n_known and groups:
                shares = {g: _share(n, n_known) for g, n in groups.items()}
                out.append(
                    Plot(
                        kind="bar",
                        title=f"share of the rows by {name}",
                        x_label=name,
                        y_label="share",
                        series=[
                            Series(
                                name="share",
                                x=list(shares),
                                y=[gv.value for gv in shares.values()],
                                lo=[gv.ci_low for gv in shares.values()],
                                hi=[gv.ci_high for gv in shares.values()],
                            )
                        ],
                    )
                )
            scored = self._scored_groups(info)
            kind = _lead(s)
            assoc = _associations(s["concepts"], kind, name, scored, self.params) if kind else []
            if len(scored) >= 2 and assoc:
                strongest = sorted(
                    assoc, key=lambda a: (-max(abs(v) for v in a.pmi.values()), a.concept)
                )[:20]
                cols = sorted(scored)
                out.append(
                    Plot(
                        kind="heatmap",
                        title=f"PMI of {kind}s with {name} (strongest {len(strongest)})",
                        x_label=name,
                        y_label=kind,
                        matrix=[[a.pmi.get(g) for g in cols] for a in strongest],
                        row_labels=[a.concept for a in strongest],
                        col_labels=cols,
                    )
                )
        return out

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """The strongest group–concept associations and the flagged terms found."""
        if not records:
            return []
        s = records[0].output
        out: list[Example] = []
        kind = _lead(s)
        for name, info in s["attributes"].items():
            scored = self._scored_groups(info)
            if kind is None or len(scored) < 2:
                continue
            assoc = _associations(s["concepts"], kind, name, scored, self.params)
            pairs = sorted(((a, g) for a in assoc for g in a.pmi), key=lambda ag: ag[0].pmi[ag[1]])
            for a, g in pairs[:5]:
                share = a.counts.get(g, 0) / a.n
                out.append(
                    Example(
                        sample_id="dataset",
                        title=f"{name}={g} is rare among {kind} {a.concept!r}",
                        output=(
                            f"PMI {a.pmi[g]:+.2f}: {g} is {share:.1%} of the {a.n:,} rows of "
                            f"{a.concept!r} but {scored[g] / sum(scored.values()):.1%} overall"
                        ),
                        note=f"most common {name} there: {a.majority} ({a.majority_share:.1%})",
                    )
                )
        terms = sorted(s["lexicon"]["terms"].items(), key=lambda kv: (-kv[1]["n"], kv[0]))
        for term, t in terms[:10]:
            out.append(
                Example(
                    sample_id="dataset",
                    title=f"flagged term {term!r} ({t['category']}, {t['severity']})",
                    output=f"in {t['n']:,} rows",
                    expected=t["suggestion"] or None,
                    note="expected: the wording current style guidance uses instead",
                )
            )
        return out

    def notes(self, records: Sequence[Record], ctx: ProbeContext) -> list[str]:
        """What was audited, what the caps folded or left out, and rows that could not be read."""
        if not records:
            return []
        s = records[0].output
        p = self.params
        out = [f"{s['source']} — {s['rows']:,} rows"]
        if s["bad_rows"]:
            first = "; ".join(s["bad_examples"][:3])
            out.append(f"{s['bad_rows']:,} rows could not be read and are not counted: {first}")
        if not s["attributes"]:
            out.append(
                "no group attribute found: give rows an attributes object "
                '({"gender": "..."}) or name them with attributes=[...]'
            )
        for name, info in s["attributes"].items():
            real = [g for g in info["groups"] if g != OTHER]
            if len(real) == 1:
                out.append(f"attribute {name} has one value ({real[0]}): nothing to compare")
            small = [g for g, n in info["groups"].items() if 0 < n < p.min_group_size]
            if small:
                out.append(
                    f"{name}: groups under {p.min_group_size} rows are shown, not scored: "
                    + ", ".join(small[:10])
                )
            if info["overflow_rows"]:
                out.append(
                    f"{name}: more than {s['limits']['max_groups']} values — "
                    f"{info['overflow_rows']:,} rows of the later ones are counted as {OTHER}"
                )
        if s["ignored_attributes"]:
            out.append(
                f"more than {s['limits']['max_attributes']} attributes: left out "
                + ", ".join(sorted(s["ignored_attributes"])[:10])
            )
        if not s["text_rows"]:
            out.append(
                f"no row has text in {', '.join(p.text_fields)}: no word co-occurrence and no "
                "lexicon check"
            )
        if s["concepts_below_min"]:
            out.append(
                f"{s['concepts_below_min']:,} concepts seen in fewer than {p.min_count} rows are "
                "not scored"
            )
        if s["evictions"]:
            out.append(
                f"more than {s['limits']['max_concepts']:,} distinct concepts: the least frequent "
                f"were dropped {s['evictions']} times ({s['evicted_concepts']:,} in all); counts "
                f"of concepts first seen later may be short by up to {s['error_bound']:,} rows"
            )
        return out


# ---------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Assoc:
    """One concept's co-occurrence with the scored groups of one attribute."""

    concept: str
    n: int
    counts: dict[str, int]
    majority: str
    majority_share: float
    majority_ci: tuple[float | None, float | None]
    pmi: dict[str, float]
    pmi_ci: dict[str, tuple[float | None, float | None]]


def _lead(s: dict[str, Any]) -> str | None:
    """The concept kind the headline metrics use: labels when rows have them, else words."""
    kinds = {c["kind"] for c in s["concepts"]}
    if "label" in kinds:
        return "label"
    return "word" if "word" in kinds else None


def _per_group(
    metric: str,
    condition: str,
    groups: dict[str, GroupValue],
    *,
    n: int,
    higher_is_better: bool,
    describe: Callable[[str], str],
) -> list[MetricResult]:
    """One ``metric/condition/group`` percentage metric per group (``describe(group)``)."""
    return [
        MetricResult.of(
            MetricKey(metric=metric, condition=condition, group=g),
            gv,
            n=n,
            higher_is_better=higher_is_better,
            unit="%",
            description=describe(g),
        )
        for g, gv in groups.items()
    ]


def _share(k: int, n: int) -> GroupValue:
    if n <= 0:
        return GroupValue(value=None, n=0)
    lo, hi = clopper_pearson(k, n)
    return GroupValue(value=k / n, ci_low=lo, ci_high=hi, n=n)


def smoothed_pmi(n_gc: int, n_c: int, n_g: int, n: int, *, groups: int, alpha: float) -> float:
    """``ln p̃(g | c) − ln p̃(g)`` with add-``alpha`` smoothing over ``groups`` groups.

    Example:
        >>> round(smoothed_pmi(90, 100, 500, 1000, groups=2, alpha=0.0), 4)  # ln(0.9 / 0.5)
        0.5878
    """
    p_gc = (n_gc + alpha) / (n_c + alpha * groups)
    p_g = (n_g + alpha) / (n + alpha * groups)
    return math.log(p_gc) - math.log(p_g)


def _associations(
    concepts: Sequence[dict[str, Any]],
    kind: str | None,
    name: str,
    scored: dict[str, int],
    params: DatasetAuditParams,
) -> list[_Assoc]:
    if kind is None:
        return []
    total = sum(scored.values())
    groups = len(scored)
    out = []
    for c in concepts:
        if c["kind"] != kind:
            continue
        by = c["by"].get(name, {})
        counts = {g: int(by.get(g, 0)) for g in scored}
        n_c = sum(counts.values())
        if n_c < params.min_count:
            continue
        majority = max(sorted(counts), key=lambda g: counts[g])
        k = counts[majority]
        pmi: dict[str, float] = {}
        pmi_ci: dict[str, tuple[float | None, float | None]] = {}
        for g, n_g in scored.items():
            pmi[g] = smoothed_pmi(counts[g], n_c, n_g, total, groups=groups, alpha=params.smoothing)
            lo, hi = clopper_pearson(counts[g], n_c)
            p_g = n_g / total
            pmi_ci[g] = (math.log(lo / p_g) if lo > 0 else None, math.log(hi / p_g))
        out.append(
            _Assoc(
                concept=str(c["value"]),
                n=n_c,
                counts=counts,
                majority=majority,
                majority_share=k / n_c,
                majority_ci=clopper_pearson(k, n_c),
                pmi=pmi,
                pmi_ci=pmi_ci,
            )
        )
    return out


def _multinomial_replicates(counts: dict[str, int], *, seed: int) -> dict[str, np.ndarray]:
    """Bootstrap replicates of each group's count: the row counts resampled as a multinomial.

    (Resampling the rows with replacement changes the counts exactly this way.)
    """
    names = list(counts)
    n = np.array([counts[g] for g in names], dtype=np.float64)
    rng = np.random.default_rng((seed, 0x1BA1))
    reps = rng.multinomial(int(n.sum()), n / n.sum(), size=N_BOOTSTRAP).astype(np.float64)
    return {g: reps[:, i] for i, g in enumerate(names)}
