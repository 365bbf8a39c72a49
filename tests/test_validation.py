"""Validation during training: held-out images, the EMA weights, LPIPS when its weights are here, plots."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import torch
from safetensors.torch import load_file

from inpaint.config import TrainConfig
from inpaint.data import CompletionDataset, choose_validation, collate, list_folder_images, split_validation
from inpaint.errors import InputError
from inpaint.seeding import derive_seed
from inpaint.testing import tiny_train_config
from inpaint.training import checkpoint as ckpt
from inpaint.training.ddpm_task import DDPMOptions, DDPMTask
from inpaint.training.loop import train


def _config(train_images, base, output, **overrides) -> TrainConfig:
    return tiny_train_config(
        "ddpm",
        train_images,
        output,
        base,
        **{"lr": 1e-3, "max_steps": 2, "save_every": 100, "ema_decay": 0.9, **overrides},
    )


class RecordingTask(DDPMTask):
    """Notes the names of the images each training loss sees."""

    def __init__(self, base) -> None:
        super().__init__(str(base), DDPMOptions(val_steps=2))
        self.seen: set[str] = set()

    def loss(self, module, batch, generators):
        self.seen.update(batch["names"])
        return super().loss(module, batch, generators)


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory, train_images):
    """Two validation images that are not training images (the training ones, turned)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("val-images")
    for name in ("astronaut", "coffee"):
        Image.open(train_images / f"{name}.png").transpose(Image.Transpose.ROTATE_90).save(folder / f"v-{name}.png")
    return folder


def test_the_split_is_a_pure_function_of_seed_and_names(train_images, tmp_path):
    images = list_folder_images(train_images)
    assert choose_validation(images, 2, seed=0) == choose_validation(list(reversed(images)), 2, seed=0)
    assert {tuple(choose_validation(images, 2, seed=s)) for s in range(8)} != {tuple(choose_validation(images, 2, 0))}
    split = split_validation(images, 1, seed=0)  # 6 images >= 5 x 1: held out
    assert split.source == "held-out" and len(split.train) == 5 and split.held_out == [split.val[0].name]
    assert split_validation(images, 2, seed=0).source == "training"  # 6 < 5 x 2: too few to spare two
    assert split_validation(images, 0, seed=0).source == "none"
    # Adding images changes the choice only if a new one ranks among the first.
    extra = [tmp_path / f"new{i}.png" for i in range(3)]
    ranked = choose_validation(images + extra, 1, seed=0)
    assert ranked == choose_validation(images, 1, seed=0) or ranked[0] in extra


def test_held_out_images_never_train_and_resume_keeps_the_split(tmp_path, train_images, tiny_ddpm_dir, val_folder):
    run = tmp_path / "run"
    task = RecordingTask(tiny_ddpm_dir)
    result = train(task, _config(train_images, tiny_ddpm_dir, run, val_images=1, max_steps=5))
    record = json.loads((run / "training_config.json").read_text())
    held_out = [p.name for p in choose_validation(list_folder_images(train_images), 1, seed=0)]
    assert record["val_source"] == "held-out" and record["val_names"] == held_out
    trained = [p for p in list_folder_images(train_images) if p.name not in held_out]
    assert task.seen and task.seen <= {p.stem for p in trained}
    assert set(result.validation) >= {"val_psnr_hole", "val_ssim_hole"}
    # The recorded data fingerprint describes the images that trained.
    assert record["data"] == CompletionDataset(train_images, resolution=32, images=trained).fingerprint()
    assert record["data"] != CompletionDataset(train_images, resolution=32).fingerprint()

    with pytest.raises(
        InputError,
        match=r"cannot resume with different validation images held out of training "
        r"\(--val-images, --val-data: .*\.png before, none now\)",
    ):
        train(RecordingTask(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, val_images=2, max_steps=6))
    with pytest.raises(InputError, match="validation images held out of training"):
        train(
            RecordingTask(tiny_ddpm_dir),
            _config(train_images, tiny_ddpm_dir, run, val_images=1, max_steps=6, val_data=str(val_folder)),
        )
    again = RecordingTask(tiny_ddpm_dir)
    assert train(again, _config(train_images, tiny_ddpm_dir, run, val_images=1, max_steps=6)).resumed_from == 5
    assert again.seen and again.seen <= {p.stem for p in trained}


