"""The Python API; the CLI is a thin layer over it.

Example:
    >>> import vlmtrust
    >>> log = vlmtrust.audit(model="reference:clip", probes=["capability/zero_shot"],
    ...                      out="runs/demo", limit=64)  # doctest: +SKIP
    >>> log.result("capability/zero_shot").metric("accuracy").value  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.model import Model
from vlmtrust.core.params import validate_params
from vlmtrust.core.probe import Probe, ProbeContext, get_probe, registry
from vlmtrust.core.results import AuditLog
from vlmtrust.core.types import Pillar
from vlmtrust.models.loader import load_model
from vlmtrust.runner.cache import Cache, default_cache_path
from vlmtrust.runner.engine import run_audit, write_index

DEFAULT_MODELS = ("reference:clip", "reference:vlm")


def select_probes(
    model: Model,
    names: Sequence[str | Probe] | None = None,
    *,
    pillars: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Probe]:
    """Instantiate the probes to run on ``model``.

    With ``names``, exactly those (a probe the model cannot run is an error naming the
    capability it lacks). Without, every registered probe the model's capabilities allow,
    optionally restricted to ``pillars``.
    """
    params = params or {}
    wanted_pillars = {Pillar(p) for p in pillars} if pillars else None
    out: list[Probe] = []
    if names:
        for n in names:
            if isinstance(n, Probe):
                p = n
            else:
                cls = get_probe(n)
                p = cls({**cls.defaults_for(model.kind), **(params.get(n) or {})})
            why = p.unsupported(model)
            if why is not None:
                raise CapabilityError(why)
            out.append(p)
        return out
    for name, cls in registry().items():
        if wanted_pillars and cls.pillar not in wanted_pillars:
            continue
        if not cls.supports(model.capabilities):
            continue
        p = cls({**cls.defaults_for(model.kind), **(params.get(name) or {})})
        if p.applicable(model):
            out.append(p)
    return out


def _run_name(spec: str, taken: set[str]) -> str:
    """A folder name for a model's sub-run; distinct specs never share one."""
    import hashlib

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_")[:60] or "model"
    if name in taken:
        name = f"{name}-{hashlib.sha256(spec.encode()).hexdigest()[:6]}"
    taken.add(name)
    return name


def _check_inputs(
    probes: Sequence[str | Probe] | None,
    pillars: Sequence[str] | None,
    params: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    """Fail fast, before any model loads, on bad probe, pillar or parameter names and values.

    Parameter values are validated by the probe's ``Params`` (over its defaults).
    """
    import difflib

    known = registry()
    for n in probes or ():
        if isinstance(n, str):
            get_probe(n)
    valid = [p.value for p in Pillar]
    for pil in pillars or ():
        if pil not in valid:
            raise InputError(f"unknown pillar {pil!r}: choose from {', '.join(valid)}")
    for name in params or {}:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InputError(f"--param names unknown probe {name!r}{hint}")
        fields = known[name].Params.model_fields
        for key in (params or {})[name]:
            if key not in fields:
                raise InputError(
                    f"--param {name}.{key}: {name} has no parameter {key!r} "
                    f"(it has {', '.join(fields) or 'none'})"
                )
        validate_params(
            known[name].Params,
            dict((params or {})[name]),
            f"probe {name}",
            "see `vlmtrust list probes --verbose`",
        )


def audit(
    model: str | Model | Sequence[str | Model] | None = None,
    *,
    probes: Sequence[str | Probe] | None = None,
    pillars: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    out: str | Path = "vlmtrust-runs/latest",
    seed: int = 0,
    limit: int | None = None,
    data: str | None = None,
    resume: bool = False,
    cache: bool | str | Path | Cache = True,
    progress: bool = False,
) -> AuditLog | list[AuditLog]:
    """Audit one model (or several) and write run directories.

    Args:
        model: a spec, a loaded model, or several; ``None`` audits the reference models.
        probes: probe names (default: every probe the model supports).
        pillars: restrict the default selection to these pillars.
        params: per-probe parameters, ``{"robustness/adversarial": {"steps": 20}}``.
        out: run directory (one model) or parent directory (several: one sub-run each plus
            ``index.json``).
        seed: the run seed; the same seed gives the same numbers on CPU.
        limit: cap on samples per probe.
        data: dataset spec for probes that read user data.
        resume: continue an interrupted run in ``out``.
        cache: ``True`` (default cache file), a path, a :class:`Cache`, or ``False``.
        progress: show rich progress bars.

    Returns:
        The :class:`AuditLog` (one model) or a list of them (several).
    """
    models: list[str | Model]
    single: bool
    if model is None:
        models, single = list(DEFAULT_MODELS), False
    elif isinstance(model, str):
        models, single = [model], True
    elif isinstance(model, Sequence):
        models, single = list(model), False
    else:
        models, single = [model], True
    _check_inputs(probes, pillars, params)
    store = _open_cache(cache)
    out = Path(out)
    logs: list[AuditLog] = []
    taken: set[str] = set()
    names: list[str] = []
    for m in models:
        loaded = load_model(m) if isinstance(m, str) else m
        if single or not probes:
            chosen = select_probes(loaded, probes, pillars=pillars, params=params)
        else:  # several models: each runs the named probes it can run
            chosen = [p for p in select_probes(loaded, None, params=params) if p.name in probes]
        if not chosen:
            raise InputError(
                f"no probe to run on {loaded.spec}: check --probe/--pillar against "
                "`vlmtrust list probes`"
            )
        run_dir = out if single else out / _run_name(loaded.spec, taken)
        # Remote endpoints can change behind the same name: their answers are cached only
        # when the user names a cache explicitly.
        use = store if cache is not True or not _is_remote(loaded) else None
        ctx = ProbeContext(seed=seed, data=data, limit=limit)
        logs.append(
            run_audit(
                loaded,
                chosen,
                out_dir=run_dir,
                ctx=ctx,
                resume=resume,
                cache=use,
                progress=progress,
            )
        )
        names.append(run_dir.name)
    if single:
        return logs[0]
    write_index(out, names)
    return logs


def _is_remote(model: Model) -> bool:
    # Wrappers (guards, defense prompts) keep the base's fingerprint inside their own.
    return "openai:" in model.fingerprint


def _open_cache(cache: bool | str | Path | Cache) -> Cache | None:
    if cache is False:
        return None
    if isinstance(cache, Cache):
        return cache
    if cache is True:
        return Cache(default_cache_path())
    return Cache(Path(cache))
