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

    def _show(self) -> None:
        # The live display starts with the first task, so a command that fails before doing any
        # work prints only its error line.
        if not self._started:
            self._bar.start()
            self._started = True

    def start(self, description: str, total: int | None) -> None:
        self._show()
        self._task = self._bar.add_task(description, total=total, info="")

    def steps(self) -> StepProgress:
        """A second bar on the same display for the steps of each method call (a sampler's
        denoising steps), under the bar of images: one row, reused by every call."""
        return StepProgress(self)

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


class StepProgress:
    """The steps of one call after another on one row of a :class:`RichProgress` display.

    Each ``start`` (a new image or batch) resets the row rather than adding one, so a folder of
    a thousand images shows two rows: images, and the steps of the batch in hand.
    """

    def __init__(self, display: RichProgress) -> None:
        self._display = display
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None) -> None:
        self._display._show()
        bar = self._display._bar
        if self._task is None:
            self._task = bar.add_task(description, total=total, info="")
        else:
            bar.reset(self._task, total=total, description=description, info="")

    def advance(self, n: int = 1, **info: object) -> None:
        if self._task is not None:
            self._display._bar.update(self._task, advance=n)

    def finish(self) -> None:
        pass  # the row keeps the last call's count until the next call resets it
