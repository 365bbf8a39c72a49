"""``--config file.toml``: option values from a file, overridden by flags on the command line.

Keys are the command's long option names, with dashes or underscores (``resize-mask = true``).
They may sit at the top level or in a table named after the command, which wins::

    seed = 3

    [complete]
    model = "biharmonic"
    resize-mask = true

Tables named after other subcommands are ignored, so one file can serve several commands. A key
that is not an option of the command is an error: a typo must not be silently ignored.

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

#: Subcommands whose tables a config file may carry (others' tables are skipped, not errors).
SUBCOMMANDS = ("make-masks", "complete", "demo", "caption", "train-ddpm", "train-lora", "bench", "doctor")


def read_config(path: Path) -> dict[str, Any]:
    """Parse a TOML file; errors become ``typer.BadParameter`` naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise typer.BadParameter(f"{path}: no such file", param_hint="--config") from None
    except OSError as e:
        raise typer.BadParameter(f"{path}: cannot read ({e.strerror or e})", param_hint="--config") from None
    except tomllib.TOMLDecodeError as e:
        raise typer.BadParameter(f"{path}: not valid TOML ({e})", param_hint="--config") from None


def defaults_for(command: str, data: dict[str, Any], options: dict[str, str], path: Path) -> dict[str, Any]:
    """The ``default_map`` for ``command`` from parsed TOML ``data``.

    ``options`` maps each accepted key (a long flag without dashes, underscored: ``resize_mask``,
    ``json``) to the parameter it sets. Raises ``typer.BadParameter`` for any other key.
    """
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SUBCOMMANDS:
                raise typer.BadParameter(
                    f"{path}: unknown table [{key}]; tables must be named after a subcommand",
                    param_hint="--config",
                )
            continue
        values[key] = value
    section = data.get(command, {})
    values.update(section)
    normalised: dict[str, Any] = {}
    for key, value in values.items():
        name = options.get(key.replace("-", "_"))
        if name is None or name == "config":
            raise typer.BadParameter(
                f"{path}: {key!r} is not an option of 'inpaint {command}'", param_hint="--config"
            )
        normalised[name] = value
    return normalised


def config_callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager ``--config`` callback: load the file into ``ctx.default_map``."""
    if value is None or ctx.resilient_parsing:
        return value
    keys = {
        flag.lstrip("-").replace("-", "_"): p.name
        for p in ctx.command.params
        if p.param_type_name == "option" and p.name
        for flag in p.opts
        if flag.startswith("--")
    }
    defaults = defaults_for(ctx.info_name or "", read_config(value), keys, value)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value
