"""Find a model given as a local directory or a Hugging Face hub id, fetching only what a loader reads.

A hub download is limited to the files a loader needs (:class:`~inpaint.models.weight_files.ModelFiles`:
configs, tokenizer files and each component's weights), so a repository's extra single-file
checkpoints and other variants are never fetched. Weights are fetched as safetensors; only a
component that has none in the repository is fetched as ``.bin``, in a second request, and those
pickles are read by torch's weights-only unpickler alone (:mod:`inpaint.models.weight_files`).
``revision`` (a branch, tag or commit) and ``variant`` (``fp16``: the ``*.fp16.safetensors`` files)
choose what is fetched. Every way this can fail is one :class:`~inpaint.errors.InputError` line
saying what was looked for, where, and the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from inpaint.errors import InputError
from inpaint.models.weight_files import (
    DIFFUSERS,
    TRANSFORMERS,
    ModelFiles,
    check_revision,
    check_variant,
    has_weights,
)

#: Endings of weight files: a name ending so (``loras/mine.safetensors``) is a file, not a hub id.
_FILE_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".json")


def looks_like_path(id_or_dir: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else can only be a local path."""
    return (
        id_or_dir.startswith((".", "/", "~"))
        or "\\" in id_or_dir
        or id_or_dir.count("/") > 1
        or os.path.isabs(id_or_dir)
        or id_or_dir.lower().endswith(_FILE_SUFFIXES)
    )


def meant_as_local(id_or_dir: str) -> bool:
    """Whether a missing ``id_or_dir`` names a local folder, not a hub model: it can only be a path
    (:func:`looks_like_path`), or its first part is a folder here (``runs/ddpm`` beside ``runs/``).

    Messages about it then say "no such directory", never how to download it from the hub.
    """
    if looks_like_path(id_or_dir):
        return True
    head, _, rest = id_or_dir.partition("/")
    return bool(rest) and Path(head).expanduser().is_dir()


def any_weights(folder: Path, variant: str | None = None) -> bool:
    """Whether ``folder`` holds a diffusers or transformers model's weights (of ``variant``), as
    safetensors or as ``.bin`` (which the loaders convert)."""
    return any(
        has_weights(folder, library, variant, pickle=pickle)
        for library in (DIFFUSERS, TRANSFORMERS)
        for pickle in (False, True)
    )


