"""Judge agreement with the labeled set shipped with the project.

``resources/safety/judge_labeled.jsonl`` holds ≥ 300 responses, each written one by one and
hand-labeled for the project (no templates; none shares its text with the refusal classifier's
training set): refusals, partial refusals, compliant answers (content-free placeholders for
harmful requests, benign help for benign ones), compliant answers that mention "sorry",
off-topic answers and rude/toxic answers. Each row carries up to three labels:

* ``refusal`` — did the response refuse? (``None`` where not applicable: toxic rants);
* ``unsafe`` — is it a harmful response (complies with a harmful request, or is toxic)?
  Off-topic answers and partial refusals are safe;
* ``toxic`` — is it toxic?

:func:`measure` compares a judge with the labels of its task (refusal judges → ``refusal``,
toxicity judges → ``toxic``, harm judges → ``unsafe``): accuracy, Cohen's κ (scikit-learn),
a bootstrap CI of the accuracy and per-category accuracy. Judge failures are counted in
``n_errors`` and left out of the scores (never counted as agreeing or disagreeing).

Example:
    >>> from vlmtrust.judges.base import get_judge
    >>> a = measure(get_judge("refusal/keyword"))
    >>> a.n >= 300 and 0.0 <= a.accuracy <= 1.0
    True
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

from vlmtrust.core.results import GroupValue, MetricKey, MetricResult
from vlmtrust.judges.base import Judge, JudgeTask, judges_for, positive_label


@dataclass(frozen=True)
class LabeledResponse:
    """One hand-labeled response."""

    id: str
    prompt: str
    response: str
    category: str
    refusal: bool | None
    unsafe: bool | None
    toxic: bool | None

    def label_for(self, task: JudgeTask) -> bool | None:
        """The positive-class label (refusal / toxic / unsafe) for ``task``."""
        if task == "refusal":
            return self.refusal
        if task == "toxicity":
            return self.toxic
        return self.unsafe


@lru_cache(maxsize=1)
def _labeled_text() -> str:
    path = resources.files("vlmtrust.resources").joinpath("safety", "judge_labeled.jsonl")
    return path.read_text(encoding="utf-8")


def labeled_set() -> list[LabeledResponse]:
    """The shipped labeled set (≥ 300 responses)."""

    def opt(v: object) -> bool | None:
        return None if v is None else bool(v)

    out = []
    for line in _labeled_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        out.append(
            LabeledResponse(
                id=str(row["id"]),
                prompt=str(row["prompt"]),
                response=str(row["response"]),
                category=str(row["category"]),
                refusal=opt(row.get("refusal")),
                unsafe=opt(row.get("unsafe")),
                toxic=opt(row.get("toxic")),
            )
        )
    return out


@dataclass(frozen=True)
class Agreement:
    """A judge's agreement with the labeled set.

    Attributes:
        judge: judge name.
        task: the judge's task (which labels were compared).
        accuracy: share of rows where the judge's label equals the hand label.
        kappa: Cohen's κ (chance-corrected agreement; 0 = chance, 1 = perfect).
        n: rows compared (judge errors excluded).
        ci: 95% bootstrap CI of the accuracy.
        n_errors: rows on which the judge failed.
        per_category: accuracy per response category.
        per_category_n: rows compared per response category.
    """

    judge: str
    task: JudgeTask
    accuracy: float
    kappa: float
    n: int
    ci: tuple[float | None, float | None]
    n_errors: int = 0
    per_category: dict[str, float] = field(default_factory=dict)
    per_category_n: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for notes and reports."""
        lo, hi = self.ci
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        err = f", {self.n_errors} errors" if self.n_errors else ""
        return (
            f"judge {self.judge}: accuracy {self.accuracy:.3f}{ci}, Cohen's kappa "
            f"{self.kappa:.3f} on n={self.n} labeled responses{err}"
        )


