"""Reduced precision on the CPU: what ``auto`` picks, what is refused and why, and every half-precision
path run end to end on tiny models — complete (ddpm, repaint, sd with a LoRA), bench, one training
step of each task with EMA — so that a dtype mismatch fails here, not on the first user's GPU.

conftest.py pins the CPU probes (no native bf16, oneDNN bf16 kernels, no fp16 ones) so results do not
depend on the machine; the tests below set them as each case needs.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from inpaint import devices, io
from inpaint.errors import InputError
from inpaint.models.base import MethodOptions

#: The real probes (conftest replaces them for every test; imported before it does).
REAL_CPU_CAPABILITIES = devices.cpu_capabilities
REAL_CPU_HALF_KERNELS = devices.cpu_half_kernels
CPU = torch.device("cpu")
TINY_TRAINING = [
    "--resolution",
    "32",
    "--batch-size",
    "2",
    "--lr",
    "1e-3",
    "--device",
    "cpu",
    "--val-steps",
    "2",
    "--ema-decay",
    "0.9",
    "--save-every",
    "1",
]


@pytest.fixture
def fp16_kernels(monkeypatch):
    """torch's fp16 kernels allowed on this CPU: the tests' tiny models run on its reference kernels,
    which is slow but exercises the fp16 code path (the default on CUDA) here."""
    monkeypatch.setattr(devices, "cpu_half_kernels", lambda dtype: True)


def _config(**fields):
    from inpaint.config import TrainConfig

    return TrainConfig(method="ddpm", data=".", output="out", base="base", **fields)


# ---- the rules -------------------------------------------------------------------------------------


def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16_and_says_so_once(monkeypatch, caplog):
    from inpaint.training.precision import mixed_precision_for

    caplog.set_level(logging.INFO, logger="inpaint")
    assert devices.resolve_dtype("auto", CPU) == torch.float32  # conftest: no native bf16
    assert mixed_precision_for(_config(), CPU) == "no"
    monkeypatch.setattr(devices, "native_bf16_cpu", lambda: "avx512_bf16")
    assert devices.resolve_dtype("auto", CPU) == torch.bfloat16
    assert devices.resolve_dtype("auto", CPU) == torch.bfloat16
    assert mixed_precision_for(_config(), CPU) == "bf16"
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "--dtype auto: bf16 on this CPU (it has avx512_bf16): about twice as fast as fp32; --dtype fp32 "
        "for full precision",
        "--mixed-precision auto: bf16 autocast on this CPU (it has avx512_bf16); --mixed-precision no for fp32",
    ]
    # Elsewhere auto is unchanged: fp16 (and its grad scaler) on CUDA, fp32 on Apple's MPS.
    assert devices.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert devices.resolve_dtype("auto", torch.device("mps")) == torch.float32
    assert mixed_precision_for(_config(), torch.device("cuda")) == "fp16"
    # Native bf16 without oneDNN's bf16 kernels (a torch built without them): fp32.
    monkeypatch.setattr(devices, "cpu_half_kernels", lambda dtype: False)
    assert devices.resolve_dtype("auto", CPU) == torch.float32
    assert mixed_precision_for(_config(), CPU) == "no"


def test_native_bf16_is_read_from_the_cpus_instruction_sets(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    for capabilities, expected in [
        ({"avx512_bf16": True}, "avx512_bf16"),
        ({"amx_bf16": True, "avx512_bf16": True}, "amx_bf16"),
        ({"avx512_bf16": False, "avx512_f": True}, None),
        ({}, None),
    ]:
        monkeypatch.setattr(devices, "cpu_capabilities", lambda c=capabilities: c)
        assert devices.native_bf16_cpu() == expected, capabilities
    # Arm CPUs (and Apple silicon, on the CPU device) keep fp32 under auto: not measured.
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    monkeypatch.setattr(devices, "cpu_capabilities", lambda: {"bf16": True, "avx512_bf16": True})
    assert devices.native_bf16_cpu() is None


def test_the_real_probes_answer_on_this_torch(monkeypatch):
    """The keys read exist in this torch's cpuinfo report, and the fallback for older torch works."""
    capabilities = REAL_CPU_CAPABILITIES()
    if hasattr(torch.cpu, "get_capabilities"):
        assert {"avx512_bf16", "amx_bf16"} <= set(capabilities)
    assert isinstance(REAL_CPU_HALF_KERNELS(torch.bfloat16), bool)
    assert isinstance(REAL_CPU_HALF_KERNELS(torch.float16), bool)
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert REAL_CPU_CAPABILITIES() == {"avx512_bf16": True, "amx_bf16": False}


