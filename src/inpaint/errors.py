"""Errors that reach the user as one line.

The CLI maps them to exit codes: :class:`InputError` (bad usage or input, missing weights) exits
with 2, any other :class:`InpaintError` (a failure while running) with 1. Library code raises
them with a message that names the file or option and says what to do; it never prints.
"""

from __future__ import annotations


class InpaintError(Exception):
    """A failure at run time that we can explain in one line (exit code 1)."""

    exit_code = 1


class InputError(InpaintError):
    """Bad usage or bad input: a file, an option value or missing weights (exit code 2)."""

    exit_code = 2


class Stopped(Exception):
    """A long job ended early because its caller asked it to (a ``stop_requested`` callable
    returned True at a boundary between units of work). Everything it finished is on disk, and
    running it again resumes. Not an :class:`InpaintError`: the caller asked for it."""
