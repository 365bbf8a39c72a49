"""``inpaint doctor``: versions, devices, cached models and metric weights on this machine."""

from __future__ import annotations

import json

import typer

from inpaint.cli import console, options
from inpaint.names import printable


def doctor(json_output: options.Json = False, config: options.Config = None) -> None:
    """Show what this machine can run, offline: package versions, devices, which known models are in
    the local Hugging Face cache, which LPIPS/FID weight files are present, and how to get the rest.
    """
    from inpaint.doctor import diagnose

    report = diagnose()
    if json_output:
        typer.echo(json.dumps(report.to_dict()))
        return
    _print(report)


def _print(report) -> None:
    """Short tables (they must fit 80 columns), then the instructions as full, unwrapped lines."""
    from rich.table import Table

    out = console.stdout
    versions = Table("package", "version", title=f"Python {report.python}")
    for name, version in report.packages.items():
        versions.add_row(name, version or "[red]not installed[/red]")
    out.print(versions)

    devices = Table("device", "details", title="Devices")
    for device in report.devices:
        details = {k: v for k, v in device.items() if k != "device"}
        devices.add_row(device["device"], ", ".join(f"{k} {v}" for k, v in details.items()))
    out.print(devices)

    offline = " (HF_HUB_OFFLINE=1)" if report.offline else ""
    # Paths come from the environment and may not be UTF-8: shown with their odd bytes as \xNN.
    models = Table(title=f"Hugging Face cache: {printable(str(report.hub_cache))}{offline}")
    models.add_column("model", overflow="fold")
    models.add_column("status")
    models.add_column("used by", overflow="fold")
    for row in report.models:
        models.add_row(row["repo_id"], row["status"], row["purpose"])
    out.print(models)

    weights = Table(title="Metric weights")
    weights.add_column("file", overflow="fold")
    weights.add_column("for")
    weights.add_column("status")
    for row in report.metric_weights:
        found = f"found: {printable(str(row['found']))}" if row["found"] else "missing"
        weights.add_row(row["file"], row["purpose"], found)
    out.print(weights)

    methods = Table("method", "available", title="Methods (local files)")
    for row in report.methods:
        methods.add_row(row["method"], "yes" if row["available"] else "no (see below)")
    out.print(methods)

    todo = [f"- {row['repo_id']} ({row['status']}): {row['get']}" for row in report.models if row["get"]]
    todo += [f"- {row['file']}: {row['get']}" for row in report.metric_weights if row["get"]]
    todo += [f"- method {row['method']}: {row['reason']}" for row in report.methods if not row["available"]]
    if todo:
        typer.echo("\nHow to get what is missing:")
        for line in todo:
            typer.echo(console.one_line(line))
