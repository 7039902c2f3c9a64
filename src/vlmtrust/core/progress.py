"""The project's rich progress bars: one column layout for the runner and the trainers."""

from __future__ import annotations

from typing import Any

__all__ = ["new_progress"]


def new_progress(*, rate: bool = True, info: bool = False) -> Any:
    """A :class:`rich.progress.Progress` (a context manager) with the project's columns.

    Columns: the task name (no markup, so untrusted names print as they are), a bar, done/total,
    then items per second (unless ``rate=False``), the task's ``info`` field when ``info`` (pass
    ``info=""`` to ``add_task``), elapsed time and the estimate of the time left.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f}/s" if speed else "–/s", style="progress.data.speed")

    columns: list[Any] = [
        TextColumn("{task.description}", markup=False, style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if rate:
        columns.append(_Rate())
    if info:
        columns.append(TextColumn("{task.fields[info]}", markup=False))
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, transient=False)


class TrainBar:
    """A training-progress receiver drawing one bar per training loop: steps, loss, rate, ETA.

    Use as a context manager around the training (the bars stop at the end); it satisfies
    :class:`vlmtrust.mitigations._train.TrainProgress`.
    """

    def __init__(self) -> None:
        self._prog: Any = None
        self._task: Any = None

    def __enter__(self) -> TrainBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._prog is not None:
            self._prog.stop()
            self._prog = None

    def start(self, description: str, total: int) -> None:
        """Add a bar of ``total`` steps (the first one starts the display)."""
        if self._prog is None:
            self._prog = new_progress(rate=True, info=True)
            self._prog.start()
        self._task = self._prog.add_task(description, total=max(total, 1), info="loss –")

    def step(self, step: int, loss: float) -> None:
        """Move the current bar to ``step + 1`` done and show the loss."""
        if self._prog is not None and self._task is not None:
            self._prog.update(self._task, completed=step + 1, info=f"loss {loss:.4f}")
