"""Where the CLI writes: errors and warnings as plain one-liners on stderr, results on stdout.

Errors and warnings are written without rich so they are never wrapped or decorated: one line,
``error: …`` or ``warning: …``, easy to grep in logs. Tables and progress go through rich.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console

from inpaint.names import printable

#: Rich output meant for people (tables, progress): stderr, so stdout stays clean for pipes.
stderr = Console(stderr=True, highlight=False)
#: Rich output meant as the command's result (tables the user asked for).
stdout = Console(highlight=False)


def one_line(text: str) -> str:
    """Collapse a message onto one line, a file name that is not UTF-8 shown with ``\\xNN`` bytes.

    Messages name files, and a name's undecodable bytes would make the write fail (or show as
    ``\\udcNN``) instead of reporting what was meant.
    """
    return " ".join(printable(str(text)).split())


def error(message: str) -> None:
    """Print ``error: message`` on stderr, on one line."""
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr, on one line."""
    sys.stderr.write(f"warning: {one_line(message)}\n")
    sys.stderr.flush()


def info(message: str) -> None:
    """Print an informational line on stderr (never stdout: stdout may be a PNG stream)."""
    sys.stderr.write(f"{one_line(message)}\n")
    sys.stderr.flush()


class _WarningLineHandler(logging.Handler):
    """Shows the library's log records as one-line ``warning:`` / ``info`` messages."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            warn(message)
        else:
            info(message)


def setup_logging(debug: bool = False) -> None:
    """Route the ``inpaint`` logger (library warnings) to stderr; third-party chatter stays off."""
    logger = logging.getLogger("inpaint")
    if not any(isinstance(h, _WarningLineHandler) for h in logger.handlers):
        logger.addHandler(_WarningLineHandler())
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
