"""Write files so that an interrupted run never leaves a half-written one.

Everything we write goes to a temporary name in the destination's own directory (so the final
``os.replace`` is an atomic rename on the same file system) and is renamed into place only when
complete. A crash leaves either the old file or the new one, plus at worst a ``.*.tmp`` file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inpaint.errors import InputError
from inpaint.names import json_text, printable


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place if the block succeeds.

    The temporary name keeps the destination's suffix, so writers that pick a format from the
    extension (Pillow) still do. On any exception the temporary file is removed and the
    destination is left untouched.
    """
    destination = Path(destination)
    directory = destination.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=f".tmp{destination.suffix}", dir=directory
        )
    except OSError as e:
        raise InputError(f"{destination}: cannot write here ({_why_not_writable(directory, e)})") from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600), and so do writers that replace it (safetensors);
        # what we write is a result, with the mode of any file the user creates (0666 less the
        # umask), as if written directly. Set last, on whatever file the writer left.
        os.chmod(tmp, 0o666 & ~process_umask())
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def process_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux), else set and reset.

    Files and folders made through :mod:`tempfile` are private; callers give them the mode a
    plain ``open`` or ``mkdir`` would have: 0o666 (files) or 0o777 (folders) less this mask.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Elsewhere the only way to read it is to set it; the value is restored at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_folder(prefix: str, directory: str | os.PathLike[str]) -> Path:
    """``tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=directory)`` with a plain folder's mode.

    For folders written whole and renamed into place (checkpoints, saved models): mkdtemp makes
    them 0700, and once renamed they would stay unreadable to anyone else.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=directory))
    os.chmod(tmp, 0o777 & ~process_umask())
    return tmp


def give_usual_modes(folder: str | os.PathLike[str]) -> None:
    """Give ``folder`` and everything in it the modes of plain files and folders (umask applied).

    For a folder assembled under a temporary name before its rename: what writers put in it
    (safetensors, ``save_pretrained``) can be private (0600), like :func:`temporary_folder`'s.
    """
    umask = process_umask()
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def _why_not_writable(directory: Path, error: OSError) -> str:
    """The reason a folder cannot be created: an ancestor that is a file, or the OS's words."""
    for ancestor in [directory, *directory.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{ancestor} is a file, not a folder"
            break
    return str(error.strerror or error)


def ensure_folder(folder: str | os.PathLike[str], label: str | None = None) -> Path:
    """Create ``folder`` (and its parents) or raise one :class:`InputError` line saying why not.

    Commands call it before slow work starts, so an output path under a regular file, say, is
    refused at once rather than after the first result is computed. ``label`` names the folder
    in the message (default: the path).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{label or folder}: cannot create the folder ({_why_not_writable(folder, e)})") from None
    return folder


def remove_stale_temporaries(directory: str | os.PathLike[str], name: str | None = None) -> int:
    """Delete the temporary files :func:`atomic_path` left in ``directory`` when a run was killed.

    Only names of our own pattern (``.<name>.<8 random characters>.tmp[.suffix]``) are touched,
    and with ``name`` only the temporaries of that one destination file. Call it where one run
    owns the folder (a resumed folder run); returns how many were removed.
    """
    import re

    stem = re.escape(name) if name is not None else ".+"
    pattern = re.compile(rf"^\.{stem}\.[A-Za-z0-9_]{{8}}\.tmp(\.[A-Za-z0-9]+)?$")
    removed = 0
    directory = Path(directory)
    if directory.is_dir():
        for path in directory.iterdir():
            if path.is_file() and pattern.match(path.name):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
    return removed


def write_bytes(destination: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``destination``."""
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)


def write_text(destination: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``destination``.

    A file name that is not valid UTF-8 in ``text`` (reports, tables) is written with its odd
    bytes shown as ``\\xNN`` (:func:`inpaint.names.printable`): the file stays valid UTF-8
    and still names the file, where encoding it would fail.
    """
    write_bytes(destination, printable(text).encode("utf-8"))


def write_json(destination: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (keys in insertion order) to ``destination``.

    Names that are not valid UTF-8 are written as ``\\udcXX`` escapes, which ``json.loads``
    reads back to the same str (:func:`inpaint.names.json_text`), so they match their files again.
    """
    write_text(destination, json_text(obj, indent=2) + "\n")
