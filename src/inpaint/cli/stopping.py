"""Stop a long command cleanly on Ctrl-C, SIGTERM or SIGUSR1, so that running it again resumes.

Jobs are ended with signals: Ctrl-C sends SIGINT; ``docker stop``, Kubernetes, ``timeout`` and
SLURM (at the time limit, or on preemption) send SIGTERM, then SIGKILL a grace period later;
SLURM sends SIGUSR1 ahead of the end when asked to (``sbatch --signal=USR1@90``). The commands
that resume (``train-ddpm``, ``train-lora``, ``caption``, ``bench``, folder ``complete``) run
their work inside :func:`graceful_stop`. The first of these signals is then a request: the
library function polls the yielded :class:`StopRequest` (its ``stop_requested`` argument) at
its boundaries — after a training step (which is then checkpointed), a batch of captions, an
image or batch of images — and returns or raises :class:`~inpaint.errors.Stopped` with its work
on disk. The command says which signal stopped it and that the same command resumes
(:func:`stopped`), and exits with ``128 + the signal's number``: 130 for SIGINT, 143 for SIGTERM,
138 for SIGUSR1 (on Linux) — the codes a shell reports for a process killed by that signal, so
scripts and schedulers read the exit as they did before, but nothing is lost.

A second signal of the same kind aborts at once (:class:`Aborted`, same exit code): the outputs
are atomic, so an abort loses the unit of work in hand and nothing else. A different signal
while stopping (SLURM's SIGTERM at the time limit after its SIGUSR1 warning) does not abort.

Library functions never install signal handlers; this is the one place that does, and the
previous handlers come back when the block ends. Forked data-loading workers inherit the
handler, which ignores the signal there: the main process decides.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import typer

from inpaint.cli import console

#: The signals that ask a resumable command to stop, where the platform has them.
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name)
)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The exit code of a command stopped (or aborted) by ``signum``: 128 + its number."""
    return 128 + signum


def _again(signum: int) -> str:
    return "press Ctrl-C again" if signum == signal.SIGINT else f"send {signal_name(signum)} again"


class Aborted(BaseException):
    """A second stop signal of one kind: the command ends at once with :attr:`exit_code`.

    A ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` in library code lets it
    through, and cleanup (``finally``, atomic writes, locks) runs as it unwinds.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)

    def message(self) -> str:
        return "interrupted" if self.signum == signal.SIGINT else f"aborted by a second {signal_name(self.signum)}"


class StopRequest:
    """A ``stop_requested`` callable for library functions: True once a stop signal has arrived.

    ``after`` is what the warning printed on the signal says the command will finish first; a
    command of several phases (captioning, then training) updates it as it goes.
    """

    def __init__(self, after: str) -> None:
        self.signum: int | None = None
        self.after = after

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal_name(self.signum) if self.signum is not None else "request"

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum) if self.signum is not None else 1


@contextlib.contextmanager
def graceful_stop(after: str) -> Iterator[StopRequest]:
    """Within the block, the first SIGINT, SIGTERM or SIGUSR1 sets the yielded request.

    ``after`` says where the command will stop (``"this step (a checkpoint will be saved)"``),
    in the warning printed when the signal arrives. A second signal of the same kind raises
    :class:`Aborted`. Outside the main thread (where Python cannot handle signals) the
    request is never set and the signals keep their usual effect; a signal the process was
    started ignoring (``trap '' TERM``) stays ignored.
    """
    request = StopRequest(after)
    seen: set[int] = set()
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked data-loading worker: the main process decides
            return
        if signum in seen:
            raise Aborted(signum)
        seen.add(signum)
        first = request.signum is None
        if first:
            request.signum = signum
        what = "stopping" if first else "already stopping"
        with contextlib.suppress(Exception):  # stderr in use by the interrupted code: the exit says it
            console.warn(f"{signal_name(signum)} received: {what} after {request.after}; {_again(signum)} to abort")

    previous: dict[int, object] = {}
    try:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) != signal.SIG_IGN:  # ignored by whoever started us: it stays so
                previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        _restore(previous)
        yield request
        return
    try:
        yield request
    finally:
        _restore(previous)


def _restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def stopped(request: StopRequest, where: str) -> typer.Exit:
    """Say that ``request`` stopped the command ``where`` (``"at step 5 of 12 (checkpoint
    saved)"``) and that the same command resumes; returns the ``typer.Exit`` to raise."""
    console.info(f"stopped by {request.name} {where}; run the same command again to resume")
    return typer.Exit(request.exit_code)