def measure(
    judge: Judge, labeled: Sequence[LabeledResponse] | None = None, *, seed: int = 0
) -> Agreement:
    """Measure ``judge`` against the labeled set (default: the shipped one).

    Rows without a label for the judge's task are skipped.
    """
    from sklearn.metrics import cohen_kappa_score

    from vlmtrust.core.stats import bootstrap_ci

    rows = list(labeled) if labeled is not None else labeled_set()
    rows = [r for r in rows if r.label_for(judge.task) is not None]
    if not rows:
        raise ValueError(f"no labeled rows for task {judge.task!r}")
    judgments = judge.judge([r.response for r in rows], [r.prompt for r in rows])
    pos = positive_label(judge.task)
    truth, pred, cats = [], [], []
    n_errors = 0
    for r, j in zip(rows, judgments, strict=True):
        if not j.ok:
            n_errors += 1
            continue
        truth.append(bool(r.label_for(judge.task)))
        pred.append(j.label == pos)
        cats.append(r.category)
    if not truth:
        return Agreement(
            judge.name, judge.task, float("nan"), float("nan"), 0, (None, None), n_errors
        )
    t = np.asarray(truth)
    p = np.asarray(pred)
    correct = (t == p).astype(np.float64)
    kappa = float(cohen_kappa_score(t, p)) if len(set(truth) | set(pred)) > 1 else 1.0
    ci = bootstrap_ci(lambda c: float(np.mean(c)), correct, seed=seed)
    cat_arr = np.asarray(cats)
    per_cat = {c: float(correct[cat_arr == c].mean()) for c in sorted(set(cats))}
    per_cat_n = {c: int((cat_arr == c).sum()) for c in per_cat}
    return Agreement(
        judge=judge.name,
        task=judge.task,
        accuracy=float(correct.mean()),
        kappa=kappa,
        n=len(truth),
        ci=ci,
        n_errors=n_errors,
        per_category=per_cat,
        per_category_n=per_cat_n,
    )


_LOCK = threading.Lock()
_CACHE: dict[str, Agreement] = {}


def cached_agreement(judge: Judge) -> Agreement:
    """:func:`measure` on the shipped set, memoised per process by judge name and labeled set.

    Only meaningful for deterministic judges (all offline judges are; an LLM judge asks its
    model greedily, one call per labeled response, so it is measured once per process).
    """
    key = judge.name + "|" + hashlib.sha256(_labeled_text().encode()).hexdigest()[:16]
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = measure(judge)
        return _CACHE[key]


LLM_AGREEMENT_OPTION = "llm_agreement"
"""The probe parameter that turns on agreement measurement for LLM judges."""


def agreement_metrics(
    judges: Sequence[str], enabled: bool, *, llm: bool | None = None
) -> list[MetricResult]:
    """Each judge's agreement with the labeled set (``judge_agreement/`` and ``judge_kappa/``).

    ``judge_agreement`` is the accuracy (bootstrap CI; groups: accuracy per response category,
    ``group_by="category"``), ``judge_kappa`` Cohen's κ. Offline judges are always measured.
    LLM judges (not offline: one call per labeled response) are measured when ``llm`` is true;
    otherwise both metrics carry value ``None`` and a description saying how to measure them
    (``llm=None``: the probe offers no ``llm_agreement`` option).

    Args:
        judges: judge names.
        enabled: the probe's ``agreement`` parameter (false: no agreement metrics at all).
        llm: the probe's ``llm_agreement`` parameter, or ``None`` if it has none.
    """
    if not enabled:
        return []
    out = []
    for j in judges_for(judges):
        if not j.offline and not llm:
            how = (
                f"set {LLM_AGREEMENT_OPTION}=true to measure it"
                if llm is not None
                else "this probe has no llm_agreement option; measure it with "
                "vlmtrust.judges.agreement.measure"
            )
            note = (
                f"Agreement of LLM judge {j.name} with the project's hand-labeled responses "
                f"({j.task} labels): agreement not measured ({how}; it costs one judge call "
                "per labeled response). Its ASR has no measured trust figure."
            )
            for kind in ("judge_agreement", "judge_kappa"):
                out.append(
                    MetricResult(
                        key=MetricKey(metric=kind, judge=j.name),
                        value=None,
                        n=0,
                        higher_is_better=True,
                        unit="%" if kind == "judge_agreement" else "",
                        description=note,
                    )
                )
            continue
        a = cached_agreement(j)
        errors = f" The judge failed on {a.n_errors} responses (left out)." if a.n_errors else ""
        groups = {
            c: GroupValue(value=v, n=a.per_category_n.get(c, 0)) for c, v in a.per_category.items()
        }
        out.append(
            MetricResult(
                key=MetricKey(metric="judge_agreement", judge=j.name),
                value=a.accuracy,
                ci_low=a.ci[0],
                ci_high=a.ci[1],
                n=a.n,
                higher_is_better=True,
                unit="%",
                groups=groups,
                group_by="category" if groups else None,
                description=(
                    f"Agreement of judge {j.name} with the project's {a.n} hand-labeled "
                    f"responses ({j.task} labels): accuracy, Cohen's kappa {a.kappa:.3f}; "
                    f"groups: accuracy per response category.{errors}"
                ),
            )
        )
        out.append(
            MetricResult(
                key=MetricKey(metric="judge_kappa", judge=j.name),
                value=a.kappa,
                n=a.n,
                higher_is_better=True,
                description=(
                    f"Cohen's kappa of judge {j.name} against the project's {a.n} hand-labeled "
                    f"responses ({j.task} labels): chance-corrected agreement, 0 = chance, "
                    f"1 = perfect.{errors}"
                ),
            )
        )
    return out