def test_half_precision_without_torch_kernels_is_refused_with_the_reason(monkeypatch, caplog):
    from inpaint.training.precision import mixed_precision_for

    caplog.set_level(logging.INFO, logger="inpaint")
    with pytest.raises(
        InputError,
        match=r"^--dtype fp16: this CPU has no fp16 arithmetic \(AVX512-FP16 or "
        r"AMX-FP16\).*hundreds of times slower than fp32; use bf16$",
    ):
        devices.resolve_dtype("fp16", CPU)
    with pytest.raises(
        InputError,
        match=r"^--mixed-precision fp16: not available on the CPU \(accelerate has no "
        r"fp16 autocast or grad scaler there",
    ):
        mixed_precision_for(_config(mixed_precision="fp16"), CPU)
    # bf16 with oneDNN's kernels but no native bf16: allowed, with a note that it may not be faster.
    assert devices.resolve_dtype("bf16", CPU) == torch.bfloat16
    assert mixed_precision_for(_config(mixed_precision="bf16"), CPU) == "bf16"
    assert [r.getMessage() for r in caplog.records] == [
        "--dtype bf16: this CPU has no native bf16 (AVX512-BF16 or AMX); oneDNN emulates it, which may be no "
        "faster than fp32"
    ]
    monkeypatch.setattr(devices, "cpu_half_kernels", lambda dtype: False)
    for flag, call in (
        ("--dtype bf16", lambda: devices.resolve_dtype("bf16", CPU)),
        ("--mixed-precision bf16", lambda: mixed_precision_for(_config(mixed_precision="bf16"), CPU)),
    ):
        with pytest.raises(
            InputError,
            match=rf"^{flag}: torch has no fast bf16 kernels for this CPU .* about 65 "
            r"times slower than fp32; use fp32$",
        ):
            call()
    with pytest.raises(InputError, match="use fp32$"):
        devices.resolve_dtype("fp16", CPU)
    assert devices.resolve_dtype("fp32", CPU) == torch.float32


def test_doctor_says_what_auto_picks_on_the_cpu(cli, monkeypatch):
    cpu = next(d for d in json.loads(cli("doctor", "--json").out)["devices"] if d["device"] == "cpu")
    assert (cpu["native_bf16"], cpu["auto_dtype"], cpu["auto_mixed_precision"]) == (None, "fp32", "no")
    monkeypatch.setattr(devices, "native_bf16_cpu", lambda: "amx_bf16")
    cpu = next(d for d in json.loads(cli("doctor", "--json").out)["devices"] if d["device"] == "cpu")
    assert (cpu["native_bf16"], cpu["auto_dtype"], cpu["auto_mixed_precision"]) == ("amx_bf16", "bf16", "bf16")
    assert "auto_dtype bf16" in " ".join(cli("doctor").out.split())


# ---- inference -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory, tiny_sd_inpaint_dir):
    """A LoRA for the tiny SD base with non-zero B (a trained one's shape, without training)."""
    from peft import LoraConfig

    from inpaint.models.lora_files import save_lora
    from inpaint.models.sd_weights import load_pipeline

    pipe = load_pipeline(tiny_sd_inpaint_dir, dtype=torch.float32)
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, parameter in pipe.unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    return save_lora(pipe.unet, tmp_path_factory.mktemp("lora"), {"inpaint_prompt": "a photo"})


def test_complete_runs_every_diffusion_method_in_bf16(
    cli, tmp_path, photo, center_mask, tiny_unet7_dir, tiny_ddpm_dir, tiny_sd_inpaint_dir, lora_file
):
    photo, center_mask = photo[::2, ::2], center_mask[::2, ::2]  # 32 x 32: fast
    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    methods = {
        "ddpm": ["--weights", tiny_unet7_dir, "--steps", "3"],
        "repaint": [
            "--weights",
            tiny_ddpm_dir,
            "--sampler",
            "fast",
            "--steps",
            "4",
            "--jump-length",
            "2",
            "--jump-n-sample",
            "2",
        ],
        "sd": ["--weights", tiny_sd_inpaint_dir, "--lora", lora_file, "--steps", "2"],
    }
    for method, extra in methods.items():
        outputs = {}
        for dtype in ("fp32", "bf16"):
            out = tmp_path / f"{method}-{dtype}.png"
            result = cli("complete", image, mask, "-o", out, "-m", method, "--device", "cpu", "--dtype", dtype, *extra)
            assert result.code == 0, result
            outputs[dtype] = io.read_image(out).astype(int)
            assert np.array_equal(outputs[dtype][~center_mask], photo[~center_mask])  # pasted back exactly
        difference = np.abs(outputs["bf16"] - outputs["fp32"])[center_mask]
        assert difference.max() > 0, method  # bf16 did run
        assert difference.mean() < 6 and difference.max() < 64, (method, difference.mean(), difference.max())


