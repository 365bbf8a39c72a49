"""The registry of completion methods, by name.

Each method is registered with the import path of its :class:`~inpaint.models.base.Inpainter`
class, so listing methods (``inpaint complete --help``) imports nothing heavy. ``priority``
orders methods when the user names none: the best method whose weights are present wins.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inpaint.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from inpaint.models.base import Inpainter, MethodOptions, Unavailable


@dataclass(frozen=True)
class MethodInfo:
    """A registered method.

    ``target`` is ``"module:ClassName"``; the class is built as ``Class(options)``. ``heavy``
    marks diffusion methods that take minutes per image on a CPU (the demo leaves them out there
    unless asked for).
    ``unavailable`` returns ``None`` when the method can run with these options on this machine,
    otherwise a one-line reason (say, which weights are missing and how to provide them);
    :meth:`why_unavailable` gives it as a structured :class:`~inpaint.models.base.Unavailable`.
    ``reads`` names the :class:`~inpaint.models.base.MethodOptions` fields the method uses
    besides ``device`` (``None``: not declared); :meth:`ignored_options` lists the others set.
    """

    name: str
    summary: str
    target: str
    priority: int = 0
    heavy: bool = False
    unavailable: Callable[[MethodOptions], str | None] = lambda options: None
    reads: frozenset[str] | None = None

    def ignored_options(self, options: MethodOptions) -> list[str]:
        """The command-line flags set in ``options`` that this method does not use (``--lora``
        for telea, say), so the user can be told rather than left to think they took effect."""
        import dataclasses

        from inpaint.models.base import MethodOptions

        if self.reads is None:
            return []
        defaults = MethodOptions()
        # A flag on by default is set by turning it off: name it as typed (--no-ema).
        return [
            f"--{'no-' if getattr(defaults, f.name) is True else ''}{f.name.replace('_', '-')}"
            for f in dataclasses.fields(options)
            if f.name not in self.reads | {"device", "local_only"}
            and getattr(options, f.name) != getattr(defaults, f.name)
        ]

    def why_unavailable(self, options: MethodOptions) -> Unavailable | None:
        """``None`` when the method can run with ``options`` here, else the reason as an
        :class:`~inpaint.models.base.Unavailable`, whose ``kind`` says whether the method's own
        weights are missing or what the options name is unusable."""
        from inpaint.models.base import WEIGHT_OPTIONS, Unavailable

        message = self.unavailable(options)
        if message is None:
            return None
        named = any(getattr(options, option) is not None for option in WEIGHT_OPTIONS)
        return Unavailable(method=self.name, kind="options" if named else "weights", message=message)

    def load(self, options: MethodOptions) -> Inpainter:
        """Import and build the method. Raises :class:`~inpaint.models.base.MethodUnavailable`
        (an :class:`InputError`) if it cannot run here."""
        from inpaint.models.base import MethodUnavailable

        reason = self.why_unavailable(options)
        if reason is not None:
            raise MethodUnavailable(reason)
        module_name, class_name = self.target.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(options)


_METHODS: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> None:
    """Add (or replace) a method in the registry."""
    _METHODS[info.name] = info


def method_names() -> list[str]:
    """Registered names, best first (by priority, then name)."""
    return [m.name for m in sorted(_METHODS.values(), key=lambda m: (-m.priority, m.name))]


def get_method(name: str) -> MethodInfo:
    """The registered method called ``name``; :class:`InputError` listing the choices otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise InputError(f"unknown method {name!r}; choose from {', '.join(method_names())}") from None


def load_inpainter(name: str, options: MethodOptions | None = None) -> Inpainter:
    """Build the method called ``name`` with ``options`` (defaults when omitted)."""
    from inpaint.models.base import MethodOptions

    return get_method(name).load(options or MethodOptions())


def best_available(
    options: MethodOptions | None = None,
    adjust: Callable[[str, MethodOptions], MethodOptions] | None = None,
) -> MethodInfo:
    """The highest-priority method that can run with ``options`` with weights already on this
    machine (choosing a method for the user never starts a download).

    ``adjust(name, options)``, when given, fills in defaults for method ``name`` before its check
    (the CLI's project run folders, :func:`inpaint.project.method_defaults`).
    """
    import dataclasses

    from inpaint.models.base import MethodOptions

    options = dataclasses.replace(options or MethodOptions(), local_only=True)
    for name in method_names():
        if _METHODS[name].unavailable(adjust(name, options) if adjust else options) is None:
            return _METHODS[name]
    raise InputError("no completion method is available")  # pragma: no cover - classical always are


