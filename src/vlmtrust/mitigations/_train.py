"""Training-loop pieces shared by the fine-tuning mitigations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def optimizer_step(
    opt: Any,
    loss: Any,
    losses: list[float],
    step: int,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """Back-propagate ``loss``, step ``opt``, record the loss and report it to ``on_step``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(float(loss.detach()))
    if on_step is not None:
        on_step(step, losses[-1])
