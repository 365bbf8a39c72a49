"""The pieces of `inpaint bench` that need no images: argv rewriting, per-method settings, ordering."""

from __future__ import annotations

import numpy as np
import pytest

from inpaint.bench import BenchConfig, parse_method_settings
from inpaint.bench.scoring import Record, ScoreShard
from inpaint.bench.summary import grid_names, merge
from inpaint.cli.bench import expand_models
from inpaint.errors import InputError


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["bench", "--models", "ddpm", "sd", "--data", "t/"], ["bench", "--models", "ddpm", "--models", "sd", "--data", "t/"]),
        (["--debug", "bench", "-m", "a", "b", "c"], ["--debug", "bench", "-m", "a", "-m", "b", "-m", "c"]),
        (["bench", "--models", "ddpm,sd", "-o", "r"], ["bench", "--models", "ddpm,sd", "-o", "r"]),
        (["bench", "--models", "a", "--models", "b"], ["bench", "--models", "a", "--models", "b"]),
        (["bench", "--models", "-o", "r"], ["bench", "--models", "-o", "r"]),  # click reports the missing value
        (["bench", "--", "--models", "a", "b"], ["bench", "--", "--models", "a", "b"]),
        (["complete", "--models", "a", "b"], ["complete", "--models", "a", "b"]),  # other commands untouched
        (["--help"], ["--help"]),
    ],
)
def test_expand_models(argv, expected):
    assert expand_models(argv) == expected


def test_method_settings_map_onto_method_options():
    settings = parse_method_settings(
        ["ddpm=runs/ddpm"],
        ["ddpm.steps=50", "ddpm.sampler=ddim", "repaint.jump-length=5", "dtype=fp32", "ddpm.guidance=7.5",
         "repaint.weights=none"],
        ["ddpm", "repaint"],
    )
    assert settings == {
        "ddpm": {"weights": "runs/ddpm", "steps": 50, "sampler": "ddim", "dtype": "fp32", "guidance": 7.5},
        "repaint": {"jump_length": 5, "dtype": "fp32", "weights": None},
    }
    config = BenchConfig(models=["ddpm", "repaint"], data="d", masks="m", output="o", device="cpu",
                         method_options=settings)
    options = config.options_for("ddpm")
    assert (options.weights, options.steps, options.device, options.dtype) == ("runs/ddpm", 50, "cpu", "fp32")


@pytest.mark.parametrize(
    "weights, options, needle",
    [
        (["ddpm"], [], "expected NAME=PATH"),
        (["sd=x"], [], "'sd' is not among --models"),
        ([], ["ddpm.stepz=3"], "unknown key 'stepz'"),
        ([], ["ddpm.steps=many"], "steps expects int"),
        ([], ["ddpm.local_only=true"], "unknown key"),
        ([], ["=3"], "expected NAME.KEY=VALUE"),
        ([], ["ddpm.strength=0.5"], "strength 0.5 must be 1 in a benchmark"),
    ],
)
def test_bad_method_settings_are_one_line_input_errors(weights, options, needle):
    with pytest.raises(InputError, match=needle):
        parse_method_settings(weights, options, ["ddpm"])


def test_config_checks_models_and_values():
    assert BenchConfig(models=["telea, biharmonic", "telea"], data="d", masks="m", output="o").models == [
        "telea", "biharmonic"]
    with pytest.raises(InputError, match="unknown method 'nope'"):
        BenchConfig(models=["nope"], data="d", masks="m", output="o")
    with pytest.raises(InputError, match="--eval-size 8"):
        BenchConfig(models=["telea"], data="d", masks="m", output="o", eval_size=8)


def _shard(names, model="m"):
    shard = ScoreShard()
    for name in names:
        shard.records.append(Record(name, model, "p", 0.1, 1, {"psnr": float(len(name))}))
    shard.add_features("real", names, np.array([[float(ord(n[0]))] * 3 for n in names]))
    return shard


def test_merge_orders_by_name_whatever_the_split():
    one = merge([_shard(["a", "b", "c", "d"])])
    two = merge([_shard(["c", "a"]), _shard(["d", "b"])])
    assert [r.name for r in two.records] == [r.name for r in one.records] == ["a", "b", "c", "d"]
    assert two.feature_names["real"] == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(two.features["real"][0], one.features["real"][0])


def test_grid_sample_is_fixed_and_independent_of_order():
    names = [f"img{i:03d}" for i in range(50)]
    sample = grid_names(names, 8, seed=0)
    assert len(sample) == 8 and sample == sorted(sample)
    assert grid_names(list(reversed(names)), 8, seed=0) == sample
    assert grid_names(names, 8, seed=1) != sample
