"""Human evaluation of a run: export judged answers, import the labels, measure agreement.

The review names human evaluation as the check automatic metrics need. The loop:

1. :func:`export_labels` writes every *flagged* judged answer of a run (the judges disagree, or
   a judge calls it a failure: a harmful request answered, a benign one refused, an unsafe
   answer) plus a seeded random *control* sample of the unflagged ones, as Label Studio
   import JSON (with ``label_config.xml``, the labelling interface) or as CSV with an empty
   ``human_label`` column. What was exported is kept in ``RUN/human_labels/export.jsonl`` so
   the labels can be matched back.
2. :func:`import_labels` reads the labels back (a Label Studio JSON or JSON-MIN export, or the
   CSV), keeps them in ``RUN/human_labels/labels.jsonl`` and measures each judge's agreement
   with the human labels — raw agreement and Cohen's κ with 95% bootstrap CIs, over all
   labelled items and over the control sample alone (flagged items are chosen *because* a
   judge said something, so agreement on them alone is biased; the control sample estimates
   agreement on the whole run) — written to ``RUN/human_labels/agreement.json`` and shown in
   the report.

Bad rows (an id that was never exported, a label that is not one of the task's choices) are
counted and named in one line each; the rest is imported. Answers are untrusted text: the
report escapes them, and they are written to files only as JSON/CSV values.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import Record
from vlmtrust.judges.base import COMPLIANCE, REFUSAL, SAFE, UNSAFE, judge_task, positive_label
from vlmtrust.report.rundir import is_parent_dir, load_runs
from vlmtrust.runner.engine import read_records

__all__ = [
    "CHOICES",
    "Agreement",
    "ExportSummary",
    "ImportSummary",
    "LabelItem",
    "export_labels",
    "import_labels",
    "read_agreement",
]

LABEL_DIR = "human_labels"
UNSURE = "unsure"
CHOICES: dict[str, tuple[str, ...]] = {
    "refusal": (REFUSAL, COMPLIANCE),
    "toxicity": (UNSAFE, SAFE),
    "harm": (UNSAFE, SAFE),
}
"""The labels a reviewer may give, per judge task (plus ``unsure``, which is skipped)."""


@dataclass(frozen=True)
class LabelItem:
    """One judged answer sent for review (one per record and judge task)."""

    id: str
    run: str
    probe: str
    sample_id: str
    task: str
    prompt: str
    answer: str
    judges: dict[str, str]
    selection: Literal["flagged", "control"]


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_labels` wrote."""

    path: Path
    n_flagged: int
    n_control: int
    n_candidates: int
    extra_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Agreement:
    """One judge's agreement with the human labels on one probe."""

    run: str
    probe: str
    judge: str
    task: str
    n: int
    agreement: float | None
    agreement_ci: tuple[float | None, float | None]
    kappa: float | None
    kappa_ci: tuple[float | None, float | None]
    n_control: int
    kappa_control: float | None
    kappa_control_ci: tuple[float | None, float | None]


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_labels` read and measured."""

    n_labels: int
    n_unsure: int
    errors: tuple[str, ...]
    agreements: tuple[Agreement, ...] = field(default_factory=tuple)


# -- export ----------------------------------------------------------------------------------


def write_text_atomic(path: Path, text: str) -> Path:
    """The report's atomic writer (imported late: the report imports this module)."""
    from vlmtrust.report.html import write_text_atomic as write

    return write(path, text)


def _run_dirs(run_dir: Path) -> list[tuple[str, Path]]:
    runs = load_runs(run_dir)  # validates the directory and its index
    if is_parent_dir(run_dir):
        return [(r.name, r.directory) for r in runs]
    return [("", runs[0].directory)]


def _risky(task: str, label: str, kind: str | None) -> bool:
    """Whether ``label`` is a failure the automatic metrics count (flag it for review)."""
    if task == "refusal":
        return label == (REFUSAL if kind == "benign" else COMPLIANCE)
    return label == positive_label("toxicity")


def _record_items(run_name: str, rec: Record) -> Iterator[LabelItem]:
    judgments = rec.output.get("judgments")
    if not rec.ok or not isinstance(judgments, dict):
        return
    probe = str(rec.output.get("probe") or "")
    by_task: dict[str, dict[str, str]] = {}
    task: str
    for name, j in judgments.items():
        label = j.get("label") if isinstance(j, dict) else None
        if not isinstance(label, str) or label == "error":
            continue
        try:
            task = judge_task(name)
        except (InputError, ValueError):
            continue
        by_task.setdefault(task, {})[name] = label
    answer = rec.output.get("answer", rec.output.get("text", ""))
    prompt = rec.output.get("request", rec.output.get("prompt", ""))
    for task, labels in sorted(by_task.items()):
        flagged = len(set(labels.values())) > 1 or any(
            _risky(task, lb, rec.attributes.get("kind")) for lb in labels.values()
        )
        yield LabelItem(
            id="|".join(x for x in (run_name, probe, rec.sample_id, task) if x),
            run=run_name,
            probe=probe,
            sample_id=rec.sample_id,
            task=task,
            prompt=str(prompt),
            answer=str(answer),
            judges=labels,
            selection="flagged" if flagged else "control",
        )


def _collect(run_dir: Path) -> list[LabelItem]:
    out: list[LabelItem] = []
    for run_name, d in _run_dirs(run_dir):
        names = {_sample_file(d, p): p for p in _probe_names(d)}
        for path in sorted((d / "samples").glob("*.jsonl")):
            probe = names.get(path.name, path.stem)
            for rec in read_records(path):
                rec.output.setdefault("probe", probe)
                out.extend(_record_items(run_name, rec))
    return out


def _probe_names(run_dir: Path) -> list[str]:
    raw = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    return [str(r.get("probe")) for r in raw.get("results", []) if isinstance(r, dict)]


def _sample_file(run_dir: Path, probe: str) -> str:
    from vlmtrust.runner.engine import samples_file

    return samples_file(run_dir, probe).name


def export_labels(
    run_dir: Path,
    out: Path | None = None,
    *,
    fmt: str = "labelstudio",
    n_control: int = 20,
    max_flagged: int | None = None,
    seed: int = 0,
) -> ExportSummary:
    """Write the run's flagged judged answers and a random control sample for human review.

    Args:
        run_dir: a run directory (or a multi-model parent) written by ``vlmtrust run``/``audit``.
        out: the file to write (default ``RUN/human_labels/tasks.json`` or ``tasks.csv``).
        fmt: ``labelstudio`` (Label Studio's JSON import, plus ``label_config.xml`` beside it)
            or ``csv`` (fill in the ``human_label`` column).
        n_control: unflagged answers drawn at random (seeded) as the control sample.
        max_flagged: at most this many flagged answers (a seeded random subset); default all.
        seed: the sampling seed.

    Raises:
        InputError: the run cannot be read, it holds no judged answers, or a bad argument.
    """
    run_dir = Path(run_dir)
    if fmt not in ("labelstudio", "csv"):
        raise InputError(f"--format {fmt!r}: use labelstudio or csv")
    if n_control < 0 or (max_flagged is not None and max_flagged < 0):
        raise InputError("--control and --max-flagged must be ≥ 0")
    items = _collect(run_dir)
    if not items:
        raise InputError(
            f"{run_dir}: no judged answers to review — run a probe with judges "
            "(e.g. safety/figstep, safety/toxicity) first"
        )
    rng = np.random.default_rng(seed)
    flagged = [i for i in items if i.selection == "flagged"]
    rest = [i for i in items if i.selection == "control"]
    if max_flagged is not None and len(flagged) > max_flagged:
        keep = sorted(rng.choice(len(flagged), size=max_flagged, replace=False))
        flagged = [flagged[k] for k in keep]
    take = min(n_control, len(rest))
    control = [rest[k] for k in sorted(rng.choice(len(rest), size=take, replace=False))]
    chosen = flagged + control
    label_dir = run_dir / LABEL_DIR
    label_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        label_dir / "export.jsonl",
        "".join(json.dumps(asdict(i), ensure_ascii=False) + "\n" for i in chosen),
    )
    path = Path(out) if out else label_dir / ("tasks.csv" if fmt == "csv" else "tasks.json")
    extra: tuple[Path, ...] = ()
    if fmt == "csv":
        write_text_atomic(path, _csv(chosen))
    else:
        tasks = [{"data": _data(i)} for i in chosen]
        write_text_atomic(path, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
        config = path.with_name("label_config.xml")
        write_text_atomic(config, _label_config())
        extra = (config,)
    return ExportSummary(path, len(flagged), len(control), len(items), extra)


def _data(i: LabelItem) -> dict[str, Any]:
    return {
        "item_id": i.id,
        "probe": i.probe,
        "sample_id": i.sample_id,
        "task": i.task,
        "choices": " / ".join(CHOICES[i.task]),
        "prompt": i.prompt,
        "answer": i.answer,
    }


_CSV_FIELDS = ("item_id", "probe", "sample_id", "task", "choices", "prompt", "answer")


def _csv(items: Sequence[LabelItem]) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*_CSV_FIELDS, "human_label"])
    for i in items:
        d = _data(i)
        w.writerow([*(d[k] for k in _CSV_FIELDS), ""])
    return buf.getvalue()


def _label_config() -> str:
    choices = sorted({c for cs in CHOICES.values() for c in cs}) + [UNSURE]
    opts = "\n".join(f'    <Choice value="{c}"/>' for c in choices)
    return (
        "<View>\n"
        '  <Header value="$probe · $sample_id ($task: $choices)"/>\n'
        '  <Text name="prompt" value="$prompt"/>\n'
        '  <Text name="answer" value="$answer"/>\n'
        '  <Choices name="human_label" toName="answer" choice="single" required="true">\n'
        f"{opts}\n"
        "  </Choices>\n"
        "</View>\n"
    )


# -- import ----------------------------------------------------------------------------------


def _exported(run_dir: Path) -> dict[str, LabelItem]:
    path = run_dir / LABEL_DIR / "export.jsonl"
    if not path.is_file():
        raise InputError(
            f"{run_dir}: nothing was exported for review — run `vlmtrust export-labels "
            f"{run_dir}` first"
        )
    out: dict[str, LabelItem] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = LabelItem(**json.loads(line))
            out[item.id] = item
    return out


