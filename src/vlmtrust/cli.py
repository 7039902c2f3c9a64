"""The ``vlmtrust`` command line: thin — it parses, calls the library, prints."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from vlmtrust.core.limits import (
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_MANIFEST_LINE_BYTES,
    DEFAULT_MAX_PIXELS,
    LIMIT_OPTIONS,
    DataLimits,
)

app = typer.Typer(
    name="vlmtrust",
    help="Audit vision-language models for trustworthiness (privacy, fairness, robustness, "
    "safety) and harden them: audit → harden → re-audit.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
reference_app = typer.Typer(help="The shipped reference models (known, planted flaws).")
app.add_typer(reference_app, name="reference")
from vlmtrust.crypto.cli import crypto_app  # noqa: E402  (typer only; the extra loads lazily)

app.add_typer(crypto_app, name="crypto")

_F = TypeVar("_F", bound=Callable[..., Any])

ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="model spec (repeatable): hf:…, openai:MODEL@URL, reference:…, "
        "hardened:DIR. Default: the reference models.",
    ),
]
ModelOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model-option",
        help="backend option KEY=VALUE for the model (repeatable; openai: models): timeout_s, "
        "max_retries, concurrency, requests_per_second, batches_in_flight, backoff_base_s, "
        "backoff_max_s, max_image_side, image_format, jpeg_quality, api_key_env, max_images. "
        "Recorded in spec.json; keys only from the environment.",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="torch CPU threads for the run (default $VLMTRUST_THREADS, else one per core); "
        "fewer than the cores when other processes share the machine. Recorded in spec.json",
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="where local models run: auto (CUDA when available), cpu, cuda or cuda:N",
    ),
]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="local model weights: float32 (default), bfloat16 or float16 (for CUDA)",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="run folder (default: a new vlmtrust-runs/<time>-<model>-<what>/; "
        "vlmtrust-runs/latest points at the newest)",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="run seed (same seed, same numbers)")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="cap on samples per probe")]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="dataset: image folder, manifest.jsonl, hf-disk:PATH[#split], or "
        "fairface:|pata:|fairvlmed:|bold:PATH",
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="probe parameter PROBE.KEY=VALUE (VALUE parsed as JSON if it can be); `run` with "
        "one probe also takes KEY=VALUE",
    ),
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="replace the run already in --out (its files are removed first; only a vlmtrust "
        "run folder is cleared)",
    ),
]
MaxErrorRateOpt = Annotated[
    float | None,
    typer.Option(
        "--max-error-rate",
        metavar="R",
        help="exit 1 when more than this share (0..1) of a probe's samples failed "
        "(default: only when all did)",
    ),
]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="cache file (default $VLMTRUST_CACHE or ~/.cache/vlmtrust/cache.sqlite); "
        "'off' disables",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="local (this process) or ray (a pool of Ray actors per model; needs the ray "
        "extra; same records and metrics, see docs/scaling.md)",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: a local "
        "cluster on this machine without a dashboard (docs/scaling.md: its ports)",
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option("--ray-workers", help="Ray actors per model (default: the cluster's CPUs)"),
]
RayCpusOpt = Annotated[
    int | None,
    typer.Option("--ray-cpus", help="CPUs a local Ray cluster offers (default: all)"),
]
MlflowOpt = Annotated[
    bool,
    typer.Option(
        "--mlflow",
        help="log params, metrics (with CI bounds) and the report to MLflow (extra: mlflow); "
        "a local store only: --mlflow-uri, $VLMTRUST_MLFLOW_URI or RUN/mlruns",
    ),
]
MlflowUriOpt = Annotated[
    str | None,
    typer.Option(
        "--mlflow-uri",
        envvar="VLMTRUST_MLFLOW_URI",
        help="MLflow store (a folder, file:/// or sqlite:///PATH.db); implies --mlflow when "
        "given on the command line",
        show_envvar=True,
    ),
]
# The data limits (vlmtrust.core.limits): every limit an error message names is one of these.
MaxImagePixelsOpt = Annotated[
    int,
    typer.Option(
        LIMIT_OPTIONS["max_image_pixels"],
        help="largest image width × height accepted (checked before decoding)",
    ),
]
MaxAspectRatioOpt = Annotated[
    float,
    typer.Option(
        LIMIT_OPTIONS["max_aspect_ratio"],
        help="largest image aspect ratio accepted (long side / short side)",
    ),
]
MaxManifestLineBytesOpt = Annotated[
    int,
    typer.Option(
        LIMIT_OPTIONS["max_manifest_line_bytes"],
        help="longest line of a .jsonl manifest accepted, in bytes",
    ),
]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0    every probe ran and no more of its samples failed than --max-error-rate allows\n"
    "  1    a probe could not run, had no samples, or all its samples failed (or more than\n"
    "       --max-error-rate of them); results and the report are still written\n"
    "  2    bad usage or input, refused before anything runs\n"
    "  130  interrupted (continue with --resume)"
)


RunSeedOpt = Annotated[
    int | None, typer.Option("--seed", help="run seed (same seed, same numbers; default 0)")
]
ReportOpt = Annotated[bool, typer.Option(help="render the report afterwards")]


@dataclass(frozen=True)
class RunOptions:
    """The options ``run`` and ``audit`` share, declared once: each field is one option.

    A command decorated with :func:`_run_options` offers every field as an option and
    receives them as one ``opts`` argument.
    """

    model_option: ModelOptionOpt = None
    out: OutOpt = None
    seed: RunSeedOpt = None
    limit: LimitOpt = None
    data: DataOpt = None
    param: ParamOpt = None
    resume: ResumeOpt = False
    overwrite: OverwriteOpt = False
    max_error_rate: MaxErrorRateOpt = None
    cache: CacheOpt = None
    report: ReportOpt = True
    quiet: QuietOpt = False
    executor: ExecutorOpt = "local"
    ray_address: RayAddressOpt = None
    ray_workers: RayWorkersOpt = None
    ray_cpus: RayCpusOpt = None
    mlflow: MlflowOpt = False
    mlflow_uri: MlflowUriOpt = None
    max_image_pixels: MaxImagePixelsOpt = DEFAULT_MAX_PIXELS
    max_aspect_ratio: MaxAspectRatioOpt = DEFAULT_MAX_ASPECT_RATIO
    max_manifest_line_bytes: MaxManifestLineBytesOpt = DEFAULT_MAX_MANIFEST_LINE_BYTES
    threads: ThreadsOpt = None
    device: DeviceOpt = None
    dtype: DtypeOpt = None

    def with_config(self, cfg: Any) -> RunOptions:
        """These options, the run config's data, limit and seed where not given (seed: 0)."""
        data, limit, seed = self.data, self.limit, self.seed
        if cfg is not None:
            data = data if data is not None else cfg.data
            limit = limit if limit is not None else cfg.limit
            seed = seed if seed is not None else cfg.seed
        return replace(self, data=data, limit=limit, seed=0 if seed is None else seed)

    @property
    def limits(self) -> DataLimits:
        """The data limits these options set."""
        return DataLimits(
            self.max_image_pixels, self.max_aspect_ratio, self.max_manifest_line_bytes
        )


