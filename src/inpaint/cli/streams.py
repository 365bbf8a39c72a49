"""Standard output that fails in one line: a closed stdout, a full disk.

A command's result (``--json``, a table, ``-o -``'s PNG) goes to stdout. When stdout cannot take
it, Python's own failures are unhelpful: a closed stdout (``inpaint … >&-``) is ``None``, and
writing to it gives "unexpected AttributeError", or nothing at all (click's ``echo`` drops the
text silently); a full device (``> /dev/full``) gives "unexpected OSError". While a command runs,
:func:`guarded_stdout` puts a thin wrapper in ``sys.stdout`` that turns these into one
:class:`OutputError` line saying what happened, and :func:`describe_os_error` names a full disk
met while writing a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import Any

from inpaint.errors import InpaintError

#: What an OSError number means for an output, in the words the error line uses.
_OUTPUT_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


class OutputError(InpaintError):
    """The command's result could not be written to stdout (exit code 1: the work itself is done)."""


def describe_os_error(error: BaseException) -> str | None:
    """One line for an OSError that says the disk is full (or over quota), else ``None``.

    Writes through :mod:`inpaint.atomic` leave the old file (or none) in place, so the line tells
    the user to free space and rerun: what was finished is kept.
    """
    if not isinstance(error, OSError) or error.errno not in _OUTPUT_ERRORS:
        return None
    where = f": {error.filename}" if error.filename else " while writing an output file"
    return (
        f"{_OUTPUT_ERRORS[error.errno]}{where}; free some space and run the command again (finished outputs are kept)"
    )


def _failed(error: OSError) -> str:
    """The message for a failed write to stdout."""
    what = _OUTPUT_ERRORS.get(error.errno, error.strerror or str(error))
    return f"{what}: cannot write the result to stdout"


_CLOSED = (
    "output closed: cannot write the result to stdout (it is closed); run the command with stdout open, "
    "or without --json / -o -"
)


class _Guarded:
    """Forwards to a stream (``None`` when stdout is closed), turning write failures into OutputError.

    A failure sticks: every later write fails with the same message, even if a caller swallowed
    the first one (click probes a stream with empty writes and ignores what they raise).
    """

    def __init__(self, stream: Any, failure: list[str] | None = None) -> None:
        self._stream = stream
        self.failure = failure if failure is not None else []  # shared with the .buffer guard

    def __getattr__(self, name: str) -> Any:
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)

    def _call(self, name: str, *args: Any) -> Any:
        if self._stream is None:
            raise OutputError(_CLOSED)
        if self.failure:
            raise OutputError(self.failure[0])
        try:
            return getattr(self._stream, name)(*args)
        except BrokenPipeError:  # the reader left (`inpaint … | head`): the caller's usual quiet exit
            raise
        except (OSError, ValueError) as e:  # ValueError: "I/O operation on closed file"
            if isinstance(e, ValueError) and "closed" not in str(e):
                raise
            self.failure.append(_failed(e) if isinstance(e, OSError) else _CLOSED)
            raise OutputError(self.failure[0]) from None

    def write(self, data: Any) -> Any:
        return self._call("write", data)

    def writelines(self, lines: Any) -> Any:
        return self._call("writelines", lines)

    def flush(self) -> None:
        if self._stream is not None:
            self._call("flush")

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._stream is None or self._stream.closed

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:
        return getattr(self._stream, "errors", None) or "strict"

    @property
    def buffer(self) -> _Guarded:
        """The binary stream beneath (``-o -`` writes PNG bytes there), guarded the same way."""
        return _Guarded(None if self._stream is None else self._stream.buffer, self.failure)


def _occupy_closed_descriptors() -> None:
    """Open the null device on a standard descriptor (0, 1, 2) the process started without.

    Otherwise the next file opened takes its number, and anything writing to "stdout" by number
    (a library, a child process) would write into that file: an output image, say.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                opened = os.open(os.devnull, os.O_RDWR)
                if opened != fd:
                    os.dup2(opened, fd)
                    os.close(opened)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """While the block runs, stdout failures are :class:`OutputError` lines (the module docstring);
    a closed stderr becomes the null device, so reporting an error cannot itself fail."""
    _occupy_closed_descriptors()
    saved_out, saved_err = sys.stdout, sys.stderr
    guard = _Guarded(saved_out)
    sys.stdout = guard  # type: ignore[assignment]
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    try:
        yield
    finally:
        sys.stdout = saved_out
        if saved_err is not None:
            sys.stderr = saved_err
        if guard.failure:
            _drop_unwritable_stdout(saved_out)


def _drop_unwritable_stdout(stream: Any) -> None:
    """Point descriptor 1 at the null device after stdout failed, so that the interpreter's last
    flush of what is still buffered does not fail a second time (and print a traceback)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if stream.fileno() == 1:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)
