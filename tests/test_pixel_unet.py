"""Loading, widening and saving pixel-space UNets (inpaint.models.pixel_unet)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from inpaint import testing
from inpaint.errors import InputError
from inpaint.models.pixel_unet import (
    load_base,
    load_completion_unet,
    save_completion_unet,
    widen_conv_in,
)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- widening ------------------------------------------------------------------------------


def test_widened_unet_equals_base_exactly_whatever_the_extra_channels_hold():
    base = testing.tiny_unet2d(in_channels=3)
    wide = widen_conv_in(copy.deepcopy(base), 7)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 3, 32, 32, generator=g)
    extra = torch.randn(2, 4, 32, 32, generator=g) * 5  # masked image + mask: anything
    t = torch.tensor([10, 900])
    with torch.no_grad():
        expected = base(x_t, t).sample
        got = wide(torch.cat([extra, x_t], dim=1), t).sample
    assert torch.equal(got, expected)
    assert wide.conv_in.in_channels == 7
    assert torch.equal(wide.conv_in.bias, base.conv_in.bias)
    assert torch.equal(wide.conv_in.weight[:, 4:], base.conv_in.weight)
    assert not wide.conv_in.weight[:, :4].any()


def test_widening_updates_the_saved_config(tmp_path):
    wide = widen_conv_in(testing.tiny_unet2d(in_channels=3))
    assert wide.config.in_channels == 7
    wide.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["in_channels"] == 7


def test_widening_refuses_to_narrow():
    with pytest.raises(ValueError):
        widen_conv_in(testing.tiny_unet2d(in_channels=7), 7)


# ---- load_base -----------------------------------------------------------------------------


def test_load_base_reads_both_layouts_alike(tiny_ddpm_dir, tiny_ddpm_pipeline_dir):
    flat, flat_schedule = load_base(tiny_ddpm_dir)
    pipe, pipe_schedule = load_base(tiny_ddpm_pipeline_dir)
    assert flat.config.in_channels == pipe.config.in_channels == 3
    for (name, a), (_, b) in zip(flat.state_dict().items(), pipe.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert flat_schedule["num_train_timesteps"] == pipe_schedule["num_train_timesteps"] == 1000
    assert flat_schedule["beta_schedule"] == "linear"
    assert not flat.training


def test_load_base_pipeline_layout_without_root_files(tiny_ddpm_pipeline_dir, tmp_path):
    # DDPMPipeline.save_pretrained also leaves nothing at the root but model_index.json.
    root = _copy(tiny_ddpm_pipeline_dir, tmp_path / "pipe")
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"):
        (root / name).unlink(missing_ok=True)
    unet, schedule = load_base(root)
    assert unet.config.in_channels == 3 and schedule["_class_name"] == "DDPMScheduler"


def test_hub_id_offline_is_one_actionable_line():
    with pytest.raises(InputError) as info:
        load_base("inpaint-tests/no-such-model")
    message = str(info.value)
    assert "\n" not in message
    assert "inpaint-tests/no-such-model" in message and "offline" in message
    assert "hf download inpaint-tests/no-such-model" in message and "local directory" in message


def test_missing_local_directory(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        load_base(tmp_path / "nope")


def test_directory_without_config(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(InputError, match="no config.json"):
        load_base(tmp_path)


def test_text_conditioned_unet_is_refused(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(InputError, match="UNet2DConditionModel"):
        load_base(tmp_path)


def test_pickle_weights_that_are_not_tensors_are_refused(tiny_ddpm_dir, tmp_path):
    """A .bin-only model is read by torch's weights-only unpickler: bytes it cannot read are refused."""
    root = _copy(tiny_ddpm_dir, tmp_path / "m")
    (root / "diffusion_pytorch_model.safetensors").unlink()
    (root / "diffusion_pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(InputError, match="diffusion_pytorch_model.bin: refused as unsafe or unreadable"):
        load_base(root)


def test_a_model_without_weights_is_refused(tiny_ddpm_dir, tmp_path):
    root = _copy(tiny_ddpm_dir, tmp_path / "m")
    (root / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(InputError, match="no diffusion_pytorch_model.safetensors nor its .bin"):
        load_base(root)


def test_missing_scheduler_config(tiny_ddpm_dir, tmp_path):
    root = _copy(tiny_ddpm_dir, tmp_path / "m")
    (root / "scheduler_config.json").unlink()
    with pytest.raises(InputError, match="scheduler_config.json"):
        load_base(root)


# ---- completion models ---------------------------------------------------------------------


def test_load_completion_unet(tiny_unet7_dir):
    unet, schedule = load_completion_unet(tiny_unet7_dir)
    assert unet.config.in_channels == 7
    assert schedule["num_train_timesteps"] == 1000


def test_unconditional_model_where_completion_is_needed(tiny_ddpm_dir):
    with pytest.raises(InputError) as info:
        load_completion_unet(tiny_ddpm_dir)
    assert "3-channel" in str(info.value) and "--model repaint" in str(info.value)
    assert "inpaint train-ddpm" in str(info.value)


def test_save_completion_unet_loads_with_stock_diffusers(tmp_path):
    from diffusers import UNet2DModel

    unet = widen_conv_in(testing.tiny_unet2d())
    schedule = dict(testing.tiny_ddpm_scheduler().config)
    out = save_completion_unet(unet, schedule, tmp_path / "run", {"lr": 1e-5, "epochs": 10})
    stock = UNet2DModel.from_pretrained(out, use_safetensors=True)
    assert stock.config.in_channels == 7
    for (name, a), (_, b) in zip(unet.state_dict().items(), stock.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert json.loads((out / "inpaint_config.json").read_text()) == {"lr": 1e-5, "epochs": 10}
    assert json.loads((out / "scheduler_config.json").read_text())["num_train_timesteps"] == 1000
    assert not list(tmp_path.glob(".*tmp*")), "temporary folder left behind"
    reloaded, reloaded_schedule = load_completion_unet(out)
    assert reloaded.config.in_channels == 7 and reloaded_schedule["beta_schedule"] == "linear"


def test_resaving_keeps_other_files_and_the_earlier_layout_loads_its_ema(tmp_path):
    """Folders written before the weights marker: raw weights at the root, the EMA in ema/."""
    schedule = dict(testing.tiny_ddpm_scheduler().config)
    out = tmp_path / "run"
    save_completion_unet(widen_conv_in(testing.tiny_unet2d(seed=1)), schedule, out)
    ema = widen_conv_in(testing.tiny_unet2d(seed=2))
    save_completion_unet(ema, schedule, out / "ema")
    (out / "checkpoints").mkdir()
    raw = widen_conv_in(testing.tiny_unet2d(seed=3))
    save_completion_unet(raw, schedule, out)  # a later epoch overwrites the root's weights only
    assert (out / "checkpoints").is_dir()
    loaded_ema, _ = load_completion_unet(out)  # EMA by default
    loaded_raw, _ = load_completion_unet(out, use_ema=False)
    assert torch.equal(loaded_raw.conv_in.weight, raw.conv_in.weight)
    assert torch.equal(loaded_ema.conv_in.weight, ema.conv_in.weight)


def test_weights_without_ema_load_either_way_and_missing_raw_weights_are_one_line(tmp_path, tiny_unet7_dir):
    only, _ = load_completion_unet(tiny_unet7_dir)  # no EMA: its only weights, silently
    same, _ = load_completion_unet(tiny_unet7_dir, use_ema=False)
    assert torch.equal(only.conv_in.weight, same.conv_in.weight)
    schedule = dict(testing.tiny_ddpm_scheduler().config)
    save_completion_unet(widen_conv_in(testing.tiny_unet2d()), schedule, tmp_path / "ema-only", {"weights": "ema"})
    load_completion_unet(tmp_path / "ema-only")
    with pytest.raises(InputError, match="no raw/config.json"):
        load_completion_unet(tmp_path / "ema-only", use_ema=False)