def _run_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Offer :class:`RunOptions`' fields as options of command ``fn``, which takes ``opts``.

    The options stand where ``fn``'s ``opts`` parameter stands (for ``--help``'s order);
    typer sees one keyword-only signature, and ``fn`` is called with the others as given.
    """
    import dataclasses
    import functools
    import inspect
    import typing

    hints = typing.get_type_hints(RunOptions, include_extras=True)
    kw = inspect.Parameter.KEYWORD_ONLY
    shared = [
        inspect.Parameter(f.name, kw, default=f.default, annotation=hints[f.name])
        for f in dataclasses.fields(RunOptions)
    ]
    params: list[inspect.Parameter] = []
    for p in inspect.signature(fn, eval_str=True).parameters.values():
        params += shared if p.name == "opts" else [p.replace(kind=kw)]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        opts = RunOptions(**{p.name: kwargs.pop(p.name) for p in shared})
        fn(**kwargs, opts=opts)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _examples(*lines: str) -> str:
    """A command's ``--help`` epilog: example command lines, kept as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {ln}" for ln in lines)


def _version(value: bool) -> None:
    if value:
        from vlmtrust import __version__

        typer.echo(f"vlmtrust {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    pass  # the options above are the whole body: --version exits in its callback


def _fail(msg: str, code: int = EXIT_USAGE) -> None:
    from vlmtrust.core.errors import one_line

    typer.echo(f"error: {one_line(msg)}", err=True)
    raise typer.Exit(code)


def _guard(fn: _F) -> _F:
    """Turn user-facing errors into one line on stderr and exit code 2."""
    import functools

    @functools.wraps(fn)
    def inner(*a: Any, **kw: Any) -> Any:
        from vlmtrust.core.errors import VlmtrustError

        try:
            return fn(*a, **kw)
        except VlmtrustError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted (continue with --resume)", EXIT_INTERRUPTED)
        return None

    return inner  # type: ignore[return-value]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(
    items: list[str] | None, *, scoped: bool, default: str | None = None
) -> dict[str, dict[str, Any]]:
    """Parse ``--param`` items: ``PROBE.KEY=VALUE`` (scoped) or ``KEY=VALUE``.

    With ``default`` (the one probe or mitigation of a command), a scoped parse also takes a
    bare ``KEY=VALUE`` (a key without ``/``) as ``default.KEY=VALUE``.
    """
    from vlmtrust.core.errors import InputError

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
        if scoped and default is not None and "/" not in key:
            out.setdefault(default, {})[key] = _value(val)
            continue
        if scoped:
            probe_name, dot, field = key.rpartition(".")
            if not dot or not probe_name:
                raise InputError(
                    f"--param {item!r}: expected PROBE.KEY=VALUE, e.g. capability/vqa.n=50"
                )
        else:
            probe_name, field = "", key
        out.setdefault(probe_name, {})[field] = _value(val)
    return out


def _cache_arg(cache: str | None) -> Any:
    if cache is None:
        return True
    if cache.lower() in ("off", "none", "no", "false"):
        return False
    return Path(cache)


