"""The server's job queue: one worker thread per device runs one completion at a time.

A request becomes a :class:`Job` (its inputs already read and checked) and waits in its device's
lane; :meth:`JobQueue.position` says how many jobs are ahead of it. A job reports its steps
through :class:`JobProgress`, which is also where a cancellation lands: the next step raises
:class:`Cancelled`, so a cancelled (or abandoned) job frees the device within one step. Finished
jobs keep their result for a while for ``GET /api/v1/jobs/{id}/result``, then are forgotten.

No FastAPI here: the queue is plain threads, usable and testable on its own.
"""

from __future__ import annotations

import collections
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from inpaint.errors import InputError

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = frozenset({DONE, FAILED, CANCELLED})


class Cancelled(Exception):
    """Raised inside a running job at its next step once it has been cancelled."""


class QueueFull(Exception):
    """The lane already holds as many waiting jobs as the server accepts."""


@dataclass(eq=False)
class Job:
    """One completion request. ``run(progress)`` does the work and returns the result's bytes.

    ``state`` moves queued -> running -> done | failed | cancelled (queued -> cancelled too).
    ``status`` is the HTTP status a failure maps to (422 for bad input, 503 for out of memory,
    500 for a bug); ``version`` grows with every change, for watchers (server-sent events).
    """

    model: str
    seed: int
    name: str
    run: Callable[[JobProgress], bytes]
    lane: str = "cpu"
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: str = QUEUED
    phase: str | None = None
    step: int = 0
    total: int | None = None
    error: str | None = None
    status: int | None = None
    result: bytes | None = None
    ignored: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished_at: float | None = None
    version: int = 0
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def seconds(self) -> float | None:
        """How long the job ran (``None`` until it finishes after starting)."""
        if self.started is None or self.finished_at is None:
            return None
        return self.finished_at - self.started

    def to_dict(self, position: int | None) -> dict[str, object]:
        return {
            "id": self.id,
            "model": self.model,
            "seed": self.seed,
            "name": self.name,
            "state": self.state,
            "position": position,
            "phase": self.phase,
            "step": self.step,
            "total": self.total,
            "error": self.error,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "ignored": self.ignored,
        }

    def _change(self, **values: object) -> None:
        for key, value in values.items():
            setattr(self, key, value)
        self.version += 1


