"""`inpaint bench` end to end: the usage line, the report files, metric weights present or missing,
composite vs raw, preset masks, and resuming. Tiny images (32-56 px), classical or toy methods."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint import io
from inpaint.models.base import Inpainter

REPORT_FILES = ("results.json", "per_image.csv", "report.md", "metrics.png", "grid.png")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Inception and LPIPS on one thread: on a busy 2-core machine two threads run ~3x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class ShiftInpainter(Inpainter):
    """A toy method: seeded noise in the hole, known pixels brightened (so raw != composite)."""

    name: ClassVar[str] = "test-shift"

    def __init__(self, options=None) -> None:
        self.last_nfe: int | None = None

    def fill(self, images, masks, generators, progress):
        self.last_nfe = 7
        noise = torch.stack([torch.rand(images.shape[1:], generator=g) for g in generators])
        return torch.where(masks > 0.5, noise, (images + 0.2).clamp(0, 1))


@pytest.fixture
def toy_methods(monkeypatch):
    """Register test-shift-a and test-shift-b (the same class) for this test only."""
    from inpaint import models

    for name in ("test-shift-a", "test-shift-b"):
        monkeypatch.setitem(
            models._METHODS, name, models.MethodInfo(name=name, summary="toy", target="test_bench:ShiftInpainter")
        )


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory) -> tuple[Path, Path]:
    """Six small real photos (one of them not square) and a folder of masks from two presets."""
    from skimage import data

    from inpaint import mask_sets

    root = tmp_path_factory.mktemp("bench")
    (root / "test").mkdir()
    sizes = {
        "astronaut": (48, 48),
        "chelsea": (48, 48),
        "coffee": (56, 40),
        "rocket": (48, 48),
        "camera": (48, 48),
        "cat": (48, 48),
    }
    for name, size in sizes.items():
        pixels = getattr(data, name)()
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        Image.fromarray(pixels).resize(size, Image.BICUBIC).save(root / "test" / f"{name}.png")
    mask_sets.masks_for_images(root / "test", root / "masks", presets=["lama-thick", "box-center"], seed=0)
    return root / "test", root / "masks"


def load(results: Path) -> tuple[dict, list[dict]]:
    with open(results / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return json.loads((results / "results.json").read_text()), rows


def copy_of(folder: Path, destination: Path) -> Path:
    """A copy of the (module-wide, shared) data folder that a test may change."""
    destination.mkdir()
    for path in folder.iterdir():
        (destination / path.name).write_bytes(path.read_bytes())
    return destination


def metric_values(results: dict) -> dict:
    """Every metric value and interval of every model (what must not change on resume)."""
    return {m: {k: v for k, v in entry["metrics"].items()} for m, entry in results["models"].items()}


def test_usage_line_literally_with_missing_metric_weights(cli, tmp_path, bench_data, no_metric_weights, monkeypatch):
    images, masks = bench_data
    monkeypatch.chdir(images.parent)
    out = tmp_path / "results"
    result = cli(
        "bench",
        "--models",
        "telea",
        "biharmonic",
        "--data",
        "test/",
        "--masks",
        "masks/",
        "-o",
        out,
        "--eval-size",
        "32",
    )
    assert result.code == 0, result
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    for model in ("telea", "biharmonic"):
        assert sorted(p.stem for p in (out / "outputs" / model).glob("*.png")) == sorted(
            p.stem for p in images.iterdir()
        )
        assert (out / "galleries" / f"worst-{model}.png").is_file()
    results, rows = load(out)
    assert list(results["models"]) == ["telea", "biharmonic"] and results["n_images"] == 6
    # LPIPS, FID and KID are marked unavailable with the exact file to provide; the rest is computed.
    assert "alexnet-owt-7be5be79.pth" in results["unavailable"]["lpips"]
    assert "pt_inception-2015-12-05-6726825d.pth" in results["unavailable"]["fid"]
    telea = results["models"]["telea"]["metrics"]
    assert telea["lpips"]["status"] == "unavailable" and telea["kid"]["status"] == "unavailable"
    for metric in ("psnr", "ssim", "psnr_hole", "ssim_hole", "psnr_seam"):
        low, high = telea[metric]["ci95"]
        assert low <= telea[metric]["value"] <= high and telea[metric]["n"] == 6
    assert "lpips" not in rows[0] and len(rows) == 12
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert any(line.startswith("warning: LPIPS unavailable: ") for line in warnings)
    # The study's table is printed and written, with the breakdowns.
    assert "PSNR (dB)" in result.out and "biharmonic" in result.out
    report = (out / "report.md").read_text()
    assert "| model | PSNR (dB) | SSIM | LPIPS | FID |" in report and "unavailable" in report
    assert "| telea | lama-thick |" in report and "| telea | box-center |" in report
    assert "LaMa's 10 bins" in report
    protocol = results["protocol"]
    assert protocol["scoring"] == "composite" and protocol["masks"]["source"] == "folder"
    assert protocol["masks"]["manifest_sha256"] is not None and protocol["resolution"]["eval_size"] == [32, 32]
    assert protocol["ssim"]["sigma"] == 1.5 and protocol["packages"]["torch"] and protocol["seeds"]["seed"] == 0


def test_comma_repeated_and_config_forms_give_the_same_run(cli, tmp_path, bench_data, no_metric_weights):
    images, masks = bench_data
    out = tmp_path / "r"
    first = cli(
        "bench",
        "--models",
        "telea,biharmonic",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        out,
        "--eval-size",
        "32",
        "--json",
    )
    assert first.code == 0, first
    assert list(json.loads(first.out)["models"]) == ["telea", "biharmonic"]
    again = cli(
        "bench",
        "--models",
        "telea",
        "--models",
        "biharmonic",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        out,
        "--eval-size",
        "32",
        "--json",
    )
    assert again.code == 0 and metric_values(json.loads(again.out)) == metric_values(json.loads(first.out))
    config = tmp_path / "bench.toml"
    config.write_text(
        f'[bench]\nmodels = ["telea", "biharmonic"]\ndata = "{images}"\nmasks = "{masks}"\n'
        f"eval-size = 32\njson = true\n"
    )
    from_file = cli("bench", "--config", config, "-o", out)
    assert from_file.code == 0, from_file
    assert metric_values(json.loads(from_file.out)) == metric_values(json.loads(first.out))
    # A setting that differs from the one the outputs were made with is refused, not mixed in.
    changed = cli(
        "bench",
        "-m",
        "telea",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        out,
        "--eval-size",
        "32",
        "--model-option",
        "telea.steps=3",
    )
    assert changed.code == 2 and "made with other settings (steps)" in changed.err
    assert cli("bench", "-m", "nope", "--data", images, "--masks", masks, "-o", out).code == 2


def test_strict_fails_before_any_work_when_weights_are_missing(
    cli, tmp_path, bench_data, no_metric_weights, random_lpips_alex_file
):
    images, masks = bench_data
    out = tmp_path / "strict"
    result = cli("bench", "-m", "telea", "--data", images, "--masks", masks, "-o", out, "--strict")
    assert result.code == 2
    assert (
        result.err.strip().splitlines()[-1].startswith("error: LPIPS (AlexNet backbone) needs alexnet-owt-7be5be79.pth")
    )
    assert not (out / "outputs").exists()
    # --strict is about missing files: with LPIPS given and FID switched off it runs.
    result = cli(
        "bench",
        "-m",
        "telea",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        out,
        "--strict",
        "--no-fid",
        "--lpips-weights",
        random_lpips_alex_file,
        "--eval-size",
        "32",
    )
    assert result.code == 0, result


def test_lpips_fid_kid_from_local_files_equal_an_independent_computation(
    cli, tmp_path, bench_data, monkeypatch, random_lpips_alex_file, random_fid_inception_file
):
    """Every per-image number is recomputed here from the files on disk (composite at native size,
    PIL bicubic/nearest to 32 px) with skimage and our metric classes, and the set-level numbers from
    independently extracted features. The Fréchet distance itself is replaced by a cheap function of
    the same statistics (scipy's 2048x2048 sqrtm takes ~40 s here; its equality with pytorch-fid is
    tested in test_metrics_features.py): what is checked is which statistics the bench hands over."""
    from pytorch_fid import fid_score
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from inpaint.metrics import InceptionFeatures, LPIPSMetric, bootstrap_ci, kid

    calls = []

    def frechet_stand_in(mu1, sigma1, mu2, sigma2):
        calls.append((mu1, sigma1, mu2, sigma2))
        return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) - np.trace(sigma2))

    monkeypatch.setattr(fid_score, "calculate_frechet_distance", frechet_stand_in)
    images, masks = bench_data
    out = tmp_path / "full"
    result = cli(
        "bench",
        "-m",
        "telea",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        out,
        "--eval-size",
        "32",
        "--lpips-weights",
        random_lpips_alex_file,
        "--fid-weights",
        random_fid_inception_file,
        "--kid-subsets",
        "5",
    )
    assert result.code == 0, result
    assert "FID on 6 < 2048 images is biased" in result.err
    results, rows = load(out)
    assert results["unavailable"] == {}
    names = sorted(p.stem for p in images.iterdir())
    assert [r["image"] for r in rows] == names

    def view(array, mask=False):
        image = Image.fromarray(array.astype(np.uint8) * 255 if mask else array)
        return np.asarray(image.resize((32, 32), Image.NEAREST if mask else Image.BICUBIC))

    originals, composites, holes = [], [], []
    for name in names:
        image = io.read_image(images / f"{name}.png")
        hole = io.read_mask(masks / f"{name}.png")
        output = io.read_image(out / "outputs" / "telea" / f"{name}.png")
        originals.append(view(image))
        composites.append(view(np.where(hole[..., None], output, image)))
        holes.append(view(hole, mask=True) > 127)
    lpips_metric = LPIPSMetric("alex", weights=random_lpips_alex_file)
    target, pred = io.to_tensor(np.stack(originals)), io.to_tensor(np.stack(composites))
    hole_t = io.mask_to_tensor(np.stack(holes))
    lpips_whole, lpips_hole = lpips_metric(pred, target), lpips_metric(pred, target, hole_t)
    for i, row in enumerate(rows):
        psnr = peak_signal_noise_ratio(originals[i], composites[i], data_range=255)
        ssim = structural_similarity(
            originals[i],
            composites[i],
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        assert float(row["psnr"]) == pytest.approx(psnr, abs=1e-6)
        assert float(row["ssim"]) == pytest.approx(ssim, abs=1e-6)
        assert float(row["lpips"]) == pytest.approx(float(lpips_whole[i]), abs=1e-6)
        assert float(row["lpips_hole"]) == pytest.approx(float(lpips_hole[i]), abs=1e-6)
        assert float(row["nfe"]) == 0
    telea = results["models"]["telea"]["metrics"]
    values = [float(r["lpips"]) for r in rows]
    assert telea["lpips"]["value"] == pytest.approx(np.mean(values), abs=1e-12)
    assert telea["lpips"]["ci95"] == pytest.approx(list(bootstrap_ci(values, n_boot=1000, seed=0)), abs=1e-12)

    features = InceptionFeatures(random_fid_inception_file)
    real, fake = features(target).numpy(), features(pred).numpy()
    [(mu1, sigma1, mu2, sigma2)] = calls
    np.testing.assert_allclose(mu1, real.mean(0), atol=1e-6)
    np.testing.assert_allclose(mu2, fake.mean(0), atol=1e-6)
    assert telea["fid"]["value"] == pytest.approx(frechet_stand_in(mu1, sigma1, mu2, sigma2), abs=1e-9)
    expected_kid = kid(real, fake, subsets=5, subset_size=3, seed=0)  # the default: half of the 6 images
    assert telea["kid"]["value"] == pytest.approx(expected_kid.mean, abs=1e-6) and telea["kid"]["subset_size"] == 3
    assert telea["kid"]["std"] == pytest.approx(expected_kid.std, abs=1e-6) and expected_kid.std > 0
    protocol = results["protocol"]
    assert protocol["lpips"]["net"] == "alex" and protocol["lpips"]["linear_layers_version"] == "0.1"
    assert protocol["lpips"]["backbone"]["file"] == "alexnet-owt-7be5be79.pth"
    assert "pytorch-fid" in protocol["fid"]["implementation"]
    assert "| telea |" in (out / "report.md").read_text() and "lpips_seam" in rows[0]


def test_composite_vs_raw_same_seeds_for_every_method(cli, tmp_path, bench_data, no_metric_weights, toy_methods):
    images, masks = bench_data
    runs = {}
    for mode in ("composite", "raw"):
        out = tmp_path / mode
        args = [
            "bench",
            "-m",
            "test-shift-a",
            "test-shift-b",
            "--data",
            images,
            "--masks",
            masks,
            "-o",
            out,
            "--eval-size",
            "48",
            "--grid-images",
            "2",
            "--worst-k",
            "2",
        ]
        result = cli(*args, *(["--raw"] if mode == "raw" else []))
        assert result.code == 0, result
        runs[mode] = load(out)
        assert runs[mode][0]["protocol"]["scoring"] == mode
    # Both methods got the same pairs and per-image seeds: byte-identical outputs.
    for name in (p.stem for p in images.iterdir()):
        a = (tmp_path / "raw" / "outputs" / "test-shift-a" / f"{name}.png").read_bytes()
        assert a == (tmp_path / "raw" / "outputs" / "test-shift-b" / f"{name}.png").read_bytes()
    # Scored at native size (48 px): hole pixels are the same in both modes, while the brightened known
    # pixels count only in raw mode. (coffee, 56x40, is resized, which blends known pixels into the
    # hole; SSIM's 11x11 window reaches across the boundary, so hole SSIM differs too.)
    for composite, raw in zip(runs["composite"][1], runs["raw"][1]):
        assert composite["image"] == raw["image"] and composite["model"] == raw["model"]
        if composite["image"] != "coffee":
            assert composite["psnr_hole"] == raw["psnr_hole"]
        assert float(composite["psnr"]) > float(raw["psnr"]) + 0.5
    composite, raw = runs["composite"][0]["models"]["test-shift-a"], runs["raw"][0]["models"]["test-shift-a"]
    assert composite["nfe_per_image"] == raw["nfe_per_image"] == 7
    assert composite["seconds_per_image"] >= 0 and composite["peak_memory_mib"] > 0


def test_preset_masks_are_generated_once_and_recorded(cli, tmp_path, bench_data, no_metric_weights):
    from inpaint.masks import make_mask

    images, _ = bench_data
    out = tmp_path / "preset"
    args = [
        "bench",
        "-m",
        "telea",
        "--data",
        images,
        "--masks",
        "lama-thin",
        "-o",
        out,
        "--eval-size",
        "32",
        "--seed",
        "3",
        "--no-lpips",
        "--no-fid",
    ]
    assert cli(*args).code == 0
    manifest = json.loads((out / "masks" / "manifest.json").read_text())
    assert manifest["presets"] == ["lama-thin"] and manifest["seed"] == 3
    for path in images.iterdir():
        image = io.read_image(path)
        expected, _ = make_mask("lama-thin", seed=3, name=path.stem, height=image.shape[0], width=image.shape[1])
        assert np.array_equal(io.read_mask(out / "masks" / f"{path.stem}.png"), expected)
    results = load(out)[0]
    assert results["protocol"]["masks"]["source"] == "preset" and results["protocol"]["masks"]["preset"] == "lama-thin"
    assert results["unavailable"]["lpips"] == "disabled (--no-lpips)"
    assert list(results["models"]["telea"]["by_preset"]) == ["lama-thin"]
    before = {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()}
    again = cli(*args)
    assert again.code == 0 and "telea 0 new / 6 reused" in again.err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()} == before


def test_an_exact_fill_scores_the_psnr_cap_not_infinity(cli, tmp_path, bench_data, no_metric_weights):
    from inpaint.bench.scoring import PSNR_CAP_DB

    source, masks = bench_data
    images = copy_of(source, tmp_path / "images")
    io.save_image(np.full((48, 48, 3), 90, np.uint8), images / "cat.png")  # flat: biharmonic fills it exactly
    out = tmp_path / "out"
    assert (
        cli(
            "bench",
            "-m",
            "biharmonic",
            "--data",
            images,
            "--masks",
            masks,
            "-o",
            out,
            "--eval-size",
            "32",
            "--no-lpips",
            "--no-fid",
        ).code
        == 0
    )
    results, rows = load(out)
    flat = [r for r in rows if r["image"] == "cat"]
    assert flat and all(float(r["psnr_hole"]) == PSNR_CAP_DB == float(r["psnr"]) for r in flat)
    others = [float(r["psnr_hole"]) for r in rows if r["image"] != "cat"]
    metric = results["models"]["biharmonic"]["metrics"]["psnr_hole"]
    assert metric["value"] == pytest.approx((sum(others) + PSNR_CAP_DB * len(flat)) / len(rows))
    assert None not in metric["ci95"] and metric["value"] < PSNR_CAP_DB
    assert "capped at 100 dB" in results["protocol"]["psnr"]


def test_a_replaced_image_of_another_size_gets_a_new_preset_mask(cli, tmp_path, bench_data, no_metric_weights):
    from inpaint.masks import make_mask

    source, _ = bench_data
    images = copy_of(source, tmp_path / "images")
    out = tmp_path / "preset"
    args = [
        "bench",
        "-m",
        "telea",
        "--data",
        images,
        "--masks",
        "lama-thin",
        "-o",
        out,
        "--eval-size",
        "32",
        "--no-lpips",
        "--no-fid",
    ]
    assert cli(*args).code == 0
    kept = {p.name: p.read_bytes() for p in (out / "masks").glob("*.png") if p.name != "cat.png"}
    io.save_image(io.read_image(images / "chelsea.png")[:40, :44], images / "cat.png")  # now 44x40
    again = cli(*args)
    assert again.code == 0, again.err
    expected, _ = make_mask("lama-thin", seed=0, name="cat", height=40, width=44)
    assert np.array_equal(io.read_mask(out / "masks" / "cat.png"), expected)
    assert {p.name: p.read_bytes() for p in (out / "masks").glob("*.png") if p.name != "cat.png"} == kept
    assert "telea 1 new / 5 reused" in again.err
    assert not load(out)[0]["failed_images"]


def test_a_plain_rerun_after_an_interrupted_overwrite_reuses_nothing_the_old_settings_made(
    tmp_path, bench_data, toy_methods, monkeypatch
):
    from inpaint.bench import BenchConfig, run_bench, runner

    images, masks = bench_data

    def config(output: Path, **kw) -> BenchConfig:
        return BenchConfig(
            models=["test-shift-a"],
            data=images,
            masks=str(masks),
            output=output,
            eval_size=32,
            lpips=False,
            fid=False,
            grid_images=0,
            worst_k=0,
            n_boot=10,
            **kw,
        )

    def outputs(output: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (output / "outputs" / "test-shift-a").glob("*.png")}

    out = tmp_path / "out"
    run_bench(config(out, seed=0))
    old = outputs(out)
    save, calls = runner._save, []

    def killed_after_two(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt  # as a Ctrl-C would
        return save(*args, **kwargs)

    monkeypatch.setattr(runner, "_save", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_bench(config(out, seed=1, overwrite=True))
    monkeypatch.setattr(runner, "_save", save)
    resumed = run_bench(config(out, seed=1))
    assert resumed.reused == {"test-shift-a": 2} and resumed.written == {"test-shift-a": 4}
    run_bench(config(tmp_path / "clean", seed=1))
    clean = outputs(tmp_path / "clean")
    assert outputs(out) == clean and all(old[name] != clean[name] for name in clean)


def test_resume_after_lost_outputs_gives_the_same_numbers(cli, tmp_path, bench_data, no_metric_weights, toy_methods):
    images, masks = bench_data
    out = tmp_path / "resume"
    args = [
        "bench",
        "-m",
        "test-shift-a",
        "telea",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        out,
        "--eval-size",
        "32",
        "--batch-size",
        "4",
    ]
    assert cli(*args).code == 0
    first, first_rows = load(out)
    folder = out / "outputs" / "test-shift-a"
    kept = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    for name in ("astronaut.png", "coffee.png"):
        (folder / name).unlink()
    again = cli(*args)
    assert again.code == 0 and "test-shift-a 2 new / 4 reused, telea 0 new / 6 reused" in again.err
    assert {p.name: p.read_bytes() for p in folder.glob("*.png")} == kept  # regenerated bit for bit
    second, second_rows = load(out)
    assert metric_values(second) == metric_values(first)
    strip = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in second_rows] == [
        {k: v for k, v in r.items() if k not in strip} for r in first_rows
    ]
    # A mask that changed invalidates exactly the outputs made from it.
    changed_masks = tmp_path / "masks2"
    changed_masks.mkdir()
    for path in masks.iterdir():
        (changed_masks / path.name).write_bytes(path.read_bytes())
    io.save_mask(np.ones((48, 48), bool) & (np.arange(48)[:, None] < 20), changed_masks / "cat.png")
    args[args.index(masks)] = changed_masks
    third = cli(*args)
    assert third.code == 0 and "test-shift-a 1 new / 5 reused" in third.err


def test_diffusion_method_with_weights_and_options_from_the_config_file(
    cli, tmp_path, bench_data, tiny_unet7_dir, no_metric_weights
):
    images, masks = bench_data
    config = tmp_path / "inpaint.toml"
    config.write_text(
        f'[bench]\nweights = ["ddpm={tiny_unet7_dir}"]\n'
        'model-option = ["ddpm.sampler=ddim", "ddpm.steps=2"]\ndevice = "cpu"\n'
    )
    out = tmp_path / "diffusion"
    result = cli(
        "bench",
        "--models",
        "ddpm",
        "telea",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        out,
        "--eval-size",
        "32",
        "--config",
        config,
        "--no-lpips",
        "--no-fid",
    )
    assert result.code == 0, result
    results = load(out)[0]
    ddpm = results["models"]["ddpm"]
    assert ddpm["options"]["weights"] == str(tiny_unet7_dir) and ddpm["options"]["steps"] == 2
    assert ddpm["nfe_per_image"] == 2 and results["models"]["telea"]["nfe_per_image"] == 0
    assert json.loads((out / "outputs" / "ddpm" / "run.json").read_text())["options"] == {
        "weights": str(tiny_unet7_dir),
        "sampler": "ddim",
        "steps": 2,
    }
    assert "warning: LPIPS" not in result.err  # switched off on purpose: nothing to warn about


def test_weights_retrained_into_the_same_folder_are_not_taken_for_the_old_ones(tmp_path, bench_data, toy_methods):
    import shutil

    from inpaint.bench import BenchConfig, run_bench
    from inpaint.errors import InputError

    images, masks = bench_data
    weights = tmp_path / "runs" / "toy"
    (weights / "unet").mkdir(parents=True)
    (weights / "unet" / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (weights / "unet" / "config.json").write_text('{"layers": 2}')

    def config(output: Path, **kw) -> BenchConfig:
        return BenchConfig(
            models=["test-shift-a", "telea"],
            data=images,
            masks=str(masks),
            output=output,
            eval_size=32,
            lpips=False,
            fid=False,
            grid_images=0,
            worst_k=0,
            n_boot=10,
            method_options={"test-shift-a": {"weights": str(weights)}},
            **kw,
        )

    out = tmp_path / "out"
    run_bench(config(out))
    recorded = json.loads((out / "outputs" / "test-shift-a" / "run.json").read_text())
    assert recorded["options"] == {"weights": str(weights)} and set(recorded["fingerprints"]) == {"weights"}
    # A method whose options name no local path records what it always did (old run.json files stay valid).
    assert json.loads((out / "outputs" / "telea" / "run.json").read_text()) == {
        "model": "telea",
        "seed": 0,
        "invert_mask": False,
        "resize_mask": False,
        "options": {},
    }
    # A copy of the same files (new modification times) is the same model: everything is reused.
    shutil.copytree(weights, tmp_path / "copy")
    shutil.rmtree(weights)
    shutil.copytree(tmp_path / "copy", weights)
    assert run_bench(config(out)).reused == {"test-shift-a": 6, "telea": 6}
    # Retrained into the same folder (same size, other bytes): refused, naming the option.
    (weights / "unet" / "model.safetensors").write_bytes(bytes(reversed(range(256))) * 64)
    with pytest.raises(InputError, match=r"made with other settings \(weights \(files changed\)\); pass --overwrite"):
        run_bench(config(out))
    result = run_bench(config(out, overwrite=True))
    assert result.written == {"test-shift-a": 6, "telea": 6}
    assert run_bench(config(out)).reused == {"test-shift-a": 6, "telea": 6}
    # A run.json from before fingerprints were recorded cannot vouch for its weights.
    path = out / "outputs" / "test-shift-a" / "run.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "fingerprints"}))
    with pytest.raises(InputError, match=r"\(weights \(no fingerprint recorded\)\)"):
        run_bench(config(out))


def test_python_api_refuses_a_strength_below_one_as_the_command_line_does(tmp_path, bench_data):
    from inpaint.bench import BenchConfig, run_bench
    from inpaint.errors import InputError

    images, masks = bench_data
    needle = r"strength 0.5 must be 1 in a benchmark \(below 1 the hole starts from the ground truth"
    with pytest.raises(InputError, match=rf"^method_options\['sd'\]: {needle}"):
        BenchConfig(
            models=["sd"],
            data=images,
            masks=str(masks),
            output=tmp_path / "o",
            method_options={"sd": {"strength": 0.5}},
        )
    # Changed after construction: run_bench checks again, before anything is written.
    config = BenchConfig(models=["sd"], data=images, masks=str(masks), output=tmp_path / "o")
    config.method_options["sd"] = {"strength": 0.5}
    with pytest.raises(InputError, match=needle):
        run_bench(config)
    assert not (tmp_path / "o").exists()
