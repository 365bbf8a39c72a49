"""Splitting a benchmark over processes: the helpers live in :mod:`inpaint.distributed`, which
folder ``complete`` shares; this name is kept for the code that imports them from here."""

from inpaint.distributed import Dist, is_main_process, launched_world_size

__all__ = ["Dist", "is_main_process", "launched_world_size"]