def _render(run_dir: Path, quiet: bool) -> None:
    from vlmtrust.report.html import render_report

    html, md = render_report(run_dir)
    if not quiet:
        typer.echo(f"report: {html}\n        {md}")


def _print_summary(logs: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        # a CI log: one plain line per metric, never cut or wrapped at a column limit
        for log in logs if isinstance(logs, list) else [logs]:
            typer.echo(_summary_lines(log))
        return
    for log in logs if isinstance(logs, list) else [logs]:
        table = Table(title=escape(log.spec.model.spec), show_lines=False)
        widths = {"value": 6, "95% CI": 16, "n": 4, "risk": 8, "errors": 6}
        for col in ("probe", "metric", "value", "95% CI", "n", "risk", "errors"):
            table.add_column(col, min_width=widths.get(col), overflow="fold")
        for r in log.results:
            heads = [m for m in r.metrics if m.headline] or r.metrics[:1]
            for m in heads:
                val = "–" if m.value is None else f"{m.value:.3f}"
                ci = "" if m.ci_low is None else f"[{m.ci_low:.3f}, {m.ci_high:.3f}]"
                table.add_row(
                    escape(r.probe),
                    escape(m.name),
                    val,
                    ci,
                    str(m.n),
                    m.risk.value if m.risk else "",
                    str(r.n_errors),
                )
            if not heads:
                table.add_row(escape(r.probe), "–", "–", "", "0", "", str(r.n_errors))
        console.print(table)


def _summary_lines(log: Any) -> str:
    """The run summary as plain lines (``probe  metric  value [lo, hi]  n=…  risk  errors=…``)."""
    lines = [f"== {log.spec.model.spec} =="]
    for r in log.results:
        heads = [m for m in r.metrics if m.headline] or r.metrics[:1]
        for m in heads:
            val = "–" if m.value is None else f"{m.value:.3f}"
            ci = "" if m.ci_low is None else f" [{m.ci_low:.3f}, {m.ci_high:.3f}]"
            risk = f"  risk {m.risk.value}" if m.risk else ""
            lines.append(f"{r.probe}  {m.name}  {val}{ci}  n={m.n}{risk}  errors={r.n_errors}")
        if not heads:
            lines.append(f"{r.probe}  –  errors={r.n_errors}")
    return "\n".join(lines)


def _budget(value: Any) -> Any:
    """A perturbation budget shown as ``k/255`` where it is one (recursively in lists)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_budget(v)) for v in value) + "]"
    if isinstance(value, float) and 0 < value < 1:
        k = value * 255
        if abs(k - round(k)) < 1e-6:
            return f"{round(k)}/255"
    return repr(value)


def _plain(value: Any) -> Any:
    """Pydantic models inside a default as plain dicts (what a user would write)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(exclude_defaults=True)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def format_default(name: str, field: Any, width: int = 90) -> str:
    """A parameter's default as `list -v` shows it: factories called, budgets as ``k/255``.

    A required parameter shows ``(required)``; a long default is cut with ``…``.
    """
    if field.is_required():
        return "(required)"
    value = _plain(field.get_default(call_default_factory=True))
    budget = name == "eps" or name.endswith("_eps") or name.startswith("eps_") or "budget" in name
    text = str(_budget(value) if budget else repr(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_params(params_cls: Any) -> None:
    for fname, f in params_cls.model_fields.items():
        typer.echo(f"    {fname} = {format_default(fname, f)}  {f.description or ''}".rstrip())


@app.command(
    "list",
    epilog=_examples(
        "vlmtrust list probes", "vlmtrust list probes -v", "vlmtrust list mitigations -v"
    ),
)
@_guard
def list_cmd(
    what: Annotated[str, typer.Argument(help="probes | mitigations | models")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show parameters")] = False,
) -> None:
    """List registered probes, mitigations, or model backends and reference models."""
    if what == "probes":
        from vlmtrust.core.probe import registry

        for name, cls in registry().items():
            need = "+".join(cls.requires.names()) or "/".join(cls.requires_any.names()) or "any"
            typer.echo(f"{name:34s} {cls.pillar.value:11s} needs {need:18s} {cls.description}")
            if verbose:
                _print_params(cls.Params)
    elif what == "mitigations":
        from vlmtrust.core.mitigation import registry as mreg

        for name, mcls in mreg().items():
            typer.echo(f"{name:30s} {mcls.kind:8s} {mcls.description}")
            if verbose:
                _print_params(mcls.Params)
    elif what == "models":
        from vlmtrust.models.reference import REFERENCE_MODELS

        typer.echo(
            "backends: hf:REPO_OR_DIR  openai:MODEL@BASE_URL  reference:NAME  hardened:DIR  "
            "mock:generative|dual (scripted, for tests)"
        )
        for name, desc in REFERENCE_MODELS.items():
            typer.echo(f"reference:{name:18s} {desc}")
    else:
        _fail(f"cannot list {what!r}: choose probes, mitigations or models")


@app.command(
    epilog=_examples(
        "vlmtrust run capability/zero_shot -m reference:clip --limit 100",
        "vlmtrust run capability/zero_shot -m reference:clip -p template='a photo of a {}'",
        "vlmtrust run capability/vqa -m openai:llava@http://127.0.0.1:8000/v1 --data vqa.jsonl",
    )
    + "\n\n"
    + EXIT_CODES
)
@_guard
@_run_options
def run(
    probes: Annotated[
        list[str] | None,
        typer.Argument(help="probe names (see `vlmtrust list probes`); or set them in --config"),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="model spec: hf:…, openai:MODEL@URL, reference:…, hardened:DIR; none (or no "
            "--model) for probes that need no model",
        ),
    ] = None,
    *,
    opts: RunOptions,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="run config file, TOML (or YAML with PyYAML): model, probes, params, data, "
            "seed, limit; options given here win; copied into the run folder",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="print what would run (probes, parameters, sample counts, a time estimate "
            "from earlier runs) without loading the model or writing anything",
        ),
    ] = False,
) -> None:
    """Run the named probes on one model (none for probes that need no model)."""
    from vlmtrust.core.runconfig import RunConfig, load_run_config

    cfg: RunConfig | None = load_run_config(config) if config is not None else None
    if cfg is not None:
        probes = probes or cfg.probes
        model = model or ([cfg.model] if cfg.model else None)
    opts = opts.with_config(cfg)
    if not probes:
        _fail("name at least one probe (see `vlmtrust list probes`), or pass --config FILE")
        return
    if not model and _model_free(probes):
        model = ["none"]  # a data-only run (fairness/dataset_audit)
    if not model or len(model) != 1:
        _fail(
            "run needs exactly one --model SPEC (e.g. --model reference:clip); "
            "probes that need no model (fairness/dataset_audit) run without one"
        )
        return
    params = _merged_params(cfg, opts.param, probes)
    if dry_run:
        _dry_run(model[0], probes, params, opts)
        return
    _audit_and_report(model[0], opts, probes=probes, pillars=None, params=params, config=cfg)


def _mlflow_target(flag: bool, uri: str | None) -> tuple[str | None] | None:
    """``(uri,)`` when MLflow logging is on (``--mlflow``, or ``--mlflow-uri`` given), else None.

    The URI from ``$VLMTRUST_MLFLOW_URI`` alone does not turn logging on.
    """
    import os

    from vlmtrust.report.tracker import ENV_URI

    from_env = uri is not None and uri == os.environ.get(ENV_URI)
    if flag or (uri is not None and not from_env):
        return (uri,)
    return None


def _merged_params(
    cfg: Any, param: list[str] | None, probes: list[str]
) -> dict[str, dict[str, Any]]:
    """The config's probe parameters overlaid by ``-p`` (a command-line value wins)."""
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (cfg.params if cfg else {}).items()}
    given = parse_params(param, scoped=True, default=probes[0] if len(probes) == 1 else None)
    for name, values in given.items():
        merged.setdefault(name, {}).update(values)
    return merged


