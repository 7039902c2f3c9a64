"""The runs under a folder (``vlmtrust runs``): model, what ran, when, headline risks, status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import RunSpec
from vlmtrust.report.rundir import is_parent_dir, load_runs
from vlmtrust.report.view import build_run_view
from vlmtrust.runner.outcome import run_problems
from vlmtrust.runner.outdir import RUNS_ROOT, is_run_dir, resolve_latest

__all__ = ["RunSummary", "list_runs"]


@dataclass(frozen=True)
class RunSummary:
    """One run folder, as ``vlmtrust runs`` lists it.

    ``status`` is ``complete``, ``problems`` (a probe did not run, or every sample of one
    failed: the run would exit 1), ``interrupted`` (a spec but no results: continue it with
    ``--resume --out``) or ``unreadable`` (``note`` says why).
    """

    path: Path
    created: str
    models: tuple[str, ...]
    probes: int
    samples: int
    errors: int
    risks: tuple[tuple[str, str], ...]
    """``(pillar, worst risk band)`` for each audited pillar."""
    status: str
    latest: bool
    note: str = ""


def _summary(path: Path, latest: Path | None) -> RunSummary:
    is_latest = latest is not None and path.resolve() == latest
    if not (path / "results.json").is_file() and not is_parent_dir(path):
        created, models = "", tuple[str, ...]()
        try:
            spec = RunSpec.model_validate_json((path / "spec.json").read_bytes())
            created, models = spec.created, (spec.model.spec,)
        except (OSError, ValueError):
            pass
        return RunSummary(path, created, models, 0, 0, 0, (), "interrupted", is_latest)
    try:
        runs = load_runs(path)
    except InputError as e:
        return RunSummary(path, "", (), 0, 0, 0, (), "unreadable", is_latest, str(e))
    logs = [r.log for r in runs]
    worst: dict[str, int] = {}
    order = {"none": 0, "low": 1, "moderate": 2, "high": 3}
    for run in runs:
        for card in build_run_view(run).scorecard:
            if card.audited:
                band = card.risk.value if card.risk else "none"
                key = card.pillar.value
                worst[key] = max(worst.get(key, 0), order.get(band, 0))
    names = {v: k for k, v in order.items()}
    return RunSummary(
        path=path,
        created=min((log.spec.created for log in logs), default=""),
        models=tuple(log.spec.model.spec for log in logs),
        probes=sum(len(log.results) for log in logs),
        samples=sum(r.n_samples for log in logs for r in log.results),
        errors=sum(r.n_errors for log in logs for r in log.results),
        risks=tuple((p, names[b]) for p, b in worst.items()),
        status="problems" if run_problems(logs) else "complete",
        latest=is_latest,
    )


def list_runs(root: Path = RUNS_ROOT) -> list[RunSummary]:
    """Every run folder directly under ``root``, newest first.

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder — runs land in {RUNS_ROOT}/ by default")
    latest = resolve_latest(root)
    found = [
        p
        for p in root.iterdir()
        if p.is_dir()
        and not p.is_symlink()
        and not p.name.startswith(".")
        and (is_run_dir(p) or (p / "spec.json").is_file())
    ]
    out = [_summary(p, latest) for p in found]
    return sorted(out, key=lambda s: (s.created, s.path.name), reverse=True)
