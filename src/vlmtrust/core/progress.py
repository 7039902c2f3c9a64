"""The project's rich progress bars: one column layout for the runner and the trainers."""

from __future__ import annotations

from typing import Any

__all__ = ["new_progress"]


def new_progress(*, rate: bool = False, info: bool = False) -> Any:
    """A :class:`rich.progress.Progress` (a context manager) with the project's columns.

    Columns: the task name (no markup, so untrusted names print as they are), a bar, done/total,
    then items per second when ``rate``, the task's ``info`` field when ``info`` (pass
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