def _dry_run(
    model: str, probes: list[str], params: dict[str, dict[str, Any]], opts: RunOptions
) -> None:
    """Print the plan of a run (:func:`vlmtrust.runner.plan.plan_run`); nothing is written."""
    from vlmtrust.api import _check_inputs as check_inputs
    from vlmtrust.core.redact import redact_text
    from vlmtrust.runner.plan import KIND_NAMES, plan_run

    check_inputs(probes, None, params, limit=opts.limit, data=opts.data, models=[model])
    plan = plan_run(
        model,
        probes,
        params=params,
        seed=int(opts.seed or 0),
        limit=opts.limit,
        data=opts.data,
        data_limits=opts.limits,
    )
    kind = KIND_NAMES[plan.kind] if plan.kind else "its kind is told only by loading it"
    typer.echo("dry run: nothing is loaded or written")
    typer.echo(f"model {redact_text(model)} ({kind})")
    for p in plan.probes:
        n = "?" if p.samples is None else str(p.samples)
        if p.estimate_s is not None:
            est = f"~{_duration(p.estimate_s)} ({p.seconds_per_sample:.3g} s/sample, run of "
            est += f"{(p.estimate_from or '')[:19].replace('T', ' ')})"
        else:
            est = "time unknown (no earlier run of it on this model in vlmtrust-runs/)"
        typer.echo(f"  {p.name}: {n} samples, {est}")
        if p.problem:
            typer.echo(f"    cannot read its samples: {p.problem}")
        shown = ", ".join(
            f"{k}={_budget(v) if k == 'eps' or k.endswith('_eps') else json.dumps(v)}"
            for k, v in p.params.items()
        )
        typer.echo(f"    params {redact_text(shown)}")
    total = plan.total_estimate_s
    typer.echo(
        f"total: {plan.total_samples} samples" + ("" if total is None else f", ~{_duration(total)}")
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _model_free(probes: list[str]) -> bool:
    """True when every named probe runs without a model (it requires no capability)."""
    from vlmtrust.core.probe import get_probe
    from vlmtrust.core.types import Capability

    return bool(probes) and all(get_probe(p).supports(Capability.NONE) for p in probes)


@app.command(
    "audit",
    epilog=_examples(
        "vlmtrust audit",
        "vlmtrust audit -m reference:clip --pillar robustness --out runs/before",
        "vlmtrust audit -m hf:openai/clip-vit-base-patch32 --limit 200",
        "vlmtrust audit --config audit.toml",
    )
    + "\n\n"
    + EXIT_CODES,
)
@_guard
@_run_options
def audit_cmd(
    model: ModelOpt = None,
    pillar: Annotated[
        list[str] | None,
        typer.Option("--pillar", help="privacy | fairness | robustness | safety | capability"),
    ] = None,
    *,
    opts: RunOptions,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="run config file as for `run` (model, probes, params, data, seed, limit); "
            "options given here win; copied into the run folder",
        ),
    ] = None,
) -> None:
    """Run every probe each model's capabilities allow (default: the reference models).

    With --config, the file's model, probes (default: every applicable one), parameters,
    data, seed and limit are used where the command line does not set them.
    """
    from vlmtrust.core.runconfig import RunConfig, load_run_config

    cfg: RunConfig | None = load_run_config(config) if config is not None else None
    probes: list[str] | None = None
    params: dict[str, dict[str, Any]] | None = None
    if cfg is not None:
        model = model or ([cfg.model] if cfg.model else None)
        probes = list(cfg.probes) or None
        params = _merged_params(cfg, opts.param, probes or [])
    target: Any = None if not model else (model[0] if len(model) == 1 else list(model))
    _audit_and_report(
        target,
        opts.with_config(cfg),
        probes=probes,
        pillars=pillar,
        params=params,
        config=cfg,
    )


