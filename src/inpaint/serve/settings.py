"""What ``inpaint serve`` offers, and how a request's fields become a method's options.

The server chooses everything that names a file (weights, LoRAs, captions) when it starts; a
request only picks among what it offers — a method by name, a LoRA by label — and sets the
options of one call: seed, steps, sampler, prompt… (:data:`CALL_FIELDS`). A request can
therefore never make the server read or write a path it names.

Field names are those of ``inpaint complete``'s options, with ``-`` or ``_``
(``negative-prompt`` or ``negative_prompt``); values arrive as text (a form) or JSON values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inpaint.errors import InputError
from inpaint.models.base import MethodOptions

#: Options of one call (:class:`MethodOptions` fields every method that reads them applies without
#: a reload, see ``Inpainter.with_options``), with their types.
CALL_FIELDS: dict[str, type] = {
    "steps": int,
    "sampler": str,
    "prompt": str,
    "negative_prompt": str,
    "guidance": float,
    "strength": float,
    "mask_blur": int,
    "crop_padding": int,
    "jump_length": int,
    "jump_n_sample": int,
}
#: How the image is read and the result made, as ``complete``'s flags of the same names.
FLAG_FIELDS = ("invert_mask", "resize_mask", "paste_back")
#: Every field a completion request may carry besides the two images.
REQUEST_FIELDS = ("model", "seed", "name", "lora", *CALL_FIELDS, *FLAG_FIELDS)
#: Default limits: a request body (both images and the fields), and jobs waiting per device.
MAX_UPLOAD_BYTES = 100 * 2**20
MAX_WAITING = 32
#: A request's ``lora`` value that asks for none of the server's LoRAs.
NO_LORA = "none"


@dataclass
class ServerSettings:
    """What the server was started with.

    ``methods``: the methods offered, best first (``None``: every registered one); ``default``: the
    one the page preselects. ``options``: the options every method loads with (device, dtype,
    levers). ``weights``: a method's weights (hub id or folder) by method name. ``loras``: LoRA
    files or run folders by label; sd uses the first unless a request names another or ``none``.
    """

    methods: list[str] | None = None
    default: str | None = None
    options: MethodOptions = field(default_factory=MethodOptions)
    weights: dict[str, str] = field(default_factory=dict)
    loras: dict[str, str] = field(default_factory=dict)
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_waiting: int = MAX_WAITING

    def offered(self) -> list[str]:
        from inpaint import models

        return list(self.methods) if self.methods else models.method_names()

    def default_method(self) -> str:
        """The method a request without ``model`` gets: ``default``, else the first offered method
        that can run here with weights already on this machine."""
        from inpaint import models

        if self.default:
            return self.default
        offered = self.offered()
        for name in offered:
            options = dataclasses.replace(self.load_options(name), local_only=True)
            if models.get_method(name).why_unavailable(options) is None:
                return name
        return offered[0]

    def load_options(self, method: str, lora: str | None = None) -> MethodOptions:
        """The options ``method`` loads with: the server's, its weights, the LoRA labelled ``lora``
        (sd; ``None``: the first, :data:`NO_LORA`: none), and the project's run folders
        (``runs/ddpm``, ``runs/lora``) where nothing else was named, as ``complete`` takes them."""
        from inpaint import project

        options = dataclasses.replace(self.options, weights=self.weights.get(method, self.options.weights))
        if method == "sd":
            label = lora if lora is not None else next(iter(self.loras), None)
            if label is not None and label != NO_LORA:
                options = dataclasses.replace(options, lora=self.loras[label])
            if label == NO_LORA:
                return options  # not the project's LoRA either
        return project.method_defaults(method, options)[0]


@dataclass
class CompletionRequest:
    """A request's choices, parsed and checked (the images travel beside it)."""

    model: str
    seed: int = 0
    #: Seeds the image with ``seed`` as a file's stem does for ``complete`` (the upload's file name).
    name: str = "image"
    lora: str | None = None
    call: dict[str, object] = field(default_factory=dict)
    invert_mask: bool = False
    resize_mask: bool = False
    paste_back: bool = True
    #: Fields given that the chosen method does not read (reported, not applied).
    ignored: list[str] = field(default_factory=list)


def parse_lora_specs(specs: Sequence[str]) -> dict[str, str]:
    """``--lora [LABEL=]PATH`` values as {label: path}; the label defaults to the file's stem or
    the folder's name. Raises :class:`InputError` for a clash or a reserved label."""
    loras: dict[str, str] = {}
    for spec in specs:
        label, _, path = spec.partition("=") if _has_label(spec) else ("", "", spec)
        label = label or Path(path).stem or Path(path).name
        if label == NO_LORA:
            raise InputError(f"--lora {spec}: {NO_LORA!r} means no LoRA; label it otherwise (--lora NAME=PATH)")
        if label in loras:
            raise InputError(f"--lora {spec}: the label {label!r} is taken; label it otherwise (--lora NAME=PATH)")
        loras[label] = path
    return loras


