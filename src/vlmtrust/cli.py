"""The ``vlmtrust`` command line: thin — it parses, calls the library, prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    name="vlmtrust",
    help="Audit vision-language models for trustworthiness (privacy, fairness, robustness, "
    "safety) and harden them: audit → harden → re-audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
reference_app = typer.Typer(help="The shipped reference models (known, planted flaws).")
app.add_typer(reference_app, name="reference")

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
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="run directory")]
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
        "--param", "-p", help="probe parameter PROBE.KEY=VALUE (VALUE parsed as JSON if it can be)"
    ),
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="cache file (default $VLMTRUST_CACHE or ~/.cache/vlmtrust/cache.sqlite); "
        "'off' disables",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")]


def _fail(msg: str, code: int = 2) -> None:
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
            _fail("interrupted (continue with --resume)", 130)
        return None

    return inner  # type: ignore[return-value]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: list[str] | None, *, scoped: bool) -> dict[str, dict[str, Any]]:
    """Parse ``--param`` items: ``PROBE.KEY=VALUE`` (scoped) or ``KEY=VALUE``."""
    from vlmtrust.core.errors import InputError

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
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


@app.command("list")
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
                for fname, f in cls.Params.model_fields.items():
                    typer.echo(f"    {fname} = {f.default!r}  {f.description or ''}")
    elif what == "mitigations":
        from vlmtrust.core.mitigation import registry as mreg

        for name, mcls in mreg().items():
            typer.echo(f"{name:30s} {mcls.kind:8s} {mcls.description}")
            if verbose:
                for fname, f in mcls.Params.model_fields.items():
                    typer.echo(f"    {fname} = {f.default!r}  {f.description or ''}")
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


@app.command()
@_guard
def run(
    probes: Annotated[list[str], typer.Argument(help="probe names (see `vlmtrust list probes`)")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="model spec: hf:…, openai:MODEL@URL, reference:…, hardened:DIR; none (or no "
            "--model) for probes that need no model",
        ),
    ] = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    data: DataOpt = None,
    param: ParamOpt = None,
    resume: ResumeOpt = False,
    cache: CacheOpt = None,
    report: Annotated[bool, typer.Option(help="render the report afterwards")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Run the named probes on one model (none for probes that need no model)."""
    if not model and _model_free(probes):
        model = ["none"]  # a data-only run (fairness/dataset_audit)
    if not model or len(model) != 1:
        _fail(
            "run needs exactly one --model SPEC (e.g. --model reference:clip); "
            "probes that need no model (fairness/dataset_audit) run without one"
        )
        return
    _audit_and_report(
        model[0],
        out=out or Path("vlmtrust-runs") / "run",
        probes=probes,
        pillars=None,
        param=param,
        seed=seed,
        limit=limit,
        data=data,
        resume=resume,
        cache=cache,
        report=report,
        quiet=quiet,
    )


def _model_free(probes: list[str]) -> bool:
    """True when every named probe runs without a model (it requires no capability)."""
    from vlmtrust.core.probe import get_probe
    from vlmtrust.core.types import Capability

    return bool(probes) and all(get_probe(p).supports(Capability.NONE) for p in probes)


@app.command("audit")
@_guard
def audit_cmd(
    model: ModelOpt = None,
    pillar: Annotated[
        list[str] | None,
        typer.Option("--pillar", help="privacy | fairness | robustness | safety | capability"),
    ] = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    data: DataOpt = None,
    param: ParamOpt = None,
    resume: ResumeOpt = False,
    cache: CacheOpt = None,
    report: Annotated[bool, typer.Option(help="render the report afterwards")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Run every probe each model's capabilities allow (default: the reference models)."""
    target: Any = None if not model else (model[0] if len(model) == 1 else list(model))
    _audit_and_report(
        target,
        out=out or Path("vlmtrust-runs") / "audit",
        probes=None,
        pillars=pillar,
        param=param,
        seed=seed,
        limit=limit,
        data=data,
        resume=resume,
        cache=cache,
        report=report,
        quiet=quiet,
    )


def _audit_and_report(
    target: Any,
    *,
    out: Path,
    probes: list[str] | None,
    pillars: list[str] | None,
    param: list[str] | None,
    seed: int,
    limit: int | None,
    data: str | None,
    resume: bool,
    cache: str | None,
    report: bool,
    quiet: bool,
) -> None:
    """The shared body of ``run`` and ``audit``: audit, print the summary, render the report."""
    from vlmtrust.api import audit

    logs = audit(
        target,
        probes=probes,
        pillars=pillars,
        params=parse_params(param, scoped=True),
        out=out,
        seed=seed,
        limit=limit,
        data=data,
        resume=resume,
        cache=_cache_arg(cache),
        progress=not quiet,
    )
    _print_summary(logs)
    if report:
        _render(out, quiet)


@app.command("report")
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


@app.command()
@_guard
def compare(
    run_a: Annotated[Path, typer.Argument(help="the 'before' run directory")],
    run_b: Annotated[Path, typer.Argument(help="the 'after' run directory")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML output file")] = None,
) -> None:
    """Show before/after deltas with CIs between two runs (e.g. audit vs re-audit)."""
    from rich.console import Console
    from rich.markup import escape

    from vlmtrust.report.compare import compare_logs, deltas_table, render_compare
    from vlmtrust.report.rundir import load_log

    for d in (run_a, run_b):
        _check_run_dir(d)
    if (run_a / "results.json").exists() and (run_b / "results.json").exists():
        deltas = compare_logs(load_log(run_a / "results.json"), load_log(run_b / "results.json"))
        Console().print(deltas_table(deltas, title=escape(f"{run_a} → {run_b}")))
    html, md = render_compare(run_a, run_b, out_html=out)
    typer.echo(f"comparison: {html}\n            {md}")


@app.command()
@_guard
def harden(
    model: Annotated[str, typer.Option("--model", "-m", help="model spec to harden")],
    mitigation: Annotated[
        str, typer.Option("--mitigation", help="see `vlmtrust list mitigations`")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="where the hardened model goes")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="mitigation parameter KEY=VALUE")
    ] = None,
    seed: SeedOpt = 0,
    data: DataOpt = None,
    quick: Annotated[bool, typer.Option(help="a reduced run (smoke test)")] = False,
) -> None:
    """Apply a mitigation; the result loads with --model hardened:OUT."""
    from vlmtrust.core.mitigation import MitigationContext, get_mitigation
    from vlmtrust.models.loader import load_model

    cls = get_mitigation(mitigation)
    params = parse_params(param, scoped=False).get("", {})
    mit = cls(params)
    loaded = load_model(model)
    art = mit.apply(loaded, MitigationContext(seed=seed, out_dir=out, data=data, quick=quick))
    typer.echo(f"hardened model: {art.spec}")
    if art.summary:
        typer.echo(json.dumps(art.summary, indent=2, default=str))


@reference_app.command("train")
@_guard
def reference_train(
    name: Annotated[str, typer.Argument(help="reference model name, e.g. clip or vlm")],
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output dir (default: the shipped location)")
    ] = None,
    quick: Annotated[bool, typer.Option(help="a reduced run (< 1 minute)")] = False,
    fragility: Annotated[
        bool,
        typer.Option(
            help="clip: run the fragility stage (planted flaw 4); --no-fragility gives the "
            "tower reference:vlm starts from"
        ),
    ] = True,
) -> None:
    """Retrain a reference model from scratch (deterministic for a seed)."""
    from vlmtrust.reference import train

    path = train(name, seed=seed, out_dir=out, quick=quick, progress=True, fragility=fragility)
    typer.echo(f"trained reference:{name} → {path}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