class JobProgress:
    """The :class:`~inpaint.progress.Progress` a running job reports to; raises :class:`Cancelled`
    at the next step after a cancellation."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def check(self) -> None:
        if self.job.cancel_requested.is_set():
            raise Cancelled

    def phase(self, description: str) -> None:
        """What the job is doing now (``loading sd``), shown while no steps are counted."""
        self.check()
        self.job._change(phase=description)

    def start(self, description: str, total: int | None) -> None:
        self.check()
        self.job._change(step=0, total=total)

    def advance(self, n: int = 1, **info: object) -> None:
        self.job._change(step=self.job.step + n)
        self.check()

    def finish(self) -> None:
        pass


class _Lane:
    """The waiting jobs of one device and the thread that runs them."""

    def __init__(self, name: str, queue: JobQueue) -> None:
        self.name = name
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: Job | None = None
        self.thread = threading.Thread(target=queue._work, args=(self,), name=f"inpaint-serve-{name}", daemon=True)


class JobQueue:
    """Jobs by id, and one lane (a worker thread) per device.

    ``max_waiting``: jobs a lane may hold waiting (a submit past it raises :class:`QueueFull`);
    ``keep_seconds``/``keep_finished``: how long, and how many, finished jobs keep their results.
    """

    def __init__(self, *, max_waiting: int = 32, keep_seconds: float = 900.0, keep_finished: int = 64) -> None:
        self.max_waiting = max_waiting
        self.keep_seconds = keep_seconds
        self.keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Condition()
        self._closed = False
        self._order = itertools.count()

    # ---- submitting and watching ---------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        """Queue ``job`` in its lane (the lane's thread starts with its first job)."""
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down")
            self._prune()
            lane = self._lanes.get(job.lane)
            if lane is None:
                lane = self._lanes[job.lane] = _Lane(job.lane, self)
                lane.thread.start()
            if len(lane.waiting) >= self.max_waiting:
                raise QueueFull(f"{len(lane.waiting)} jobs are already waiting for {job.lane}; try again later")
            lane.waiting.append(job)
            self._jobs[job.id] = job
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """Jobs ahead of ``job`` on its device (the running one included); 0 while it runs;
        ``None`` once it has finished."""
        with self._lock:
            if job.state in FINISHED:
                return None
            if job.state == RUNNING:
                return 0
            lane = self._lanes[job.lane]
            try:
                index = lane.waiting.index(job)
            except ValueError:  # taken by the worker between the two checks
                return 0
            return index + (lane.running is not None)

    def describe(self, job: Job) -> dict[str, object]:
        """The job as the API shows it."""
        return job.to_dict(self.position(job))

    def cancel(self, job: Job) -> None:
        """Cancel ``job``: a waiting job is dropped at once, a running one stops at its next step."""
        with self._lock:
            job.cancel_requested.set()
            if job.state == QUEUED:
                self._lanes[job.lane].waiting.remove(job)
                self._finish(job, CANCELLED)

    def forget(self, job: Job) -> None:
        """Drop a job's record (its result too): a synchronous request that has been answered."""
        with self._lock:
            self._jobs.pop(job.id, None)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per lane: jobs waiting and running."""
        with self._lock:
            return {
                name: {"waiting": len(lane.waiting), "running": int(lane.running is not None)}
                for name, lane in self._lanes.items()
            }

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every job and stop the workers (waiting up to ``timeout`` s for a running step)."""
        with self._lock:
            self._closed = True
            for job in list(self._jobs.values()):
                job.cancel_requested.set()
            for lane in self._lanes.values():
                while lane.waiting:
                    self._finish(lane.waiting.popleft(), CANCELLED)
            self._lock.notify_all()
            lanes = list(self._lanes.values())
        deadline = time.monotonic() + timeout
        for lane in lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))

    # ---- the workers ---------------------------------------------------------------------------

    def _work(self, lane: _Lane) -> None:
        while True:
            with self._lock:
                while not lane.waiting and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = lane.waiting.popleft()
                lane.running = job
                job._change(state=RUNNING, started=time.monotonic())
            try:
                result = job.run(JobProgress(job))
            except Cancelled:
                outcome: dict[str, object] = {"state": CANCELLED}
            except Exception as e:  # noqa: BLE001 - every failure is the job's, answered in one line
                error, status = _failure(job, e)
                outcome = {"state": FAILED, "error": error, "status": status}
            else:
                outcome = {"state": DONE, "result": result}
            with self._lock:
                lane.running = None
                state = outcome.pop("state")
                self._finish(job, state, **outcome)

    def _finish(self, job: Job, state: str, **values: object) -> None:
        """Mark ``job`` finished (the lock is held)."""
        job._change(state=state, finished_at=time.monotonic(), phase=None, **values)
        job.finished.set()
        self._lock.notify_all()

    def _prune(self) -> None:
        """Forget finished jobs past ``keep_seconds``, and the oldest past ``keep_finished``."""
        now = time.monotonic()
        finished = sorted(
            (job for job in self._jobs.values() if job.state in FINISHED), key=lambda job: job.finished_at or 0.0
        )
        excess = len(finished) - self.keep_finished
        for index, job in enumerate(finished):
            if index < excess or now - (job.finished_at or now) > self.keep_seconds:
                del self._jobs[job.id]


def _failure(job: Job, error: Exception) -> tuple[str, int]:
    """A failed job's one-line message and HTTP status: 422 for bad input, 503 for a device out of
    memory, 500 for a bug (its traceback goes to the server's log, not to the client)."""
    if isinstance(error, InputError):
        return str(error), 422
    if isinstance(error, MemoryError):
        return "out of memory; try a smaller image or another method", 503
    if type(error).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return f"out of memory on {job.lane}: {error}".split("\n")[0], 503
    log.error(f"job {job.id} ({job.model}) failed: {type(error).__name__}: {error}", exc_info=True)
    return f"unexpected {type(error).__name__}: {error}".split("\n")[0], 500
