"""The shared training loop with the DDPM task: checkpoints, exact resume, learning, export."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from inpaint.config import TrainConfig
from inpaint.errors import InputError
from inpaint.testing import tiny_train_config
from inpaint.training import checkpoint as ckpt
from inpaint.training.ddpm_task import DDPMOptions, DDPMTask
from inpaint.training.loop import train


def _config(train_images, base, output, **overrides) -> TrainConfig:
    return tiny_train_config(
        overrides.pop("method", "ddpm"),
        train_images,
        output,
        base,
        **{"lr": 1e-3, "max_steps": 4, "save_every": 2, "ema_decay": 0.9, **overrides},
    )


def _task(base) -> DDPMTask:
    return DDPMTask(str(base), DDPMOptions(val_steps=2))


def _checkpoint_tensors(run, step):
    folder = run / "checkpoints" / ckpt.checkpoint_name(step)
    return {name: load_file(folder / f"{name}.safetensors") for name in ("model", "ema", "optimizer")}


def test_resume_is_bit_exact(tmp_path, train_images, tiny_ddpm_dir):
    config = _config(train_images, tiny_ddpm_dir, tmp_path / "straight")
    before = copy.deepcopy(config)
    straight = train(_task(tiny_ddpm_dir), config)
    assert straight.step == 4 and not straight.stopped_early
    assert config == before  # the run records its own copy, with the task's method options
    recorded = json.loads((tmp_path / "straight" / "training_config.json").read_text())["train"]
    assert recorded["method_options"]["known_weight"] == 0.05 and config.method_options == {}

    first = train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, tmp_path / "resumed"), stop_after=1)
    assert first.step == 1 and first.stopped_early
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text().strip() == "step-00000001"
    second = train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, tmp_path / "resumed"))
    assert second.resumed_from == 1 and second.step == 4

    a, b = _checkpoint_tensors(tmp_path / "straight", 4), _checkpoint_tensors(tmp_path / "resumed", 4)
    for part in ("model", "ema", "optimizer"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    # The logs agree too: the interrupted run's records were kept, not duplicated.
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_export_loads_with_stock_diffusers(tmp_path, train_images, tiny_ddpm_dir):
    from diffusers import UNet2DModel

    result = train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, tmp_path / "run", max_steps=2))
    run = tmp_path / "run"
    assert result.artefacts == [run, run / "raw"] and not (run / "ema").exists()
    ema = UNet2DModel.from_pretrained(run)  # the root holds the weights to use: the EMA
    assert ema.config.in_channels == 7
    raw = UNet2DModel.from_pretrained(run / "raw")
    assert not torch.equal(raw.conv_in.weight, ema.conv_in.weight)  # EMA lags the raw weights
    saved = json.loads((run / "inpaint_config.json").read_text())
    assert saved["train"]["method"] == "ddpm" and saved["train"]["method_options"]["known_weight"] == 0.05
    assert (
        saved["weights"] == "ema" and json.loads((run / "raw" / "inpaint_config.json").read_text())["weights"] == "raw"
    )
    assert (run / "loss.png").stat().st_size > 1000
    # Only the newest `keep_last` checkpoints remain, and the temp folders are gone.
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["latest", "step-00000001", "step-00000002"] or names == ["latest", "step-00000002"]
    # Weights, checkpoints and logs have the modes of files the user makes (safetensors and
    # tempfile would leave them private).
    import stat

    from inpaint.atomic import process_umask

    modes = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*")}
    umask = process_umask()
    assert {k: m for k, m in modes.items() if m != (0o777 if (run / k).is_dir() else 0o666) & ~umask} == {}
    assert "diffusion_pytorch_model.safetensors" in modes and "checkpoints/step-00000002/model.safetensors" in modes


def test_a_few_steps_lower_the_loss(tmp_path, train_images, tiny_ddpm_dir):
    from inpaint.data import CompletionDataset, MaskSource, collate

    task = _task(tiny_ddpm_dir)
    dataset = CompletionDataset(train_images, resolution=32, mask_source=MaskSource(("box-center",)), seed=0)
    batch = collate([dataset[(0, i)] for i in range(len(dataset))])

    def held_out_loss(module) -> float:
        with torch.no_grad():
            losses = [
                task.loss(module, batch, [torch.Generator().manual_seed(100 * k + i) for i in range(6)])
                for k in range(8)
            ]
        return float(torch.stack(losses).mean())

    module = task.build(torch.device("cpu"))
    before = held_out_loss(module)
    config = _config(
        train_images,
        tiny_ddpm_dir,
        tmp_path / "run",
        max_steps=12,
        save_every=100,
        masks=["box-center"],
        batch_size=3,
        lr=3e-3,
        ema_decay=0.0,
    )
    train(task, config)
    from inpaint.models.pixel_unet import load_completion_unet

    trained, _ = load_completion_unet(tmp_path / "run")
    after = held_out_loss(trained)
    assert after < 0.8 * before, (before, after)


def test_resume_refuses_changed_settings_and_no_resume(tmp_path, train_images, tiny_ddpm_dir):
    run = tmp_path / "run"
    train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, max_steps=1))
    with pytest.raises(InputError, match="cannot resume with different batch_size, lr"):
        train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, max_steps=2, batch_size=3, lr=1e-4))
    with pytest.raises(InputError, match="already holds checkpoints"):
        train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, max_steps=2), resume=False)
    # Extending the run is allowed.
    assert train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, max_steps=2)).resumed_from == 1


def test_resume_checks_the_run_length_and_names_changed_method_options(tmp_path, train_images, tiny_ddpm_dir):
    run = tmp_path / "run"
    train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, max_steps=2))
    with pytest.raises(InputError, match="--max-steps 1: .* is already at step 2"):
        train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, run, max_steps=1))
    with pytest.raises(InputError, match="cannot resume with different hole_weight;"):
        train(
            DDPMTask(str(tiny_ddpm_dir), DDPMOptions(val_steps=2, hole_weight=2.0)),
            _config(train_images, tiny_ddpm_dir, run, max_steps=3),
        )
    # Validation settings do not shape the trajectory: they may change.
    assert (
        train(
            DDPMTask(str(tiny_ddpm_dir), DDPMOptions(val_steps=5)),
            _config(train_images, tiny_ddpm_dir, run, max_steps=3),
        ).resumed_from
        == 2
    )
    # A decaying schedule is tied to the run's length: extending it would bend the curve.
    cosine = tmp_path / "cosine"
    train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, cosine, max_steps=2, lr_schedule="cosine"))
    with pytest.raises(InputError, match="cosine schedule decays over 2 steps"):
        train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, cosine, max_steps=4, lr_schedule="cosine"))


def test_warmup_applies_to_the_constant_schedule_and_the_log_shows_each_steps_rate(
    tmp_path, train_images, tiny_ddpm_dir
):
    run = tmp_path / "run"
    train(
        _task(tiny_ddpm_dir),
        _config(train_images, tiny_ddpm_dir, run, max_steps=4, warmup_steps=2, lr=1e-3, save_every=10),
    )
    rates = [
        json.loads(line)["lr"] for line in (run / "log.jsonl").read_text().splitlines() if "lr" in json.loads(line)
    ]
    assert rates == pytest.approx([0.0, 5e-4, 1e-3, 1e-3])  # the rate each step ran at, warming up


def test_a_stop_seen_by_one_process_stops_every_process(tmp_path, train_images, tiny_ddpm_dir):
    """Ctrl-C reaches the processes of a launch at different steps: they must agree, not deadlock."""
    import os
    import subprocess
    import sys

    script = tmp_path / "stop.py"
    script.write_text(f"""