def parse_weights_specs(specs: Sequence[str], methods: Sequence[str] | None) -> dict[str, str]:
    """``--weights [METHOD=]PATH`` values as {method: weights}; without ``METHOD=`` they belong to
    the single ``--model`` given. Raises :class:`InputError` otherwise."""
    from inpaint import models

    weights: dict[str, str] = {}
    for spec in specs:
        method, _, path = spec.partition("=") if _has_label(spec) else ("", "", spec)
        if not method:
            if not methods or len(methods) != 1:
                raise InputError(f"--weights {spec}: say which method it is for, e.g. --weights ddpm={spec}")
            method = methods[0]
        models.get_method(method)  # an unknown name lists the choices
        weights[method] = path
    return weights


def _has_label(spec: str) -> bool:
    """``name=path`` (a label first) rather than a path that contains ``=``."""
    return re.match(r"^[A-Za-z0-9_.-]+=", spec) is not None and not Path(spec).exists()


def parse_request(fields: Mapping[str, object], settings: ServerSettings, *, filename: str | None) -> CompletionRequest:
    """A request's fields (form text or JSON values) as a :class:`CompletionRequest`.

    Raises :class:`InputError` naming the field for an unknown field, a value of the wrong type,
    a method not offered or a LoRA label not known. ``filename``, the uploaded image's name, gives
    the default ``name`` (its stem), as ``complete`` seeds an image by its file's stem.
    """
    from inpaint import models

    given = {key.replace("-", "_"): value for key, value in fields.items()}
    unknown = sorted(set(given) - set(REQUEST_FIELDS))
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r}; a request may set {', '.join(REQUEST_FIELDS)}")
    offered = settings.offered()
    model = _text("model", given.get("model")) or settings.default_method()
    if model not in offered:
        raise InputError(f"model {model!r} is not offered here; choose from {', '.join(offered)}")
    info = models.get_method(model)
    reads = info.reads if info.reads is not None else frozenset(CALL_FIELDS) | {"lora"}
    request = CompletionRequest(model=model)
    if given.get("seed") not in (None, ""):
        request.seed = _number("seed", given["seed"], int)
        if not 0 <= request.seed < 2**63:
            raise InputError(f"seed {request.seed}: must be in [0, 2**63)")
    name = _text("name", given.get("name"))
    request.name = name or (_stem(filename) if filename else "image")
    for flag in FLAG_FIELDS:
        if given.get(flag) not in (None, ""):
            setattr(request, flag, _flag(flag, given[flag]))
    for key, kind in CALL_FIELDS.items():
        value = given.get(key)
        if value is None or (value == "" and kind is not str):
            continue
        if key not in reads:
            request.ignored.append(key)
            continue
        request.call[key] = _text(key, value) if kind is str else _number(key, value, kind)
    lora = _text("lora", given.get("lora"))
    if lora:
        if "lora" not in reads:
            request.ignored.append("lora")
        elif lora != NO_LORA and lora not in settings.loras:
            known = ", ".join([NO_LORA, *settings.loras])
            raise InputError(f"lora {lora!r} is not offered here; choose from {known}")
        else:
            request.lora = lora
    return request


def request_options(request: CompletionRequest, settings: ServerSettings) -> MethodOptions:
    """The options of ``request``'s method for this call: its load options and the call's fields."""
    return dataclasses.replace(settings.load_options(request.model, request.lora), **request.call)


def _stem(filename: str) -> str:
    """The stem of an uploaded file's name, whatever path a browser or script sent with it."""
    base = re.split(r"[\\/]", filename)[-1]
    return Path(base).stem or "image"


def _text(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{key}: expected text, got {type(value).__name__}")
    return value


def _number(key: str, value: object, kind: type) -> int | float:
    if isinstance(value, bool):
        raise InputError(f"{key}: expected a number, got {value!r}")
    try:
        if kind is int:
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return int(value) if isinstance(value, int) else int(str(value).strip())
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        whole = "a whole number" if kind is int else "a number"
        raise InputError(f"{key}: {value!r} is not {whole}") from None
    if not math.isfinite(number):
        raise InputError(f"{key}: {value!r} is not a finite number")
    return number


def _flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{key}: {value!r} is not true or false")
