"""Find a model given as a local directory or a Hugging Face hub id, fetching only safe files.

A hub download is limited to the file patterns a loader needs (configs, tokenizer files and
safetensors weights): pickle weights are never fetched, since we never unpickle them, and a
repository's extra single-file checkpoints are not downloaded either. Every way this can fail is
one :class:`~inpaint.errors.InputError` line saying what was looked for, where, and the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from inpaint.errors import InputError


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


def cached_availability(
    repo_id: str,
    config_files: Sequence[str],
    check: Callable[[str, Path], str | None],
    fix: str,
    local_only: bool,
) -> str | None:
    """Why hub model ``repo_id`` cannot be used, or ``None``: a cheap registry check (no download).

    The first of ``config_files`` found in the local cache is handed to ``check(name, path)``,
    which judges it (the right UNet, say). Not cached: unusable when ``local_only`` (choosing a
    method for the user never starts a download) or offline; otherwise loading will fetch it.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    for filename in config_files:
        try:
            cached = try_to_load_from_cache(repo_id, filename)
        except ValueError:  # not a valid repo id, so only a (missing) path
            return f"{repo_id}: no such directory; {fix}"
        if isinstance(cached, str):
            problem = check(filename, Path(cached))
            if problem is None and (local_only or constants.HF_HUB_OFFLINE) \
                    and not any(Path(cached).parent.glob("*.safetensors")):
                # A config alone is not a model: the loaders read safetensors weights only, and
                # here they cannot be fetched.
                return (f"{repo_id}: cached without its safetensors weights (beside {filename}; pickle .bin "
                        f"files are never loaded); {fix}")
            return problem
    if local_only:
        return f"{repo_id}: not downloaded yet (not in the local Hugging Face cache); {fix}"
    if constants.HF_HUB_OFFLINE:
        return (f"{repo_id}: no such local directory, and not in the local Hugging Face cache while the hub is "
                f"unreachable (offline); {fix}")
    return None  # not cached but online: loading downloads it or says why it cannot


def snapshot(repo_id: str, allow_patterns: Sequence[str]) -> Path:
    """The local snapshot folder of hub repository ``repo_id``, downloading only ``allow_patterns``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(allow_patterns)))
    except HFValidationError:
        raise InputError(f"{repo_id}: no such directory") from None
    except LocalEntryNotFoundError:
        raise InputError(
            f"{repo_id}: no such local directory, and not in the local Hugging Face cache while the "
            f"hub is unreachable (offline); download it on a connected machine with "
            f"`hf download {repo_id}` or pass a local directory"
        ) from None
    except GatedRepoError:
        raise InputError(
            f"{repo_id}: gated on the Hugging Face hub; accept its terms on the model page and run "
            "`hf auth login`, or pass a local directory"
        ) from None
    except RepositoryNotFoundError:
        raise InputError(
            f"{repo_id}: no such local directory and no such (public) model on the Hugging Face hub; "
            "check the spelling or pass a local directory"
        ) from None
    except OSError as e:  # HTTP errors and disk errors both derive from OSError
        raise InputError(f"{repo_id}: could not fetch it from the Hugging Face hub ({e})") from None


def resolve(id_or_dir: str | os.PathLike[str], allow_patterns: Sequence[str]) -> Path:
    """The local folder of model ``id_or_dir``: the directory itself, or a hub snapshot."""
    text = os.fspath(id_or_dir)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{text}: is a file; expected a model directory")
        return path
    if looks_like_path(text):
        raise InputError(f"{text}: no such directory")
    return snapshot(text, allow_patterns)


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
