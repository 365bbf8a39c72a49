"""One command split over the processes of ``accelerate launch`` / ``torchrun`` (``bench``, folder ``complete``).

A single process needs no process group, so accelerate is imported only when the launcher set
``WORLD_SIZE`` > 1. Then accelerate's ``PartialState`` joins the group (gloo on CPUs, NCCL on GPUs)
and ``gather_object`` carries picklable objects between the processes.

The processes of one run must never wait for a partner that has given up: a process refused on
its own (an output folder another run holds, weights that fail to load) would leave the others
in their next collective. So every step that can refuse runs inside :meth:`Dist.agree`, which
ends in a collective carrying each process's status: when any process failed, every process
raises the same one-line error (:class:`SharedError`) and the command stops everywhere, with one
exit code. A process that dies instead (a crash, a kill) is the launcher's to handle: it ends
the others.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from inpaint.errors import InpaintError, InputError

#: The longest a process waits for the others in one collective. A process whose share is done
#: waits in the last one for the slowest process's share (a resumed run whose done images fell
#: to one process: hours of diffusion). torch's default (30 min; 10 min for NCCL) would end such a
#: run; a process that dies is noticed by the launcher instead, which ends the others.
COLLECTIVE_TIMEOUT = timedelta(hours=24)


def launched_world_size() -> int:
    """Processes the launcher started (1 when run directly)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """True in the process that writes reports (rank 0, or the only process); known before any
    process group is joined, from the launcher's ``RANK``."""
    return os.environ.get("RANK", "0") in ("0", "")


class SharedError(InpaintError):
    """A failure of one process of a launched run, raised on every process (:meth:`Dist.agree`).

    ``rank`` is the process it happened in; ``exit_code`` is the original error's, so every
    process exits alike. The main process reports it; the others can exit quietly.
    """

    def __init__(self, message: str, *, exit_code: int, rank: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.rank = rank


class SharedInputError(SharedError, InputError):
    """A :class:`SharedError` whose origin is an :class:`InputError`: callers that catch bad
    input (exit code 2) catch it on every process alike."""


def _one_line(error: BaseException) -> str:
    """An error as the CLI would print it: an InpaintError's message, else its type and message."""
    return str(error) if isinstance(error, InpaintError) else f"{type(error).__name__}: {error}"


@dataclass
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes, and the device it owns."""

    rank: int = 0
    world: int = 1
    device: str | None = None  # the launcher-assigned device ("cuda:1"), None for a single process
    _state: Any = None

    @classmethod
    def from_env(cls, cpu: bool) -> Dist:
        """Join the launcher's process group if there is one; ``cpu`` forces gloo on the CPU."""
        if launched_world_size() <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=cpu, timeout=COLLECTIVE_TIMEOUT)
        return cls(rank=state.process_index, world=state.num_processes, device=str(state.device), _state=state)

    @classmethod
    def for_device(cls, requested: str, *, cpu_only: bool = False) -> tuple[Dist, str]:
        """Join the launcher's processes; returns them and the device this process computes on.

        ``requested`` is a ``--device`` value. A single process keeps it as given (resolved later,
        where the model loads). Under a launcher, a request that resolves to CUDA (``auto`` on a
        machine with CUDA, ``cuda``, ``cuda:N``) becomes this process's own GPU, the launcher's
        ``cuda:LOCAL_RANK`` (NCCL): one GPU per process, even where ``cuda:N`` named one for all.
        Any other request (``cpu``, ``auto`` without CUDA) is kept, and the processes talk over
        gloo. ``cpu_only`` is for work that runs on the CPU whatever it is given (classical
        methods): gloo, without importing torch to resolve ``requested``.
        """
        if launched_world_size() <= 1:
            return cls(), requested
        cuda = False
        if not cpu_only:
            from inpaint.devices import resolve_device

            cuda = resolve_device(requested).type == "cuda"
        dist = cls.from_env(cpu=not cuda)
        return dist, (dist.device if cuda and dist.device is not None else requested)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: list) -> list:
        """This process's items: every ``world``-th one starting at ``rank`` (balanced, order kept)."""
        return items[self.rank :: self.world]

    def barrier(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()

    def gather(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, …]`` on every rank."""
        if self._state is None:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj``, on every process (what the others pass is ignored)."""
        return self.gather(obj if self.is_main else None)[0]

    @contextlib.contextmanager
    def agree(self) -> Iterator[None]:
        """Leave the block together: if it raised on any process, every process raises.

        The block's exception is held, and the processes exchange their statuses once the block
        ends (a collective, so also a barrier: a step the main process does alone inside the
        block, such as taking a lock, is done when the others go on). When any process failed,
        every process leaves the group and raises :class:`SharedError` (a
        :class:`SharedInputError` for an InputError) with the lowest failing rank's one-line
        message and exit code, the original error as its cause where it happened. A single
        process raises its exceptions as they are.
        """
        error: Exception | None = None
        try:
            yield
        except Exception as e:  # noqa: BLE001 - re-raised below, on every process
            if self.world == 1:
                raise
            error = e
        if self.world == 1:
            return
        status = None if error is None else (_one_line(error), _exit_code(error), isinstance(error, InputError))
        failures = [(rank, s) for rank, s in enumerate(self.gather(status)) if s is not None]
        if not failures:
            return
        self.close()  # every process knows: leave the group (one left behind can abort the exit)
        rank, (message, code, bad_input) = failures[0]
        if rank != 0:
            message = f"process {rank} of {self.world}: {message}"
        kind = SharedInputError if bad_input else SharedError
        raise kind(message, exit_code=code, rank=rank) from (error if rank == self.rank else None)

    def close(self) -> None:
        """Leave the process group after the last collective (an undestroyed group can abort at exit)."""
        if self._state is None:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _exit_code(error: Exception) -> int:
    """The CLI's exit code for ``error``: an InpaintError's own (2 for bad input), else 1."""
    return error.exit_code if isinstance(error, InpaintError) else 1