def _ray_options(executor: str, address: str | None, workers: int | None, cpus: int | None) -> Any:
    """``(executor, RayOptions or None)`` from the command line's executor options."""
    from vlmtrust.core.errors import InputError
    from vlmtrust.runner.executor import RayOptions, check_executor

    check_executor(executor)
    given = [n for n, v in (("address", address), ("workers", workers), ("cpus", cpus)) if v]
    if executor != "ray":
        if given:
            raise InputError(f"--ray-{given[0]} needs --executor ray")
        return executor, None
    return executor, RayOptions(address=address, workers=workers, num_cpus=cpus)


def _out_dir(
    out: Path | None,
    target: Any,
    probes: list[str] | None,
    pillars: list[str] | None,
    *,
    resume: bool,
) -> tuple[Path, bool]:
    """``(run folder, whether it is a new default one)``: ``--out``, or a new folder per run.

    ``--resume`` without ``--out`` continues the run ``vlmtrust-runs/latest`` points at.
    """
    from vlmtrust.api import DEFAULT_MODELS, selection_name
    from vlmtrust.core.errors import InputError
    from vlmtrust.core.redact import redact_text
    from vlmtrust.runner.outdir import RUNS_ROOT, new_run_dir, resolve_latest

    if out is not None:
        return out, False
    if resume:
        latest = resolve_latest()
        if latest is None:
            raise InputError(
                f"--resume without --out continues {RUNS_ROOT}/latest, and there is none: "
                "pass --out RUN (`vlmtrust runs` lists them)"
            )
        typer.echo(f"resuming {latest}", err=True)
        return latest, False
    models = (
        list(DEFAULT_MODELS)
        if target is None
        else ([target] if isinstance(target, str) else list(target))
    )
    return new_run_dir([redact_text(m) for m in models], selection_name(probes, pillars)), True


def _audit_and_report(
    target: Any,
    opts: RunOptions,
    *,
    probes: list[str] | None,
    pillars: list[str] | None,
    params: dict[str, dict[str, Any]] | None = None,
    config: Any = None,
) -> None:
    """The shared body of ``run`` and ``audit``: audit, print the summary, render the report.

    ``params`` (already parsed) replaces ``opts.param``; a ``config`` (:class:`RunConfig`) is
    copied into the run folder; with ``--mlflow`` the run is logged to MLflow after the report.

    Then, if a probe did not give results, one line per problem and exit 1 (``EXIT_CODES``).
    """
    from vlmtrust.api import audit
    from vlmtrust.core.errors import one_line
    from vlmtrust.models.options import parse_model_options
    from vlmtrust.runner.outcome import check_error_rate, run_problems
    from vlmtrust.runner.outdir import point_latest

    check_error_rate(opts.max_error_rate)
    out, fresh = _out_dir(opts.out, target, probes, pillars, resume=opts.resume)
    executor, ray = _ray_options(opts.executor, opts.ray_address, opts.ray_workers, opts.ray_cpus)
    logs = audit(
        target,
        probes=probes,
        pillars=pillars,
        params=params if params is not None else parse_params(opts.param, scoped=True),
        out=out,
        seed=int(opts.seed or 0),
        limit=opts.limit,
        data=opts.data,
        resume=opts.resume,
        overwrite=opts.overwrite,
        cache=_cache_arg(opts.cache),
        progress=not opts.quiet,
        data_limits=opts.limits,
        model_options=parse_model_options(opts.model_option),
        executor=executor,
        ray=ray,
        threads=opts.threads,
        device=opts.device,
        dtype=opts.dtype,
    )
    if config is not None:
        (out / config.record_name).write_text(config.text, encoding="utf-8")
    if fresh:
        point_latest(out, root=out.parent)
    _print_summary(logs)
    if opts.report:
        _render(out, opts.quiet)
    mlflow = _mlflow_target(opts.mlflow, opts.mlflow_uri)
    if mlflow is not None:
        from vlmtrust.report.tracker import log_run, tracking_uri

        ids = log_run(out, mlflow[0])
        if not opts.quiet:
            typer.echo(f"mlflow: {len(ids)} run(s) in {tracking_uri(mlflow[0], out)}")
    problems = run_problems(logs, max_error_rate=opts.max_error_rate)
    for line in problems:
        typer.echo(f"error: {one_line(line)}", err=True)
    if problems:
        raise typer.Exit(EXIT_PROBLEM)


