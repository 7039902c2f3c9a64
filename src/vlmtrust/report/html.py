"""Render a run directory (or a multi-model parent) as one self-contained HTML file.

The page has no script and no external reference: CSS is inline, plots are inline SVG
(:mod:`vlmtrust.report.plots`), thumbnails are ``data:`` URIs, and a Content-Security-Policy
forbids anything else. Jinja2 autoescaping is on, so every model output, prompt, parameter,
error message and sample id is HTML-escaped.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmtrust.core.errors import InputError
from vlmtrust.core.files import respect_umask
from vlmtrust.report.markdown import render_markdown
from vlmtrust.report.rundir import LoadedRun, load_runs
from vlmtrust.report.view import RunView, views_for

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

__all__ = ["render_html", "render_report", "write_text_atomic"]

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The report's Jinja2 environment (autoescape on, undefined variables are errors)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def package_version() -> str:
    """The installed vlmtrust version (``"unknown"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vlmtrust")
    except PackageNotFoundError:
        return "unknown"


def _render_plots(view: RunView) -> dict[str, list[tuple[str, Markup | None, str | None]]]:
    from markupsafe import Markup

    from vlmtrust.report.plots import plot_to_svg, svg_for_html

    out: dict[str, list[tuple[str, Markup | None, str | None]]] = {}
    for p in view.probes:
        items: list[tuple[str, Markup | None, str | None]] = []
        for i, plot in enumerate(p.plots):
            try:
                svg = plot_to_svg(plot, id_prefix=f"{p.anchor}-f{i}-")
            except InputError as exc:
                items.append((plot.title, None, str(exc)))
                continue
            # Trusted: produced by matplotlib, which XML-escapes every text it draws.
            items.append((plot.title, Markup(svg_for_html(svg)), None))
        out[p.anchor] = items
    return out


def _subtitle(views: Sequence[RunView]) -> str:
    if len(views) == 1:
        v = views[0]
        return (
            f"{v.spec} · fingerprint {v.fingerprint[:16]} · seed {v.seed} · vlmtrust {v.version}"
            f" · {v.created}"
        )
    return f"{len(views)} models: " + ", ".join(v.spec for v in views)


def render_html(runs: Sequence[LoadedRun]) -> str:
    """Render loaded runs (one, or several models) to the HTML text of one page."""
    if not runs:
        raise InputError("no runs to render — pass a run directory or a parent with index.json")
    views = views_for(runs)
    plots: dict[str, Any] = {}
    for v in views:
        plots.update(_render_plots(v))
    title = (
        f"vlmtrust report — {views[0].spec}"
        if len(views) == 1
        else f"vlmtrust report — {len(views)} models"
    )
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            subtitle=_subtitle(views),
            runs=views,
            plots=plots,
            generator_version=package_version(),
        )
    )


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + rename), creating parent folders."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        respect_umask(Path(tmp))  # mkstemp makes it 0600
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise InputError(
            f"{path}: cannot write the report ({exc.strerror or exc}) — choose a writable path"
        ) from None
    return path


def render_report(
    run_dir: Path, *, out_html: Path | None = None, out_md: Path | None = None
) -> tuple[Path, Path]:
    """Render ``report.html`` and ``report.md`` for a run directory, from its files alone.

    ``run_dir`` is either one model's run (``results.json``, ``spec.json``,
    ``samples/<probe>.jsonl``) or a parent of several runs with ``index.json`` =
    ``{"runs": ["<subdir>", ...]}``, which gives one report with a section per model.

    Args:
        run_dir: the run (or parent) directory.
        out_html: where to write the HTML (default ``run_dir/report.html``).
        out_md: where to write the Markdown (default ``run_dir/report.md``).

    Returns:
        ``(html_path, md_path)``.

    Raises:
        InputError: the directory, its index or a ``results.json`` is missing or invalid, or an
            output path cannot be written.
    """
    run_dir = Path(run_dir)
    runs = load_runs(run_dir)
    html_text = render_html(runs)
    md_text = render_markdown(runs)
    html_path = write_text_atomic(
        Path(out_html) if out_html else run_dir / "report.html", html_text
    )
    md_path = write_text_atomic(Path(out_md) if out_md else run_dir / "report.md", md_text)
    return html_path, md_path
