"""``privacy/membership_inference``: was this image–text pair in the training set?

Candidates are members (trained on) and non-members (held out, same distribution). Attacks
(REFERENCE.md, Privacy), each reported as AUC and TPR at 0.1% / 1% FPR with exact intervals:

* ``threshold`` (headline): Ko et al. 2023's cosine threshold on ``cos(f_I(x), f_T(t))`` for
  dual encoders; Yeom et al.'s loss threshold (the answer's negative mean token NLL) for
  generative models with GRADIENT;
* ``loss`` (dual): LiRA's ``φ`` of the matched probability against fixed distractor captions
  (:mod:`~vlmtrust.probes.privacy._scoring`) — the negative contrastive loss;
* ``lira_offline``, ``lira_online`` and ``rmia`` (Carlini et al. 2022; Zarifzadeh et al. 2024,
  :mod:`~vlmtrust.probes.privacy._attacks`) when reference models exist. They come from the
  user (``reference_models=SPEC,…``: models of the target's architecture trained on none of the
  candidates, so offline attacks only) or are trained by the probe (``references=N``, opt-in):
  each is the target fine-tuned on a random half of the candidates and population samples, so
  every candidate is IN for exactly half of them. From the target, a candidate it already
  memorised moves little when trained on again and a fresh one moves a lot; the per-candidate
  Gaussians (LiRA) and likelihood ratios (RMIA) calibrate that against each candidate's own
  difficulty. RMIA's population ``z`` are extra held-out samples, scored but never counted.

Before attacking, a model-free classifier (the family's confound check) tries to tell members
from non-members by image and text statistics alone; beyond AUC 0.55 the report flags the
split as confounded. Bad input stops the probe with one line before any attack: too few
non-members for a requested FPR (it says how many), overlapping members and non-members, a
reference model of another architecture.

Default candidates: reference:clip's canaries (dual) and reference:vlm's ID cards (generative),
see :mod:`~vlmtrust.probes.privacy._candidates`; ``split=control`` and ``split=confounded`` are
the known-answer checks. User candidates: ``--data`` rows with ``attributes.member`` = 1, 0 or
population and a caption (``metadata.caption`` or ``target``), or a prompt and target answer
for generative models. Measured numbers: ``docs/results/privacy.md#membership_inference``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.model import Model
from vlmtrust.core.params import Params
from vlmtrust.core.probe import ProbeContext, probe
from vlmtrust.core.results import Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.types import Capability
from vlmtrust.probes._data import dataset, first
from vlmtrust.probes.families.membership import (
    AttackScores,
    MembershipProbe,
    check_split,
    image_text_features,
)
from vlmtrust.probes.privacy import _attacks, _candidates, _scoring

NAME = "privacy/membership_inference"
FREE = "free."
"""Prefix of the model-free feature scores (the confound check)."""


def _list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return list(v) if isinstance(v, list | tuple) else [v]


class MembershipInferenceParams(Params):
    """Parameters of ``privacy/membership_inference``."""

    candidates: Literal["canaries", "id_cards"] = Field(
        "canaries",
        description=(
            "SynthWorld candidates without --data: canaries (reference:clip's, the dual "
            "default) or id_cards (reference:vlm's, the generative default)"
        ),
    )
    split: _candidates.Split = Field(
        "planted",
        description=(
            "planted = trained members vs held-out non-members; control = both held out "
            "(AUC must cover 0.5); confounded = non-members drawn darker (must be flagged)"
        ),
    )
    non_members: int = Field(1000, ge=1, le=100_000, description="held-out candidates")
    fprs: list[float] = Field(
        default_factory=lambda: [0.001, 0.01],
        description="false positive rates of the TPR (each needs ⌈1/fpr⌉ non-members)",
    )
    reference_models: list[str] = Field(
        default_factory=list,
        description=(
            "reference model specs of the target's architecture trained on none of the "
            "candidates (offline LiRA and RMIA), comma-separated"
        ),
    )
    references: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "reference models the probe trains (even; each fine-tunes the target on a random "
            "half of the candidates): online + offline LiRA and RMIA. 0 = none (fast default)"
        ),
    )
    reference_steps: int = Field(60, ge=1, le=100_000, description="fine-tuning steps each")
    reference_lr: float = Field(3e-5, gt=0, le=1.0, description="fine-tuning learning rate")
    reference_batch: int = Field(32, ge=2, le=4096, description="pairs per fine-tuning step")
    population: int = Field(
        200, ge=1, le=100_000, description="RMIA population samples (used with references)"
    )
    rmia_gamma: float = Field(1.0, ge=1.0, description="RMIA's dominance threshold γ")
    rmia_a: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description=(
            "offline RMIA's p_in ≈ a·p_out + (1 − a); default: fitted on the probe's own "
            "references, else 0.3"
        ),
    )
    distractors: int = Field(
        63, ge=1, le=1000, description="dual: distractor captions of the matched probability"
    )

    @field_validator("reference_models", mode="before")
    @classmethod
    def _specs(cls, v: Any) -> list[str]:
        return [str(x) for x in _list(v)]

    @field_validator("fprs", mode="before")
    @classmethod
    def _fprs(cls, v: Any) -> list[float]:
        items = [float(x) for x in _list(v)]
        if not items:
            raise ValueError("give at least one fpr, e.g. fprs=0.001,0.01")
        for f in items:
            if not 0.0 < f < 1.0:
                raise ValueError(f"fpr {f:g} is outside (0, 1); e.g. 0.001 for 0.1%")
        return sorted(set(items))

    @field_validator("references")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(
                f"references={v}: use an even number, so every candidate is IN for exactly "
                "half of the reference models"
            )
        return v


@probe(NAME)
class MembershipInferenceProbe(MembershipProbe):
    """Membership inference: threshold, LiRA and RMIA attacks (module docstring)."""

    description = (
        "Membership inference: can an attacker tell training image–text pairs from held-out "
        "ones? Cosine/loss threshold (no reference models), LiRA online/offline and RMIA with "
        "reference models; AUC and TPR at 0.1% / 1% FPR (exact CIs), ROC on a log axis, and a "
        "model-free confound check of the split."
    )
    version = 1
    requires = Capability.NONE
    requires_any = Capability.EMBED | Capability.GENERATE
    Params = MembershipInferenceParams
    params: MembershipInferenceParams
    batch_size = 128
    attack_label = "threshold"
    model_free_prefix: ClassVar[str | None] = FREE

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._state: dict[str, Any] | None = None
        self._cands: tuple[Any, list[Sample]] | None = None

    @classmethod
    def defaults_for(cls, kind: str) -> dict[str, Any]:
        """Generative models attack reference:vlm's ID cards; dual encoders its canaries."""
        return {"candidates": "id_cards"} if kind == "generative" else {}

    def fpr_levels(self) -> tuple[float, ...]:
        """The ``fprs`` parameter."""
        return tuple(self.params.fprs)

    def unsupported(self, model: Model) -> str | None:
        """Dual encoders, or generative models with GRADIENT (their loss is the statistic)."""
        caps = model.capabilities
        generative_only = caps & Capability.GENERATE and not caps & Capability.EMBED
        if generative_only and not caps & Capability.GRADIENT:
            return (
                f"{NAME}: a generative model is attacked through its answer loss, which "
                f"needs GRADIENT (target_loss); model {model.spec} has none — use a local "
                "hf: checkpoint with plain pixel inputs"
            )
        if self.params.references and not caps & Capability.TRAIN:
            return (
                f"{NAME}: references={self.params.references} fine-tunes the target, which needs "
                f"TRAIN; model {model.spec} has none — pass reference_models=SPEC,… or "
                "references=0"
            )
        return super().unsupported(model)

    # ------------------------------------------------------------------ candidates

    def _uses_population(self) -> bool:
        return bool(self.params.references or self.params.reference_models)

    def candidates(self, ctx: ProbeContext) -> list[Any]:
        """Every candidate (and population sample), validated; the same list on every call."""
        p = self.params
        n_pop = p.population if self._uses_population() else 0
        if ctx.data is not None:
            items = list(_candidates.user_candidates(first(dataset(ctx), ctx.limit), NAME))
        elif p.candidates == "canaries":
            items = _candidates.canary_candidates(p.split, ctx.size(p.non_members), n_pop)
        else:
            items = _candidates.card_candidates(p.split, ctx.size(p.non_members), n_pop)
        good = [s for s in items if isinstance(s, Sample)]
        members = [_candidates.content_key(s) for s in good if s.attributes["member"] == "1"]
        non = [_candidates.content_key(s) for s in good if s.attributes["member"] == "0"]
        fix = (
            "add rows with member=0 to --data"
            if ctx.data is not None
            else f"raise --param {NAME}.non_members (and drop --limit)"
        )
        check_split(members, non, fprs=p.fprs, what=NAME, fix=fix)
        if self._uses_population() and not any(
            s.attributes["member"] == "population" for s in good
        ):
            raise InputError(
                f"{NAME}: RMIA needs population samples; add --data rows with member=population"
            )
        return items

    def check(self, ctx: ProbeContext) -> None:
        """Refuse, before any model loads, a split or reference models that cannot work.

        Too few non-members for an FPR, overlapping members and non-members (``--data``),
        reference models of another architecture than each other or than the target (local
        specs whose ``config.json`` tells; the target's specs come in
        ``ctx.extras["model_specs"]``).
        """
        p = self.params
        if ctx.data is None:
            members = (
                _candidates.CANARY_MEMBERS
                if p.candidates == "canaries"
                else _candidates.CARD_MEMBERS
            )
            n_non = ctx.size(p.non_members)
            # content keys are not needed to count: SynthWorld candidates never overlap
            check_split(
                [("m", i) for i in range(members)], [("n", i) for i in range(n_non)],
                fprs=p.fprs, what=NAME, fix=f"raise --param {NAME}.non_members (and drop --limit)",
            )  # fmt: skip
        else:
            self._items(ctx)  # reads --data: the split, overlap and population checks
        if p.reference_models:
            targets = [str(s) for s in ctx.extras.get("model_specs", ()) if isinstance(s, str)]
            _scoring.check_reference_specs(NAME, p.reference_models, targets)

    def samples(self, ctx: ProbeContext) -> Iterator[Any]:
        """The candidates; raises one line on a split that cannot be attacked (before any)."""
        yield from self.candidates(ctx)

    def n_samples(self, ctx: ProbeContext) -> int:
        """How many samples :meth:`samples` yields (the progress bar's total)."""
        p = self.params
        n_pop = p.population if self._uses_population() else 0
        members = (
            _candidates.CANARY_MEMBERS if p.candidates == "canaries" else _candidates.CARD_MEMBERS
        )
        return members + ctx.size(p.non_members) + n_pop

    # ------------------------------------------------------------------ reference models

    def _items(self, ctx: ProbeContext) -> list[Sample]:
        """The candidate samples (cached per seed, data and limit: drawn once per run)."""
        key = (ctx.seed, ctx.data, ctx.limit)
        if self._cands is None or self._cands[0] != key:
            self._cands = (key, [s for s in self.candidates(ctx) if isinstance(s, Sample)])
        return self._cands[1]

    def _setup(self, model: Any, ctx: ProbeContext) -> dict[str, Any]:
        """Reference models (loaded and checked, or trained) and the distractor captions."""
        key = model.fingerprint
        if self._state is not None and self._state["key"] == key:
            return self._state
        p = self.params
        refs: list[tuple[Any, dict[str, bool] | None]] = []
        want = _scoring.architecture(model)
        for spec in p.reference_models:
            load = ctx.extras.get("load_model")
            if load is None:
                raise InputError(
                    f"{NAME}: reference model {spec!r} needs the runner's model loader; run the "
                    "probe through the runner (vlmtrust audit, evaluate_probe)"
                )
            ref = load(spec)
            got = _scoring.architecture(ref)
            if got != want:
                raise CapabilityError(
                    f"{NAME}: reference model {spec} is {got} but the target {model.spec} is "
                    f"{want}; reference models must share the target's architecture — pass "
                    "such models, or let the probe train them (references=4)"
                )
            refs.append((ref, None))
        train_seconds = 0.0
        if p.references:
            t0 = time.perf_counter()
            refs.extend(self._train_references(model, self._items(ctx), ctx))
            train_seconds = time.perf_counter() - t0
        texts: list[str] = []
        emb: list[Any] = []
        if model.kind == "dual":
            texts = self._distractors(ctx)
            emb = [np.asarray(m.embed_texts(texts)) for m in [model, *(r for r, _ in refs)]]
        self._state = {
            "key": key,
            "refs": refs,
            "distractors": texts,
            "emb": emb,
            "train_seconds": train_seconds,
        }
        return self._state

    def _distractors(self, ctx: ProbeContext) -> list[str]:
        """Captions the matched probability is taken against (none is a counted candidate)."""
        n = self.params.distractors
        if ctx.data is None:
            return _candidates.canary_distractors(n)
        items = self._items(ctx)
        pop = [s for s in items if s.attributes["member"] == "population"]
        caps: list[str] = []
        for s in pop or items:
            c = _candidates.caption_of(s)
            if c and c not in caps:
                caps.append(c)
            if len(caps) >= n:
                break
        return caps

    def _train_references(
        self, model: Any, items: Sequence[Sample], ctx: ProbeContext
    ) -> list[tuple[Any, dict[str, bool]]]:
        """``references`` fine-tuned copies; every item IN for exactly half of them."""
        p = self.params
        r = p.references
        rng = ctx.rng(NAME, "halves")
        inside = np.zeros((len(items), r), dtype=bool)
        for i in range(len(items)):
            inside[i, rng.permutation(r)[: r // 2]] = True
        images = [s.images[0].load() for s in items]
        out: list[tuple[Any, dict[str, bool]]] = []
        for k in range(r):
            ref = _scoring.clone(model, f"reference{k}")
            idx = np.nonzero(inside[:, k])[0]
            sub = [items[int(i)] for i in idx]
            ims = [images[int(i)] for i in idx]
            _scoring.finetune(
                ref,
                ims,
                [_candidates.caption_of(s) or "" for s in sub],
                prompts=[s.prompt or "" for s in sub],
                targets=[s.target or "" for s in sub],
                steps=p.reference_steps,
                lr=p.reference_lr,
                batch_size=p.reference_batch,
                rng=ctx.rng(NAME, "reference", str(k)),
            )
            out.append((ref, {s.id: bool(inside[i, k]) for i, s in enumerate(items)}))
        return out

    # ------------------------------------------------------------------ scoring

    def _stats(
        self, m: Any, distractors: tuple[list[str], Any], batch: Sequence[Sample], images: list[Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(threshold score, φ, p)`` of each candidate under model ``m``."""
        if m.kind == "dual":
            caps = [_candidates.caption_of(s) or "" for s in batch]
            cos, phi = _scoring.dual_pair_stats(m, images, caps, distractors)
            return cos, phi, 1.0 / (1.0 + np.exp(-phi))
        prompts, targets = [], []
        for s in batch:
            if not s.prompt or not s.target:
                raise InputError(
                    f"{NAME}: sample {s.id!r} needs a prompt and a target answer for a "
                    "generative model"
                )
            prompts.append(s.prompt)
            targets.append(s.target)
        nll = _scoring.generative_nll(m, images, prompts, targets)
        return -nll, _attacks.phi_from_nll(nll), np.exp(-nll)

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Target and reference statistics per candidate, plus its model-free features."""
        st = self._setup(model, ctx)
        images = [s.images[0].load() for s in batch]
        models = [model, *(ref for ref, _ in st["refs"])]
        embs = st["emb"] or [None] * len(models)
        stats = [
            self._stats(m, (st["distractors"], e), batch, images)
            for m, e in zip(models, embs, strict=True)
        ]
        (score, phi, prob), per_ref = stats[0], stats[1:]
        out = []
        for i, s in enumerate(batch):
            sc: dict[str, float | None] = {
                self.score_key: float(score[i]),
                "phi": float(phi[i]),
                "p": float(prob[i]),
            }
            if model.kind == "dual":
                sc["cosine"] = float(score[i])
            for k, ((_, inside), (_, rphi, rp)) in enumerate(zip(st["refs"], per_ref, strict=True)):
                sc[f"ref{k}.phi"] = float(rphi[i])
                sc[f"ref{k}.p"] = float(rp[i])
                sc[f"ref{k}.in"] = float(bool(inside and inside.get(s.id, False)))
            text = _candidates.caption_of(s) if model.kind == "dual" else s.target
            for name, v in image_text_features(images[i], text).items():
                sc[FREE + name] = v
            out.append(self.record(s, scores=sc))
        return out

    # ------------------------------------------------------------------ attacks

    def _matrix(
        self, rows: Sequence[Record], n_ref: int, what: str
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        val = np.array([[r.scores[f"ref{k}.{what}"] for k in range(n_ref)] for r in rows])
        ins = np.array([[r.scores[f"ref{k}.in"] == 1.0 for k in range(n_ref)] for r in rows])
        return val.reshape(len(rows), n_ref).astype(np.float64), ins.reshape(len(rows), n_ref)

    def attacks(self, records: Sequence[Record], ctx: ProbeContext) -> list[AttackScores]:
        """Threshold (headline) and loss, then LiRA offline/online and RMIA with references."""
        out = super().attacks(records, ctx)
        rows = self._rows(records, "phi")
        y = np.array([float(r.attributes[self.member_attribute]) for r in rows])
        first_rec = rows[0] if rows else None
        if first_rec is not None and "cosine" in first_rec.scores:
            out.append(AttackScores("loss", "loss (φ vs distractors)", y, self._col(rows, "phi")))
        n_ref = 0 if first_rec is None else sum(k.endswith(".in") for k in first_rec.scores)
        if not rows or n_ref == 0:
            return out
        phi_t = self._col(rows, "phi")
        ref_phi, inside = self._matrix(rows, n_ref, "phi")
        off = _attacks.lira_offline(phi_t, ref_phi, inside)
        ok = np.isfinite(off)
        out.append(AttackScores("lira_offline", "LiRA offline", y[ok], off[ok]))
        if inside.any(axis=1).all() and (~inside).any(axis=1).all():
            on = _attacks.lira_online(phi_t, ref_phi, inside)
            ok = np.isfinite(on)
            out.append(AttackScores("lira_online", "LiRA online", y[ok], on[ok]))
        pop = [
            r
            for r in records
            if r.attributes.get(self.member_attribute) == "population"
            and r.scores.get("p") is not None
        ]
        if pop:
            ref_p, ins_x = self._matrix(rows, n_ref, "p")
            ref_pz, ins_z = self._matrix(pop, n_ref, "p")
            a = self.rmia_a(ref_p, ins_x)
            s = _attacks.rmia(
                self._col(rows, "p"), ref_p, ins_x, self._col(pop, "p"), ref_pz, ins_z,
                gamma=self.params.rmia_gamma, a=a,
            )  # fmt: skip
            out.append(AttackScores("rmia", "RMIA", y, s))
        return out

    def rmia_a(self, ref_p: NDArray[np.float64], inside: NDArray[np.bool_]) -> float:
        """Offline RMIA's ``a``: the parameter, else fitted on paired references, else 0.3."""
        if self.params.rmia_a is not None:
            return self.params.rmia_a
        both = inside.any(axis=1) & (~inside).any(axis=1)
        if not both.any():
            return 0.3
        p_in = np.where(inside, ref_p, 0).sum(1) / np.maximum(inside.sum(1), 1)
        p_out = np.where(~inside, ref_p, 0).sum(1) / np.maximum((~inside).sum(1), 1)
        return _attacks.fit_rmia_a(p_in[both], p_out[both])

    @staticmethod
    def _col(rows: Sequence[Record], key: str) -> NDArray[np.float64]:
        return np.array([r.scores[key] for r in rows], dtype=np.float64)

    def notes(self, records: Sequence[Record], ctx: ProbeContext) -> list[str]:
        """The confound flag, and how the reference models were obtained."""
        out = super().notes(records, ctx)
        p = self.params
        if p.references:
            secs = (self._state or {}).get("train_seconds")
            took = f" in {secs:.0f} s" if secs else ""
            out.append(
                f"{p.references} reference models fine-tuned from the target{took} "
                f"({p.reference_steps} steps of {p.reference_batch} pairs, lr {p.reference_lr:g},"
                " each on a random half of the candidates and population)"
            )
        if p.reference_models:
            out.append(
                f"user reference models (assumed trained on no candidate): "
                f"{', '.join(p.reference_models)}"
            )
        return out
