"""The ``inpaint`` executable: composes the subcommands and turns failures into exit codes.

Exit codes: 0 success; 1 a failure at run time (or some images of a folder failed); 2 bad usage
or bad input; 130 interrupted; 128 + N stopped by signal N (143 SIGTERM, 138 SIGUSR1: the
resumable commands stop cleanly, :mod:`inpaint.cli.stopping`). Errors are one ``error: …`` line
on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from typing import Annotated

import typer

from inpaint import __version__
from inpaint.cli import (
    bench,
    caption,
    complete,
    console,
    demo,
    doctor,
    download,
    make_masks,
    serve,
    stopping,
    streams,
    train_ddpm,
    train_lora,
)
from inpaint.errors import InpaintError

app = typer.Typer(
    name="inpaint",
    help="Diffusion-based image completion: make masks, complete images, train and benchmark models.\n\n"
    "Masks are white (1) where the image is to be filled.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _debug_from_environment() -> bool:
    """INPAINT_DEBUG=1 (or true/yes/on) turns debugging on; unset, empty, 0, false, no, off do not."""
    return os.environ.get("INPAINT_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


_debug = {"enabled": _debug_from_environment()}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"inpaint {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs (also INPAINT_DEBUG=1).")
    ] = False,
) -> None:
    """Shared set-up for every subcommand."""
    _debug["enabled"] = _debug["enabled"] or debug
    console.setup_logging(debug=_debug["enabled"])


app.command("make-masks", no_args_is_help=False)(make_masks.make_masks)
app.command("complete", no_args_is_help=True)(complete.complete)
app.command("demo")(demo.demo)
app.command("train-ddpm", no_args_is_help=True)(train_ddpm.train_ddpm)
app.command("caption", no_args_is_help=True)(caption.caption)
app.command("train-lora", no_args_is_help=True)(train_lora.train_lora)
app.command("bench", no_args_is_help=True)(bench.bench)
app.command("doctor")(doctor.doctor)
app.command("download")(download.download)
app.command("serve")(serve.serve)


@contextlib.contextmanager
def _watching_for_ctrl_c() -> Iterator[list[int]]:
    """Note a Ctrl-C that aborts the command in the yielded list (not one a command handles itself,
    like training's graceful stop, which installs its own handler); the old handler comes back."""
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield seen
        return
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    _debug["enabled"] = _debug_from_environment()
    command = typer.main.get_command(app)
    argv = bench.expand_models(sys.argv[1:] if argv is None else list(argv))
    try:
        with _watching_for_ctrl_c() as interrupted, streams.guarded_stdout():
            result = command.main(args=argv, prog_name="inpaint", standalone_mode=False)
        if result == 130 and interrupted:  # typer turns Ctrl-C into a quiet exit code 130
            console.error("interrupted")
        return result if isinstance(result, int) else 0
    except typer.TyperException as e:  # usage errors (click's, vendored by typer): exit 2
        message = e.format_message()
        if not message:  # `inpaint complete` with no arguments: the help was printed already
            return int(getattr(e, "exit_code", 2))
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        console.error(f"{message}{hint}")
        return int(getattr(e, "exit_code", 2))
    except InpaintError as e:
        if _debug["enabled"]:
            traceback.print_exc()
        console.error(str(e))
        return e.exit_code
    except stopping.Aborted as e:  # a second stop signal of one kind (inpaint.cli.stopping)
        console.error(e.message())
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        console.error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (`inpaint … | head`): nothing more to say.
        sys.stderr.close()
        return 1
    except MemoryError:
        if _debug["enabled"]:
            traceback.print_exc()
        console.error(
            "out of memory: the command needed more memory than this machine (or its limit) gives; "
            "try a smaller --batch-size or image size"
        )
        return 1
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        full = streams.describe_os_error(e)  # a full disk is not a bug: say so, without "unexpected"
        if full is not None:
            console.error(full)
            return 1
        if _debug["enabled"]:
            traceback.print_exc()
            console.error(f"unexpected {type(e).__name__}: {e}")
        else:
            console.error(f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1
