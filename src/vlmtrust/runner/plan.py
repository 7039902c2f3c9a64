"""What a run would do, told without loading the model (``vlmtrust run --dry-run``).

For each probe: its parameters, how many samples it would evaluate (its sample stream is
walked; images are not decoded), and a time estimate taken from earlier runs of the same probe
on the same model (seconds per sample in their ``results.json``). Without such a run there is
no estimate: the time a model takes per sample is not known before it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmtrust.core.errors import VlmtrustError, one_line
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.core.results import AuditLog
from vlmtrust.core.types import Capability
from vlmtrust.runner.data import RunData

_KIND_CAPS = {
    "dual": Capability.EMBED | Capability.TRAIN | Capability.GRADIENT,
    "generative": Capability.GENERATE | Capability.TRAIN | Capability.GRADIENT,
    "remote": Capability.GENERATE,
    "none": Capability.NONE,
}

KIND_NAMES = {
    "dual": "a dual encoder",
    "generative": "a generative VLM",
    "remote": "a remote generative model",
    "none": "no model",
}
"""How each kind :func:`kind_before_loading` tells is named in messages."""


@dataclass(frozen=True)
class PlannedProbe:
    """One probe of a planned run.

    ``samples`` is None when the stream could not be read (``problem`` says why);
    ``seconds_per_sample`` and ``estimate_s`` are None without an earlier run to go by.
    """

    name: str
    params: dict[str, Any]
    samples: int | None
    problem: str | None = None
    seconds_per_sample: float | None = None
    estimate_s: float | None = None
    estimate_from: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """A planned run: the model spec, its kind where known without loading, the probes."""

    model: str
    kind: str | None
    probes: list[PlannedProbe] = field(default_factory=list)

    @property
    def total_samples(self) -> int:
        """Samples over every probe whose stream was read."""
        return sum(p.samples or 0 for p in self.probes)

    @property
    def total_estimate_s(self) -> float | None:
        """The summed estimate, or None when a probe has none."""
        ests = [p.estimate_s for p in self.probes]
        return None if any(e is None for e in ests) else sum(e or 0.0 for e in ests)


def kind_before_loading(spec: str) -> str | None:
    """``dual``, ``generative``, ``remote`` or ``none`` for a spec, told from files only.

    Local models are told by their ``config.json`` (a CLIP-like ``model_type`` is a dual
    encoder, anything else a generative VLM); a ``hardened:`` wrapper by its base; None when
    it cannot be told without loading (a Hub id not on disk).
    """
    from vlmtrust.models.hf_common import DUAL_MODEL_TYPES
    from vlmtrust.models.loader import parse_spec

    ms = parse_spec(spec)
    if ms.scheme == "none":
        return "none"
    if ms.scheme == "openai":
        return "remote"
    if ms.scheme == "mock":
        return ms.target
    if ms.scheme == "reference":
        from vlmtrust.models.reference import models_root

        path = models_root() / ms.target.strip().lower()
    else:
        path = Path(ms.target)
    wrapper = path / "wrapper.json"
    if ms.scheme == "hardened" and wrapper.is_file():
        try:
            base = json.loads(wrapper.read_text(encoding="utf-8"))["base"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return kind_before_loading(base) if isinstance(base, str) and base != spec else None
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    return "dual" if cfg.get("model_type") in DUAL_MODEL_TYPES else "generative"


def _history(roots: Iterable[Path]) -> list[AuditLog]:
    logs: list[tuple[str, AuditLog]] = []
    for root in roots:
        if not root.is_dir():
            continue
        for f in [*root.glob("*/results.json"), *root.glob("*/*/results.json")]:
            try:
                log = AuditLog.model_validate_json(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            logs.append((log.spec.created, log))
    return [log for _, log in sorted(logs, key=lambda t: t[0], reverse=True)]


def _per_sample(history: list[AuditLog], model: str, probe: str) -> tuple[float, str] | None:
    for log in history:  # newest first
        if log.spec.model.spec != model:
            continue
        for r in log.results:
            if r.probe == probe and r.n_samples > 0 and r.seconds > 0:
                return r.seconds / r.n_samples, log.spec.created
    return None


def plan_run(
    model: str,
    probes: Sequence[str],
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    limit: int | None = None,
    data: str | None = None,
    data_limits: DataLimits | None = None,
    history: Iterable[Path] = (Path("vlmtrust-runs"),),
) -> RunPlan:
    """Plan a ``run`` of ``probes`` on ``model`` without loading it.

    Raises:
        InputError: an unknown probe or a bad spec; ``CapabilityError`` when the model's kind,
            told from its files, cannot run a probe.
    """
    from vlmtrust.core.errors import CapabilityError

    params = params or {}
    kind = kind_before_loading(model)
    limits = data_limits or DataLimits()
    ctx = ProbeContext(
        seed=seed, data=data, limit=limit, data_limits=limits, datasets=RunData(limits)
    )
    past = _history(history)
    planned: list[PlannedProbe] = []
    for name in probes:
        cls = get_probe(name)
        if kind is not None and not cls.supports(_KIND_CAPS[kind]):
            need = "+".join(cls.requires.names()) or "/".join(cls.requires_any.names())
            raise CapabilityError(
                f"probe {name} needs {need.upper()}; {model} is {KIND_NAMES[kind]} — pick a "
                "model of the right kind or see `vlmtrust list probes`"
            )
        as_kind = "generative" if kind == "remote" else kind
        defaults = cls.defaults_for(as_kind) if as_kind in ("dual", "generative") else {}
        probe = cls({**defaults, **(params.get(name) or {})})
        shown = probe.params.model_dump(mode="json")
        try:
            n: int | None = sum(1 for _ in probe.samples(ctx))
            problem = None
        except VlmtrustError as e:
            n, problem = None, one_line(e)
        per = _per_sample(past, model, name)
        planned.append(
            PlannedProbe(
                name=name,
                params=shown,
                samples=n,
                problem=problem,
                seconds_per_sample=per[0] if per else None,
                estimate_s=per[0] * n if per and n is not None else None,
                estimate_from=per[1] if per else None,
            )
        )
    return RunPlan(model=model, kind=kind, probes=planned)
