"""Test helpers shared across test folders (importable as ``helpers``: conftest puts tests/ first).

:func:`run_probe` is the by-hand runner loop that probe tests used to copy: build the probe,
list its samples, evaluate them in the probe's batches, number the records in sample order.
Unlike :func:`vlmtrust.runner.engine.evaluate_probe` it keeps the raw records and the probe
instance (for ``aggregate`` / ``plots`` / ``examples`` on chosen records) and has no
error-record handling: an exception in ``evaluate`` fails the test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlmtrust.core.probe import Probe, ProbeContext, registry
from vlmtrust.core.results import MetricResult, ProbeResult, Record


def make_probe(probe: str | Probe, params: Mapping[str, Any] | None = None) -> Probe:
    """A probe instance from a registry name (with ``params``) or the instance itself."""
    if isinstance(probe, Probe):
        assert params is None, "pass params when building the probe, not to an instance"
        return probe
    return registry()[probe](dict(params or {}))


def run_probe(
    probe: str | Probe,
    model: Any,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    ctx: ProbeContext | None = None,
) -> tuple[Probe, list[Record]]:
    """Run ``probe`` on ``model`` by hand; returns the probe and its records in sample order."""
    p = make_probe(probe, params)
    ctx = ctx if ctx is not None else ProbeContext(seed=seed)
    samples = list(p.samples(ctx))
    records: list[Record] = []
    for i in range(0, len(samples), p.batch_size):
        records += p.evaluate(model, samples[i : i + p.batch_size], ctx)
    for i, r in enumerate(records):
        r.index = i
    return p, records


def metrics(
    probe: Probe, records: list[Record], ctx: ProbeContext | None = None
) -> dict[str, MetricResult]:
    """``probe.aggregate`` keyed by metric name (``{m.name: m for m in ...}``)."""
    return {m.name: m for m in probe.aggregate(records, ctx or ProbeContext())}


def evaluated(
    model: Any, name: str, params: Mapping[str, Any] | None = None, **ctx: Any
) -> ProbeResult:
    """The runner's result of probe ``name`` (with ``params``) on ``model``."""
    from vlmtrust.runner.engine import evaluate_probe

    return evaluate_probe(model, make_probe(name, params), ProbeContext(**ctx))


def value(res: ProbeResult, name: str) -> float:
    """The value of metric ``name`` (asserted to exist)."""
    v = res.metric(name).value
    assert v is not None, name
    return v


def shape_folder(root: Any, n: int, seed: int) -> str:
    """An image folder of ``n`` SynthWorld shapes (label = shape) plus one broken file."""
    from vlmtrust.data.synthworld import SynthWorld

    for i, s in enumerate(SynthWorld(seed=seed).shapes(n, split="id")):
        d = root / s.attributes["shape"]
        d.mkdir(parents=True, exist_ok=True)
        s.image.save(d / f"{i:03d}.png")
    (d / "broken.png").write_bytes(b"not a png")  # one error record
    return str(root)