def test_a_run_from_before_the_split_resumes_on_the_whole_folder(tmp_path, train_images, tiny_ddpm_dir, caplog):
    """Its records have no split: it trained on every image, and goes on doing so."""
    run = tmp_path / "run"
    train(RecordingTask(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, max_steps=1))
    latest = ckpt.find_checkpoint(run)
    state = json.loads((latest / "state.json").read_text())
    for key in ("val_source", "val_names"):
        del state["config"][key]
    (latest / "state.json").write_text(json.dumps(state))
    (latest / ckpt.MARKER).write_text(json.dumps({"format": ckpt.FORMAT_VERSION}))  # that version kept no checksums
    task = RecordingTask(tiny_ddpm_dir)
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        result = train(task, _config(train_images, tiny_ddpm_dir, run, val_images=1, max_steps=7))
    assert result.resumed_from == 1 and len(task.seen) == 6  # nothing held out: epoch 1 saw every image
    assert "started by an earlier version" in caplog.text
    assert "val_source" not in json.loads((run / "training_config.json").read_text())


def test_validation_samples_the_ema_weights_and_leaves_the_trajectory_alone(
    tmp_path, train_images, tiny_ddpm_dir, val_folder
):
    from inpaint import metrics
    from inpaint.models.pixel_unet import load_completion_unet

    validated, plain = tmp_path / "validated", tmp_path / "plain"
    result = train(
        DDPMTask(str(tiny_ddpm_dir), DDPMOptions(val_steps=2)),
        _config(train_images, tiny_ddpm_dir, validated, val_images=2, val_data=str(val_folder), validate_every=1),
    )
    train(DDPMTask(str(tiny_ddpm_dir), DDPMOptions(val_steps=2)), _config(train_images, tiny_ddpm_dir, plain))
    # Validating at every step (EMA swapped in and out) changes nothing in the training.
    for part in ("model", "ema", "optimizer"):
        a, b = (
            load_file(run / "checkpoints" / ckpt.checkpoint_name(2) / f"{part}.safetensors")
            for run in (validated, plain)
        )
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part

    record = json.loads((validated / "training_config.json").read_text())
    assert record["val_source"] == "val-data" and record["val_names"] == ["v-astronaut.png", "v-coffee.png"]
    # The scores are those of the EMA weights (what the root holds), not of the raw ones.
    split = split_validation(list_folder_images(train_images), 2, 0, val_folder)
    items = collate([CompletionDataset(val_folder, resolution=32, images=split.val)[(-1, i)] for i in range(2)])
    images, masks = (items["pixels"] + 1) / 2, items["masks"]
    seeds = [derive_seed(0, "val", name) for name in items["names"]]
    task = DDPMTask(str(tiny_ddpm_dir), DDPMOptions(val_steps=2))
    scores = {}
    for use_ema in (True, False):
        unet, task.scheduler_config = load_completion_unet(validated, use_ema=use_ema)
        with torch.no_grad():
            completed = task.complete(unet, images, masks, seeds)
        scores[use_ema] = float(metrics.psnr(completed, images, masks).mean())
    logged = [r["val_psnr_hole"] for r in _records(validated) if "val_psnr_hole" in r]
    assert len(logged) == 2 and logged[-1] == result.validation["val_psnr_hole"]
    assert logged[-1] == pytest.approx(scores[True], abs=1e-9) and scores[True] != scores[False]
    assert (validated / "samples" / "step-00000001.png").is_file()
    assert (validated / "validation.png").stat().st_size > 1000 and (validated / "loss.png").stat().st_size > 1000
    assert not (plain / "validation.png").exists()


def test_lora_validation_samples_the_ema_weights_and_leaves_the_trajectory_alone(
    tmp_path, train_images, tiny_sd_inpaint_dir, val_folder
):
    from inpaint import metrics
    from inpaint.training.lora_task import LoRAOptions, LoRATask

    def task() -> LoRATask:
        return LoRATask(str(tiny_sd_inpaint_dir), LoRAOptions(rank=4, val_steps=2))

    config = dict(
        method="lora",
        data=str(train_images),
        base=str(tiny_sd_inpaint_dir),
        resolution=32,
        batch_size=2,
        lr=1e-2,
        max_steps=2,
        save_every=100,
        ema_decay=0.9,
        device="cpu",
    )
    validated, plain = tmp_path / "validated", tmp_path / "plain"
    result = train(
        task(), TrainConfig(output=str(validated), val_images=1, val_data=str(val_folder), validate_every=1, **config)
    )
    train(task(), TrainConfig(output=str(plain), val_images=0, **config))
    checkpoints = [
        {
            part: load_file(run / "checkpoints" / ckpt.checkpoint_name(2) / f"{part}.safetensors")
            for part in ("model", "ema", "optimizer")
        }
        for run in (validated, plain)
    ]
    for part, a in checkpoints[0].items():
        b = checkpoints[1][part]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part

    # The last validation equals a completion by the EMA LoRA of step 2.
    lora = task()
    unet = lora.build(torch.device("cpu"))
    names = [name for name, p in unet.named_parameters() if p.requires_grad]
    lora.load_trainable_state(unet, {name: checkpoints[0]["ema"][f"shadow.{i}"] for i, name in enumerate(names)})
    split = split_validation(list_folder_images(train_images), 1, 0, val_folder)
    items = collate([CompletionDataset(val_folder, resolution=32, images=split.val)[(-1, 0)]])
    images, masks = (items["pixels"] + 1) / 2, items["masks"]
    unet.eval()
    with torch.no_grad():
        completed = lora.complete(unet, images, masks, [derive_seed(0, "val", items["names"][0])])
    assert result.validation["val_psnr_hole"] == pytest.approx(
        float(metrics.psnr(completed, images, masks).mean()), abs=1e-9
    )