def cached_availability(
    repo_id: str,
    config_files: Sequence[str],
    check: Callable[[str, Path], str | None],
    fix: str,
    local_only: bool,
    revision: str | None = None,
    variant: str | None = None,
) -> str | None:
    """Why hub model ``repo_id`` cannot be used, or ``None``: a cheap registry check (no download).

    The first of ``config_files`` found in the local cache (at ``revision``, default the main
    branch) is handed to ``check(name, path)``, which judges it (the right UNet, say). Not
    cached: unusable when ``local_only`` (choosing a method for the user never starts a download)
    or offline; otherwise loading will fetch it. Cached weights count as safetensors or ``.bin``,
    of ``variant`` when one is asked for.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    for filename in config_files:
        try:
            cached = try_to_load_from_cache(repo_id, filename, revision=revision)
        except ValueError:  # not a valid repo id, so only a (missing) path
            return f"{repo_id}: no such directory; {fix}"
        if isinstance(cached, str):
            problem = check(filename, Path(cached))
            if (
                problem is None
                and (local_only or constants.HF_HUB_OFFLINE)
                and not any_weights(Path(cached).parent, variant)
            ):
                # A config alone is not a model, and here its weights cannot be fetched.
                tag = f" {variant}" if variant else ""
                return f"{repo_id}: cached without its{tag} weights (beside {filename}); {fix}"
            return problem
    at = f" at revision {revision}" if revision else ""
    if local_only:
        return f"{repo_id}: not downloaded yet (not in the local Hugging Face cache{at}); {fix}"
    if constants.HF_HUB_OFFLINE:
        return (
            f"{repo_id}: no such local directory, and not in the local Hugging Face cache{at} while the hub is "
            f"unreachable (offline); {fix}"
        )
    return None  # not cached but online: loading downloads it or says why it cannot


def download_hint(repo_id: str, revision: str | None = None, variant: str | None = None) -> str:
    """The command that fetches ``repo_id`` on a machine with network access: ``inpaint download NAME``
    for the models inpaint knows by name, else ``hf download``."""
    from inpaint.download import name_of

    name = name_of(repo_id)
    flags = (f" --revision {revision}" if revision else "") + (f" --variant {variant}" if variant else "")
    if name:
        return f"`inpaint download {name}{flags}`"
    return f"`hf download {repo_id}" + (f" --revision {revision}`" if revision else "`")


def snapshot(repo_id: str, allow_patterns: Sequence[str], revision: str | None = None) -> Path:
    """The local snapshot folder of hub repository ``repo_id`` at ``revision`` (default: the main
    branch), downloading only ``allow_patterns``."""
    from huggingface_hub import errors, snapshot_download

    check_revision(revision)
    incomplete = getattr(errors, "IncompleteSnapshotError", ())  # absent from older huggingface_hub releases
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(allow_patterns), revision=revision))
    except errors.HFValidationError:
        raise InputError(f"{repo_id}: no such directory") from None
    except incomplete:
        raise InputError(
            f"{repo_id}: only part of it is in the local Hugging Face cache and the hub is unreachable (offline); "
            f"complete it on a connected machine with {download_hint(repo_id, revision)}"
        ) from None
    except errors.LocalEntryNotFoundError:
        at = f" at revision {revision}" if revision else ""
        raise InputError(
            f"{repo_id}: no such local directory, and not in the local Hugging Face cache{at} while the "
            f"hub is unreachable (offline); download it on a connected machine with "
            f"{download_hint(repo_id, revision)} or pass a local directory"
        ) from None
    except errors.GatedRepoError:
        raise InputError(
            f"{repo_id}: gated on the Hugging Face hub; accept its terms on the model page and run "
            "`hf auth login`, or pass a local directory"
        ) from None
    except errors.RevisionNotFoundError:
        raise InputError(
            f"{repo_id}: no revision {revision!r} (branch, tag or commit) on the Hugging Face hub; check --revision"
        ) from None
    except errors.RepositoryNotFoundError:
        raise InputError(
            f"{repo_id}: no such local directory and no such (public) model on the Hugging Face hub; "
            "check the spelling or pass a local directory"
        ) from None
    except OSError as e:  # HTTP errors and disk errors both derive from OSError
        raise InputError(f"{repo_id}: could not fetch it from the Hugging Face hub ({e})") from None


def fetch(repo_id: str, files: ModelFiles, revision: str | None = None, variant: str | None = None) -> Path:
    """The snapshot folder of hub model ``repo_id`` with what ``files`` names, downloading what is missing.

    The configs and safetensors weights (of ``variant``) come first; a component left with a
    config but no safetensors (a repository that publishes ``.bin`` only) then has its ``.bin``
    weights fetched, from the same commit. Repositories with safetensors never have a pickle fetched.
    """
    check_variant(variant)
    root = snapshot(repo_id, files.patterns(variant), revision)
    lacking = files.without_safetensors(root, variant)
    if lacking:
        # The snapshot folder is named by its commit: pinned to it, the second request cannot see a newer one.
        pinned = root.name if re.fullmatch(r"[0-9a-f]{40}", root.name) else revision
        root = snapshot(repo_id, files.pickle_patterns(lacking, variant), pinned)
    return root


def resolve(
    id_or_dir: str | os.PathLike[str], files: ModelFiles, *, revision: str | None = None, variant: str | None = None
) -> Path:
    """The local folder of model ``id_or_dir``: the directory itself, or a hub snapshot (:func:`fetch`).

    ``revision`` applies to hub ids only: a local directory with one is an :class:`InputError`.
    """
    text = os.fspath(id_or_dir)
    path = Path(text).expanduser()
    check_variant(variant)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{text}: is a file; expected a model directory")
        if revision is not None:
            raise InputError(f"--revision {revision}: only a hub model has revisions; {text} is a local directory")
        return path
    if looks_like_path(text):
        raise InputError(f"{text}: no such directory")
    return fetch(text, files, revision, variant)


@contextlib.contextmanager
def quiet_loading(errors_too: bool = False) -> Iterator[None]:
    """Silence diffusers' and transformers' loading bars and info/warning chatter for a block.

    Library code never prints; what those libraries would say while loading is either noise
    ("Loading pipeline components…") or turned into our own errors. ``errors_too`` also silences
    their error logs, for calls whose failures we catch and report in one line ourselves (diffusers
    logs a whole state-dict mismatch before it raises). The previous settings are restored
    afterwards, so a caller's own configuration of those loggers is kept.
    """
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    saved = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _, _ in saved:
        module.set_verbosity(logging.CRITICAL + 1 if errors_too else logging.ERROR)
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, level, bar in saved:
            module.set_verbosity(level)
            (module.enable_progress_bar if bar else module.disable_progress_bar)()


def first_line(error: BaseException, limit: int = 240) -> str:
    """The gist of an error in one line: its first line, and the next one when the first only
    introduces a list ("Error(s) in loading state_dict for …:"), cut to ``limit`` characters."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if not (lines[0].endswith(":") and len(lines) > 1) else f"{lines[0]} {lines[1]}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
