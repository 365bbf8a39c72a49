"""A rich progress bar behind the library's :class:`inpaint.progress.Progress` protocol."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from inpaint.cli import console
from inpaint.names import printable


class RichProgress:
    """Shows step, rate, ETA and any named figures (``loss=…``) passed to ``advance``.

    Use as a context manager so the live display is torn down even on errors.
    """

    def __init__(self, *, disable: bool = False) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console.stderr,
            disable=disable,
            transient=False,
        )
        self._task: TaskID | None = None
        self._started = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._bar.stop()

    def start(self, description: str, total: int | None) -> None:
        # The live display starts with the first task, so a command that fails before doing any
        # work prints only its error line.
        if not self._started:
            self._bar.start()
            self._started = True
        self._task = self._bar.add_task(description, total=total, info="")

    def advance(self, n: int = 1, **info: object) -> None:
        if self._task is None:
            return
        text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
        # A figure may be a file name that is not UTF-8; shown as \xNN, it cannot break the display.
        self._bar.update(self._task, advance=n, info=printable(text))

    def finish(self) -> None:
        if self._task is not None:
            self._bar.update(self._task, info="")
        self._task = None
