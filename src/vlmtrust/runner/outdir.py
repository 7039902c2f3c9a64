"""Output folders — a run's ``--out`` and a hardened model's — are never silently reused.

A folder *holds a run* when one of the names a run writes is there (:data:`RUN_FILES`, or a
sub-folder holding a run: a multi-model audit). Reusing it needs ``resume`` (continue it) or
``overwrite`` (clear it first); ``overwrite`` clears only a folder that *is* a run (its
``spec.json``, ``results.json`` or ``index.json``, or a sub-run's, reads as vlmtrust's) and
removes only the entries a run writes, never other files that happen to be in the folder.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import AuditLog, RunSpec

RUN_FILES = ("spec.json", "results.json", "index.json", "samples", "report.html", "report.md")
"""The entries a run directory holds (besides ``*.tmp`` files of interrupted writes)."""


def _sub_runs(path: Path) -> list[Path]:
    """Immediate sub-folders that hold a run (the sub-runs of a multi-model audit)."""
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and p.name != "samples")
    except OSError:
        return []
    return [p for p in children if any((p / n).exists() for n in ("spec.json", "results.json"))]


def run_entries(path: Path) -> list[str]:
    """The names in ``path`` a run writes (with sub-runs' folder names); [] if none."""
    if not path.is_dir():
        return []
    found = [n for n in RUN_FILES if (path / n).exists()]
    return found + [p.name + "/" for p in _sub_runs(path)]


def _reads_as(path: Path, kind: type[RunSpec] | type[AuditLog]) -> bool:
    try:
        kind.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def _reads_as_index(path: Path) -> bool:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and isinstance(index.get("runs"), list)


def is_run_dir(path: Path) -> bool:
    """True when ``path`` is a vlmtrust run folder.

    That is: its ``spec.json`` or ``results.json`` (one model), or its ``index.json`` or a
    sub-folder's run (several models), reads as vlmtrust's.
    """
    return (
        _reads_as(path / "spec.json", RunSpec)
        or _reads_as(path / "results.json", AuditLog)
        or _reads_as_index(path / "index.json")
        or any(is_run_dir(sub) for sub in _sub_runs(path))
    )


def clear_run_dir(path: Path) -> None:
    """Remove what a run wrote in ``path`` (and in its sub-runs); other entries are kept."""
    for sub in _sub_runs(path):
        if is_run_dir(sub):
            clear_run_dir(sub)
            with contextlib.suppress(OSError):
                sub.rmdir()  # only if nothing else was in it
    for name in RUN_FILES:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    for tmp in path.glob("*.tmp"):
        tmp.unlink(missing_ok=True)


def prepare_out_dir(path: Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Check (and with ``overwrite`` clear) a run's output folder before anything is written.

    Raises:
        InputError: ``resume`` and ``overwrite`` together; ``path`` is a file; it holds a run
            and neither ``resume`` nor ``overwrite`` is set; ``overwrite`` on a non-empty
            folder that is not a run folder.
    """
    path = Path(path)
    if resume and overwrite:
        raise InputError(
            "--resume and --overwrite exclude each other: continue the run or replace it"
        )
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"--out {path} is a file; pass a folder for the run")
    if resume:
        return
    found = run_entries(path)
    if not overwrite:
        if found:
            raise InputError(
                f"--out {path} already holds a run ({', '.join(found)}); pass --resume to "
                "continue it, --overwrite to replace it, or choose a new --out folder"
            )
        return
    if not any(path.iterdir()):
        return
    if not is_run_dir(path):
        raise InputError(
            f"--out {path} is not a vlmtrust run folder (no readable spec.json, results.json "
            "or index.json), so --overwrite will not clear it; empty it yourself or choose a "
            "new --out folder"
        )
    clear_run_dir(path)


MODEL_MARKERS = ("wrapper.json", "config.json")
"""Files every hardened model folder has one of (an inference-time wrapper; saved weights)."""


def prepare_model_dir(path: Path, *, overwrite: bool = False, source: str = "") -> None:
    """Check (and with ``overwrite`` clear) the folder a hardened model will be written to.

    ``source`` is the spec of the model being hardened: its own folder is never cleared.

    Raises:
        InputError: ``path`` is a file; it is not empty and ``overwrite`` is not set; or
            ``overwrite`` on a folder that holds no hardened model, or holds ``source``.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"--out {path} is a file; pass a folder for the hardened model")
    if not any(path.iterdir()):
        return
    if not overwrite:
        raise InputError(
            f"--out {path} is not empty; pass --overwrite to replace the hardened model in it, "
            "or choose a new --out folder"
        )
    if not any((path / m).is_file() for m in MODEL_MARKERS):
        raise InputError(
            f"--out {path} holds no hardened model (no {' or '.join(MODEL_MARKERS)}), so "
            "--overwrite will not clear it; empty it yourself or choose a new --out folder"
        )
    target = source.partition(":")[2]
    if target and Path(target).expanduser().resolve() == path.resolve():
        raise InputError(
            f"--out {path} is the folder of the model being hardened ({source}); "
            "choose a new --out folder"
        )
    shutil.rmtree(path)


RUNS_ROOT = Path("vlmtrust-runs")
"""Where runs go when no ``out`` is given: one new folder per run, plus ``latest``."""

LATEST = "latest"
"""The name of the pointer (a relative symlink, or a text file naming the folder where symlinks
are not available) to the newest run under :data:`RUNS_ROOT`."""


def _slug(text: str, limit: int = 40) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return s[:limit].rstrip("-.") or "run"


def new_run_dir(
    models: list[str], what: str, *, root: Path = RUNS_ROOT, now: float | None = None
) -> Path:
    """A new, unused folder ``ROOT/<UTC time>-<model>-<what>`` (not created).

    ``models`` are the (redacted) model specs; several are joined (at most two named, then a
    count). ``what`` names what ran (``audit``, a probe, ``3-probes``).

    Example:
        >>> new_run_dir(["reference:clip"], "audit", root=Path("runs"), now=0).as_posix()
        'runs/19700101-000000-reference-clip-audit'
    """
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    shown = [m.split("@", 1)[0] for m in models]
    model = "+".join(shown[:2]) + (f"+{len(shown) - 2}more" if len(shown) > 2 else "")
    base = f"{stamp}-{_slug(model)}-{_slug(what, 30)}"
    path, n = root / base, 2
    while path.exists() or path.is_symlink():
        path, n = root / f"{base}-{n}", n + 1
    return path


def point_latest(run_dir: Path, *, root: Path = RUNS_ROOT) -> Path | None:
    """Point ``ROOT/latest`` at ``run_dir`` (a sibling); the pointer, or None if left alone.

    A real folder named ``latest`` (written by an earlier version as a run) is left as it is.
    """
    import logging
    import os

    link = root / LATEST
    if link.exists() and not link.is_symlink() and link.is_dir():
        logging.getLogger("vlmtrust").warning(
            "%s is a run folder of an earlier version; not replacing it with the latest-run "
            "pointer (move it to keep it, or delete it)",
            link,
        )
        return None
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        tmp.unlink()
    try:
        os.symlink(run_dir.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:  # no symlinks here (e.g. Windows without developer mode): a text pointer
        with contextlib.suppress(OSError):
            tmp.unlink()
        try:
            if link.is_symlink():
                link.unlink()
            link.write_text(run_dir.name + "\n", encoding="utf-8")
        except OSError:
            return None
    return link


def resolve_latest(root: Path = RUNS_ROOT) -> Path | None:
    """The run ``ROOT/latest`` points at, or None when there is none."""
    link = root / LATEST
    if link.is_symlink() or link.is_dir():
        target = link.resolve()
        return target if target.is_dir() else None
    if link.is_file():
        name = link.read_text(encoding="utf-8").strip()
        target = root / name
        return target if name and target.is_dir() else None
    return None
