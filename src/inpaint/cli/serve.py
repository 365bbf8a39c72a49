"""``inpaint serve``: a local web page to brush a mask, run methods side by side, and an HTTP API."""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
from typing import Annotated

import typer

from inpaint.cli import console, options
from inpaint.errors import InputError

DEFAULT_PORT = 8765


def serve(
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; anything but loopback lets other machines in."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).")] = DEFAULT_PORT,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="A method to offer (repeat for several; the first is preselected). Default: every method.",
        ),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            "-w",
            help="Weights of a diffusion method as METHOD=DIR_OR_HUB_ID (repeatable), or DIR_OR_HUB_ID alone "
            "with a single --model. Default: as complete (runs/ddpm, the default bases).",
        ),
    ] = None,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora",
            help="sd: a LoRA to offer, [LABEL=]PATH (a train-lora run folder or .safetensors file; repeatable; "
            "the first is used unless a request picks another or none).",
        ),
    ] = None,
    device: options.Device = "auto",
    dtype: Annotated[
        str, typer.Option("--dtype", help="Diffusion methods: auto, fp32, fp16 or bf16 (as for complete).")
    ] = "auto",
    ema: Annotated[
        bool, typer.Option("--ema/--no-ema", help="ddpm, sd --lora: a run's EMA weights (default) or its raw ones.")
    ] = True,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            "--max-upload-mb",
            help="Largest request body accepted (image and mask together), in MiB.",
            callback=options.finite,
        ),
    ] = 100.0,
    max_waiting: Annotated[
        int, typer.Option("--max-waiting", help="Jobs that may wait per device; more are refused (503) until one ends.")
    ] = 32,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in a web browser.")] = False,
) -> None:
    """Serve a web page to brush masks and compare methods, and an HTTP API (/api/v1).

    Models load on first use and stay loaded; jobs run one at a time per device, others wait
    in a queue. A request never names files: weights and LoRAs are chosen here.

    Examples:

    ```
    inpaint serve                                  # http://127.0.0.1:8765
    inpaint serve -m sd -m telea --lora runs/lora --open
    curl -F image=@photo.png -F mask=@mask.png -F model=telea http://127.0.0.1:8765/api/v1/complete -o out.png
    ```
    """
    import dataclasses

    from inpaint import models
    from inpaint.models.base import MethodOptions
    from inpaint.serve.settings import ServerSettings, parse_lora_specs, parse_weights_specs

    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: must be in 0..65535")
    if max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb {max_upload_mb}: must be a positive number")
    if max_waiting < 1:
        raise InputError(f"--max-waiting {max_waiting}: must be at least 1")
    methods = list(dict.fromkeys(model)) if model else None
    for name in methods or []:
        models.get_method(name)  # an unknown name lists the choices
    settings = ServerSettings(
        methods=methods,
        default=methods[0] if methods else None,
        options=dataclasses.replace(MethodOptions(), device=device, dtype=dtype, ema=ema),
        weights=parse_weights_specs(weights or [], methods),
        loras=parse_lora_specs(lora or []),
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_waiting=max_waiting,
    )
    _check_files(settings)
    listening = _bind(host, port)
    run_server(settings, listening, open_browser=open_browser)


def _check_files(settings) -> None:
    """Refuse, before listening, weights and LoRAs that are not there (a typo found at once)."""
    from inpaint import models

    for name, path in settings.weights.items():
        reason = models.get_method(name).why_unavailable(settings.load_options(name))
        if reason is not None:
            raise InputError(f"--weights {path}: {reason.message}")
    for label in settings.loras:
        reason = models.get_method("sd").why_unavailable(settings.load_options("sd", label))
        if reason is not None and reason.kind == "options" and "--lora" in reason.message:
            raise InputError(reason.message)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a port in use or an unknown host is one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise InputError(f"--host {host}: cannot be resolved ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        hint = "; choose another with --port (0: any free one)" if e.errno in (98, 48) else ""
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(settings, listening: socket.socket, *, open_browser: bool = False) -> None:
    """Serve ``settings`` on the bound socket until Ctrl-C (or SIGTERM); returns when stopped."""
    import uvicorn

    from inpaint.serve.app import create_app

    host, port = listening.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if not _is_loopback(host):
        console.warn(
            f"listening on {host}: anyone who can reach this machine can use the server "
            "(no authentication); --host 127.0.0.1 keeps it local"
        )
        if ipaddress.ip_address(host).is_unspecified if _is_ip(host) else False:
            url = f"http://127.0.0.1:{port}/"
    console.info(f"serving on {url} (API: {url}api/v1, schema: {url}openapi.json); Ctrl-C stops")
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM (waiting jobs cancelled, the running one at
    # its next step), then raises the signal again for the handlers it found: ours end the command
    # with "stopped" and exit 0, the way to stop a server rather than a failure.
    previous = signal.signal(signal.SIGTERM, _stop_requested)
    try:
        server.run(sockets=[listening])
    except (KeyboardInterrupt, _StopRequested):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.info("stopped")


class _StopRequested(Exception):
    """SIGTERM, once the server has shut down."""


def _stop_requested(signum, frame) -> None:
    raise _StopRequested


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
