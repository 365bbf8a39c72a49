"""One writer per output: an exclusive lock on a run folder, a results folder or a captions file.

Two runs writing one output interleave their files: a training log with every line twice, one
run deleting the other's temporary files ("unexpected FileNotFoundError"), two ``caption`` runs
that both exit 0 while the last to write drops the other's captions. The commands that write an
output over a long time take its lock first, before writing anything there:

- ``train-ddpm``, ``train-lora``: ``RUN/.inpaint.lock`` (:func:`~inpaint.training.loop.train`);
- ``bench``: ``RESULTS/.inpaint.lock`` (:func:`~inpaint.bench.run_bench`);
- folder ``complete``: ``OUT/.inpaint.lock`` (the command, before the model loads);
- ``caption`` (and ``train-lora``'s captioning): ``.captions.json.lock`` beside the JSON file
  (:func:`~inpaint.captions.caption_folder`).

Under ``accelerate launch`` / ``torchrun`` only the main process takes it: the others are part of
the same run. A second writer fails with one :class:`~inpaint.errors.InputError` line naming the
owner (``runs/ddpm: in use by pid 1234 on host-a (inpaint train-ddpm …)``) and writes nothing.
The lock is released (its file deleted) on every way out of the ``with`` block: a return, an
exception, Ctrl-C or a stop signal.

**Mechanism.** The lock file holds a JSON record of its owner (pid, host, command, start time),
and the owner holds ``fcntl.flock(LOCK_EX)`` on it. The kernel drops a flock when its process
dies, however it dies, so on one machine a lock file whose flock is free is stale by
construction: no pid check, no pid-reuse trap (a container's restarted pid 1 is a new process).
The record is what a refused writer is told, and what decides across machines:

- flock free, record from this host: the owner died (``kill -9``, a crash): the lock is taken
  over with a warning naming it;
- flock free, record from another host: on shared storage whose locks do not reach across
  machines (some NFS mounts, Lustre's ``localflock``, BeeGFS' default) a free flock proves
  nothing about a process elsewhere, so it is refused, naming the lock file to delete once that
  run is known to be over (runs that stop normally, or on a signal, delete their lock file);
- flock held: refused, naming the owner. When the owner is a process of this host that no
  longer exists, its forked children (data-loading workers) still hold the flock for a moment:
  the lock is waited for, a few seconds, before refusing.

Where the file system has no flock at all (``ENOLCK``, ``ENOSYS``: Lustre without ``-o flock``)
the record alone decides: a record of a live pid of this host, or of another host, refuses; one
of a dead pid of this host is taken over. Two writers starting in the same instant can then both
pass; nothing better exists without working file locks.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from inpaint import atomic
from inpaint.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the record alone decides
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: The lock file of a folder output, inside it (hidden: folder scans skip it).
FOLDER_LOCK_NAME = ".inpaint.lock"
#: How long a lock held by the children of a dead process of this host is waited for.
ORPHAN_WAIT_SECONDS = 10.0
#: flock errors that mean "this file system cannot lock", not "someone holds it".
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
_LONGEST_COMMAND = 80


def folder_lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file of a folder output (a run or results folder)."""
    return Path(folder) / FOLDER_LOCK_NAME


def file_lock_path(file: str | os.PathLike[str]) -> Path:
    """The lock file of a file output: ``.NAME.lock`` beside it (``.captions.json.lock``)."""
    file = Path(file)
    return file.parent / f".{file.name}.lock"


class OutputLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block) deletes its file.

    Folders created to hold the lock file are removed again on release if the run left them
    empty, so a run refused after taking the lock (a bad image, say) leaves nothing behind.
    """

    def __init__(self, path: Path, fd: int, created: list[Path]) -> None:
        self.path, self._fd, self._created = path, fd, created

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):  # never delete a lock file that another run has made since
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the flock: after the unlink, so no one can lock the old file meanwhile
        for folder in self._created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_folder(
    folder: str | os.PathLike[str],
    *,
    label: str | None = None,
    create_label: str | None = None,
    command: str | None = None,
) -> OutputLock:
    """Lock the output folder ``folder`` (created if missing) for this process.

    ``label`` names the output in messages (default: the path); ``create_label`` names it when the
    folder cannot be created (:func:`inpaint.atomic.ensure_folder`). Raises :class:`InputError`
    when another run holds it.
    """
    folder = Path(folder)
    return _lock(folder_lock_path(folder), folder, label or str(folder), create_label, command)


def lock_file(
    file: str | os.PathLike[str],
    *,
    label: str | None = None,
    create_label: str | None = None,
    command: str | None = None,
) -> OutputLock:
    """Lock the output file ``file`` (its folder created if missing); see :func:`lock_folder`."""
    file = Path(file)
    return _lock(file_lock_path(file), file.parent, label or str(file), create_label, command)


def current_command() -> str:
    """This process's command line, as the lock record shows it (``inpaint train-ddpm …``)."""
    argv = list(sys.argv) or ["python"]
    program = Path(argv[0]).name
    if program in ("__main__.py", "-m", "-c") or program.startswith("inpaint"):
        program = "inpaint"
    return shlex.join([program, *argv[1:]])


