"""Speed and memory levers (docs/performance.md): batched folders, channels-last, torch.compile, SD's
memory levers, gradient checkpointing — each changes speed or memory, not the results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inpaint import completion, io, models
from inpaint.errors import InpaintError, InputError
from inpaint.models.base import MethodOptions

# ---- batched folders ---------------------------------------------------------------------------


def _folder(tmp_path, photo, sizes=(64, 64, 64, 48, 64, 64, 64)):
    """Images of mixed sizes (photo crops, rolled) with holes that differ per image."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i, size in enumerate(sizes):
        mask = np.zeros((size, size), dtype=bool)
        mask[4 + i : 20 + i, 8 + 2 * i : 30] = True
        io.save_image(np.ascontiguousarray(np.roll(photo, 5 * i, axis=1)[:size, :size]), images / f"im{i}.png")
        io.save_mask(mask, masks / f"im{i}.png")
    return images, masks


class Spy:
    """Wraps an inpainter; records the batch size of every call and how many files were read by then."""

    def __init__(self, inner, reads=None) -> None:
        self.inner, self.name, self.calls, self.reads = inner, inner.name, [], reads

    def __call__(self, images, masks, seeds, **kwargs):
        self.calls.append((images.shape[0], self.reads[0] if self.reads else None, tuple(kwargs["names"])))
        return self.inner(images, masks, seeds, **kwargs)


def _run(inpainter, images, masks, out, **kwargs):
    pairs, _ = completion.pair_folders(images, masks, out)
    return completion.complete_folder(inpainter, pairs, seed=3, **kwargs)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_batches_group_one_size_stream_and_give_the_same_bytes(tmp_path, photo, monkeypatch):
    images, masks = _folder(tmp_path, photo)
    reads = [0]
    read_image = io.read_image_keeping_profile  # folders keep each image's colour profile for its result
    monkeypatch.setattr(
        io, "read_image_keeping_profile", lambda *a, **k: reads.__setitem__(0, reads[0] + 1) or read_image(*a, **k)
    )
    spy = Spy(models.load_inpainter("telea"), reads)
    report = _run(spy, images, masks, tmp_path / "b3", batch_size=3, concat=True)
    # Consecutive images of one size, at most 3 at a time; the 48-px image breaks the run.
    assert [(n, names) for n, _, names in spy.calls] == [
        (3, ("im0", "im1", "im2")),
        (1, ("im3",)),
        (3, ("im4", "im5", "im6")),
    ]
    # Files are read as batches fill, never all up front (im3 runs once im4 shows a new size).
    assert [r for _, r, _ in spy.calls] == [3, 5, 7]
    assert report.written == [f"im{i}" for i in range(7)] and report.batch_size == 3
    single = _run(models.load_inpainter("telea"), images, masks, tmp_path / "b1", concat=True)
    assert single.written == report.written
    assert _files(tmp_path / "b3") == _files(tmp_path / "b1")  # byte-identical PNGs
    assert _files(tmp_path / "b3" / "concat") == _files(tmp_path / "b1" / "concat")
    alone = completion.complete_file(models.load_inpainter("telea"), images / "im5.png", masks / "im5.png", seed=3)
    assert np.array_equal(io.read_image(tmp_path / "b3" / "im5.png"), alone.result)


def test_a_bad_file_or_unfillable_mask_fails_alone_and_resume_is_unchanged(tmp_path, photo):
    images, masks = _folder(tmp_path, photo, sizes=(64,) * 6)
    (images / "im1.png").write_bytes(b"\x89PNG broken")
    io.save_mask(np.ones((64, 64), dtype=bool), masks / "im4.png")  # biharmonic needs a known pixel
    io.save_mask(np.zeros((64, 64), dtype=bool), masks / "im5.png")  # empty: returned unchanged
    out = tmp_path / "out"
    spy = Spy(models.load_inpainter("biharmonic"))
    report = _run(spy, images, masks, out, batch_size=4)
    assert sorted(report.failed) == ["im1", "im4"]
    assert report.failed["im4"].startswith(str(images / "im4.png") + ": biharmonic needs some known pixels")
    assert "\n" not in report.failed["im4"]
    assert report.written == ["im0", "im2", "im3", "im5"] and report.unchanged_empty_mask == ["im5"]
    assert np.array_equal(io.read_image(out / "im5.png"), io.read_image(images / "im5.png"))
    # im0, im2, im3, im4 were one batch, refused for im4 and retried one image at a time; then im5.
    assert [n for n, _, _ in spy.calls] == [4, 1, 1, 1, 1, 1]
    again = _run(models.load_inpainter("biharmonic"), images, masks, out, batch_size=4)
    assert again.skipped_existing == report.written and sorted(again.failed) == ["im1", "im4"]