def test_small_folders_validate_on_training_images_with_a_warning(tmp_path, train_images, tiny_ddpm_dir, caplog):
    task = RecordingTask(tiny_ddpm_dir)
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        train(task, _config(train_images, tiny_ddpm_dir, tmp_path / "run", val_images=2, max_steps=3))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "fewer than 5 x --val-images 2" in warnings[0] and "measure fit, not generalisation" in warnings[0]
    assert "--val-data" in warnings[0]
    record = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert record["val_source"] == "training" and len(record["val_names"]) == 2 and len(task.seen) == 6


def test_lpips_is_logged_when_its_weights_are_here(
    tmp_path, train_images, tiny_ddpm_dir, random_lpips_alex_file, monkeypatch, no_metric_weights, caplog
):
    with caplog.at_level(logging.INFO, logger="inpaint"):
        train(
            RecordingTask(tiny_ddpm_dir),
            _config(train_images, tiny_ddpm_dir, tmp_path / "without", val_images=2, validate_every=1),
        )
    assert not any("val_lpips_hole" in r for r in _records(tmp_path / "without"))
    assert caplog.text.count("validation: no LPIPS") == 1 and "alexnet-owt-7be5be79.pth" in caplog.text

    monkeypatch.setenv("INPAINT_LPIPS_WEIGHTS", str(random_lpips_alex_file))
    result = train(
        RecordingTask(tiny_ddpm_dir),
        _config(train_images, tiny_ddpm_dir, tmp_path / "with", val_images=2, validate_every=1),
    )
    values = [r["val_lpips_hole"] for r in _records(tmp_path / "with") if "val_lpips_hole" in r]
    assert len(values) == 2 and all(v >= 0 for v in values) and result.validation["val_lpips_hole"] == values[-1]


def test_train_ddpm_val_data_option(cli, tmp_path, train_images, tiny_ddpm_dir, val_folder):
    common = [
        "train-ddpm",
        train_images,
        "--base",
        tiny_ddpm_dir,
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--max-steps",
        "1",
        "--device",
        "cpu",
        "--val-steps",
        "2",
    ]
    result = cli(*common, "-o", tmp_path / "run", "--val-data", val_folder, "--val-images", "1", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["validation"] and "warning" not in result.err
    record = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert record["val_source"] == "val-data" and record["train"]["val_data"] == str(val_folder)
    assert record["val_names"][0] in {"v-astronaut.png", "v-coffee.png"}
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cut.png").write_bytes((val_folder / "v-coffee.png").read_bytes()[:200])
    for extra, needle in (
        (["--val-data", tmp_path / "nowhere"], "no such folder"),
        (["--val-data", train_images], "is the training folder"),
        # checked before the model loads (there is no model here to load)
        (["--val-data", broken, "--base", tmp_path / "no-model"], "1 of 1 images cannot be read"),
    ):
        result = cli(*common, "-o", tmp_path / "other", *extra)
        assert result.code == 2 and needle in result.err and len(result.err.strip().splitlines()) == 1, result


def test_plots_leave_pyplot_and_the_backend_alone(tmp_path, monkeypatch):
    import matplotlib

    from inpaint.training.history import History

    backend = matplotlib.get_backend()
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: pytest.fail("matplotlib.use called"))
    if "matplotlib.pyplot" in sys.modules:
        for name in ("figure", "subplots", "close"):
            monkeypatch.setattr(sys.modules["matplotlib.pyplot"], name, lambda *a, **k: pytest.fail("pyplot used"))
    history = History(tmp_path / "log.jsonl")
    assert history.plot_validation(tmp_path / "validation.png") is None  # nothing to draw yet
    for step in range(1, 5):
        history.log(step=step, loss=1.0 / step, lr=1e-3)
    history.log(step=2, val_psnr_hole=20.0, val_ssim_hole=0.5)
    history.log(step=4, val_psnr_hole=21.0, val_ssim_hole=0.6, val_lpips_hole=0.3)
    history.plot(tmp_path / "loss.png")
    history.plot_validation(tmp_path / "validation.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "validation.png").stat().st_size > 1000
    assert matplotlib.get_backend() == backend