import json, os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_training import _config, _task
from inpaint.training.loop import train
rank = int(os.environ["RANK"])
result = train(_task({str(tiny_ddpm_dir)!r}), _config({str(train_images)!r}, {str(tiny_ddpm_dir)!r},
               {str(tmp_path / "run")!r}, batch_size=1, max_steps=6, save_every=100, ema_decay=0.0),
               stop_requested=lambda: rank == 0)  # only rank 0 saw the Ctrl-C
report = {{"rank": rank, "step": result.step, "stopped": result.stopped_early}}
open({str(tmp_path)!r} + f"/rank{{rank}}.json", "w").write(json.dumps(report))  # not stdout: two writers interleave
""")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert reports == [{"rank": 0, "step": 1, "stopped": True}, {"rank": 1, "step": 1, "stopped": True}]
    assert ckpt.find_checkpoint(tmp_path / "run").name == ckpt.checkpoint_name(1)


def test_validation_writes_samples_and_scores(tmp_path, train_images, tiny_ddpm_dir):
    result = train(
        _task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, tmp_path / "run", max_steps=1, val_images=2)
    )
    assert set(result.validation) - {"val_lpips_hole"} == {"val_psnr_hole", "val_ssim_hole"}  # LPIPS: if here
    assert (tmp_path / "run" / "samples" / "step-00000001.png").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("val_psnr_hole" in r for r in records)


# ---- checkpoints on their own ----------------------------------------------------------------


def _state(step: int) -> ckpt.TrainingState:
    weight = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.AdamW([weight], lr=1e-3)
    weight.grad = torch.ones_like(weight)
    optimizer.step()
    return ckpt.TrainingState(
        step=step,
        model={"w": weight.detach().clone()},
        optimizer=optimizer.state_dict(),
        lr_scheduler={"last_epoch": step},
        grad_scaler=None,
        ema=None,
        config={"train": {}},
    )


def test_checkpoints_round_trip_rotate_and_never_pickle(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, _state(step), keep_last=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000002", "step-00000003"]
    loaded = ckpt.load_checkpoint(ckpt.find_checkpoint(tmp_path))
    assert loaded.step == 3
    assert set(loaded.optimizer["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    files = {p.suffix for p in (root / "step-00000003").iterdir()}
    assert files <= {".safetensors", ".json", ""}  # no .bin/.pkl/.pt: nothing to unpickle


def test_damaged_or_foreign_checkpoints(tmp_path):
    ckpt.save_checkpoint(tmp_path, _state(1), keep_last=2)
    ckpt.save_checkpoint(tmp_path, _state(2), keep_last=2)
    newest = tmp_path / "checkpoints" / "step-00000002"
    (newest / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="damaged checkpoint"):
        ckpt.load_checkpoint(newest)
    # A checkpoint without our marker (half-written, or someone else's) is never picked up.
    (newest / ckpt.MARKER).unlink()
    (tmp_path / "checkpoints" / "latest").unlink()
    assert ckpt.find_checkpoint(tmp_path).name == "step-00000001"
    with pytest.raises(InputError, match="not an inpaint checkpoint"):
        ckpt.load_checkpoint(newest)


def test_unreadable_training_images_are_refused_before_training(tmp_path, train_images, tiny_ddpm_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(train_images, data)
    (data / "notes.txt").write_text("not an image")  # skipped with a warning
    (data / "broken.png").write_bytes((data / "cat.png").read_bytes()[:200])
    with pytest.raises(InputError, match=r"1 of 7 images cannot be read \(first: broken\.png"):
        train(_task(tiny_ddpm_dir), _config(data, tiny_ddpm_dir, tmp_path / "run", max_steps=1))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_config_with_only_data_and_output_is_the_studys_run():
    from inpaint.config import METHOD_DEFAULTS

    ddpm = TrainConfig(method="ddpm", data="faces", output="runs/ddpm")
    assert (ddpm.resolution, ddpm.batch_size, ddpm.lr, ddpm.epochs, ddpm.ema_decay) == (256, 8, 1e-5, 10.0, 0.999)
    assert (ddpm.clip_grad_norm, ddpm.weight_decay, ddpm.mixed_precision) == (1.0, 1e-2, "auto")
    lora = TrainConfig(method="lora", data="faces", output="runs/lora")
    assert (lora.resolution, lora.batch_size, lora.lr, lora.epochs, lora.ema_decay) == (512, 2, 1e-4, 5.0, 0.0)
    assert TrainConfig(method="lora", data="d", output="o", batch_size=4).batch_size == 4  # a value given wins
    assert METHOD_DEFAULTS["ddpm"].base == "google/ddpm-celebahq-256"
    with pytest.raises(InputError, match="method 'gan': has no default settings"):
        TrainConfig(method="gan", data="d", output="o")


def test_the_run_takes_its_base_from_the_task_and_refuses_another(tmp_path, train_images, tiny_ddpm_dir):
    config = _config(train_images, tiny_ddpm_dir, tmp_path / "run", max_steps=1, save_every=1)
    config.base = None
    train(_task(tiny_ddpm_dir), config)
    assert config.base is None
    recorded = json.loads((tmp_path / "run" / "training_config.json").read_text())["train"]
    assert recorded["base"] == str(tiny_ddpm_dir) and recorded["ema_decay"] == 0.9
    with pytest.raises(InputError, match="TrainConfig base 'elsewhere': the task loads"):
        train(_task(tiny_ddpm_dir), _config(train_images, "elsewhere", tmp_path / "r2"))
    with pytest.raises(InputError, match="TrainConfig method 'lora': the task trains 'ddpm'"):
        train(_task(tiny_ddpm_dir), _config(train_images, tiny_ddpm_dir, tmp_path / "r3", method="lora"))
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def _base_predicting(tmp_path, tiny_ddpm_dir, kind: str) -> Path:
    import shutil

    base = tmp_path / f"base-{kind}"
    shutil.copytree(tiny_ddpm_dir, base)
    config_path = base / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["prediction_type"] = kind
    config_path.write_text(json.dumps(config))
    return base


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_the_loss_regresses_the_target_of_the_bases_prediction_type(tmp_path, tiny_ddpm_dir, kind):
    """Per image: its timestep, then its noise, from its own generator; the hole-weighted MSE against
    noise, velocity or x0, as the base's scheduler says."""
    from diffusers import DDPMScheduler

    from inpaint import testing
    from inpaint.losses import hole_weighted_mse
    from inpaint.samplers import completion_model_input

    task = _task(_base_predicting(tmp_path, tiny_ddpm_dir, kind))
    module = task.build(torch.device("cpu"))
    size = testing.TINY_SIZE
    x0 = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    masks = torch.zeros(2, 1, size, size)
    masks[:, :, 8:24, 8:24] = 1
    with torch.no_grad():
        loss = task.loss(module, {"pixels": x0, "masks": masks}, [torch.Generator().manual_seed(s) for s in (1, 2)])
        generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
        scheduler = DDPMScheduler.from_config(task.scheduler_config)
        assert scheduler.config.prediction_type == kind
        t = torch.stack([torch.randint(0, 1000, (), generator=g) for g in generators])
        noise = torch.stack([torch.randn(3, size, size, generator=g) for g in generators])
        target = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t), "sample": x0}[kind]
        prediction = module(completion_model_input(scheduler.add_noise(x0, noise, t), x0, masks), t).sample
        assert torch.equal(loss, hole_weighted_mse(prediction, target, masks))


def test_a_base_of_an_unknown_prediction_type_is_refused_before_training(tmp_path, tiny_ddpm_dir):
    task = _task(_base_predicting(tmp_path, tiny_ddpm_dir, "flow"))
    with pytest.raises(InputError, match="unsupported prediction_type 'flow'; expected one of epsilon"):
        task.build(torch.device("cpu"))