def test_bf16_models_run_in_bf16_and_hand_fp32_back(tiny_unet7_dir, tiny_sd_inpaint_dir, lora_file):
    from inpaint import models

    ddpm = models.load_inpainter("ddpm", MethodOptions(weights=str(tiny_unet7_dir), dtype="bf16", steps=2))
    assert {p.dtype for p in ddpm.unet.parameters()} == {torch.bfloat16}
    # bf16 on the CPU stores the convolutions channels-last (faster there); fp32 keeps the default.
    assert ddpm.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    fp32 = models.load_inpainter("ddpm", MethodOptions(weights=str(tiny_unet7_dir), dtype="fp32", steps=2))
    assert not fp32.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    sd = models.load_inpainter("sd", MethodOptions(weights=str(tiny_sd_inpaint_dir), dtype="bf16", lora=str(lora_file)))
    pipe = sd.pipe
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.bfloat16}  # the LoRA's matrices too
    assert any("lora_B" in name for name, _ in pipe.unet.named_parameters())
    # The rest stays fp32, so the latents and the scheduler's arithmetic do (diffusers follows the
    # text encoder's dtype), and the VAE decodes in fp32.
    assert (
        {p.dtype for p in pipe.vae.parameters()} == {p.dtype for p in pipe.text_encoder.parameters()} == {torch.float32}
    )
    latents = torch.randn(2, 9, 16, 16)
    text = torch.randn(2, 77, pipe.unet.config.cross_attention_dim)
    with torch.no_grad():
        out = pipe.unet(latents, torch.tensor(999), encoder_hidden_states=text).sample
        legacy = pipe.unet(latents, torch.tensor(999), text, return_dict=False)[0]
    assert out.dtype == legacy.dtype == torch.float32 and torch.equal(out, legacy)
    # The timestep reaches the UNet unrounded: 999 in bf16 would be 1000.
    seen = []
    hook = pipe.unet.time_proj.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    with torch.no_grad():
        pipe.unet(latents, torch.tensor(999), encoder_hidden_states=text)
    hook.remove()
    assert seen[0].dtype == torch.int64 and int(seen[0][0]) == 999


def test_bench_in_bf16_and_auto_says_it_once(cli, tmp_path, photo, tiny_unet7_dir, tiny_sd_inpaint_dir, monkeypatch):
    data = tmp_path / "data"
    for i in range(2):
        io.save_image(np.roll(photo[::2, ::2], 5 * i, axis=1), data / f"img{i}.png")
    common = [
        "bench",
        "--models",
        "ddpm",
        "sd",
        "--data",
        data,
        "--masks",
        "lama-thick",
        "--weights",
        f"ddpm={tiny_unet7_dir}",
        "--weights",
        f"sd={tiny_sd_inpaint_dir}",
        "--model-option",
        "ddpm.steps=2",
        "--model-option",
        "sd.steps=2",
        "--eval-size",
        "32",
        "--no-lpips",
        "--no-fid",
        "--device",
        "cpu",
    ]
    result = cli(*common, "-o", tmp_path / "bf16", "--dtype", "bf16")
    assert result.code == 0, result
    scores = json.loads((tmp_path / "bf16" / "results.json").read_text())["models"]
    assert set(scores) == {"ddpm", "sd"} and all(
        np.isfinite(s["metrics"]["psnr_hole"]["value"]) for s in scores.values()
    )
    monkeypatch.setattr(devices, "native_bf16_cpu", lambda: "avx512_bf16")
    result = cli(*common, "-o", tmp_path / "auto")
    assert result.code == 0, result
    assert result.err.count("--dtype auto: bf16 on this CPU (it has avx512_bf16)") == 1  # two methods, one line


