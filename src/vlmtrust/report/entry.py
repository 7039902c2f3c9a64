"""Find a run folder by name (``latest`` included) and render its report.

What ``vlmtrust.report(run)``, :func:`vlmtrust.api.load_run` and :func:`vlmtrust.api.compare`
share.
"""

from __future__ import annotations

from pathlib import Path

from vlmtrust.core.errors import InputError


def run_folder(run: str | Path) -> Path:
    """``run`` as a folder: ``"latest"`` is the run ``vlmtrust-runs/latest`` points at.

    A path ending in ``latest`` inside another runs folder is resolved the same way.

    Raises:
        InputError: there is no such folder, or no latest run.
    """
    from vlmtrust.runner.outdir import LATEST, RUNS_ROOT, resolve_latest

    path = Path(run)
    if str(run) == LATEST and not path.exists():
        latest = resolve_latest()
        if latest is None:
            raise InputError(
                f"there is no {RUNS_ROOT}/{LATEST} here: pass a run folder "
                "(`vlmtrust runs` lists them)"
            )
        return latest
    if path.name == LATEST and path.parent.is_dir():
        latest = resolve_latest(path.parent)
        if latest is not None:
            return latest
    if not path.is_dir():
        raise InputError(f"{run}: not a run folder; pass the --out folder of a run, or 'latest'")
    return path


def render(run: str | Path = "latest", *, out_html: str | Path | None = None) -> tuple[Path, Path]:
    """Render ``report.html`` and ``report.md`` of a run from its files; returns both paths."""
    from vlmtrust.report.html import render_report

    path = run_folder(run)
    if not (path / "results.json").exists() and not (path / "index.json").exists():
        raise InputError(
            f"{path}: no results.json or index.json here; pass the --out folder of a run"
        )
    return render_report(path, out_html=None if out_html is None else Path(out_html))
