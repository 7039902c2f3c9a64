"""Training-loop pieces shared by the fine-tuning mitigations, and their progress reporting.

A training loop announces itself with :func:`train_started` (what it trains, how many steps)
and reports each optimiser step with :func:`train_step` (:func:`optimizer_step` does so
itself). Both go to the :class:`TrainProgress` installed by :func:`reporting` — the CLI's
progress bar — and are no-ops when none is, so library callers see nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vlmtrust.core.mitigation import HardenedArtifact


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
    import json
    from pathlib import Path

    from vlmtrust.core.mitigation import HardenedArtifact

    out = Path(out_dir)
    (out / summary_file).write_text(json.dumps(summary, indent=2) + "\n")
    return HardenedArtifact(spec=f"hardened:{out}", out_dir=out, summary=summary)
