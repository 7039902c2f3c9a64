"""Training-loop pieces shared by the fine-tuning mitigations, and their progress reporting.

A training loop announces itself with :func:`train_started` (what it trains, how many steps)
and reports each optimiser step with :func:`train_step` (:func:`optimizer_step` does so
itself). Both go to the :class:`TrainProgress` installed by :func:`reporting` — the CLI's
progress bar — and are no-ops when none is, so library callers see nothing.

A mitigation that trains a copy of a model writes it with :func:`save_tuned` (weights, the
privacy record in ``config.json``, ``hardening.json``); one that writes a JSON record beside
its output returns through :func:`write_record`.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext
from vlmtrust.core.types import Capability


class TrainProgress(Protocol):
    """Receives a training run's progress (steps and loss)."""

    def start(self, description: str, total: int) -> None:
        """A loop of ``total`` optimiser steps begins."""

    def step(self, step: int, loss: float) -> None:
        """Step number ``step`` (0-based) is done with training loss ``loss``."""


_REPORTER: ContextVar[TrainProgress | None] = ContextVar("vlmtrust_train_progress", default=None)


@contextlib.contextmanager
def reporting(reporter: TrainProgress | None) -> Iterator[None]:
    """Send the training progress of the loops run inside the block to ``reporter``."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def train_started(description: str, total: int) -> None:
    """Announce a loop of ``total`` steps to the active reporter (if any)."""
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter.start(description, int(total))


def train_step(step: int, loss: float) -> None:
    """Report one finished step to the active reporter (if any)."""
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter.step(step, float(loss))


def optimizer_step(
    opt: Any,
    loss: Any,
    losses: list[float],
    step: int,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """Back-propagate ``loss``, step ``opt``, record the loss and report it.

    The loss goes to ``on_step`` and to the active :class:`TrainProgress`.
    """
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(float(loss.detach()))
    if on_step is not None:
        on_step(step, losses[-1])
    train_step(step, losses[-1])


def model_dir_artifact(
    out_dir: Any, summary_file: str, summary: dict[str, Any]
) -> HardenedArtifact:
    """The :class:`~vlmtrust.core.mitigation.HardenedArtifact` of a model saved in ``out_dir``.

    ``summary`` is also written there as ``summary_file`` (indented JSON).
    """
    out = Path(out_dir)
    (out / summary_file).write_text(json.dumps(summary, indent=2) + "\n")
    return HardenedArtifact(spec=f"hardened:{out}", out_dir=out, summary=summary)


def need_dual(model: Any, name: str, verb: str = "hardens") -> None:
    """Refuse a model that is not a dual encoder (``name verb dual encoders; …``).

    Raises:
        InputError: ``model.kind`` is not ``dual``.
    """
    from vlmtrust.core.errors import InputError

    if getattr(model, "kind", None) != "dual":
        raise InputError(
            f"{name} {verb} dual encoders; model {model.spec} is "
            f"{getattr(model, 'kind', 'unknown')}"
        )


def run_size(p: Any, ctx: MitigationContext) -> tuple[int, int, int]:
    """``(seed, steps, n_train)`` of a dual-encoder fine-tuning run with parameters ``p``.

    The seed is ``p.seed``, or the run's seed when that is ``None``; ``--quick`` takes a tenth
    of ``p.steps`` (at least one) and at most 256 of ``p.n_train`` training pairs.
    """
    seed = ctx.seed if p.seed is None else p.seed
    if ctx.quick:
        return seed, max(1, p.steps // 10), min(p.n_train, 256)
    return seed, p.steps, p.n_train


class LossReport(Protocol):
    """What a fine-tuning loop reports: its steps, per-step losses and seconds."""

    steps: int
    losses: list[float]
    seconds: float


def save_finetuned(
    model: Any,
    ctx: MitigationContext,
    name: str,
    report: LossReport,
    params: BaseModel,
    **extra: Any,
) -> HardenedArtifact:
    """Write the fine-tuned ``model`` (``save_pretrained``) to ``ctx.out_dir``; its artifact.

    The summary holds the mitigation, base spec, steps, ``extra`` (e.g. how many examples of
    each kind were trained on), first/last loss, seconds and the parameters.
    """
    out = model.save_pretrained(ctx.out_dir)
    summary = {
        "mitigation": name,
        "base": model.spec,
        "steps": report.steps,
        **extra,
        "first_loss": report.losses[0],
        "last_loss": report.losses[-1],
        "seconds": round(report.seconds, 2),
        "params": params.model_dump(mode="json"),
    }
    return HardenedArtifact(spec=f"hardened:{out}", out_dir=out, summary=summary)


class TunedCopy(Mitigation):
    """A model mitigation that fine-tunes a copy of a model (:meth:`tune`) and saves it.

    :meth:`apply` writes the copy with :func:`save_tuned`; the model it was given is unchanged.
    """

    kind: ClassVar[Literal["model", "wrapper", "data"]] = "model"
    requires: ClassVar[Capability] = Capability.GRADIENT | Capability.TRAIN

    @abc.abstractmethod
    def tune(self, model: Any, ctx: MitigationContext) -> tuple[Any, dict[str, Any]]:
        """The fine-tuned copy of ``model`` and the summary of the run."""

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Fine-tune a copy of ``model`` and write it to ``ctx.out_dir``."""
        tuned, summary = self.tune(model, ctx)
        return save_tuned(tuned, model.spec, ctx, self.name, self.params, summary)


