"""Splitting a benchmark over processes (``accelerate launch`` / ``torchrun``) and gathering results.

A single process needs no process group, so accelerate is imported only when the launcher set
``WORLD_SIZE`` > 1. Then accelerate's ``PartialState`` joins the group (gloo on CPUs, NCCL on GPUs)
and ``gather_object`` collects picklable results on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


def launched_world_size() -> int:
    """Processes the launcher started (1 when run directly)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """True in the process that writes reports (rank 0, or the only process)."""
    return os.environ.get("RANK", "0") in ("0", "")


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

        state = PartialState(cpu=cpu)
        return cls(rank=state.process_index, world=state.num_processes, device=str(state.device), _state=state)

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

    def close(self) -> None:
        """Leave the process group after the last collective (an undestroyed group can abort at exit)."""
        if self._state is None:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