register(
    MethodInfo(
        name="biharmonic",
        summary="biharmonic smooth interpolation (scikit-image); no weights",
        target="inpaint.models.classical:Biharmonic",
        priority=10,
        reads=frozenset(),
    )
)
register(
    MethodInfo(
        name="telea",
        summary="fast marching method of Telea 2004 (OpenCV); no weights",
        target="inpaint.models.classical:Telea",
        priority=5,
        reads=frozenset(),
    )
)
register(
    MethodInfo(
        name="navier-stokes",
        summary="Navier-Stokes fluid-based inpainting of Bertalmio et al. 2001 (OpenCV); no weights",
        target="inpaint.models.classical:NavierStokes",
        priority=4,
        reads=frozenset(),
    )
)
register(
    MethodInfo(
        name="ddpm",
        summary="the study's DDPM fine-tuned for completion (7-channel UNet); needs --weights from train-ddpm",
        target="inpaint.models.ddpm:DDPMInpainter",
        priority=30,
        heavy=True,
        unavailable=lambda options: importlib.import_module("inpaint.models.ddpm").ddpm_unavailable(options),
        # The SD memory levers are refused by the method itself, with a reason: not listed as ignored.
        reads=frozenset(
            {
                "weights",
                "ema",
                "revision",
                "variant",
                "sampler",
                "steps",
                "dtype",
                "channels_last",
                "compile",
                "attention_slicing",
                "vae_slicing",
                "vae_tiling",
                "cpu_offload",
            }
        ),
    )
)
register(
    MethodInfo(
        name="repaint",
        summary="RePaint (Lugmayr et al. 2022), zero-shot with an unconditional DDPM; slow (2,410 evaluations)",
        target="inpaint.models.ddpm:RePaintInpainter",
        priority=20,
        heavy=True,
        unavailable=lambda options: importlib.import_module("inpaint.models.ddpm").repaint_unavailable(options),
        reads=frozenset(
            {
                "weights",
                "revision",
                "variant",
                "sampler",
                "steps",
                "jump_length",
                "jump_n_sample",
                "dtype",
                "channels_last",
                "compile",
                "attention_slicing",
                "vae_slicing",
                "vae_tiling",
                "cpu_offload",
            }
        ),
    )
)
#: What the latent-diffusion methods read: the base and LoRA, prompts, sampling, the levers.
_SD_READS = frozenset(
    {
        "weights",
        "revision",
        "variant",
        "lora",
        "ema",
        "prompt",
        "negative_prompt",
        "guidance",
        "strength",
        "sampler",
        "steps",
        "mask_blur",
        "crop_padding",
        "captions",
        "dtype",
        "channels_last",
        "compile",
        "attention_slicing",
        "vae_slicing",
        "vae_tiling",
        "cpu_offload",
    }
)

register(
    MethodInfo(
        name="sd",
        summary="the study's Stable Diffusion 1.5 Inpainting (+ a LoRA from train-lora with --lora); 50 steps, "
        "guidance 7.5",
        target="inpaint.models.sd:SDInpainter",
        priority=40,
        heavy=True,
        unavailable=lambda options: importlib.import_module("inpaint.models.sd_weights").sd_unavailable(options),
        reads=_SD_READS,
    )
)
register(
    MethodInfo(
        name="sdxl",
        summary="Stable Diffusion XL Inpainting 0.1 (+ a LoRA with --lora), 1024 px native; 50 steps, guidance 7.5",
        target="inpaint.models.sd:SDXLInpainter",
        priority=35,
        heavy=True,
        unavailable=lambda options: importlib.import_module("inpaint.models.sd_weights").sd_unavailable(
            options, importlib.import_module("inpaint.models.sd_weights").DEFAULT_SDXL_BASE
        ),
        reads=_SD_READS,
    )
)
register(
    MethodInfo(
        name="flux",
        summary="FLUX.1 Fill dev (gated on the hub), 1024 px native; 50 steps, distilled guidance 30 "
        "(one evaluation a step)",
        target="inpaint.models.flux:FluxFillInpainter",
        priority=33,
        heavy=True,
        unavailable=lambda options: importlib.import_module("inpaint.models.sd_weights").sd_unavailable(
            options, importlib.import_module("inpaint.models.sd_weights").DEFAULT_FLUX_BASE, ("flux",)
        ),
        # --negative-prompt, --crop-padding and --lora are refused by the method itself, with a
        # reason; the EMA switch (of LoRAs) and attention slicing (no sliceable attention in FLUX's
        # transformer) are ignored.
        reads=_SD_READS - {"ema", "attention_slicing"},
    )
)
register(
    MethodInfo(
        name="kandinsky",
        summary="Kandinsky 2.2 Inpainting (a prior, then a decoder), 768 px native; 50 steps, guidance 4",
        target="inpaint.models.kandinsky:KandinskyInpainter",
        priority=31,
        heavy=True,
        unavailable=lambda options: importlib.import_module("inpaint.models.sd_weights").kandinsky_unavailable(options),
        # --strength below 1, --crop-padding, --lora and the slicing levers are refused by the
        # method itself, with a reason; the EMA switch (of LoRAs) is ignored.
        reads=_SD_READS - {"ema"},
    )
)