def write_record(
    out: Path,
    file: str,
    record: Mapping[str, Any],
    *,
    summary: dict[str, Any] | None = None,
    spec: str | None = None,
) -> HardenedArtifact:
    """Write ``record`` as indented JSON to ``out/file``; the artifact of ``out``.

    The artifact's spec is ``spec`` (default ``hardened:OUT``) and its summary ``summary``
    (default ``record``).
    """
    (out / file).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return HardenedArtifact(
        spec=spec or f"hardened:{out}",
        out_dir=out,
        summary=dict(record) if summary is None else summary,
    )


def hardening_record(name: str, params: BaseModel, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What ``hardening.json`` holds: the mitigation, its parameters, then ``summary``."""
    return {"mitigation": name, "params": params.model_dump(mode="json"), **summary}


def save_tuned(
    tuned: Any,
    base_spec: str,
    ctx: MitigationContext,
    name: str,
    params: BaseModel,
    summary: dict[str, Any],
) -> HardenedArtifact:
    """Save the fine-tuned copy ``tuned`` (``save_pretrained``) to ``ctx.out_dir``; its artifact.

    ``summary`` gains ``base`` (the spec of the model that was copied). When it holds a
    ``privacy`` record (DP accounting), that record is stored in the saved ``config.json`` as
    ``vlmtrust_privacy`` too, so it travels with the weights. ``hardening.json`` holds
    :func:`hardening_record`; the artifact's summary is ``summary``.
    """
    out = Path(ctx.out_dir)
    tuned.save_pretrained(out)
    summary["base"] = base_spec
    if "privacy" in summary:
        cfg_path = out / "config.json"
        config = json.loads(cfg_path.read_text())
        config["vlmtrust_privacy"] = summary["privacy"]
        cfg_path.write_text(json.dumps(config, indent=2) + "\n")
    return write_record(
        out, "hardening.json", hardening_record(name, params, summary), summary=summary
    )


CLEANED_MANIFEST = "manifest.jsonl"
"""The file a data mitigation writes its cleaned manifest to, under its output folder."""


def data_manifest(name: str, ctx: MitigationContext, purpose: str) -> Path:
    """The manifest a data mitigation reads: ``ctx.data``, which must be given.

    ``purpose`` ends the error message: "the image–text manifest ``purpose``".
    """
    from vlmtrust.core.errors import InputError

    if ctx.data is None:
        raise InputError(f"{name} needs --data MANIFEST.jsonl (the image–text manifest {purpose})")
    return Path(ctx.data)


def write_cleaned(
    out: Path,
    name: str,
    params: BaseModel,
    report: dict[str, Any],
    report_file: str,
    keys: tuple[str, ...],
) -> HardenedArtifact:
    """A data mitigation's end: ``report`` to ``out/report_file`` and into ``hardening.json``.

    The artifact's spec is the cleaned manifest (``out/manifest.jsonl``); its summary is the
    ``keys`` of ``report``.
    """
    (out / report_file).write_text(json.dumps(report, indent=2) + "\n")
    return write_record(
        out,
        "hardening.json",
        hardening_record(name, params, report),
        summary={k: report[k] for k in keys},
        spec=str(out / CLEANED_MANIFEST),
    )


@contextlib.contextmanager
def training(net: Any, params: Iterable[Any]) -> Iterator[None]:
    """Inside the block only ``params`` of ``net`` take gradients and ``net`` is in train mode.

    On exit (also on error) ``net`` is back in eval mode with every parameter frozen.
    """
    for q in net.parameters():
        q.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    net.train()
    try:
        yield
    finally:
        net.eval()
        for q in net.parameters():
            q.requires_grad_(False)
