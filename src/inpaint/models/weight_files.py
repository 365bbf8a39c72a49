"""Model weight files: their names, the hub patterns that fetch them, and pickle weights made safe.

diffusers and transformers publish each model component's weights as safetensors
(``diffusion_pytorch_model.safetensors``, ``model.safetensors``; large ones as shards listed in a
``*.safetensors.index.json``) or, in older repositories, as pickle files only
(``diffusion_pytorch_model.bin``, ``pytorch_model.bin``). A variant such as ``fp16`` puts its
name before the suffix: ``diffusion_pytorch_model.fp16.safetensors``,
``model.safetensors.index.fp16.json``, ``model.fp16-00001-of-00002.safetensors``.

Safetensors are read as they are. A component that has pickle weights only is converted once,
by :func:`safetensors_view`: each ``.bin`` is read with ``torch.load(..., weights_only=True)``,
torch's restricted unpickler, which builds tensors and plain containers and refuses anything
else before it runs (a pickle whose ``__reduce__`` calls ``os.system`` is refused, and nothing in
it runs); what it returns must be a flat mapping of names to tensors, and is saved with
``safetensors.torch.save_file`` into our cache (:func:`cache_root`). The loaders then read a
*view* of the model folder, also in the cache: a folder that links to every file of the original
except the pickles, with the converted safetensors in their place, loaded with
``use_safetensors=True``, so diffusers and transformers never see a pickle at all. A later load
finds the converted file and never opens the pickle again.

A converted file is keyed by the pickle's content: a file of the Hugging Face cache is named by
its hash already (``blobs/<sha256>``), a local file by its real path, size and modification
time, so a replaced ``.bin`` is converted again. Both caches are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint import atomic
from inpaint.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: Weights saved by diffusers (``ModelMixin.save_pretrained``).
DIFFUSERS = "diffusers"
#: Weights saved by transformers (``PreTrainedModel.save_pretrained``).
TRANSFORMERS = "transformers"

_SAFE_STEM = {DIFFUSERS: "diffusion_pytorch_model", TRANSFORMERS: "model"}
_PICKLE_STEM = {DIFFUSERS: "diffusion_pytorch_model", TRANSFORMERS: "pytorch_model"}
#: Pickle weight files we convert (single files and shards) and their index files.
_PICKLE_FILE = re.compile(r"^(?P<stem>diffusion_pytorch_model|pytorch_model|model)(?P<rest>[^/]*)\.bin$")
_PICKLE_INDEX = re.compile(
    r"^(?P<stem>diffusion_pytorch_model|pytorch_model|model)\.bin\.index(?P<variant>\.[^./]+)?\.json$"
)
#: Other pickle formats: never linked into a view, never loaded.
_OTHER_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_VARIANT = re.compile(r"[A-Za-z0-9_]+")
_REVISION = re.compile(r"[A-Za-z0-9._/-]+")


# ---- names and hub patterns ---------------------------------------------------------------------


def check_variant(variant: str | None) -> str | None:
    """``variant`` when it is a plain name (``fp16``, ``bf16``…) or ``None``; else :class:`InputError`."""
    if variant is not None and not _VARIANT.fullmatch(variant):
        raise InputError(f"--variant {variant!r}: expected a weights variant name such as fp16 (letters, digits, _)")
    return variant


def check_revision(revision: str | None) -> str | None:
    """``revision`` when it can name a branch, tag or commit (or is ``None``); else :class:`InputError`."""
    if revision is not None and (not _REVISION.fullmatch(revision) or ".." in revision):
        raise InputError(f"--revision {revision!r}: expected a branch, tag or commit hash of the hub repository")
    return revision


def weight_names(library: str, variant: str | None = None, *, pickle: bool = False) -> tuple[str, str, str]:
    """``(single file, index file, shard pattern)`` of a component's weights in ``library``'s naming.

    ``pickle`` gives the ``.bin`` names instead of the safetensors ones. For diffusers without a
    variant: ``diffusion_pytorch_model.safetensors``, ``diffusion_pytorch_model.safetensors.index.json``,
    ``diffusion_pytorch_model-*-of-*.safetensors``.
    """
    stem = (_PICKLE_STEM if pickle else _SAFE_STEM)[library]
    ext = "bin" if pickle else "safetensors"
    tag = f".{variant}" if variant else ""
    return f"{stem}{tag}.{ext}", f"{stem}.{ext}.index{tag}.json", f"{stem}{tag}-*-of-*.{ext}"


@dataclass(frozen=True)
class Component:
    """A model folder holding one set of weights: ``folder`` relative to the model root ("" for the
    root itself), saved by ``library`` (:data:`DIFFUSERS` or :data:`TRANSFORMERS`). A ``required``
    component must be there; the others are read when present (a pipeline's ``unet/`` or a flat
    model's root, say)."""

    folder: str
    library: str
    required: bool = True

    def path(self, root: Path) -> Path:
        return root / self.folder if self.folder else root

    def label(self) -> str:
        return f"{self.folder}/" if self.folder else "the model folder"


@dataclass(frozen=True)
class ModelFiles:
    """What a loader reads from a model repository, as hub download patterns.

    ``other`` are the patterns of everything but weights (configs, tokenizer files); each of
    ``components`` adds its weights; ``required_files`` must exist for the model to be usable
    (``model_index.json`` of a pipeline, say).
    """

    other: tuple[str, ...]
    components: tuple[Component, ...]
    required_files: tuple[str, ...] = ()

    def patterns(self, variant: str | None = None) -> list[str]:
        """The hub patterns of the configs and the safetensors weights (of ``variant``)."""
        return [*self.other, *(p for c in self.components for p in _patterns(c, variant, pickle=False))]

    def pickle_patterns(self, folders: Iterable[str], variant: str | None = None) -> list[str]:
        """The hub patterns of the ``.bin`` weights of the components in ``folders`` (a fallback for
        components published without safetensors)."""
        wanted = set(folders)
        return [p for c in self.components if c.folder in wanted for p in _patterns(c, variant, pickle=True)]

    def without_safetensors(self, root: Path, variant: str | None = None) -> list[str]:
        """Folders of the components under ``root`` that have a config but no safetensors weights."""
        return [
            c.folder
            for c in self.components
            if (c.path(root) / "config.json").is_file() and not has_weights(c.path(root), c.library, variant)
        ]

    def missing(self, root: Path, variant: str | None = None) -> list[str]:
        """What ``root`` lacks to be loaded (weights as safetensors or ``.bin``); ``[]`` when complete."""
        lacking = [name for name in self.required_files if not (root / name).is_file()]
        present = 0
        for c in self.components:
            folder = c.path(root)
            if not (folder / "config.json").is_file():
                if c.required:
                    lacking.append(f"{c.folder}/config.json" if c.folder else "config.json")
                continue
            present += 1
            if not (has_weights(folder, c.library, variant) or has_weights(folder, c.library, variant, pickle=True)):
                tag = f" ({variant} variant)" if variant else ""
                lacking.append(f"{c.folder + '/' if c.folder else ''}{weight_names(c.library, variant)[0]}{tag}")
        if not present and not any(c.required for c in self.components):
            lacking.append("config.json")
        return lacking


def _patterns(component: Component, variant: str | None, *, pickle: bool) -> list[str]:
    prefix = f"{component.folder}/" if component.folder else ""
    return [prefix + name for name in weight_names(component.library, variant, pickle=pickle)]


def has_weights(folder: Path, library: str, variant: str | None = None, *, pickle: bool = False) -> bool:
    """Whether ``folder`` holds ``library``'s weights (a single file or an index) of ``variant``,
    as safetensors (default) or as ``.bin`` (``pickle``)."""
    single, index, _ = weight_names(library, variant, pickle=pickle)
    return (folder / single).is_file() or (folder / index).is_file()


# ---- the cache ------------------------------------------------------------------------------------


def cache_root() -> Path:
    """inpaint's own cache: ``$INPAINT_CACHE``, else ``$XDG_CACHE_HOME/inpaint``, else ``~/.cache/inpaint``.

    Converted weights live in ``safetensors/files/``, model folder views in ``safetensors/views/``;
    both can be deleted at any time (they are rebuilt from the pickles on the next load).
    """
    explicit = os.environ.get("INPAINT_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "inpaint"


def content_key(path: Path) -> str:
    """What identifies the content of ``path``: a hub cache blob's name (its hash), else the real
    path, size and modification time of the file."""
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and real.parent.parent.name.startswith("models--"):
        return f"hub-blob:{real.name}"
    stat = real.stat()
    return f"file:{real}:{stat.st_size}:{stat.st_mtime_ns}"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:32]


# ---- reading a pickle safely ------------------------------------------------------------------


def _why_refused(error: BaseException) -> str:
    """The line of torch's weights-only error that names the refused object, without its advice
    (which suggests ``weights_only=False``: the very thing never to do with a stranger's file)."""
    boilerplate = (
        "weights only load failed",
        "please file an issue",
        "check the documentation",
        "in pytorch 2.6",
        "(1)",
        "(2)",
        "re-running",
    )
    for line in str(error).splitlines():
        line = line.strip()
        if line.lower().startswith("weightsunpickler error:"):
            line = line.split(":", 1)[1].strip()
        if line and not line.lower().startswith(boilerplate):
            return line if len(line) <= 160 else line[:159] + "…"
    return type(error).__name__


def read_pickle_weights(path: Path, label: str) -> dict[str, torch.Tensor]:
    """The tensors of pickle weights file ``path``, read with torch's weights-only unpickler.

    Returns ``{name: tensor}`` on the CPU. Raises one :class:`InputError` line naming the file when
    the unpickler refuses it (it holds objects other than tensors and plain containers: a pickle
    that would run code is refused before anything in it runs), when it is unreadable (truncated,
    not a torch file) or when it is not a flat mapping of names to tensors.
    """
    import zipfile

    import torch

    try:
        # mmap: a multi-gigabyte zip-format file is not read into memory twice (load, then save).
        mmap = zipfile.is_zipfile(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4…": not the user's concern
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - zip, pickle and OS errors: all mean "not loadable"
        if type(e).__name__ == "UnpicklingError" and "weights only load failed" in str(e).lower():
            raise InputError(
                f"{path}: refused as unsafe or unreadable: torch's weights-only unpickler, which builds tensors and "
                f"nothing else, stopped at: {_why_refused(e)}; nothing in the file was run. Get the weights of {label} "
                "as safetensors from a source you trust, or download them again"
            ) from None
        raise InputError(
            f"{path}: refused as unreadable: not loadable as PyTorch weights ({_why_refused(e)}); the "
            f"file is truncated or not a weights file: download {label} again"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(
            f"{path}: not a flat mapping of names to tensors, so not the weights of a diffusers or "
            f"transformers model; refused ({label})"
        )
    return state


def _savable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` as safetensors can store it: tensors that share memory (tied weights) or do not
    fill their storage are copied, the others kept as they are (no second copy of a large model)."""
    from collections import Counter

    import torch

    storages = Counter(t.untyped_storage().data_ptr() for t in state.values())
    out = {}
    for name, tensor in state.items():
        whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
        if storages[tensor.untyped_storage().data_ptr()] > 1 or not whole or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        out[name] = tensor
    return out


def convert_pickle(path: Path, safe_name: str, label: str) -> Path:
    """The cached safetensors conversion of pickle weights ``path`` (made now if not cached yet).

    ``safe_name`` is the file name the converted weights take. Raises :class:`InputError` as
    :func:`read_pickle_weights` does, or when the cache cannot be written.
    """
    from safetensors.torch import save_file

    target = cache_root() / "safetensors" / "files" / _digest(content_key(path)) / safe_name
    if target.is_file():
        return target
    tensors = _savable(read_pickle_weights(path, label))
    with atomic.atomic_path(target) as tmp:
        try:
            # "format": transformers reads only safetensors files that say which framework wrote them.
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        except (RuntimeError, ValueError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{path}: cannot store its tensors as safetensors ({first})") from None
    log.info(
        f"{label}: converted the pickle weights {path} to safetensors in {target} (read with torch's "
        "weights-only unpickler; later loads use the converted file)"
    )
    return target


# ---- the view of a model folder -------------------------------------------------------------------


def _safe_name(pickle_name: str) -> str:
    """``pytorch_model-00001-of-00002.bin`` -> ``model-00001-of-00002.safetensors`` (diffusers
    keeps its stem: ``diffusion_pytorch_model.fp16.bin`` -> ``diffusion_pytorch_model.fp16.safetensors``)."""
    match = _PICKLE_FILE.match(pickle_name)
    assert match is not None
    stem = "model" if match["stem"] == "pytorch_model" else match["stem"]
    return f"{stem}{match['rest']}.safetensors"


@dataclass
class _Plan:
    """What to do in one folder: pickles to convert (pickle path -> safetensors name) and index
    files to write (name -> content)."""

    convert: dict[Path, str]
    indexes: dict[str, dict[str, Any]]


def _plan(folder: Path, variant: str | None, label: str) -> _Plan | None:
    """The conversions ``folder`` needs: for each weights name without safetensors, its pickles."""
    tag = f".{variant}" if variant else ""
    plan = _Plan({}, {})
    done: set[str] = set()
    for stem in ("diffusion_pytorch_model", "pytorch_model", "model"):
        safe_stem = "model" if stem == "pytorch_model" else stem
        safe_single, safe_index = f"{safe_stem}{tag}.safetensors", f"{safe_stem}.safetensors.index{tag}.json"
        if safe_single in done or (folder / safe_single).is_file() or (folder / safe_index).is_file():
            continue
        single, index = folder / f"{stem}{tag}.bin", folder / f"{stem}.bin.index{tag}.json"
        if single.is_file():
            plan.convert[single] = safe_single
        elif index.is_file():
            plan.indexes[safe_index] = _shards(index, folder, plan, label)
        else:
            continue
        done.add(safe_single)
    return plan if plan.convert or plan.indexes else None


def _shards(index: Path, folder: Path, plan: _Plan, label: str) -> dict[str, Any]:
    """Read a sharded pickle's index, add its shards to ``plan``; returns the safetensors index."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{index}: not a readable weights index ({e}); {label} cannot be loaded") from None
    renamed = {}
    for shard in sorted(set(weight_map.values())):
        if not isinstance(shard, str) or not _PICKLE_FILE.match(shard) or not (folder / shard).is_file():
            raise InputError(f"{index}: lists the shard {shard!r}, which is not a weights file in {folder}")
        renamed[shard] = _safe_name(shard)
        plan.convert[folder / shard] = renamed[shard]
    return {**data, "weight_map": {name: renamed[shard] for name, shard in weight_map.items()}}


def _is_pickle(name: str) -> bool:
    return bool(_PICKLE_FILE.match(name) or _PICKLE_INDEX.match(name)) or name.lower().endswith(_OTHER_PICKLES)


def _link(source: Path, destination: Path) -> None:
    """``destination`` pointing at ``source``: a symbolic link, else a hard link, else a copy
    (file systems without links)."""
    try:
        destination.symlink_to(source.absolute(), target_is_directory=source.is_dir())
        return
    except OSError:
        pass
    if source.is_dir():
        destination.mkdir()
        for child in source.iterdir():
            _link(child, destination / child.name)
        return
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def safetensors_view(root: Path, folders: Sequence[str], label: str, variant: str | None = None) -> Path:
    """A folder that ``from_pretrained(..., use_safetensors=True)`` loads like ``root``, with no pickles.

    ``folders`` are the component folders to look at, relative to ``root`` ("" for ``root``
    itself). When none of them has ``.bin`` weights without safetensors beside them (of
    ``variant``), ``root`` itself is returned. Otherwise each such pickle is converted
    (:func:`convert_pickle`) and the returned folder, in the cache, mirrors ``root``: links to its
    files and subfolders, except that the converting folders hold links to their files minus
    every pickle, plus the converted weights (and a rewritten index for sharded weights).
    Raises :class:`InputError` (one line naming the file) when a pickle is refused.
    """
    plans = {
        name: plan for name in folders if (plan := _plan(root / name if name else root, variant, label)) is not None
    }
    if not plans:
        return root
    converted = {
        name: {pickle: convert_pickle(pickle, safe, label) for pickle, safe in plan.convert.items()}
        for name, plan in plans.items()
    }
    identity = _digest(
        os.path.realpath(root),
        variant,
        sorted(p.name for p in root.iterdir()),
        {
            name: [
                sorted(p.name for p in (root / name if name else root).iterdir()),
                sorted(str(target) for target in files.values()),
            ]
            for name, files in converted.items()
        },
        {name: plan.indexes for name, plan in plans.items()},
    )
    views = cache_root() / "safetensors" / "views"
    view = views / identity
    if view.is_dir() and _intact(view):
        return view
    atomic.ensure_folder(views, f"the inpaint cache {views}")
    try:
        tmp = atomic.temporary_folder(f".{identity}.", views)
    except OSError as e:
        raise InputError(
            f"{views}: cannot write the inpaint cache here ({e.strerror or e}); set INPAINT_CACHE to a writable folder"
        ) from None
    try:
        _mirror(root, tmp, plans.get(""), converted.get(""))
        for name, plan in plans.items():
            if name:  # the link to the whole folder is replaced by a folder of links
                linked = tmp / name
                if linked.is_symlink():
                    linked.unlink()
                else:
                    shutil.rmtree(linked)
                linked.mkdir()
                _mirror(root / name, tmp / name, plan, converted[name])
        if view.exists() and not _intact(view):  # its converted files were deleted: build it afresh
            shutil.rmtree(view, ignore_errors=True)
        try:
            os.rename(tmp, view)
        except OSError:
            # Another process (a rank of the same launch, say) made it first: use theirs.
            if not (view.is_dir() and _intact(view)):
                raise InputError(
                    f"{view}: cannot write the inpaint cache here; set INPAINT_CACHE to a writable folder"
                ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return view


def _mirror(source: Path, view: Path, plan: _Plan | None, converted: dict[Path, Path] | None) -> None:
    """Link ``source``'s entries into ``view``; where a plan applies, pickles out, conversions in."""
    for child in sorted(source.iterdir()):
        if plan is not None and child.is_file() and _is_pickle(child.name):
            continue
        _link(child, view / child.name)
    if plan is not None and converted is not None:
        for pickle, target in converted.items():
            _link(target, view / plan.convert[pickle])
        for name, data in plan.indexes.items():
            (view / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _intact(view: Path) -> bool:
    """Whether every link in ``view`` (one level of subfolders deep) still leads to a file or folder."""
    for entry in view.iterdir():
        if not entry.exists():
            return False
        if entry.is_dir() and not entry.is_symlink() and any(not e.exists() for e in entry.iterdir()):
            return False
    return True