def _batch_vs_singles(inpainter, photo, n=4, size=32):
    rng = np.random.default_rng(0)
    images = [np.ascontiguousarray(np.roll(photo, 9 * i, axis=0)[:size, :size]) for i in range(n)]
    masks = []
    for _ in range(n):
        mask = np.zeros((size, size), dtype=bool)
        top, left = rng.integers(0, size // 2, 2)
        mask[top : top + size // 3, left : left + size // 3] = True
        masks.append(mask)
    names = [f"img{i}" for i in range(n)]
    batched = completion.complete_batch(inpainter, images, masks, seed=1, names=names)
    singles = [completion.complete_arrays(inpainter, im, m, seed=1, name=nm) for im, m, nm in zip(images, masks, names)]
    # The floats before 8-bit rounding: one tensor call versus one call per image.
    tensors = inpainter(
        io.to_tensor(images), io.mask_to_tensor(masks), [completion.derive_seed(1, nm) for nm in names], names=names
    )
    one_by_one = torch.cat(
        [
            inpainter(io.to_tensor(im), io.mask_to_tensor(m), [completion.derive_seed(1, nm)], names=[nm])
            for im, m, nm in zip(images, masks, names)
        ]
    )
    assert (tensors - one_by_one).abs().max() < 1e-4
    for b, s in zip(batched, singles):
        assert np.abs(b.result.astype(int) - s.result.astype(int)).max() <= 1  # rounding may flip one level


def test_ddpm_and_sd_batches_equal_single_images(tiny_unet7_dir, tiny_sd_inpaint_dir, photo):
    ddpm = models.load_inpainter("ddpm", MethodOptions(weights=str(tiny_unet7_dir), steps=4, device="cpu"))
    _batch_vs_singles(ddpm, photo)
    sd = models.load_inpainter("sd", MethodOptions(weights=str(tiny_sd_inpaint_dir), steps=2, device="cpu"))
    _batch_vs_singles(sd, photo, n=3)


def test_cli_batch_size(cli, tmp_path, photo):
    images, masks = _folder(tmp_path, photo, sizes=(64,) * 3)
    result = cli("complete", images, masks, "-o", tmp_path / "out", "-m", "telea", "--batch-size", "2", "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["batch_size"] == 2 and summary["written"] == ["im0", "im1", "im2"]
    result = cli("complete", images, masks, "-o", tmp_path / "out", "--batch-size", "0")
    assert result.code == 2 and "error: --batch-size 0: must be at least 1" in result.err


def test_cli_passes_every_lever(cli, tmp_path, pair, monkeypatch):
    seen = []
    original = models.MethodInfo.load

    def load(self, options):
        seen.append(options)
        return original(models.get_method("telea"), options)

    monkeypatch.setattr(models.MethodInfo, "load", load)
    image, mask = pair
    flags = ["--channels-last", "--compile", "--attention-slicing", "--vae-slicing", "--vae-tiling", "--cpu-offload"]
    assert cli("complete", image, mask, "-o", tmp_path / "o.png", "-m", "sd", *flags).code == 0
    options = seen[-1]
    assert all(getattr(options, flag[2:].replace("-", "_")) for flag in flags)
    assert cli("complete", image, mask, "-o", tmp_path / "p.png", "-m", "telea").code == 0
    assert not any(getattr(seen[-1], flag[2:].replace("-", "_")) for flag in flags)


def test_bench_takes_levers_as_model_options():
    from inpaint.bench.config import parse_method_settings

    settings = parse_method_settings([], ["sd.compile=true", "channels_last=yes", "sd.vae_slicing=1"], ["sd", "ddpm"])
    assert settings["sd"] == {"compile": True, "channels_last": True, "vae_slicing": True}
    assert settings["ddpm"] == {"channels_last": True}


# ---- levers of the diffusion methods -------------------------------------------------------------


def _images(n=2, size=32):
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1
    return images, masks


def _sdpa_only(*modules) -> bool:
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    processors = [m.processor for module in modules for m in module.modules() if isinstance(m, Attention)]
    return bool(processors) and all(isinstance(p, AttnProcessor2_0) for p in processors)


@pytest.fixture(scope="module")
def sd_options(tiny_sd_inpaint_dir):
    return dict(weights=str(tiny_sd_inpaint_dir), steps=2, device="cpu")


@pytest.fixture(scope="module")
def sd_reference(sd_options):
    sd = models.load_inpainter("sd", MethodOptions(**sd_options))
    return sd, sd(*_images(), [1, 2], composite_known=False)


def test_attention_runs_through_sdpa_by_default(tiny_unet7_dir, sd_options, sd_reference):
    from peft import LoraConfig

    sd, _ = sd_reference
    assert _sdpa_only(sd.pipe.unet, sd.pipe.vae)
    ddpm = models.load_inpainter("ddpm", MethodOptions(weights=str(tiny_unet7_dir), device="cpu"))
    assert _sdpa_only(ddpm.unet)
    adapted = models.load_inpainter("sd", MethodOptions(**sd_options))
    adapted.pipe.unet.add_adapter(LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    assert _sdpa_only(adapted.pipe.unet)  # a LoRA wraps the projections, not the attention itself


def test_channels_last_gives_the_same_output(tiny_unet7_dir, sd_options, sd_reference):
    images, masks = _images()
    plain = models.load_inpainter("ddpm", MethodOptions(weights=str(tiny_unet7_dir), steps=4, device="cpu"))
    fast = models.load_inpainter(
        "ddpm", MethodOptions(weights=str(tiny_unet7_dir), steps=4, device="cpu", channels_last=True)
    )
    assert fast.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fast(images, masks, [1, 2]), plain(images, masks, [1, 2]), atol=1e-5)
    sd, reference = sd_reference
    fast_sd = models.load_inpainter("sd", MethodOptions(**sd_options, channels_last=True))
    for conv in (fast_sd.pipe.unet.conv_in, fast_sd.pipe.vae.encoder.conv_in, fast_sd.pipe.vae.decoder.conv_in):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fast_sd(images, masks, [1, 2], composite_known=False), reference, atol=1e-4)


def test_attention_and_vae_slicing_give_the_same_output(sd_options, sd_reference):
    from diffusers.models.attention_processor import SlicedAttnProcessor

    images, masks = _images()
    _, reference = sd_reference
    sliced = models.load_inpainter("sd", MethodOptions(**sd_options, attention_slicing=True, vae_slicing=True))
    assert sliced.pipe.vae.use_slicing
    assert any(isinstance(p, SlicedAttnProcessor) for p in sliced.pipe.unet.attn_processors.values())
    assert torch.allclose(sliced(images, masks, [1, 2], composite_known=False), reference, atol=1e-4)


def test_vae_tiling_changes_nothing_below_one_tile_and_runs_above(sd_options, sd_reference):
    images, masks = _images()
    _, reference = sd_reference
    tiled = models.load_inpainter("sd", MethodOptions(**sd_options, vae_tiling=True))
    assert tiled.pipe.vae.use_tiling
    # The tiny VAE's tile is its 32-px sample size: 32 px is one tile, 64 px is blended tiles.
    assert torch.allclose(tiled(images, masks, [1, 2], composite_known=False), reference, atol=1e-4)
    big, big_masks = _images(n=1, size=64)
    out = tiled(big, big_masks, [1])
    keep = big_masks.expand_as(big) == 0
    assert out.shape == big.shape and torch.equal(out[keep], big[keep])


@pytest.fixture
def eager_compile(monkeypatch):
    """torch.compile through dynamo with the eager backend: the real tracing, without inductor's
    C++ build (minutes per shape on this CPU). Records the compiled modules."""
    compiled = []
    original = torch.nn.Module.compile

    def compile_(self, *args, **kwargs):
        compiled.append(type(self).__name__)
        original(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", compile_)
    yield compiled
    torch._dynamo.reset()


def test_compile_gives_the_same_output(tiny_unet7_dir, eager_compile):
    images, masks = _images()
    options = dict(weights=str(tiny_unet7_dir), steps=3, device="cpu")
    plain = models.load_inpainter("ddpm", MethodOptions(**options))
    compiled = models.load_inpainter("ddpm", MethodOptions(**options, compile=True, channels_last=True))
    assert eager_compile == ["UNet2DModel"]
    assert torch.allclose(compiled(images, masks, [1, 2]), plain(images, masks, [1, 2]), atol=1e-5)
    assert compiled.last_nfe == 3


def test_compile_on_sd_compiles_the_unet(sd_options, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    models.load_inpainter("sd", MethodOptions(**sd_options, compile=True))
    assert compiled == ["UNet2DConditionModel"]


def test_compile_failures_are_one_line(monkeypatch):
    from torch._inductor import cpp_builder

    from inpaint.devices import check_compile, compile_errors

    def no_compiler():
        raise RuntimeError("no working C++ compiler found in ('g++',)")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(InputError, match=r"^--compile: torch.compile needs a C\+\+ compiler") as error:
        check_compile(torch.device("cpu"))
    assert "\n" not in str(error.value)

    def broken_backend(graph, inputs):
        raise RuntimeError("compiler exploded\nwith details")

    layer = torch.nn.Linear(2, 2)
    layer.compile(backend=broken_backend)
    with pytest.raises(InpaintError, match=r"^--compile: torch.compile failed \(RuntimeError: compiler exploded\)"):
        with compile_errors(True):
            layer(torch.ones(1, 2))
    with pytest.raises(ValueError, match="model bug"), compile_errors(True):
        raise ValueError("model bug")  # errors of the model itself pass through
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "method, options, needle",
    [
        ("sd", dict(cpu_offload=True), "--cpu-offload: moves each model between the CPU and a CUDA GPU"),
        ("ddpm", dict(vae_tiling=True), "--vae-tiling: only the sd method has it"),
        ("ddpm", dict(attention_slicing=True), "--attention-slicing: only the sd method has it"),
        ("repaint", dict(cpu_offload=True), "--cpu-offload: only the sd method has it"),
        ("sd", dict(dtype="fp16"), "--dtype fp16: this CPU has no fp16 arithmetic"),
    ],
)
def test_bad_lever_combinations(method, options, needle, tiny_sd_inpaint_dir, tiny_unet7_dir, tiny_ddpm_dir):
    weights = {"sd": tiny_sd_inpaint_dir, "ddpm": tiny_unet7_dir, "repaint": tiny_ddpm_dir}[method]
    with pytest.raises(InputError, match=needle) as error:
        models.load_inpainter(method, MethodOptions(weights=str(weights), device="cpu", **options))
    assert "\n" not in str(error.value)


def test_cpu_offload_checks_on_a_gpu(monkeypatch):
    import importlib.util

    from inpaint.models.sd import _check_levers

    cuda = torch.device("cuda")
    with pytest.raises(InputError, match="--cpu-offload and --compile: choose one"):
        _check_levers(MethodOptions(cpu_offload=True, compile=True), cuda)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"--cpu-offload: needs accelerate \(pip install accelerate\)"):
        _check_levers(MethodOptions(cpu_offload=True), cuda)


# ---- training: gradient checkpointing for train-ddpm ---------------------------------------------


def test_ddpm_gradient_checkpointing_gives_the_same_gradients(tiny_ddpm_dir, train_images):
    from inpaint.data import CompletionDataset, MaskSource, collate
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask

    dataset = CompletionDataset(train_images, resolution=32, mask_source=MaskSource(("box-center",)), seed=0)
    batch = collate([dataset[(0, i)] for i in range(4)])
    grads = {}
    for checkpointing in (False, True):
        task = DDPMTask(str(tiny_ddpm_dir), DDPMOptions(gradient_checkpointing=checkpointing))
        unet = task.build(torch.device("cpu"))
        assert any(getattr(m, "gradient_checkpointing", False) for m in unet.modules()) == checkpointing
        task.loss(unet, batch, [torch.Generator().manual_seed(i) for i in range(4)]).backward()
        grads[checkpointing] = [p.grad for p in task.trainable_parameters(unet)]
        # A memory lever, not a setting of the trajectory: a run may resume with it switched.
        assert "gradient_checkpointing" not in task.options()
    assert all(torch.equal(a, b) for a, b in zip(grads[False], grads[True]))  # bit for bit on the CPU


def test_train_ddpm_cli_passes_gradient_checkpointing(cli, tmp_path, train_images, monkeypatch):
    from inpaint.cli import train_options

    seen = []
    monkeypatch.setattr(train_options, "run_training", lambda task, config, **kwargs: seen.append(task))
    result = cli("train-ddpm", train_images, "-o", tmp_path / "run", "--gradient-checkpointing", "--device", "cpu")
    assert result.code == 0, result
    assert seen[0].opts.gradient_checkpointing