def _lock(path: Path, folder: Path, label: str, create_label: str | None, command: str | None) -> OutputLock:
    created = [f for f in [folder, *folder.parents] if not f.exists()]
    atomic.ensure_folder(folder, create_label or label)
    try:
        fd = _acquire(path, label, command or current_command())
    except BaseException:
        for f in created:
            with contextlib.suppress(OSError):
                f.rmdir()
        raise
    return OutputLock(path, fd, created)


def _acquire(path: Path, label: str, command: str) -> int:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    deadline = None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed meanwhile (a refused run cleaning up)
            atomic.ensure_folder(path.parent, label)
            continue
        except OSError as e:
            raise InputError(f"{label}: cannot write here ({e.strerror or e})") from None
        try:
            held = _try_flock(fd)
            owner = _read_record(fd)
            if held is False:
                if _orphaned(owner):
                    deadline = deadline or time.monotonic() + ORPHAN_WAIT_SECONDS
                    if time.monotonic() < deadline:
                        os.close(fd)
                        time.sleep(0.2)
                        continue
                raise InputError(_in_use(label, owner))
            if held and not _same_file(fd, path):
                os.close(fd)  # locked a file its owner deleted on release: lock the current one
                continue
            if owner is not None:
                if owner.get("host") != record["host"]:
                    raise InputError(_in_use(label, owner, other_host=path))
                if not held and not _dead(owner):
                    raise InputError(_in_use(label, owner))
                log.warning(
                    f"{label}: taking over the lock of pid {owner.get('pid')} ({_shown(owner)}), which "
                    "is no longer running (it was killed or crashed)"
                )
            data = (json.dumps(record) + "\n").encode("utf-8", "backslashreplace")
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            return fd
        except BaseException:
            os.close(fd)
            raise


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this file system cannot lock."""
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in _NO_FLOCK:
            return None
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _read_record(fd: int) -> dict[str, Any] | None:
    """The owner's record, or None when the file is empty or not a record (being written, say)."""
    try:
        data = os.pread(fd, 64 * 1024, 0)
        record = json.loads(data.decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _dead(owner: dict[str, Any]) -> bool:
    """Whether the owner, a process of this host, no longer runs (our own pid: an earlier
    process with it, such as a container's previous pid 1)."""
    pid = owner["pid"]
    if pid == os.getpid() or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def _orphaned(owner: dict[str, Any] | None) -> bool:
    """Whether a held lock's recorded owner is a process of this host that has ended (its forked
    children still hold the flock). Our own pid holds it through another open file: not orphaned."""
    return (
        owner is not None and owner.get("host") == socket.gethostname() and owner["pid"] != os.getpid() and _dead(owner)
    )


def _shown(owner: dict[str, Any]) -> str:
    command = str(owner.get("command") or "?")
    command = command.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(command) > _LONGEST_COMMAND:
        command = command[: _LONGEST_COMMAND - 1] + "…"
    started = owner.get("started")
    return f"{command}, since {started}" if started else command


def _in_use(label: str, owner: dict[str, Any] | None, other_host: Path | None = None) -> str:
    if owner is None:
        return f"{label}: in use by another process; wait for it to finish or use another -o"
    who = f"in use by pid {owner.get('pid')} on {owner.get('host')} ({_shown(owner)})"
    if other_host is not None:
        return (
            f"{label}: {who}, a process this machine cannot check; wait for it to finish or use another -o "
            f"(if it is no longer running, delete {other_host})"
        )
    return f"{label}: {who}; wait for it to finish or use another -o"
