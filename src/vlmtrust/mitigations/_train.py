"""Training-loop pieces shared by the fine-tuning mitigations, and their progress reporting.

A training loop announces itself with :func:`train_started` (what it trains, how many steps)
and reports each optimiser step with :func:`train_step` (:func:`optimizer_step` does so
itself). Both go to the :class:`TrainProgress` installed by :func:`reporting` — the CLI's
progress bar — and are no-ops when none is, so library callers see nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol


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