@app.command(
    "report",
    epilog=_examples("vlmtrust report vlmtrust-runs/latest", "vlmtrust report runs/before"),
)
@_guard
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (or a multi-model audit)")],
) -> None:
    """Render report.html and report.md from a run directory's files alone."""
    _check_run_dir(run_dir)
    _render(run_dir, quiet=False)


def _check_run_dir(run_dir: Path) -> None:
    from vlmtrust.core.errors import InputError

    if not (run_dir / "results.json").exists() and not (run_dir / "index.json").exists():
        raise InputError(
            f"{run_dir}: no results.json or index.json here; pass the --out folder of a run"
        )


@app.command(
    epilog=_examples(
        "vlmtrust compare runs/before runs/after",
        "vlmtrust compare runs/before runs/after --out compare.html",
    )
)
@_guard
def compare(
    run_a: Annotated[Path, typer.Argument(help="the 'before' run directory")],
    run_b: Annotated[Path, typer.Argument(help="the 'after' run directory")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="HTML output file (default: RUN_B/compare.html, .md beside it)"
        ),
    ] = None,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="list every metric, not only significant changes and risk-band moves"
        ),
    ] = False,
) -> None:
    """Show before/after deltas with CIs between two runs (e.g. audit vs re-audit).

    Prints a summary line, the warnings (data, seed, probe versions or parameters that differ)
    and the metrics that changed significantly (the 95% CI of B − A excludes 0) or moved risk
    band; writes every metric, and the plots of both runs overlaid, to RUN_B/compare.html and
    RUN_B/compare.md.

    Example: vlmtrust compare runs/before runs/after --all
    """
    from rich.console import Console

    from vlmtrust.report.compare import compare_renderables, pair_runs, render_compare

    for d in (run_a, run_b):
        _check_run_dir(d)
    console = Console()
    for item in compare_renderables(pair_runs(run_a, run_b), show_all=show_all):
        console.print(item)
    html, md = render_compare(run_a, run_b, out_html=out)
    typer.echo(f"comparison: {html}\n            {md}")


@app.command(
    epilog=_examples(
        "vlmtrust summarize vlmtrust-runs/run-a vlmtrust-runs/run-b",
        "vlmtrust summarize runs/* --out leaderboard",
    )
)
@_guard
def summarize(
    runs: Annotated[
        list[Path], typer.Argument(help="run folders (or multi-model audits), or 'latest'")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="folder for summary.html and summary.md"),
    ] = Path("vlmtrust-runs/summary"),
) -> None:
    """A leaderboard across runs and models: models × headline metrics, CIs and risk bands.

    Writes OUT/summary.html and OUT/summary.md: each model's band per pillar, then each
    headline metric as value [95% CI] with its band.
    """
    from vlmtrust.report.leaderboard import render_leaderboard

    board, html, md = render_leaderboard(runs, out)
    typer.echo(
        f"{len(board.rows)} model(s) × {len(board.columns)} headline metric(s)\n"
        f"summary: {html}\n         {md}"
    )


