"""Read run directories (one model, or a parent of several) from their files alone.

A run directory holds ``results.json`` (an :class:`~vlmtrust.core.results.AuditLog`),
``spec.json`` and ``samples/<probe>.jsonl``. A multi-model audit writes one such directory per
model under a parent that holds ``index.json`` = ``{"runs": ["<subdir>", ...]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import SCHEMA_VERSION, AuditLog, ProbeResult
from vlmtrust.report.errors import ErrorGroups, group_errors

__all__ = ["LoadedRun", "is_parent_dir", "load_log", "load_run", "load_runs"]


@dataclass(frozen=True)
class LoadedRun:
    """One model's run, read from disk.

    Attributes:
        directory: the run directory.
        name: its name in a multi-model parent (the ``index.json`` entry), else the folder name.
        log: the parsed ``results.json``.
        error_groups: per probe with errors, every error grouped by message
            (:func:`~vlmtrust.report.errors.group_errors`): from the result's own list when it
            holds them all, else from ``samples/<probe>.jsonl``, which holds every record.
    """

    directory: Path
    name: str
    log: AuditLog
    error_groups: dict[str, ErrorGroups]

    def errors_for(self, probe: str) -> ErrorGroups:
        """The error groups of ``probe`` (empty when it has none)."""
        return self.error_groups.get(probe, ErrorGroups())


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def load_log(path: Path) -> AuditLog:
    """Parse a ``results.json`` file into an :class:`AuditLog`.

    Raises:
        InputError: the file is missing, not JSON, from a newer schema, or not an AuditLog.
    """
    if not path.is_file() and (path.parent / "spec.json").is_file():
        raise InputError(
            f"{path.parent}: the run has not finished (spec.json but no results.json) — resume"
            " it with `vlmtrust run --resume`, then render the report"
        )
    if not path.is_file():
        raise InputError(
            f"{path}: no results.json here — pass a run directory written by `vlmtrust run`"
            " or `vlmtrust audit`"
        )
    raw = _read_json(path, "re-run the audit to rewrite it")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a JSON object (an AuditLog) — re-run the audit")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise InputError(
            f"{path}: written with results schema v{version}, this vlmtrust reads"
            f" v{SCHEMA_VERSION} — upgrade vlmtrust to render it"
        )
    try:
        return AuditLog.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InputError(
            f"{path}: not a valid AuditLog ({where}: {first.get('msg', 'invalid')}) — re-run"
            " the audit to rewrite it"
        ) from None


def _samples_file(run_dir: Path, probe: str) -> Path | None:
    base = run_dir / "samples"
    candidates = [
        base / f"{probe}.jsonl",
        base / f"{probe.replace('/', '__')}.jsonl",
        base / f"{probe.replace('/', '_')}.jsonl",
        base / f"{probe.replace('/', '.')}.jsonl",
    ]
    for c in candidates:
        try:
            inside = c.resolve().is_relative_to(base.resolve())
        except OSError:
            continue
        if inside and c.is_file():
            return c
    return None


def _errors_from_samples(path: Path) -> dict[str, str] | None:
    """Sample id → error message of every failed sample in a samples file (``None``: unreadable).

    A later record of the same sample wins (``--resume`` retries errors), as in the runner.
    """
    out: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line of an interrupted run
                if not isinstance(rec, dict):
                    continue
                sample_id = str(rec.get("sample_id", "?"))
                if rec.get("error"):
                    out[sample_id] = str(rec["error"])
                else:
                    out.pop(sample_id, None)
    except OSError:
        return None
    return out


def _error_groups(run_dir: Path, r: ProbeResult) -> ErrorGroups:
    """Every error of ``r``, grouped: the result's own list if complete, else the samples file."""
    listed = [(e.sample_id, e.message) for e in r.errors]
    if len(listed) < r.n_errors:  # the result keeps only the first few
        f = _samples_file(run_dir, r.probe)
        found = _errors_from_samples(f) if f is not None else None
        if found is not None and len(found) > len(listed):
            return group_errors(found.items())
    return group_errors(listed)


def load_run(run_dir: Path, *, name: str | None = None) -> LoadedRun:
    """Read one model's run directory.

    Raises:
        InputError: the directory or its ``results.json`` is missing or invalid.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(
            f"{run_dir}: not a directory — pass a run directory written by `vlmtrust run`"
        )
    log = load_log(run_dir / "results.json")
    groups = {r.probe: _error_groups(run_dir, r) for r in log.results if r.n_errors}
    return LoadedRun(directory=run_dir, name=name or run_dir.name, log=log, error_groups=groups)


def is_parent_dir(path: Path) -> bool:
    """True when ``path`` is a multi-model parent (has ``index.json``, no ``results.json``)."""
    path = Path(path)
    return (path / "index.json").is_file() and not (path / "results.json").is_file()


def _read_json(path: Path, remedy: str) -> Any:
    """``path`` parsed as JSON; an :class:`InputError` naming ``remedy`` when it cannot be."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({_one_line(exc)}) — {remedy}") from None


def _index(parent: Path) -> list[str]:
    idx = parent / "index.json"
    raw = _read_json(idx, 'write {"runs": ["<subdir>"]}')
    runs = raw.get("runs") if isinstance(raw, dict) else None
    if not isinstance(runs, list) or not runs or not all(isinstance(r, str) for r in runs):
        raise InputError(
            f'{idx}: expected {{"runs": ["<subdir>", ...]}} with at least one name'
            " — fix the index or render a sub-run directly"
        )
    root = parent.resolve()
    for r in runs:
        target = (parent / r).resolve()
        if Path(r).is_absolute() or not target.is_relative_to(root) or target == root:
            raise InputError(
                f"{idx}: run {r!r} is not a sub-directory of {parent} — list sub-directory"
                " names only"
            )
    return list(runs)


def load_runs(path: Path) -> list[LoadedRun]:
    """Read a single run directory, or every run listed by a parent's ``index.json``.

    Raises:
        InputError: a directory, index or results file is missing or invalid.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"{path}: not a directory — pass a run directory written by `vlmtrust run`"
        )
    if is_parent_dir(path):
        return [load_run(path / r, name=r) for r in _index(path)]
    return [load_run(path)]
