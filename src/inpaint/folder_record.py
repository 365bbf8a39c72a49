"""The record folder ``complete`` keeps beside its outputs, so that a rerun resumes only its own work.

A folder run takes an output already on disk as done (that is how an interrupted run resumes).
Without a record, a rerun with another method would report the old method's files as its own.
So each output folder holds two hidden files:

- ``.inpaint-run.json``: what the outputs depend on besides their inputs (:func:`folder_settings`:
  the method, the options that shape its outputs, the fingerprint of local weights, LoRA and
  captions and which weights inside a run folder are read, the seed, ``paste_back``,
  ``invert_mask``, ``resize_mask``). A rerun with other settings is refused before the model
  loads (``--overwrite`` redoes everything), in one line naming what changed;
- ``.inpaint-log.jsonl``: one line per output written (its name and the SHA-256 of its image and
  mask files), appended after the output file. An output is skipped only when a line says it was
  made from the same image and mask bytes; otherwise it is redone. A kill between an output and
  its line just redoes that image. Lines hold no times, so a resumed run leaves the same record
  as an uninterrupted one.

A run split over processes (``accelerate launch``, ``torchrun``) keeps one writer per file: the
main process opens the record and appends to the log, each other process *k* appends to its own
part, ``.inpaint-log-rank<k>.jsonl``, and the main process folds the parts into the log once every
process is done (:meth:`FolderRecord.merge_parts`). Readers take the log and the parts together,
so a run killed before the fold resumes as well as a single process would; the next run folds
them when it opens the record.

Outputs of an earlier version (a folder with outputs but no record) are taken as made with the
settings of the first run that finds them, as that version would (so an interrupted run started
before records existed still resumes), with a warning; they are recorded from then on.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Collection, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint import atomic, provenance
from inpaint.errors import InputError

if TYPE_CHECKING:
    from inpaint.completion import Pair

log = logging.getLogger(__name__)

RUN_FILE = ".inpaint-run.json"
LOG_FILE = ".inpaint-log.jsonl"
#: The log part of process ``k`` > 0 of a split run (hidden: folder scans skip it).
PART_FILE = ".inpaint-log-rank{rank}.jsonl"
_PART_GLOB = ".inpaint-log-rank*.jsonl"
_REDO = "use --overwrite to redo every image, or another -o"


def folder_settings(
    method: str, options, *, seed: int, paste_back: bool, invert_mask: bool, resize_mask: bool
) -> dict[str, Any]:
    """What a folder run's outputs depend on besides their input files (``.inpaint-run.json``).

    ``options`` is the method's MethodOptions (None: the defaults); options the method does not
    read are left out (they are ignored with a warning, so they did not shape the outputs).
    """
    from inpaint import models
    from inpaint.models.base import MethodOptions

    try:
        reads = models.get_method(method).reads
    except InputError:  # an inpainter outside the registry: record every option
        reads = None
    settings = provenance.method_settings(method, options or MethodOptions(), reads)
    return {
        "model": method,
        "seed": seed,
        "paste_back": paste_back,
        "invert_mask": invert_mask,
        "resize_mask": resize_mask,
        **{k: v for k, v in settings.items() if k != "model"},
    }


class FolderRecord:
    """The record of one output folder: checked and opened before any output is written.

    :meth:`check` refuses other settings (callers run it before the model loads); :meth:`open`
    then makes the record this run's; :meth:`status` says whether an existing output is done,
    and :meth:`add` records an output once its file is written.

    In a run split over processes, ``rank`` is this process's: the main process (0) opens the
    record, the others then :meth:`load` it and :meth:`add` to their own part of the log, and
    the main process :meth:`merge_parts` at the end.
    """

    def __init__(
        self, folder: Path, settings: dict[str, Any], suffixes: Collection[str] = (".png",), *, rank: int = 0
    ) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.suffixes = tuple(suffixes)
        self.run_path = self.folder / RUN_FILE
        self.log_path = self.folder / LOG_FILE
        #: Where :meth:`add` appends: the log itself, or this process's part of it.
        self.write_path = self.log_path if rank == 0 else self.folder / PART_FILE.format(rank=rank)
        self.entries: dict[str, tuple[str, str]] = {}
        self._hashes: dict[str, tuple[str, str] | None] = {}

    def check(self, *, overwrite: bool) -> str:
        """What :meth:`open` will do: ``fresh`` (nothing made here yet), ``same`` (outputs of
        these settings), ``replace`` (``overwrite``: start a new record) or ``unrecorded``
        (outputs of an earlier version). Raises a one-line InputError for other settings."""
        if overwrite:
            return "replace"
        made = self._has_outputs()
        if not self.run_path.is_file():
            return "unrecorded" if made else "fresh"
        try:
            recorded = json.loads(self.run_path.read_text(encoding="utf-8"))
            if not isinstance(recorded, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
            if not made:
                return "fresh"
            raise InputError(
                f"{self.run_path}: cannot read this record of what made the outputs beside it "
                f"({type(e).__name__}: {e}); {_REDO}"
            ) from None
        found = provenance.changes(recorded, self.settings)
        if found and made:
            raise InputError(f"{_slash(self.folder)}: {describe(found)} ({_REDO})")
        # Other settings with nothing made (a run that failed before its first output) protect nothing.
        return "fresh" if found else "same"

    def open(self, pairs: Sequence[Pair], *, overwrite: bool) -> list[str]:
        """Check, then make the record this run's; returns the outputs of an earlier version taken as done.

        ``overwrite`` forgets the old lines before the new settings are written: were this run
        killed, a plain rerun must not take the old outputs for its own. Earlier outputs are
        recorded before the settings, so that a kill in between leaves them unrecorded still.
        """
        state = self.check(overwrite=overwrite)
        adopted: list[str] = []
        if state in ("replace", "fresh"):
            for path in self._parts():
                path.unlink(missing_ok=True)
            self.log_path.unlink(missing_ok=True)
        else:
            self.merge_parts()  # left by a split run that was killed: its lines count
        if state == "unrecorded":
            self._end_last_line()
            adopted = [pair.name for pair in pairs if pair.output.exists() and self.add(pair)]
            if adopted:
                log.warning(
                    f"{_slash(self.folder)}: {len(adopted)} output(s) made before inpaint recorded their "
                    "settings are taken as made with these and kept (--overwrite redoes them)"
                )
        if state != "same":
            atomic.write_json(self.run_path, self.settings)
        self.entries = self._read_log()
        self._end_last_line()
        return adopted

    def load(self) -> None:
        """Read the record the main process of a split run has opened, to :meth:`add` to this
        process's part of it; writes nothing."""
        self.entries = self._read_log()

    def merge_parts(self) -> None:
        """Fold the parts of the log that other processes wrote into the log, and delete them.

        The main process calls it once every process is done writing (and :meth:`open` for
        parts a killed run left). A part's lines are appended in rank order and synced before the
        part is deleted: a kill in between leaves lines twice, or a torn one that readers skip,
        and the part still there to fold again, which reads the same.
        """
        parts = self._parts()
        if not parts:
            return
        self._end_last_line()
        with open(self.log_path, "a", encoding="utf-8") as log:
            for part in parts:
                with open(part, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if line.endswith("\n"):  # a line torn by a kill is left out
                            log.write(line)
                log.flush()
                os.fsync(log.fileno())
                part.unlink()

    def status(self, pair: Pair) -> str:
        """``done`` (a line records these input bytes), ``changed`` (its line records other bytes)
        or ``unrecorded`` (no line: its output was written but not recorded, or is not this run's)."""
        entry = self.entries.get(pair.name)
        if entry is None:
            return "unrecorded"
        if self.hashes(pair) != entry:
            return "changed"
        del self._hashes[pair.name]  # kept only for outputs still to write
        return "done"

    def hashes(self, pair: Pair) -> tuple[str, str] | None:
        """SHA-256 of the pair's image and mask files; None if one cannot be read (reading reports it).

        Taken before the files are read for completion: were a file replaced in between, the
        record holds the older bytes and the next run redoes the image rather than keep it.
        """
        if pair.name not in self._hashes:
            try:
                self._hashes[pair.name] = (provenance.file_sha256(pair.image), provenance.file_sha256(pair.mask))
            except OSError:
                self._hashes[pair.name] = None
        return self._hashes[pair.name]

    def add(self, pair: Pair) -> bool:
        """Record the output of ``pair`` (written, or taken as done); False if its inputs cannot be hashed.

        One ``write`` per line, flushed: a kill can tear only the last line, which is skipped.
        """
        hashes = self.hashes(pair)
        del self._hashes[pair.name]  # taken once per output: memory stays flat over a long run
        if hashes is None:
            return False
        line = json.dumps({"name": pair.name, "image_sha256": hashes[0], "mask_sha256": hashes[1]})
        atomic.ensure_folder(self.folder)
        with open(self.write_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        self.entries[pair.name] = hashes
        return True

    def _has_outputs(self) -> bool:
        """Whether anything here could be an output: a record line, or a file of an output's suffix."""
        try:
            if not self.folder.is_dir():
                return False
            if any(path.is_file() and path.stat().st_size > 0 for path in [self.log_path, *self._parts()]):
                return True
            return any(
                path.suffix.lower() in self.suffixes and not path.name.startswith(".")
                for path in self.folder.iterdir()
                if path.is_file()
            )
        except OSError:  # a folder that cannot be listed: writing there reports it, in one line
            return False

    def _parts(self) -> list[Path]:
        """The log parts of a split run's other processes, in rank order."""
        try:
            parts = [path for path in self.folder.glob(_PART_GLOB) if path.is_file()]
        except OSError:
            return []
        return sorted(parts, key=lambda path: (len(path.name), path.name))

    def _read_log(self) -> dict[str, tuple[str, str]]:
        """The last line per name, from the log and then its parts (torn or foreign lines are
        skipped). One run writes a name in one file only, and every run starts by folding the
        parts into the log, so a part's lines are newer than the log's."""
        entries: dict[str, tuple[str, str]] = {}
        for path in [self.log_path, *self._parts()]:
            try:
                f = open(path, encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            with f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        entries[entry["name"]] = (entry["image_sha256"], entry["mask_sha256"])
                    except (ValueError, TypeError, KeyError):
                        continue
        return entries

    def _end_last_line(self) -> None:
        """End a line torn by a kill, so that the next line is not glued to it."""
        try:
            with open(self.log_path, "rb+") as f:
                size = f.seek(0, 2)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
        except FileNotFoundError:
            pass


def _slash(folder: Path) -> str:
    return f"{str(folder).rstrip('/')}/"


def describe(found: Sequence[provenance.Change]) -> str:
    """``made with --model telea; this run asks for biharmonic``: the changes as command-line flags.

    With one change the second half gives the new value alone; with several, each with its flag.
    """
    before = [_as_flags(change, "before") for change in found]
    now = [_as_flags(change, "now") for change in found]
    if len(found) == 1:
        now = [_value_alone(found[0], now[0])]
    return f"made with {', '.join(before)}; this run asks for {', '.join(now)}"


def _as_flags(change: provenance.Change, side: str) -> str:
    """One side (``before`` or ``now``) of a change as the flag that gives it (``--no-paste-back``)."""
    from inpaint.models.base import MethodOptions

    value = change.before if side == "before" else change.now
    flag = f"--{change.key.replace('_', '-')}"
    if change.note == provenance.OTHER_WEIGHTS_INSIDE:
        return f"{flag} reading {'its root' if value in (None, '.') else f'its {value}/'}"
    if change.note is not None:  # the same path, other contents: say which side is which
        if side == "now":
            return f"{flag} {_quote(value)} as it is now"
        if change.note == provenance.NO_FINGERPRINT:
            return f"{flag} {_quote(value)} (its contents not recorded)"
        return f"{flag} {_quote(value)} with other contents"
    defaults = {f.name: f.default for f in fields(MethodOptions)}
    if value is None and change.key in defaults:
        value = defaults[change.key]
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    return f"the default {flag}" if value is None else f"{flag} {_quote(value)}"


def _value_alone(change: provenance.Change, text: str) -> str:
    """``--model biharmonic`` -> ``biharmonic``; flags that are their value (``--no-ema``) stay."""
    if text.startswith("the default "):
        return "the default"
    flag = f"--{change.key.replace('_', '-')} "
    return text[len(flag) :] if text.startswith(flag) else text


def _quote(value: Any) -> str:
    return shlex.quote(value) if isinstance(value, str) else str(value)