@app.command("runs", epilog=_examples("vlmtrust runs", "vlmtrust runs my-runs"))
@_guard
def runs_cmd(
    root: Annotated[
        Path, typer.Argument(help="the folder holding the runs (default vlmtrust-runs)")
    ] = Path("vlmtrust-runs"),
) -> None:
    """List past runs, newest first: when, model, probes, worst risk per pillar, status."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from vlmtrust.report.runs import list_runs

    runs = list_runs(root)
    if not runs:
        typer.echo(f"no runs in {root}")
        return
    table = Table(show_lines=False, box=None, pad_edge=False)
    for col in ("run", "created (UTC)", "model", "probes", "risk by pillar", "status"):
        table.add_column(col, overflow="fold")
    for r in runs:
        risks = " ".join(f"{p[:4]}:{band}" for p, band in r.risks) or "—"
        status = r.status + (f" ({r.errors} errors)" if r.errors else "")
        table.add_row(
            escape(r.path.name) + (" [bold](latest)[/]" if r.latest else ""),
            escape(r.created[:19].replace("T", " ")),
            escape(", ".join(r.models) or "?"),
            str(r.probes),
            escape(risks),
            escape(status if not r.note else f"{status}: {r.note}"),
        )
    Console().print(table)


@app.command(
    "export-labels",
    epilog=_examples(
        "vlmtrust export-labels vlmtrust-runs/latest",
        "vlmtrust export-labels RUN --format csv --control 50",
    ),
)
@_guard
def export_labels_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (or a multi-model audit)")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="file to write (default RUN/human_labels/)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="labelstudio (JSON import) or csv")] = (
        "labelstudio"
    ),
    control: Annotated[
        int, typer.Option("--control", help="unflagged answers drawn at random as a control")
    ] = 20,
    max_flagged: Annotated[
        int | None, typer.Option("--max-flagged", help="cap on flagged answers (default all)")
    ] = None,
    seed: SeedOpt = 0,
) -> None:
    """Write flagged judged answers and a random control sample for human review."""
    from vlmtrust.report.human import export_labels

    _check_run_dir(run_dir)
    s = export_labels(
        run_dir,
        out,
        fmt=fmt,
        n_control=control,
        max_flagged=max_flagged,
        seed=seed,
    )
    typer.echo(
        f"{s.path}: {s.n_flagged} flagged + {s.n_control} control answers "
        f"(of {s.n_candidates} judged)"
    )
    for extra in s.extra_files:
        typer.echo(f"{extra}: the Label Studio labelling interface (Settings → Labeling Interface)")
    typer.echo(f"label them, then: vlmtrust import-labels {run_dir} FILE")


@app.command(
    "import-labels",
    epilog=_examples("vlmtrust import-labels vlmtrust-runs/latest export.json"),
)
@_guard
def import_labels_cmd(
    run_dir: Annotated[Path, typer.Argument(help="the run the labels were exported from")],
    labels_file: Annotated[
        Path, typer.Argument(help="Label Studio JSON / JSON-MIN export, or the filled-in CSV")
    ],
    report: Annotated[bool, typer.Option(help="render the report afterwards")] = True,
) -> None:
    """Read human labels back and measure each judge's agreement with them (Cohen's κ)."""
    from vlmtrust.report.human import import_labels

    _check_run_dir(run_dir)
    s = import_labels(run_dir, labels_file)
    for line in s.errors:
        typer.echo(f"warning: {line}", err=True)
    typer.echo(
        f"{s.n_labels} labels imported, {s.n_unsure} unsure or blank, {len(s.errors)} rejected"
    )
    for a in s.agreements:
        k = "—" if a.kappa is None else f"{a.kappa:.2f}"
        agree = "—" if a.agreement is None else f"{a.agreement:.2f}"
        where = f"{a.run}: " if a.run else ""
        typer.echo(f"  {where}{a.probe} {a.judge}: κ {k}, agreement {agree} (n={a.n})")
    if report:
        _render(run_dir, quiet=False)


@app.command(
    epilog=_examples(
        "vlmtrust harden -m reference:clip --mitigation robustness/tecoa -o hardened/clip",
        "vlmtrust harden -m reference:clip --mitigation robustness/tecoa -p eps=4/255 --quick "
        "-o h4",
        "vlmtrust harden -m reference:vlm --mitigation safety/defense_prompt -o hardened/vlm-dp",
    )
)
@_guard
def harden(
    model: Annotated[str, typer.Option("--model", "-m", help="model spec to harden")],
    mitigation: Annotated[
        str, typer.Option("--mitigation", help="see `vlmtrust list mitigations`")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="where the hardened model goes")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="mitigation parameter KEY=VALUE or MITIGATION.KEY=VALUE (as in `run`); see "
            "`vlmtrust list mitigations -v`",
        ),
    ] = None,
    model_option: ModelOptionOpt = None,
    seed: SeedOpt = 0,
    data: DataOpt = None,
    quick: Annotated[bool, typer.Option(help="a reduced run (smoke test)")] = False,
    max_image_pixels: MaxImagePixelsOpt = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: MaxAspectRatioOpt = DEFAULT_MAX_ASPECT_RATIO,
    max_manifest_line_bytes: MaxManifestLineBytesOpt = DEFAULT_MAX_MANIFEST_LINE_BYTES,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="replace the hardened model already in --out (it is removed first)"
        ),
    ] = False,
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the summary as JSON (for scripts)")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Apply a mitigation; the result loads with --model hardened:OUT.

    Training mitigations show a progress bar (steps, loss, rate, ETA); the end prints a
    readable summary (--json: the spec and summary as one JSON object on stdout).

    A data mitigation (privacy/dedup, with --model none) writes OUT/manifest.jsonl instead.
    A non-empty --out is refused unless --overwrite is given, which clears it only if it holds
    a hardened model or cleaned data (wrapper.json, config.json or hardening.json). Exit codes:
    0 done, 2 bad input, 130 interrupted.
    """
    from vlmtrust.api import harden as harden_api
    from vlmtrust.core.errors import InputError
    from vlmtrust.core.mitigation import get_mitigation
    from vlmtrust.models.options import parse_model_options

    limits = DataLimits(max_image_pixels, max_aspect_ratio, max_manifest_line_bytes)
    cls = get_mitigation(mitigation)
    name = cls.name
    scoped = parse_params(param, scoped=True, default=name)
    for other in set(scoped) - {name}:
        raise InputError(
            f"--param names {other!r}, but the mitigation is {name}: write KEY=VALUE or "
            f"{name}.KEY=VALUE"
        )
    from vlmtrust.core.progress import TrainBar
    from vlmtrust.mitigations._train import reporting
    from vlmtrust.mitigations.summary import summary_lines

    bar = None if quiet or as_json else TrainBar()
    with bar or contextlib.nullcontext(), reporting(bar):
        art = harden_api(
            model,
            name,
            out,
            params=scoped.get(name, {}),
            seed=seed,
            data=data,
            quick=quick,
            overwrite=overwrite,
            model_options=parse_model_options(model_option),
            data_limits=limits,
            threads=threads,
            device=device,
            dtype=dtype,
        )
    if as_json:
        payload = {"spec": art.spec, "mitigation": name, "summary": art.summary}
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    typer.echo(f"{'cleaned data' if cls.kind == 'data' else 'hardened model'}: {art.spec}")
    for line in summary_lines(art.summary):
        typer.echo(line)