def test_fp16_path_runs_where_torch_has_the_kernels(
    cli, tmp_path, photo, center_mask, tiny_unet7_dir, tiny_sd_inpaint_dir, fp16_kernels
):
    """fp16 is what auto runs on CUDA: diffusers' pipeline all in fp16, the pixel UNets in fp16."""
    from inpaint import models

    photo, center_mask = photo[::2, ::2], center_mask[::2, ::2]
    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    for method, extra in (
        ("ddpm", ["--weights", tiny_unet7_dir, "--steps", "2"]),
        ("sd", ["--weights", tiny_sd_inpaint_dir, "--steps", "2"]),
    ):
        out = tmp_path / f"{method}.png"
        result = cli("complete", image, mask, "-o", out, "-m", method, "--device", "cpu", "--dtype", "fp16", *extra)
        assert result.code == 0, result
        assert np.array_equal(io.read_image(out)[~center_mask], photo[~center_mask])
    sd = models.load_inpainter("sd", MethodOptions(weights=str(tiny_sd_inpaint_dir), dtype="fp16"))
    assert (
        {p.dtype for p in sd.pipe.vae.parameters()} == {p.dtype for p in sd.pipe.unet.parameters()} == {torch.float16}
    )


# ---- training ----------------------------------------------------------------------------------------


def _autocast_spy(monkeypatch, task_class) -> list[tuple[bool, torch.dtype]]:
    """Record, at every loss evaluation, whether CPU autocast is on and in which dtype."""
    seen = []
    loss = task_class.loss

    def spy(self, module, batch, generators):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return loss(self, module, batch, generators)

    monkeypatch.setattr(task_class, "loss", spy)
    return seen


def _all_fp32(tensors: dict[str, torch.Tensor]) -> bool:
    return bool(tensors) and {t.dtype for t in tensors.values()} == {torch.float32}


def test_train_ddpm_auto_trains_in_bf16_with_fp32_weights_ema_and_checkpoints(
    cli, tmp_path, train_images, tiny_ddpm_dir, monkeypatch
):
    from inpaint.training.ddpm_task import DDPMTask

    monkeypatch.setattr(devices, "native_bf16_cpu", lambda: "avx512_bf16")
    seen = _autocast_spy(monkeypatch, DDPMTask)
    run = tmp_path / "run"
    result = cli(
        "train-ddpm",
        train_images,
        "-o",
        run,
        "--base",
        tiny_ddpm_dir,
        "--max-steps",
        "2",
        "--val-images",
        "2",
        "--json",
        *TINY_TRAINING,
    )
    assert result.code == 0, result
    assert "--mixed-precision auto: bf16 autocast on this CPU" in result.err
    assert seen and all(s == (True, torch.bfloat16) for s in seen)
    summary = json.loads(result.out)
    assert np.isfinite(summary["validation"]["val_psnr_hole"])
    checkpoint = run / "checkpoints" / "step-00000002"
    for name in ("model", "ema", "optimizer"):
        assert _all_fp32(load_file(checkpoint / f"{name}.safetensors")), name
    for weights in (run / "diffusion_pytorch_model.safetensors", run / "raw" / "diffusion_pytorch_model.safetensors"):
        assert _all_fp32(load_file(weights)), weights  # the EMA weights at the root, the raw ones in raw/
    ema, raw = (
        load_file(run / "diffusion_pytorch_model.safetensors"),
        load_file(run / "raw" / "diffusion_pytorch_model.safetensors"),
    )
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # the EMA did step


