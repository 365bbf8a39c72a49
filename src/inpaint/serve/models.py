"""The server's loaded methods, kept warm between requests.

A method is loaded once per set of load-time options (its weights, LoRA, device, dtype…) and
reused for every request; a request's steps, sampler, prompt or guidance are applied to the loaded
method without reloading it (``Inpainter.with_options``). Loading happens in a job's worker
thread, on the job's device, so a first request waits for it (and says so) while the page stays
responsive.
"""

from __future__ import annotations

import dataclasses
import threading

from inpaint.models.base import Inpainter, MethodOptions
from inpaint.serve.settings import CALL_FIELDS


class WarmModels:
    """Loaded methods by (name, load-time options). Thread-safe; a method loads once even when
    two lanes ask for it together."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, tuple], Inpainter] = {}
        self._lock = threading.Lock()

    def get(self, method: str, options: MethodOptions) -> Inpainter:
        """The method ``method`` with ``options``: loaded on first use, then shared."""
        from inpaint import models

        at_load = dataclasses.replace(options, **{key: getattr(MethodOptions(), key) for key in CALL_FIELDS})
        key = (method, _frozen(at_load))
        with self._lock:
            inpainter = self._loaded.get(key)
            if inpainter is None:
                inpainter = self._loaded[key] = models.get_method(method).load(at_load)
        return inpainter.with_options(options)

    def is_loaded(self, method: str, options: MethodOptions) -> bool:
        at_load = dataclasses.replace(options, **{key: getattr(MethodOptions(), key) for key in CALL_FIELDS})
        with self._lock:
            return (method, _frozen(at_load)) in self._loaded

    def names(self) -> list[str]:
        """The names of the loaded methods (once per load)."""
        with self._lock:
            return [method for method, _ in self._loaded]


def _frozen(options: MethodOptions) -> tuple:
    """``options`` as a dictionary key (every field is text, a number, a flag or ``None``)."""
    return tuple(sorted(dataclasses.asdict(options).items()))
