"""``inpaint download``: fetch every model and weight file a run needs, into the standard caches.

On a machine with network access, one command fills the caches the rest of inpaint reads, so a
later run (here, or on a copy of these caches offline with ``HF_HUB_OFFLINE=1``) finds everything:

- hub models go to the Hugging Face cache (``$HF_HOME/hub``) through ``snapshot_download``, with
  the very file patterns the loaders fetch (:data:`inpaint.models.pixel_unet.MODEL_FILES`,
  :data:`inpaint.models.sd_weights.PIPELINE_FILES`, :data:`inpaint.captions.BLIP_FILES`):
  safetensors of the chosen variant, ``.bin`` only for a component published without them;
- LPIPS's and FID's backbones go to torch.hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``),
  where :mod:`inpaint.metrics.weights` looks for them. A file is downloaded to ``NAME.part``,
  resumed with an HTTP ``Range`` request after an interruption, checked against the SHA-256
  prefix in its name (torch.hub's convention: ``alexnet-owt-7be5be79.pth`` starts with
  ``7be5be79``) and renamed into place atomically; a file that does not match is deleted.

What is already present is skipped; huggingface_hub resumes its own partial files. Offline
(``HF_HUB_OFFLINE=1``) nothing is tried: :func:`download` reports what is present (with paths) and
what is missing. Nothing here prints: statuses are returned, byte counts go to a
:class:`~inpaint.progress.Progress`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint.errors import InpaintError, InputError
from inpaint.progress import NullProgress, Progress

if TYPE_CHECKING:  # pragma: no cover
    from inpaint.metrics.weights import WeightFile
    from inpaint.models.weight_files import ModelFiles


@dataclass(frozen=True)
class Item:
    """Something ``inpaint download`` fetches, by ``name``.

    ``hub`` items are a hub repository ``source`` fetched as the loader's ``files`` (the module
    attribute holding its :class:`~inpaint.models.weight_files.ModelFiles`); ``file`` items are the
    :class:`~inpaint.metrics.weights.WeightFile` named ``source`` in :mod:`inpaint.metrics.weights`.
    ``default`` items are fetched when no name is given; naming an item fetches the items named in
    its ``also`` too (Kandinsky 2.2's decoder needs its prior, a repository of its own).
    """

    name: str
    kind: str
    source: str
    purpose: str
    files: str = ""
    default: bool = True
    also: tuple[str, ...] = ()


#: Everything ``inpaint download`` knows, in the order it fetches them. Module attributes are named
#: rather than imported, so listing the items (``--help``) imports nothing heavy.
ITEMS: tuple[Item, ...] = (
    Item(
        "ddpm",
        "hub",
        "google/ddpm-celebahq-256",
        "DDPM base: repaint's weights, train-ddpm's --base",
        "inpaint.models.pixel_unet:MODEL_FILES",
    ),
    Item(
        "sd",
        "hub",
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "Stable Diffusion 1.5 Inpainting: the sd method, train-lora's --base",
        "inpaint.models.sd_weights:PIPELINE_FILES",
    ),
    Item(
        "sdxl",
        "hub",
        "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        "Stable Diffusion XL Inpainting 0.1: the sdxl method (about 7 GB in fp16; only when named)",
        "inpaint.models.sd_weights:PIPELINE_FILES",
        default=False,
    ),
    Item(
        "flux",
        "hub",
        "black-forest-labs/FLUX.1-Fill-dev",
        "FLUX.1 Fill dev: the flux method (about 34 GB in bf16; only when named; gated on the hub: accept its "
        "licence, then `hf auth login`)",
        "inpaint.models.sd_weights:PIPELINE_FILES",
        default=False,
    ),
    Item(
        "kandinsky",
        "hub",
        "kandinsky-community/kandinsky-2-2-decoder-inpaint",
        "Kandinsky 2.2 Inpainting's decoder: the kandinsky method, with kandinsky-prior (fetched with it; about "
        "5 GB in fp16 for the two; only when named)",
        "inpaint.models.sd_weights:PIPELINE_FILES",
        default=False,
        also=("kandinsky-prior",),
    ),
    Item(
        "kandinsky-prior",
        "hub",
        "kandinsky-community/kandinsky-2-2-prior",
        "Kandinsky 2.2's prior (prompt -> CLIP image embedding): the kandinsky method's second half",
        "inpaint.models.sd_weights:PRIOR_FILES",
        default=False,
    ),
    Item(
        "blip",
        "hub",
        "Salesforce/blip-image-captioning-base",
        "BLIP captioning: caption, train-lora's captions",
        "inpaint.captions:BLIP_FILES",
    ),
    Item("lpips", "file", "LPIPS_ALEX", "LPIPS's AlexNet backbone (bench, evaluate)"),
    Item("fid", "file", "FID_INCEPTION", "FID/KID's InceptionV3 (pytorch-fid; bench, evaluate)"),
    Item("lpips-vgg", "file", "LPIPS_VGG", "LPIPS's VGG16 backbone (only with a VGG LPIPS)", default=False),
)
_BY_NAME = {item.name: item for item in ITEMS}
_CHUNK = 1 << 20


@dataclass
class ItemStatus:
    """Where one item stands. ``status``: ``present`` (found before), ``downloaded`` (fetched now),
    ``missing`` (not here; offline, nothing was tried) or ``failed`` (a download was tried; ``error``
    says why). ``path`` is where it is, or where it goes; ``lacking`` names what is missing."""

    name: str
    source: str
    purpose: str
    status: str
    path: str | None
    lacking: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("present", "downloaded")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def name_of(repo_id: str) -> str | None:
    """The ``inpaint download`` name of hub model ``repo_id`` (``ddpm`` for ``google/ddpm-celebahq-256``), if any."""
    return next((item.name for item in ITEMS if item.kind == "hub" and item.source == repo_id), None)


def items(names: Sequence[str] = ()) -> list[Item]:
    """The items called ``names`` (in :data:`ITEMS` order, once each); the default ones when empty.

    Raises :class:`InputError` for a name that is not an item.
    """
    unknown = [name for name in names if name not in _BY_NAME]
    if unknown:
        raise InputError(f"{unknown[0]!r}: nothing to download by that name; choose from {', '.join(_BY_NAME)}")
    wanted = set(names) | {also for name in names for also in _BY_NAME[name].also}
    return [item for item in ITEMS if (item.name in wanted if names else item.default)]


def model_files(item: Item) -> ModelFiles:
    """The loader's file patterns of hub ``item``."""
    module, attribute = item.files.split(":")
    return getattr(importlib.import_module(module), attribute)


def weight_file(item: Item) -> WeightFile:
    """The :class:`~inpaint.metrics.weights.WeightFile` of file ``item``."""
    from inpaint.metrics import weights

    return getattr(weights, item.source)


# ---- what is here -----------------------------------------------------------------------------


def hub_status(item: Item, revision: str | None = None, variant: str | None = None) -> ItemStatus:
    """Whether hub ``item`` is in the local Hugging Face cache, complete, without using the network."""
    from huggingface_hub import constants, errors, snapshot_download

    files = model_files(item)
    folder = Path(constants.HF_HUB_CACHE) / f"models--{item.source.replace('/', '--')}"
    try:
        snapshot = Path(
            snapshot_download(
                item.source, allow_patterns=files.patterns(variant), revision=revision, local_files_only=True
            )
        )
    except errors.LocalEntryNotFoundError as e:
        partial = getattr(e, "snapshot_path", None)  # huggingface_hub's IncompleteSnapshotError
        if partial is None:
            at = f" at revision {revision}" if revision else ""
            return ItemStatus(
                item.name,
                item.source,
                item.purpose,
                "missing",
                str(folder),
                [f"everything (not in the Hugging Face cache{at})"],
            )
        snapshot = Path(partial)
        lacking = files.missing(snapshot, variant) or ["files listed by the hub but not in the cache"]
        return ItemStatus(item.name, item.source, item.purpose, "missing", str(snapshot), lacking)
    lacking = files.missing(snapshot, variant)
    return ItemStatus(item.name, item.source, item.purpose, "missing" if lacking else "present", str(snapshot), lacking)


def file_status(item: Item) -> ItemStatus:
    """Whether file ``item`` is where the metrics look for it (:func:`~inpaint.metrics.weights.resolve_weights`)."""
    from inpaint.metrics.weights import MetricWeightsMissing, hub_cache_path, resolve_weights

    weights = weight_file(item)
    try:
        found = resolve_weights(weights)
    except MetricWeightsMissing:
        return ItemStatus(
            item.name, weights.url, item.purpose, "missing", str(hub_cache_path(weights)), [weights.filename]
        )
    return ItemStatus(item.name, weights.url, item.purpose, "present", str(found))


def status(selected: Sequence[Item], revision: str | None = None, variant: str | None = None) -> list[ItemStatus]:
    """Where each of ``selected`` stands, from local files alone."""
    return [hub_status(item, revision, variant) if item.kind == "hub" else file_status(item) for item in selected]


# ---- fetching ---------------------------------------------------------------------------------


def hash_prefix(filename: str) -> str | None:
    """The SHA-256 prefix torch.hub names a file with: the hex digits after its last ``-``
    (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``); ``None`` when the name carries none."""
    match = re.search(r"-([0-9a-f]{6,64})\.[^.]+$", filename)
    return match.group(1) if match else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _range_start(content_range: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` header."""
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def fetch_file(url: str, destination: Path, progress: Progress | None = None, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination``, resumably, and check it; returns ``destination``.

    Bytes go to ``destination.part`` first. A ``.part`` left by an interrupted run is resumed with
    an HTTP ``Range`` request (a server that ignores it sends the whole file again, which replaces
    the part). The finished file must have a SHA-256 starting with the prefix in its name
    (:func:`hash_prefix`); only then is it renamed into place, atomically. A file that does not
    match is deleted, and after a resumed download the whole file is fetched once more before
    giving up. Raises :class:`InpaintError` (one line) when the server cannot be reached, answers
    with an error, the transfer stops early (the ``.part`` is kept for the next run), or the hash
    does not match.
    """
    import urllib.error
    import urllib.request

    from inpaint import __version__, atomic

    progress = progress or NullProgress()
    expected = hash_prefix(destination.name)
    part = destination.with_name(destination.name + ".part")
    atomic.ensure_folder(destination.parent)
    while True:
        have = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": f"inpaint/{__version__}", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not have:
                raise InpaintError(f"{url}: the server answered HTTP {e.code} ({e.reason})") from None
            response = None  # "range not satisfiable": the part already holds the whole file
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise InpaintError(
                f"{url}: cannot download ({reason}); check the network, or run this where it is reachable"
            ) from None
        if response is not None:
            with response:
                resumed = (
                    bool(have)
                    and response.status == 206
                    and _range_start(response.headers.get("Content-Range")) == have
                )
                if not resumed:
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length and length.isdigit() else None
                progress.start(f"Downloading {destination.name}", total)
                progress.advance(have)
                written = have
                try:
                    with open(part, "ab" if resumed else "wb") as f:
                        while chunk := response.read(_CHUNK):
                            f.write(chunk)
                            written += len(chunk)
                            progress.advance(len(chunk))
                except OSError as e:  # a dropped connection or a full disk: the part is kept
                    raise InpaintError(
                        f"{url}: the download stopped after {written} bytes ({e}); run the same "
                        "command again to resume it"
                    ) from None
                finally:
                    progress.finish()
                if total is not None and written < total:
                    raise InpaintError(
                        f"{url}: the download stopped after {written} of {total} bytes; run the same "
                        "command again to resume it"
                    )
        digest = _sha256(part)
        if expected is None or digest.startswith(expected):
            os.replace(part, destination)
            return destination
        part.unlink()
        if have:  # the part kept from before may be what was wrong: fetch the whole file once more
            continue
        raise InpaintError(
            f"{url}: refused the download: its SHA-256 starts with {digest[: len(expected)]}, not "
            f"{expected} as its name says (deleted; a corrupt transfer or a changed file)"
        )


def download(
    names: Sequence[str] = (),
    *,
    revision: str | None = None,
    variant: str | None = None,
    offline: bool | None = None,
    urls: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> list[ItemStatus]:
    """Fetch the items called ``names`` (default: :data:`ITEMS` marked ``default``) that are not here yet.

    ``revision`` (a branch, tag or commit) needs exactly one hub model among ``names``;
    ``variant`` (``fp16``) applies to every hub model. ``offline`` (default: ``HF_HUB_OFFLINE``)
    fetches nothing and only reports. ``urls`` maps a file item's name to another address to fetch
    it from (a mirror). A failed download does not stop the others: its status says why.
    Raises :class:`InputError` for an unknown name or a misplaced ``revision``.
    """
    from huggingface_hub import constants

    from inpaint.models import hub
    from inpaint.models.weight_files import check_revision, check_variant

    selected = items(names)
    check_variant(variant)
    check_revision(revision)
    if revision is not None and sum(item.kind == "hub" for item in selected) != 1:
        raise InputError(
            f"--revision {revision}: a revision belongs to one repository; name one hub model "
            f"({', '.join(item.name for item in ITEMS if item.kind == 'hub')})"
        )
    offline = bool(constants.HF_HUB_OFFLINE) if offline is None else offline
    results = []
    for item, current in zip(selected, status(selected, revision, variant)):
        if current.ok or offline:
            results.append(current)
            continue
        try:
            if item.kind == "hub":
                hub.fetch(item.source, model_files(item), revision, variant)
                current = hub_status(item, revision, variant)
                if current.ok:
                    current.status = "downloaded"
                else:
                    current.status, current.error = (
                        "failed",
                        "the repository does not have " + ", ".join(current.lacking),
                    )
            else:
                url = (urls or {}).get(item.name, current.source)
                fetch_file(url, Path(current.path), progress)
                current.status, current.lacking = "downloaded", []
        except InpaintError as e:
            current.status, current.error = "failed", str(e)
        results.append(current)
    return results
