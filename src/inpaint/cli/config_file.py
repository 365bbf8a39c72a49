"""``--config file.toml``: option values from a file, overridden by flags on the command line.

Keys are the command's long option names, with dashes or underscores (``resize-mask = true``).
They may sit at the top level or in a table named after the command, which wins::

    seed = 3

    [complete]
    model = "biharmonic"
    resize-mask = true

Tables named after other subcommands are ignored, and so are top-level keys that are options of
other commands only (``seed`` for ``inpaint doctor``), so one file can serve several commands. A
key that is an option of no command, or a key in the command's own table that is not one of its
options, is an error: a typo must not be silently ignored. A list goes to a repeatable option
(a single value is taken as a one-item list); a list for a single-valued option is an error.

Without ``--config``, a file named ``inpaint.toml`` in the current directory is read the same way
(the project's defaults, beside its ``data/`` and ``runs/``; see :mod:`inpaint.project`); the
command says so on stderr. ``--config FILE`` reads FILE instead (``--config /dev/null``: none).

Mechanism: ``--config`` is an eager option, processed before the others, whose callback fills the
context's ``default_map`` — the values click uses for options absent from the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The project's option file, read from the current directory when ``--config`` is not given.
PROJECT_CONFIG = Path("inpaint.toml")
#: Subcommands whose tables a config file may carry (others' tables are skipped, not errors).
SUBCOMMANDS = ("make-masks", "complete", "demo", "caption", "train-ddpm", "train-lora", "bench", "doctor", "download")


def read_config(path: Path) -> dict[str, Any]:
    """Parse a TOML file; errors become ``typer.BadParameter`` naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except UnicodeDecodeError:
        raise typer.BadParameter(
            f"{path}: not UTF-8 text (TOML files are UTF-8; re-save it as such)", param_hint="--config"
        ) from None
    except FileNotFoundError:
        raise typer.BadParameter(f"{path}: no such file", param_hint="--config") from None
    except OSError as e:
        raise typer.BadParameter(f"{path}: cannot read ({e.strerror or e})", param_hint="--config") from None
    except tomllib.TOMLDecodeError as e:
        raise typer.BadParameter(f"{path}: not valid TOML ({e})", param_hint="--config") from None


def defaults_for(
    command: str,
    data: dict[str, Any],
    options: dict[str, tuple[str, bool]],
    path: Path,
    elsewhere: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The ``default_map`` for ``command`` from parsed TOML ``data``.

    ``options`` maps each accepted key (a long flag without dashes, underscored: ``resize_mask``,
    ``json``) to (the parameter it sets, whether it takes several values); ``elsewhere`` holds the
    keys of the other subcommands' options, which the top level may carry for them. Raises
    ``typer.BadParameter`` for any other key or a value of the wrong shape.
    """

    def bad(message: str) -> typer.BadParameter:
        return typer.BadParameter(f"{path}: {message}", param_hint="--config")

    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in SUBCOMMANDS:
            if not isinstance(value, dict):
                raise bad(f"{key!r} names a subcommand: write its settings as a table, [{key}]")
            continue
        if isinstance(value, dict):
            raise bad(f"unknown table [{key}]; tables must be named after a subcommand")
        if key.replace("-", "_") not in options and key.replace("-", "_") in elsewhere:
            continue  # another command's option, in a file shared by several commands
        values[key] = value
    values.update(data.get(command, {}))
    normalised: dict[str, Any] = {}
    for key, value in values.items():
        name, multiple = options.get(key.replace("-", "_"), (None, False))
        if name is None or name == "config":
            raise bad(f"{key!r} is not an option of 'inpaint {command}'")
        if multiple and not isinstance(value, list):
            value = [value]  # preset = "lama-thin" for a repeatable --preset
        elif not multiple and isinstance(value, list):
            raise bad(f"{key!r} takes one value, got a list")
        normalised[name] = value
    return normalised


def _option_keys(command) -> dict[str, tuple[str, bool]]:
    """Config keys of a click command: long flags without dashes -> (parameter, repeatable)."""
    return {
        flag.lstrip("-").replace("-", "_"): (p.name, bool(getattr(p, "multiple", False)))
        for p in command.params
        if p.param_type_name == "option" and p.name
        for flag in p.opts
        if flag.startswith("--")
    }


def config_callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager ``--config`` callback: load the file (default: ``./inpaint.toml``) into ``ctx.default_map``."""
    if ctx.resilient_parsing:
        return value
    if value is None:
        if not PROJECT_CONFIG.is_file():
            return value
        from inpaint.cli import console

        console.info(f"reading option defaults from ./{PROJECT_CONFIG} (--config FILE reads another)")
        value = PROJECT_CONFIG
    root = ctx.find_root().command
    others = getattr(root, "commands", {})
    elsewhere = frozenset(
        key for name, command in others.items() if name != ctx.info_name for key in _option_keys(command)
    )
    defaults = defaults_for(ctx.info_name or "", read_config(value), _option_keys(ctx.command), value, elsewhere)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value
