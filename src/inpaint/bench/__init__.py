"""Benchmarking completion methods on one test set, fairly and reproducibly (``inpaint bench``).

>>> from inpaint.bench import BenchConfig, run_bench                       # doctest: +SKIP
>>> result = run_bench(BenchConfig(models=["telea", "biharmonic"], data="test/",
...                                masks="lama-thick", output="results/"))  # doctest: +SKIP
>>> result.results["models"]["telea"]["metrics"]["psnr"]                   # doctest: +SKIP
{'value': 24.1, 'ci95': [23.7, 24.5], 'n': 500, 'note': ''}

Modules: :mod:`.config` (what to run), :mod:`.data` (pairs, preset masks, hashes),
:mod:`.runner` (methods -> raw outputs on disk, resumable), :mod:`.scoring` (per-image metrics at
the evaluation size, features for FID/KID), :mod:`.summary` (means, intervals, breakdowns),
:mod:`.report` and :mod:`.pictures` (the files), :mod:`.protocol` (how it was measured),
:mod:`.distributed` (several processes), :mod:`.run` (all of it). See docs/evaluation.md.
"""

from __future__ import annotations

from inpaint.bench.config import BenchConfig, parse_method_settings
from inpaint.bench.run import BenchResult, run_bench

__all__ = ["BenchConfig", "BenchResult", "parse_method_settings", "run_bench"]
