"""The pieces of `inpaint bench` that need no images: argv rewriting, per-method settings, ordering."""

from __future__ import annotations

import numpy as np
import pytest

from inpaint.bench import BenchConfig, parse_method_settings
from inpaint.bench.distributed import Dist
from inpaint.bench.scoring import Record, ScoreShard
from inpaint.bench.summary import grid_names, merge
from inpaint.cli.bench import expand_models
from inpaint.errors import InputError


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["bench", "--models", "ddpm", "sd", "--data", "t/"],
            ["bench", "--models", "ddpm", "--models", "sd", "--data", "t/"],
        ),
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
        [
            "ddpm.steps=50",
            "ddpm.sampler=ddim",
            "repaint.jump-length=5",
            "dtype=fp32",
            "ddpm.guidance=7.5",
            "repaint.weights=none",
        ],
        ["ddpm", "repaint"],
    )
    assert settings == {
        "ddpm": {"weights": "runs/ddpm", "steps": 50, "sampler": "ddim", "dtype": "fp32", "guidance": 7.5},
        "repaint": {"jump_length": 5, "dtype": "fp32", "weights": None},
    }
    config = BenchConfig(
        models=["ddpm", "repaint"], data="d", masks="m", output="o", device="cpu", method_options=settings
    )
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
        "telea",
        "biharmonic",
    ]
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


def test_path_fingerprint_follows_the_weight_files_not_their_times_or_other_files(tmp_path):
    import os
    import shutil

    from inpaint.provenance import path_fingerprint

    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    big = bytes(range(256)) * (3 << 12)  # 3 MiB: only its ends are read
    (model / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(big)
    (model / "unet" / "config.json").write_text("{}")
    first = path_fingerprint(model)
    shutil.copytree(model, tmp_path / "copy")
    os.utime(tmp_path / "copy" / "unet" / "config.json", (0, 0))
    assert path_fingerprint(tmp_path / "copy") == first  # copied, other times: the same model
    (model / "README.md").write_text("notes")
    (model / ".cache").mkdir()
    (model / ".cache" / "x.bin").write_bytes(b"cache")
    (model / "unet" / ".tmp.safetensors").write_bytes(b"partial")
    assert path_fingerprint(model) == first  # neither a weight-ish file nor a visible one
    (model / "unet" / "config.json").write_text('{"a": 1}')
    assert path_fingerprint(model) != first
    (model / "unet" / "config.json").write_text("{}")
    last = bytearray(big)
    last[-1] ^= 1  # the last MiB of a retrained checkpoint differs
    (model / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(bytes(last))
    assert path_fingerprint(model) != first
    (model / "unet" / "diffusion_pytorch_model.safetensors").rename(model / "unet" / "other.safetensors")
    assert path_fingerprint(model) != path_fingerprint(tmp_path / "copy")
    # A file is fingerprinted whatever its suffix (a captions file, a LoRA file).
    captions = tmp_path / "captions.txt"
    captions.write_text("a cat")
    before = path_fingerprint(captions)
    captions.write_text("a dog")
    assert path_fingerprint(captions) != before


def test_run_settings_fingerprint_local_paths_only(tmp_path):
    from inpaint.bench.runner import run_settings
    from inpaint.provenance import path_fingerprint

    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(b"lora")
    config = BenchConfig(
        models=["sd", "telea"],
        data="d",
        masks="m",
        output="o",
        method_options={
            "sd": {"weights": "someone/sd-inpainting", "lora": str(lora), "captions": str(tmp_path / "missing.json")}
        },
    )
    assert run_settings(config, "sd")["fingerprints"] == {"lora": path_fingerprint(lora)}  # hub ids as they are
    assert "fingerprints" not in run_settings(config, "telea")


def test_strength_below_one_is_refused_from_python_too():
    with pytest.raises(InputError, match=r"^method_options\['sd'\]: strength 0.5 must be 1 in a benchmark"):
        BenchConfig(models=["sd"], data="d", masks="m", output="o", method_options={"sd": {"strength": 0.5}})
    with pytest.raises(InputError, match=r"steps expects a number, got '50'"):
        BenchConfig(models=["ddpm"], data="d", masks="m", output="o", method_options={"ddpm": {"steps": "50"}})
    assert (
        BenchConfig(models=["sd"], data="d", masks="m", output="o", method_options={"sd": {"strength": 1.0}})
        .options_for("sd")
        .strength
        == 1.0
    )


class FakeDist(Dist):
    """Rank ``rank`` of two processes; ``gather`` returns what the other rank is said to send."""

    def __init__(self, rank: int, other: object = None) -> None:
        super().__init__(rank=rank, world=2)
        self.other, self.sent = other, []

    def barrier(self) -> None:  # every exchange must go through gather, the one that carries a status
        raise AssertionError("a bare barrier: a process whose partner failed would wait in it forever")

    def gather(self, obj):
        self.sent.append(obj)
        return [obj, self.other] if self.rank == 0 else [self.other, obj]


@pytest.fixture
def duplicate_stems(tmp_path):
    """A test folder with two images of one stem: drawing preset masks for it fails."""
    from inpaint import io

    data = tmp_path / "test"
    data.mkdir()
    for name in ("a.png", "a.jpg", "b.png"):
        io.save_image(np.zeros((16, 16, 3), np.uint8), data / name)
    return BenchConfig(models=["telea"], data=data, masks="lama-thin", output=tmp_path / "out")


def test_preset_mask_failure_on_the_main_process_is_sent_to_the_others(duplicate_stems):
    from inpaint.bench.run import _pairs

    main = FakeDist(rank=0)
    with pytest.raises(InputError) as raised:
        _pairs(duplicate_stems, main)
    assert "a.jpg" in str(raised.value) and main.sent == [str(raised.value)]


def test_other_processes_raise_the_main_process_error_instead_of_waiting(duplicate_stems):
    from inpaint.bench.run import _pairs

    other = FakeDist(rank=1, other="a.jpg and a.png would both get the mask a.png; rename one")
    with pytest.raises(InputError, match=r"^a.jpg and a.png would both get the mask a.png; rename one$"):
        _pairs(duplicate_stems, other)
    assert other.sent == [None]
    assert not (duplicate_stems.output / "masks").exists()  # it drew nothing itself


def test_the_metrics_plot_leaves_pyplot_and_the_backend_alone(tmp_path, monkeypatch):
    """A bench run from a notebook must not switch its matplotlib backend or touch pyplot's figures."""
    import sys

    import matplotlib

    from inpaint.bench.report import write_plot
    from inpaint.bench.summary import ModelSummary
    from inpaint.metrics.stats import MetricValue

    backend = matplotlib.get_backend()
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: pytest.fail("matplotlib.use called"))
    if "matplotlib.pyplot" in sys.modules:
        for name in ("figure", "subplots", "close"):
            monkeypatch.setattr(sys.modules["matplotlib.pyplot"], name, lambda *a, **k: pytest.fail("pyplot used"))
    summaries = [
        ModelSummary(model, {"psnr": MetricValue("psnr", value, value - 1, value + 1, 4)})
        for model, value in (("telea", 20.0), ("ddpm", 24.0))
    ]
    path = write_plot(tmp_path / "metrics.png", summaries, unavailable={})
    assert path.stat().st_size > 1000 and matplotlib.get_backend() == backend
