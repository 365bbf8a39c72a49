"""Measurements of ``inpaint`` itself, one module per study, each writing its own section of docs/benchmarks.md.

Run them from the repository root as modules, ``python -m benchmarks.NAME`` (see benchmarks/README.md),
so that they share :mod:`benchmarks._report` (the machine description and the docs writer) and
:mod:`benchmarks._fixtures` (small models and synthetic data) without any path set-up. The published
model configurations they build come from :mod:`inpaint.testing`.
"""