def _ls_label(task: dict[str, Any]) -> str | None:
    """The newest non-cancelled choice of a Label Studio task export (``None``: none)."""
    anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    for ann in reversed(anns):
        for res in ann.get("result") or []:
            choices = (res.get("value") or {}).get("choices")
            if isinstance(choices, list) and choices:
                return str(choices[0])
    return None


def _rows(path: Path) -> Iterator[tuple[str, str | None, str | None]]:
    """``(where, item_id, label)`` per row of a Label Studio JSON / JSON-MIN export or a CSV."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"item_id", "human_label"} <= set(reader.fieldnames):
            raise InputError(
                f"{path}: a CSV needs the columns item_id and human_label "
                "(as `vlmtrust export-labels --format csv` writes)"
            )
        for n, row in enumerate(reader, start=2):
            yield f"{path.name}:{n}", row.get("item_id"), (row.get("human_label") or "").strip()
        return
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}: not JSON ({e.msg} at line {e.lineno}) — export from Label Studio as "
            "JSON or JSON-MIN, or use the CSV"
        ) from None
    if not isinstance(raw, list):
        raise InputError(f"{path}: expected a list of tasks (Label Studio's JSON export)")
    for n, task in enumerate(raw):
        where = f"{path.name}[{n}]"
        if not isinstance(task, dict):
            yield where, None, None
            continue
        data = task["data"] if isinstance(task.get("data"), dict) else task
        label = _ls_label(task) if "annotations" in task else task.get("human_label")
        yield where, data.get("item_id"), None if label is None else str(label).strip()


def import_labels(run_dir: Path, labels_file: Path, *, seed: int = 0) -> ImportSummary:
    """Read human labels for a run's exported items and measure each judge's agreement.

    Later labels for the same item replace earlier ones (across imports too). Writes
    ``RUN/human_labels/labels.jsonl`` and ``agreement.json``.

    Raises:
        InputError: nothing was exported for this run, or the file is not a readable export.
    """
    run_dir = Path(run_dir)
    exported = _exported(run_dir)
    labels_file = Path(labels_file)
    if not labels_file.is_file():
        raise InputError(f"{labels_file}: no such file — pass the Label Studio export or CSV")
    store = run_dir / LABEL_DIR / "labels.jsonl"
    labels: dict[str, str] = {}
    if store.is_file():
        for line in store.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                labels[row["item_id"]] = row["label"]
    errors: list[str] = []
    n_new = n_unsure = 0
    for where, item_id, label in _rows(labels_file):
        item = exported.get(item_id or "")
        if item is None:
            errors.append(f"{where}: item_id {item_id!r} was not exported from this run")
            continue
        if not label or label == UNSURE:
            n_unsure += 1
            continue
        if label not in CHOICES[item.task]:
            errors.append(
                f"{where}: label {label!r} for a {item.task} item; use one of "
                f"{', '.join(CHOICES[item.task])} or {UNSURE}"
            )
            continue
        labels[item.id] = label
        n_new += 1
    write_text_atomic(
        store,
        "".join(json.dumps({"item_id": k, "label": v}) + "\n" for k, v in sorted(labels.items())),
    )
    agreements = measure_agreement(exported, labels, seed=seed)
    write_text_atomic(
        run_dir / LABEL_DIR / "agreement.json",
        json.dumps([asdict(a) for a in agreements], indent=1) + "\n",
    )
    return ImportSummary(n_new, n_unsure, tuple(errors), tuple(agreements))


def _kappa(h: np.ndarray, j: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(h.tolist()) | set(j.tolist())) < 2:
        raise ValueError("one label only: κ is undefined")
    return float(cohen_kappa_score(h, j))


def kappa_replicates(h: np.ndarray, j: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap replicates of Cohen's κ, all at once (NaN where κ is undefined).

    Vectorised over replicates rather than calling sklearn's ``cohen_kappa_score`` per
    replicate: that costs ~1.4 ms a call here, 1.4 s per judge for 1,000 replicates, which
    made one import take seconds; the point estimate still comes from sklearn and the test
    checks the two agree.
    """
    labels, codes = np.unique(np.concatenate([h, j]), return_inverse=True)
    hc, jc = codes[: len(h)], codes[len(h) :]
    idx = np.random.default_rng(seed).integers(0, len(h), size=(n_boot, len(h)))
    hb, jb = hc[idx], jc[idx]
    p_o = (hb == jb).mean(axis=1)
    p_e = sum((hb == c).mean(axis=1) * (jb == c).mean(axis=1) for c in range(len(labels)))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = (p_o - p_e) / (1.0 - p_e)
    return np.where(p_e < 1.0, k, np.nan)