def test_train_lora_in_bf16_saves_fp32_loras_that_complete_uses(
    cli, tmp_path, train_images, tiny_sd_inpaint_dir, photo, center_mask, monkeypatch
):
    from inpaint.training.lora_task import LoRATask

    seen = _autocast_spy(monkeypatch, LoRATask)
    frozen = []
    build = LoRATask.build

    def spy_build(self, device, mixed_precision="no"):
        unet = build(self, device, mixed_precision)
        frozen.append(
            {p.dtype for p in self._parts["vae"].parameters()}
            | {p.dtype for n, p in unet.named_parameters() if not p.requires_grad}
        )
        frozen.append({p.dtype for p in unet.parameters() if p.requires_grad})
        return unet

    monkeypatch.setattr(LoRATask, "build", spy_build)
    run = tmp_path / "run"
    result = cli(
        "train-lora",
        train_images,
        "-o",
        run,
        "--base",
        tiny_sd_inpaint_dir,
        "--max-steps",
        "2",
        "--val-images",
        "1",
        "--rank",
        "4",
        "--mixed-precision",
        "bf16",
        "--json",
        *TINY_TRAINING,
    )
    assert result.code == 0, result
    assert frozen == [{torch.bfloat16}, {torch.float32}]  # the frozen model in bf16, the LoRA's matrices fp32
    assert seen and all(s == (True, torch.bfloat16) for s in seen)
    for lora in (run / "pytorch_lora_weights.safetensors", run / "raw" / "pytorch_lora_weights.safetensors"):
        assert _all_fp32(load_file(lora)), lora  # EMA at the root, raw in raw/: saved fp32
    assert _all_fp32(load_file(run / "checkpoints" / "step-00000002" / "model.safetensors"))
    assert _all_fp32(load_file(run / "checkpoints" / "step-00000002" / "ema.safetensors"))

    photo, center_mask = photo[::2, ::2], center_mask[::2, ::2]
    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    result = cli(
        "complete",
        image,
        mask,
        "-o",
        tmp_path / "out.png",
        "-m",
        "sd",
        "--weights",
        tiny_sd_inpaint_dir,
        "--lora",
        run,
        "--steps",
        "2",
        "--device",
        "cpu",
        "--dtype",
        "bf16",
    )
    assert result.code == 0, result


def _fp16_accelerator_with_a_cpu_grad_scaler(init_scale: float):
    """accelerate gives fp16 neither autocast nor a grad scaler on the CPU (so --mixed-precision fp16
    is refused there); switched on by hand, the loop's whole fp16 path runs: scaled backward, unscaled
    clipping, skipped steps, the scaler's state in checkpoints."""
    from accelerate import Accelerator

    from inpaint.training import precision

    def build(config):
        precision.forget_other_precision("fp16")
        accelerator = Accelerator(cpu=True, mixed_precision="fp16")
        accelerator.native_amp = True
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
        return accelerator

    return build


def test_fp16_grad_scaler_path_skips_overflowing_steps_and_resumes_its_scale(
    tmp_path, train_images, tiny_ddpm_dir, monkeypatch
):
    from inpaint.config import TrainConfig
    from inpaint.training import checkpoint as ckpt
    from inpaint.training import loop
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask

    seen = _autocast_spy(monkeypatch, DDPMTask)

    def run(output, steps: int, init_scale: float):
        monkeypatch.setattr(loop, "_accelerator", _fp16_accelerator_with_a_cpu_grad_scaler(init_scale))
        config = TrainConfig(
            method="ddpm",
            data=str(train_images),
            output=str(output),
            base=str(tiny_ddpm_dir),
            resolution=32,
            batch_size=2,
            lr=1e-3,
            max_steps=steps,
            save_every=1,
            val_images=0,
            ema_decay=0.9,
            device="cpu",
            clip_grad_norm=1.0,
        )
        return loop.train(DDPMTask(str(tiny_ddpm_dir), DDPMOptions()), config)

    # A scale of 2^60 overflows fp16 gradients: every step is skipped and the scale halves each time.
    overflow = tmp_path / "overflow"
    run(overflow, 2, 2.0**60)
    assert seen and all(s == (True, torch.float16) for s in seen)
    state = ckpt.load_checkpoint(overflow / "checkpoints" / "step-00000002")
    assert state.grad_scaler["scale"] == 2.0**58
    assert state.ema["optimization_step"] == 0  # skipped steps leave the EMA ...
    assert state.lr_scheduler["last_epoch"] == 0  # ... and the schedule where they were
    base = DDPMTask(str(tiny_ddpm_dir), DDPMOptions()).build(CPU)
    assert all(torch.equal(state.model[k], v) for k, v in base.state_dict().items())  # the optimiser never stepped
    # Resumed, the scaler continues from its saved scale, not from the new run's initial one.
    run(overflow, 3, 2.0**60)
    assert ckpt.load_checkpoint(overflow / "checkpoints" / "step-00000003").grad_scaler["scale"] == 2.0**57
    # At a scale that fits, the steps go through.
    fits = tmp_path / "fits"
    result = run(fits, 2, 1.0)
    assert np.isfinite(result.last_loss)
    state = ckpt.load_checkpoint(fits / "checkpoints" / "step-00000002")
    assert state.grad_scaler["scale"] == 1.0 and state.ema["optimization_step"] == 2
    assert _all_fp32(state.model) and any(not torch.equal(state.model[k], v) for k, v in base.state_dict().items())