@reference_app.command(
    "train",
    epilog=_examples(
        "vlmtrust reference train clip --seed 1",
        "vlmtrust reference train clip --quick -o /tmp/clip-quick",
        "vlmtrust reference train clip --replace-shipped",
        "vlmtrust reference train clip --quick --write-mixture mix && vlmtrust harden -m none "
        "--mitigation privacy/dedup --data mix/manifest.jsonl -o dd && vlmtrust reference train "
        "clip --quick --canary-manifest dd/manifest.jsonl -o /tmp/clip-dedup",
    ),
)
@_guard
def reference_train(
    name: Annotated[str, typer.Argument(help="reference model name, e.g. clip or vlm")],
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="output folder (default: vlmtrust-reference/NAME-seedSEED, a new folder; load "
            "it with --model hf:FOLDER)",
        ),
    ] = None,
    replace_shipped: Annotated[
        bool,
        typer.Option(
            "--replace-shipped",
            help="write over the model shipped inside the package (what reference:NAME loads; "
            "the fix for a corrupted copy) instead of a new folder",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="replace the reference model already in --out"),
    ] = False,
    quick: Annotated[bool, typer.Option(help="a reduced run (< 1 minute)")] = False,
    fragility: Annotated[
        bool,
        typer.Option(
            help="clip: run the fragility stage (planted flaw 4); --no-fragility gives the "
            "tower reference:vlm starts from"
        ),
    ] = True,
    canary_manifest: Annotated[
        Path | None,
        typer.Option(
            "--canary-manifest",
            help="clip: take the training batches' canaries from this manifest (one line per "
            "slot; --write-mixture writes the built-in one, privacy/dedup shrinks it)",
        ),
    ] = None,
    write_mixture: Annotated[
        Path | None,
        typer.Option(
            "--write-mixture",
            help="clip: write the canary part of the training mixture (repeats included) as "
            "FOLDER/manifest.jsonl and stop, without training",
        ),
    ] = None,
) -> None:
    """Retrain a reference model from scratch (deterministic for a seed).

    It goes to a new folder (never over the shipped model unless --replace-shipped).
    """
    from vlmtrust.core.errors import InputError
    from vlmtrust.models.reference import REFERENCE_MODELS
    from vlmtrust.reference import train

    key = name.strip().lower()
    if key not in REFERENCE_MODELS:
        raise InputError(f"unknown reference model {name!r}; known: {', '.join(REFERENCE_MODELS)}")
    if replace_shipped and out is not None:
        raise InputError("--replace-shipped writes the shipped location: drop --out, or drop it")
    if write_mixture is not None:
        if key != "clip":
            raise InputError(f"--write-mixture applies to reference:clip only, not {key}")
        from vlmtrust.reference.train_clip import FULL, QUICK, write_canary_mixture

        path = write_canary_mixture(write_mixture, QUICK if quick else FULL)
        typer.echo(f"canary mixture → {path} (dedup it, then --canary-manifest)")
        return
    target = None if replace_shipped else (out or Path("vlmtrust-reference") / f"{key}-seed{seed}")
    if target is not None and target.exists():
        if not target.is_dir():
            raise InputError(f"--out {target} is a file; pass a folder for the reference model")
        if any(target.iterdir()):
            if not overwrite:
                raise InputError(
                    f"--out {target} is not empty; pass --overwrite to replace the reference "
                    "model in it, or choose a new --out folder"
                )
            if not (target / "MANIFEST.json").is_file():
                raise InputError(
                    f"--out {target} holds no reference model (no MANIFEST.json), so --overwrite "
                    "will not clear it; empty it yourself or choose a new --out folder"
                )
    path = train(
        key, seed=seed, out_dir=target, quick=quick, progress=True, fragility=fragility,
        canary_manifest=canary_manifest,
    )  # fmt: skip
    use = f"reference:{key}" if target is None else f"hf:{path}"
    typer.echo(f"trained reference:{key} → {path} (load it with --model {use})")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