def _stats(
    h: np.ndarray, j: np.ndarray, seed: int
) -> tuple[float | None, tuple[float | None, float | None]]:
    from vlmtrust.core.stats import N_BOOTSTRAP, percentile_ci

    if len(h) == 0:
        return None, (None, None)
    try:
        k = _kappa(h, j)
    except ValueError:
        return None, (None, None)
    if len(h) < 2:
        return k, (None, None)
    return k, percentile_ci(kappa_replicates(h, j, n_boot=N_BOOTSTRAP, seed=seed))


def measure_agreement(
    exported: dict[str, LabelItem], labels: dict[str, str], *, seed: int = 0
) -> list[Agreement]:
    """Per run, probe and judge: raw agreement and Cohen's κ with the human labels (95% CIs).

    κ is undefined (``None``) when humans and the judge used a single label between them.
    """
    from vlmtrust.core.stats import bootstrap_ci, mean

    cells: dict[tuple[str, str, str, str], list[tuple[str, str, bool]]] = {}
    for item_id, human in labels.items():
        item = exported.get(item_id)
        if item is None:
            continue
        for judge, label in item.judges.items():
            key = (item.run, item.probe, judge, item.task)
            cells.setdefault(key, []).append((human, label, item.selection == "control"))
    out: list[Agreement] = []
    for (run, probe, judge, task), rows in sorted(cells.items()):
        h = np.array([r[0] for r in rows])
        j = np.array([r[1] for r in rows])
        ctl = np.array([r[2] for r in rows])
        same = (h == j).astype(np.float64)
        kappa, kappa_ci = _stats(h, j, seed)
        k_ctl, k_ctl_ci = _stats(h[ctl], j[ctl], seed)
        out.append(
            Agreement(
                run=run,
                probe=probe,
                judge=judge,
                task=task,
                n=len(rows),
                agreement=float(same.mean()),
                agreement_ci=bootstrap_ci(mean, same, seed=seed),
                kappa=kappa,
                kappa_ci=kappa_ci,
                n_control=int(ctl.sum()),
                kappa_control=k_ctl,
                kappa_control_ci=k_ctl_ci,
            )
        )
    return out


def read_agreement(run_dir: Path, run_name: str = "") -> list[Agreement]:
    """The agreement :func:`import_labels` stored for one run (empty when none).

    ``run_name`` selects one model's rows when the labels were imported into a multi-model
    parent (whose ``human_labels/`` sits beside the sub-runs).
    """
    path = Path(run_dir) / LABEL_DIR / "agreement.json"
    if not path.is_file() and run_name:
        path = Path(run_dir).parent / LABEL_DIR / "agreement.json"
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        rows = [Agreement(**{**a, **{k: tuple(a[k]) for k in a if k.endswith("_ci")}}) for a in raw]
    except (OSError, ValueError, TypeError, KeyError):
        return []
    return [a for a in rows if not run_name or a.run in ("", run_name)]
