"""The ``inpaint`` command line: one module per subcommand, composed in :mod:`inpaint.cli.app`.

This package is the only place that imports typer and rich.
"""
