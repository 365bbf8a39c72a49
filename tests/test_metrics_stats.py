"""Bootstrap confidence intervals and the MetricValue summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inpaint.metrics import MetricValue, bootstrap_ci, summarise


def sample(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(25.0, 3.0, n)


def test_bootstrap_is_deterministic_and_seeded():
    values = sample()
    assert bootstrap_ci(values) == bootstrap_ci(values.copy())
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=0)


def test_bootstrap_matches_a_direct_percentile_bootstrap():
    """Same generator draws, written the naive way: resample indices, mean, percentiles."""
    values = sample(50)
    rng = np.random.default_rng(7)
    means = [values[rng.integers(0, 50, 50)].mean() for _ in range(300)]
    expected = np.quantile(means, [0.05, 0.95])
    np.testing.assert_allclose(bootstrap_ci(values, n_boot=300, seed=7, level=0.9), expected, rtol=0, atol=1e-12)


def test_interval_brackets_the_mean_and_shrinks_with_n():
    small, large = sample(50), sample(2000)
    low, high = bootstrap_ci(small)
    assert low < small.mean() < high
    # The standard error of the mean is 3 / sqrt(n): the 95% interval is about 4 of them wide.
    assert high - low == pytest.approx(4 * 3 / math.sqrt(50), rel=0.3)
    low_l, high_l = bootstrap_ci(large)
    assert high_l - low_l < (high - low) / 4
    low90, high90 = bootstrap_ci(small, level=0.9)
    assert low < low90 < high90 < high


def test_nans_are_ignored_and_edge_cases():
    values = sample(40)
    with_nans = np.concatenate([values, [np.nan] * 5])
    assert bootstrap_ci(with_nans) == bootstrap_ci(values)
    assert bootstrap_ci(torch.from_numpy(with_nans)) == bootstrap_ci(values)
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert bootstrap_ci([2.5]) == (2.5, 2.5)
    assert all(math.isnan(v) for v in bootstrap_ci([np.nan, np.nan]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(values, level=95)


def test_summarise_returns_a_metric_value():
    values = np.concatenate([sample(30), [np.nan]])
    result = summarise("psnr_hole", values, note="hole only")
    assert isinstance(result, MetricValue)
    assert result.name == "psnr_hole" and result.n == 30 and result.note == "hole only"
    assert result.value == pytest.approx(np.nanmean(values))
    assert (result.ci_low, result.ci_high) == bootstrap_ci(values)
