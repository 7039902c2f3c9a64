"""The Python API; the CLI is a thin layer over it.

:func:`audit`, :func:`harden`, :func:`compare`, :func:`report` and :func:`load_run` mirror
``vlmtrust audit``/``run``, ``harden``, ``compare`` and ``report``.

Example:
    >>> import vlmtrust
    >>> log = vlmtrust.audit(model="reference:clip", probes=["capability/zero_shot"],
    ...                      out="runs/demo", limit=64)  # doctest: +SKIP
    >>> log.result("capability/zero_shot").metric("accuracy").value  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.model import Model
from vlmtrust.core.params import validate_params
from vlmtrust.core.probe import Probe, ProbeContext, get_probe, registry
from vlmtrust.core.redact import redact_text
from vlmtrust.core.results import AuditLog
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.models.loader import load_model
from vlmtrust.runner.cache import Cache, default_cache_path
from vlmtrust.runner.compute import configure_threads
from vlmtrust.runner.data import RunData
from vlmtrust.runner.engine import run_audit, write_index
from vlmtrust.runner.executor import RayExecutor, RayOptions, check_executor, connect
from vlmtrust.runner.outdir import new_run_dir, point_latest, prepare_out_dir

if TYPE_CHECKING:
    from vlmtrust.core.mitigation import HardenedArtifact, Mitigation
    from vlmtrust.report.diff import MetricDelta
    from vlmtrust.report.leaderboard import Leaderboard

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
    *,
    limit: int | None = None,
    data: str | None = None,
    models: Sequence[str | Model] = (),
) -> None:
    """Fail fast, before any model loads, on bad inputs.

    Typos in probe, pillar or parameter names, a parameter for a probe the run does not
    include, a bad limit, missing data, or a model spec that does not parse (or carries a
    credential). Parameter values are validated by the probe's ``Params`` (over
    its defaults).
    """
    import difflib

    from vlmtrust.models.loader import parse_spec

    known = registry()
    for n in probes or ():
        if isinstance(n, str):
            get_probe(n)
    valid = [p.value for p in Pillar]
    for pil in pillars or ():
        if pil not in valid:
            raise InputError(f"unknown pillar {pil!r}: choose from {', '.join(valid)}")
    if limit is not None and limit < 1:
        raise InputError(
            f"--limit {limit}: use a positive number of samples per probe (or no --limit for all)"
        )
    for m in models:
        if isinstance(m, str):
            parse_spec(m)
    if data is not None:
        from vlmtrust.data.datasets import parse_data_spec

        parse_data_spec(data)
    named = [n if isinstance(n, str) else n.name for n in probes or ()]
    for name in params or {}:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InputError(f"--param names unknown probe {name!r}{hint}")
        if named and name not in named:
            raise InputError(
                f"--param names probe {name!r}, which is not in this run ({', '.join(named)}); "
                "add the probe or drop the --param"
            )
        if not named and pillars and known[name].pillar.value not in pillars:
            raise InputError(
                f"--param names probe {name!r} ({known[name].pillar.value}), which --pillar "
                f"{', '.join(pillars)} leaves out; add its pillar or drop the --param"
            )
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


def _check_probes(
    probes: Sequence[str | Probe] | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    ctx: ProbeContext,
) -> None:
    """Before any model loads: the probes a run names check their inputs (``Probe.check``)."""
    given = {p.name: p for p in probes or () if isinstance(p, Probe)}
    names = [p if isinstance(p, str) else p.name for p in probes or ()] + list(params or {})
    for name in dict.fromkeys(names):
        probe_ = given.get(name) or get_probe(name)(dict((params or {}).get(name) or {}))
        probe_.check(ctx)


def audit(
    model: str | Model | Sequence[str | Model] | None = None,
    *,
    probes: Sequence[str | Probe] | None = None,
    pillars: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    limit: int | None = None,
    data: str | None = None,
    resume: bool = False,
    cache: bool | str | Path | Cache = True,
    progress: bool = False,
    data_limits: DataLimits | None = None,
    overwrite: bool = False,
    model_options: Mapping[str, Any] | None = None,
    executor: str = "local",
    ray: RayOptions | None = None,
    threads: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> AuditLog | list[AuditLog]:
    """Audit one model (or several) and write run directories.

    Args:
        model: a spec, a loaded model, or several; ``None`` audits the reference models.
        probes: probe names (default: every probe the model supports).
        pillars: restrict the default selection to these pillars.
        params: per-probe parameters, ``{"robustness/adversarial": {"steps": 20}}``.
        out: run directory (one model) or parent directory (several: one sub-run each plus
            ``index.json``). Default: a new folder ``vlmtrust-runs/<time>-<model>-<what>``,
            and ``vlmtrust-runs/latest`` points at it once the run is written.
        seed: the run seed; the same seed gives the same numbers on CPU.
        limit: cap on samples per probe.
        data: dataset spec for probes that read user data.
        resume: continue an interrupted run in ``out``.
        cache: ``True`` (default cache file), a path, a :class:`Cache`, or ``False``.
        progress: show rich progress bars.
        data_limits: what the data loaders accept (image pixels, aspect ratio, manifest line
            length; default :class:`DataLimits`). Every model reads the data within them, and
            a warning about a dataset is logged once for the whole audit.
        overwrite: replace the run already in ``out`` (its files are removed first); without
            it (or ``resume``) a folder that holds a run is refused.
        model_options: backend options for every model spec, e.g. ``{"timeout_s": 30}``
            (:func:`vlmtrust.models.options.check_model_options`; checked before any model
            loads). Not allowed with already-loaded models.
        executor: ``"local"`` (this process) or ``"ray"``: each model's batches run on a pool
            of Ray actors that load the model from its spec, and the models run at once
            (:mod:`vlmtrust.runner.executor`). The records and metrics equal the local ones.
        ray: the cluster and pool size for ``executor="ray"`` (default :class:`RayOptions`:
            a local cluster on loopback, one actor per CPU).
        threads: torch's CPU threads for the run (default ``$VLMTRUST_THREADS``, else torch's
            own choice); recorded in ``spec.json`` (:mod:`vlmtrust.runner.compute`).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` for local
            model specs (``hf:``, ``reference:``, ``hardened:``).
        dtype: ``float32``, ``bfloat16`` or ``float16`` for local model specs (default
            float32).

    Raises:
        InputError: a bad input, refused before any model loads (probe, pillar, parameter,
            limit, data, model spec, thread count, device, an ``out`` that holds a run); or a
            model that runs no probe.

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
    _check_inputs(probes, pillars, params, limit=limit, data=data, models=models)
    specs = [m for m in models if isinstance(m, str)]
    check_ctx = ProbeContext(seed=seed, data=data, limit=limit, extras={"model_specs": specs})
    _check_probes(probes, params, check_ctx)
    check_executor(executor)
    if ray is not None and executor != "ray":
        raise InputError("Ray options (--ray-address, --ray-workers…) need --executor ray")
    if executor == "ray":
        connect(ray or RayOptions())  # a cluster that does not answer stops the run here
    fresh = out is None
    if out is None:
        shown_models = [redact_text(m if isinstance(m, str) else m.spec) for m in models]
        out = new_run_dir(shown_models, selection_name(probes, pillars))
    load_kwargs = _model_options(models, model_options)
    for kw, m in zip(load_kwargs, models, strict=True):
        kw.update(device_options(m, device, dtype))
    configure_threads(threads)
    out = Path(out)
    prepare_out_dir(out, resume=resume, overwrite=overwrite)
    store = _open_cache(cache)
    logs: list[AuditLog] = []
    jobs: list[tuple[Any, RayExecutor]] = []
    taken: set[str] = set()
    names: list[str] = []
    limits = data_limits or DataLimits()
    datasets = RunData(limits)  # one reader for every model: each dataset's warnings once
    for i, m in enumerate(models):
        loaded = load_model(m, **load_kwargs[i]) if isinstance(m, str) else m
        if single or not probes:
            chosen = select_probes(loaded, probes, pillars=pillars, params=params)
        else:  # several models: each runs the named probes it can run
            chosen = [p for p in select_probes(loaded, None, params=params) if p.name in probes]
        shown = redact_text(loaded.spec)
        if not chosen:
            raise InputError(
                f"no probe to run on {shown}: check --probe/--pillar against `vlmtrust list probes`"
            )
        unused = sorted(set(params or {}) - {p.name for p in chosen})
        if single and unused:
            raise InputError(
                f"--param names probe {unused[0]!r}, which does not run on {shown} (see "
                "`vlmtrust list probes` for what each probe needs); drop the --param"
            )
        run_dir = out if single else out / _run_name(shown, taken)
        # Remote endpoints can change behind the same name: their answers are cached only
        # when the user names a cache explicitly.
        use = store if cache is not True or not _is_remote(loaded) else None
        ctx = ProbeContext(seed=seed, data=data, limit=limit, data_limits=limits, datasets=datasets)
        job = functools.partial(
            run_audit, loaded, chosen, out_dir=run_dir, ctx=ctx, resume=resume, cache=use
        )
        if executor == "ray":
            opts = ray or RayOptions()
            cache_path = None if use is None else str(use.path)
            pool = RayExecutor(
                loaded.spec, loaded.fingerprint, load_kwargs[i], cache_path, opts, len(models)
            )
            jobs.append((job, pool))
        else:
            logs.append(job(progress=progress))
        names.append(run_dir.name)
    if jobs:
        logs = _run_on_ray(jobs, progress=progress)
    if not single:
        write_index(out, names)
    if fresh:
        point_latest(out, root=out.parent)
    return logs[0] if single else logs


def _run_on_ray(jobs: list[tuple[Any, RayExecutor]], *, progress: bool) -> list[AuditLog]:
    """Run each model's audit on its own actor pool, all models at once (one thread each).

    Progress bars are shown for a single model only (one live display per terminal).
    """
    import concurrent.futures as cf

    def one(job: Any, pool: RayExecutor) -> AuditLog:
        with pool:
            return job(executor=pool, progress=progress and len(jobs) == 1)  # type: ignore[no-any-return]

    if len(jobs) == 1:
        return [one(*jobs[0])]
    with cf.ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="vlmtrust-ray") as ex:
        futures = [ex.submit(one, job, pool) for job, pool in jobs]
        return [f.result() for f in futures]


def selection_name(probes: Sequence[str | Probe] | None, pillars: Sequence[str] | None) -> str:
    """What a run ran, for its default folder name."""
    if probes:
        names = [p if isinstance(p, str) else p.name for p in probes]
        return names[0].replace("/", "-") if len(names) == 1 else f"{len(names)}-probes"
    return "audit" + ("-" + "-".join(pillars) if pillars else "")


def _model_options(
    models: Sequence[str | Model], options: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The checked backend options of each model (all checked before any model loads)."""
    from vlmtrust.models.options import check_model_options

    if options and any(not isinstance(m, str) for m in models):
        raise InputError(
            "model_options apply to model specs; pass the options to load_model() for a model "
            "you load yourself"
        )
    return [check_model_options(m, options) if isinstance(m, str) else {} for m in models]


def device_options(model: str | Model, device: str | None, dtype: str | None) -> dict[str, Any]:
    """``load_model`` keyword arguments for ``device``/``dtype``, checked before loading.

    Only local specs (``hf:``, ``reference:``, ``hardened:``) take them; ``auto``/None add
    nothing.

    Raises:
        InputError: a device or dtype torch does not know, ``cuda`` without a GPU, or either
            one given for a remote or scripted model, or for a model already loaded.
    """
    from vlmtrust.models.hf_common import resolve_device, resolve_dtype
    from vlmtrust.models.loader import parse_spec

    out: dict[str, Any] = {}
    dev = None if device in (None, "auto") else device
    dt = None if dtype in (None, "auto") else dtype
    if dev is None and dt is None:
        return out
    what = " and ".join(f"--{k} {v}" for k, v in (("device", dev), ("dtype", dt)) if v is not None)
    if not isinstance(model, str):
        raise InputError(f"{what} applies to a model spec; pass device/dtype to load_model()")
    scheme = parse_spec(model).scheme
    if scheme not in ("hf", "reference", "hardened"):
        raise InputError(
            f"{what}: model {redact_text(model)} does not run here; device and dtype apply to "
            "hf:, reference: and hardened: models only"
        )
    resolved = resolve_device(dev)
    if dev is not None:
        out["device"] = str(resolved)
    if dt is not None:
        resolve_dtype(dt, resolved)
        out["dtype"] = dt
    return out


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
    threads: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> HardenedArtifact:
    """Apply a mitigation to a model; the result loads with ``hardened:OUT``.

    Everything is checked before the model loads or any training starts: the mitigation name
    (close matches suggested), its parameters (the valid ones listed), the model spec and
    options, whether the model can take the mitigation (its kind and capabilities), ``data``,
    and ``out`` (a non-empty folder is refused unless ``overwrite``, which clears only a
    hardened model). ``threads``, ``device`` and ``dtype`` are as in :func:`audit`.

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
        options.update(device_options(model, device, dtype))
    elif model_options or device not in (None, "auto") or dtype not in (None, "auto"):
        raise InputError(
            "model_options, device and dtype apply to a model spec, not to a loaded model"
        )
    check_mitigation_fits(cls, model)
    if data is not None:
        from vlmtrust.data.datasets import parse_data_spec

        parse_data_spec(data)
    out = Path(out)
    source = model if isinstance(model, str) else model.spec
    configure_threads(threads)
    prepare_model_dir(out, overwrite=overwrite, source=source)
    loaded = load_model(model, **options) if isinstance(model, str) else model
    check_mitigation_fits(cls, loaded)
    ctx = MitigationContext(
        seed=seed, out_dir=out, data=data, quick=quick, data_limits=data_limits or DataLimits()
    )
    return mit.apply(loaded, ctx)


def report(run: str | Path = "latest", *, out_html: str | Path | None = None) -> tuple[Path, Path]:
    """Render ``report.html`` and ``report.md`` of a run from its files; returns both paths.

    ``run`` is a run folder or ``"latest"`` (the newest); also ``vlmtrust.report(run)``.
    """
    from vlmtrust.report.entry import render

    return render(run, out_html=out_html)


def load_run(run: str | Path = "latest") -> AuditLog | list[AuditLog]:
    """Read a finished run back: its :class:`AuditLog` (a list for a multi-model audit).

    A multi-model audit is a folder with ``index.json``. ``"latest"`` (the default) is the
    newest run, ``vlmtrust-runs/latest``.

    Raises:
        InputError: not a run folder, an unfinished run, or an unreadable ``results.json``.
    """
    from vlmtrust.report.entry import run_folder
    from vlmtrust.report.rundir import is_parent_dir, load_runs

    path = run_folder(run)
    runs = load_runs(path)
    logs = [r.log for r in runs]
    return logs if is_parent_dir(path) else logs[0]


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
    before: str | Path,
    after: str | Path,
    *,
    out_html: str | Path | None = None,
    render: bool = True,
) -> Comparison:
    """Compare two runs (or two multi-model audits, model by model): deltas with CIs.

    Metrics present in only one run are kept (``presence`` says which). With ``render`` the
    HTML/Markdown comparison is written too (default: beside ``after``).
    """
    from vlmtrust.report.compare import compare_logs, pair_runs, render_compare
    from vlmtrust.report.entry import run_folder

    a, b = run_folder(before), run_folder(after)
    result = Comparison()
    for p in pair_runs(a, b):
        if p.a is not None and p.b is not None:
            result.pairs[p.name] = compare_logs(p.a.log, p.b.log)
    if render:
        result.html, result.md = render_compare(
            a, b, out_html=None if out_html is None else Path(out_html)
        )
    return result


def summarize(runs: Sequence[str | Path], *, out: str | Path | None = None) -> Leaderboard:
    """A leaderboard across runs and models (``vlmtrust summarize``): models × headline metrics.

    Each model of each run (``"latest"`` allowed) is a row; each headline metric a column with
    value, 95% CI and risk band. With ``out`` a folder, ``summary.html`` and ``summary.md``
    are written there.
    """
    from vlmtrust.report.leaderboard import build_leaderboard, render_leaderboard

    if out is None:
        return build_leaderboard(runs)
    return render_leaderboard(runs, out)[0]
