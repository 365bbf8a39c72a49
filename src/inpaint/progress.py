"""How library code reports progress without printing.

Long-running library functions take a ``progress`` argument implementing :class:`Progress`; the
CLI passes a rich progress bar, Python callers pass nothing (``NullProgress``) or their own.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """A sink for progress events. ``info`` carries named figures to show (loss, file name…)."""

    def start(self, description: str, total: int | None) -> None:
        """A new task of ``total`` units begins (``None``: unknown length)."""

    def advance(self, n: int = 1, **info: object) -> None:
        """``n`` more units are done."""

    def finish(self) -> None:
        """The current task is over."""


class NullProgress:
    """Ignores every event."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, **info: object) -> None:
        pass

    def finish(self) -> None:
        pass
