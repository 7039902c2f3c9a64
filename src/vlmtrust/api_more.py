"""The rest of the Python API: :func:`harden`, :func:`compare`, :func:`report`, :func:`load_run`.

Each mirrors its CLI command (the CLI calls these); :func:`vlmtrust.audit` lives in
:mod:`vlmtrust.api`.

Example:
    >>> import vlmtrust
    >>> art = vlmtrust.harden("reference:clip", "robustness/tecoa", out="hardened/clip",
    ...                       quick=True)  # doctest: +SKIP
    >>> log = vlmtrust.load_run("latest")  # doctest: +SKIP
    >>> log.to_dataframe()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.types import Capability

if TYPE_CHECKING:
    from vlmtrust.core.mitigation import HardenedArtifact, Mitigation
    from vlmtrust.core.model import Model
    from vlmtrust.core.results import AuditLog
    from vlmtrust.report.diff import MetricDelta

_DUAL_CAPS = Capability.EMBED | Capability.TRAIN | Capability.GRADIENT


def _config_kind(path: Path) -> str | None:
    """``"dual"`` when ``path/config.json`` names a dual-encoder architecture, else None."""
    from vlmtrust.models.hf_common import DUAL_MODEL_TYPES

    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return "dual" if isinstance(cfg, dict) and cfg.get("model_type") in DUAL_MODEL_TYPES else None


def capabilities_before_loading(spec: str, _depth: int = 0) -> tuple[Capability, str] | None:
    """What a model spec can at most do, told without loading it: ``(capabilities, kind)``.

    Known for ``openai:`` endpoints (generation only) and for local dual encoders (a
    ``config.json`` naming a CLIP-like architecture: reference:clip, a hardened CLIP, an
    ``hf:`` directory); ``None`` when only loading the model tells.
    """
    from vlmtrust.models.loader import parse_spec

    ms = parse_spec(spec)
    if ms.scheme == "openai":
        return Capability.GENERATE, "a remote generative model"
    path: Path | None = None
    if ms.scheme == "reference":
        from vlmtrust.models.reference import models_root

        path = models_root() / ms.target.strip().lower()
    elif ms.scheme in ("hf", "hardened"):
        path = Path(ms.target)
        if ms.scheme == "hardened" and (path / "wrapper.json").is_file() and _depth < 4:
            try:
                base = json.loads((path / "wrapper.json").read_text(encoding="utf-8"))["base"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            return capabilities_before_loading(base, _depth + 1) if isinstance(base, str) else None
    if path is not None and path.is_dir() and _config_kind(path) == "dual":
        return _DUAL_CAPS, "a dual encoder"
    return None


def _missing(mcls: type[Mitigation], caps: Capability) -> list[str]:
    return [n.upper() for n in mcls.requires.names() if not (Capability[n.upper()] & caps)]


def check_mitigation_fits(mcls: type[Mitigation], model: str | Model) -> None:
    """Refuse a mitigation the model cannot take, naming what it lacks.

    A spec is judged without loading it where :func:`capabilities_before_loading` can; a
    loaded model by its declared capabilities.

    Raises:
        CapabilityError: the model lacks a capability the mitigation requires.
    """
    if isinstance(model, str):
        known = capabilities_before_loading(model)
        if known is None:
            return
        caps, kind = known
        shown = model
    else:
        caps, kind, shown = model.capabilities, f"a {model.kind} model", model.spec
    lack = _missing(mcls, caps)
    if lack:
        from vlmtrust.core.redact import redact_text

        fits = [
            n
            for n, c in _mitigation_registry().items()
            if not _missing(c, caps) and c.pillar == mcls.pillar
        ]
        hint = f"; for this model try {', '.join(fits)}" if fits else ""
        raise CapabilityError(
            f"mitigation {mcls.name} needs {', '.join(lack)}, which {redact_text(shown)} "
            f"({kind}) lacks{hint} (see `vlmtrust list mitigations`)"
        )


def _mitigation_registry() -> dict[str, type[Mitigation]]:
    from vlmtrust.core.mitigation import registry

    return registry()


def harden(
    model: str | Model,
    mitigation: str,
    out: str | Path,
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    data: str | None = None,
    quick: bool = False,
    overwrite: bool = False,
    model_options: Mapping[str, Any] | None = None,
    data_limits: DataLimits | None = None,
) -> HardenedArtifact:
    """Apply a mitigation to a model; the result loads with ``hardened:OUT``.

    Everything is checked before the model loads or any training starts: the mitigation name
    (close matches suggested), its parameters (the valid ones listed), the model spec and
    options, whether the model can take the mitigation (its kind and capabilities), ``data``,
    and ``out`` (a non-empty folder is refused unless ``overwrite``, which clears only a
    hardened model).

    Raises:
        InputError: a bad input (see above).
        CapabilityError: the model lacks a capability the mitigation needs.
    """
    from vlmtrust.core.mitigation import MitigationContext, get_mitigation
    from vlmtrust.models.loader import load_model, parse_spec
    from vlmtrust.models.options import check_model_options
    from vlmtrust.runner.outdir import prepare_model_dir

    cls = get_mitigation(mitigation)
    mit = cls(dict(params or {}))
    options: dict[str, Any] = {}
    if isinstance(model, str):
        parse_spec(model)
        options = check_model_options(model, model_options)
    elif model_options:
        raise InputError("model_options apply to a model spec, not to a loaded model")
    check_mitigation_fits(cls, model)
    if data is not None:
        from vlmtrust.data.datasets import parse_data_spec

        parse_data_spec(data)
    out = Path(out)
    source = model if isinstance(model, str) else model.spec
    prepare_model_dir(out, overwrite=overwrite, source=source)
    loaded = load_model(model, **options) if isinstance(model, str) else model
    check_mitigation_fits(cls, loaded)
    ctx = MitigationContext(
        seed=seed, out_dir=out, data=data, quick=quick, data_limits=data_limits or DataLimits()
    )
    return mit.apply(loaded, ctx)


def _run_folder(run: str | Path) -> Path:
    """``run`` as a folder: ``"latest"`` is the run ``vlmtrust-runs/latest`` points at."""
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


def load_run(run: str | Path = "latest") -> AuditLog | list[AuditLog]:
    """Read a finished run back: a run folder's :class:`AuditLog`, or one per model of a
    multi-model audit (a folder with ``index.json``).

    ``"latest"`` (the default) is the newest run, ``vlmtrust-runs/latest``.

    Raises:
        InputError: not a run folder, an unfinished run, or an unreadable ``results.json``.
    """
    from vlmtrust.report.rundir import is_parent_dir, load_runs

    path = _run_folder(run)
    runs = load_runs(path)
    logs = [r.log for r in runs]
    return logs if is_parent_dir(path) else logs[0]


def report(
    run: str | Path = "latest", *, out_html: str | Path | None = None
) -> tuple[Path, Path]:
    """Render ``report.html`` and ``report.md`` of a run from its files; returns both paths."""
    from vlmtrust.report.html import render_report

    path = _run_folder(run)
    if not (path / "results.json").exists() and not (path / "index.json").exists():
        raise InputError(
            f"{path}: no results.json or index.json here; pass the --out folder of a run"
        )
    return render_report(path, out_html=None if out_html is None else Path(out_html))


@dataclass
class Comparison:
    """Two runs compared metric by metric (what ``vlmtrust compare`` prints and renders).

    ``pairs`` maps each compared model (its spec, or its sub-run name in a multi-model audit)
    to its :class:`~vlmtrust.report.diff.MetricDelta` list; ``html``/``md`` are the rendered
    files (None with ``render=False``).
    """

    pairs: dict[str, list[MetricDelta]] = field(default_factory=dict)
    html: Path | None = None
    md: Path | None = None

    @property
    def deltas(self) -> list[MetricDelta]:
        """Every pair's deltas, in order."""
        return [d for ds in self.pairs.values() for d in ds]

    def to_dataframe(self) -> Any:
        """One row per metric delta (a pandas DataFrame), with a ``run`` column first."""
        import pandas as pd

        rows = [{"run": name, **asdict(d)} for name, ds in self.pairs.items() for d in ds]
        return pd.DataFrame(rows)


def compare(
    before: str | Path, after: str | Path, *, out_html: str | Path | None = None, render: bool = True
) -> Comparison:
    """Compare two runs (or two multi-model audits, model by model): deltas with CIs.

    Metrics present in only one run are kept (``presence`` says which). With ``render`` the
    HTML/Markdown comparison is written too (default: beside ``after``).
    """
    from vlmtrust.report.compare import compare_logs, pair_runs, render_compare

    a, b = _run_folder(before), _run_folder(after)
    result = Comparison()
    for p in pair_runs(a, b):
        if p.a is not None and p.b is not None:
            result.pairs[p.name] = compare_logs(p.a.log, p.b.log)
    if render:
        result.html, result.md = render_compare(
            a, b, out_html=None if out_html is None else Path(out_html)
        )
    return result
