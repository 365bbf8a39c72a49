"""Hub bases as published: ``.bin`` weights through torch's weights-only unpickler, converted once to
safetensors; the hub fetch order (safetensors first, ``.bin`` only where a component has none);
``revision`` and ``variant``. Offline, on tiny models."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from inpaint import io, testing
from inpaint.errors import InputError
from inpaint.models.base import MethodOptions

DDPM_BIN = "diffusion_pytorch_model.bin"
DDPM_SAFE = "diffusion_pytorch_model.safetensors"


# ---- helpers --------------------------------------------------------------------------------------


def to_bin(folder: Path, safe: str = DDPM_SAFE, pickle_name: str = DDPM_BIN) -> Path:
    """Replace ``folder/safe`` by the same tensors pickled by ``torch.save``, as older hub repositories
    publish them (diffusers' and transformers' own pickle format: a plain state dict)."""
    torch.save(load_file(folder / safe), folder / pickle_name)
    (folder / safe).unlink()
    return folder / pickle_name


class Payload:
    """Unpickling this with a full unpickler runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_malicious(path: Path, marker: Path, form: str) -> Path:
    """A pickle weights file that runs code when fully unpickled: raw pickle bytes, or a real
    zip-format torch file holding the object beside a tensor."""
    if form == "raw":
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        torch.save({"conv_in.weight": torch.zeros(1), "evil": Payload(marker)}, path)
    return path


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def converted_files(cache: Path) -> list[Path]:
    return sorted((cache / "safetensors" / "files").rglob("*.safetensors"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty inpaint cache for this test."""
    folder = tmp_path / "inpaint-cache"
    monkeypatch.setenv("INPAINT_CACHE", str(folder))
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache (huggingface_hub reads its location once, at import)."""
    from huggingface_hub import constants

    folder = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


@pytest.fixture
def bin_ddpm(tiny_ddpm_dir, tmp_path) -> Path:
    """The tiny DDPM with ``diffusion_pytorch_model.bin`` only (flat layout)."""
    folder = tmp_path / "ddpm-bin"
    shutil.copytree(tiny_ddpm_dir, folder)
    to_bin(folder)
    return folder


# ---- pixel UNets ----------------------------------------------------------------------------------


def test_a_bin_only_ddpm_loads_as_its_safetensors_would_and_is_converted_once(
    tiny_ddpm_dir, bin_ddpm, cache, monkeypatch, caplog
):
    from inpaint.models.pixel_unet import load_base

    monkeypatch.setattr(logging.getLogger("inpaint"), "propagate", True)  # the CLI's set-up turns it off
    reference, schedule = load_base(tiny_ddpm_dir)
    with caplog.at_level(logging.INFO, logger="inpaint"):
        unet, bin_schedule = load_base(bin_ddpm)
    assert same_weights(unet, reference) and bin_schedule == schedule
    [converted] = converted_files(cache)
    assert converted.name == DDPM_SAFE and load_file(converted).keys() == reference.state_dict().keys()
    # One record (caplog may hold it twice when the CLI's set-up left a handler on the logger).
    said = list(
        {id(r): r.getMessage() for r in caplog.records if "converted the pickle weights" in r.getMessage()}.values()
    )
    assert len(said) == 1 and str(bin_ddpm / DDPM_BIN) in said[0] and str(converted) in said[0]

    # Later loads read the converted file: the pickle is never opened again, and nothing is said.
    caplog.clear()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load called on a converted model")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with caplog.at_level(logging.INFO, logger="inpaint"):
        again, _ = load_base(bin_ddpm)
    assert same_weights(again, reference) and not caplog.records


def test_a_changed_bin_is_converted_again(tiny_ddpm_dir, bin_ddpm, cache):
    from inpaint.models.pixel_unet import load_base

    first, _ = load_base(bin_ddpm)
    other = testing.save_tiny_ddpm(bin_ddpm.parent / "other", seed=1)
    torch.save(load_file(other / DDPM_SAFE), bin_ddpm / DDPM_BIN)
    stat = (bin_ddpm / DDPM_BIN).stat()
    os.utime(bin_ddpm / DDPM_BIN, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size: the time tells
    second, _ = load_base(bin_ddpm)
    expected, _ = load_base(other)
    assert same_weights(second, expected) and not same_weights(second, first)
    assert len(converted_files(cache)) == 2


def test_a_hub_blob_is_keyed_by_its_hash_so_snapshots_share_one_conversion(bin_ddpm, tmp_path, cache):
    """In the Hugging Face cache a snapshot's files link to blobs named by their hash: two commits
    holding the same .bin convert it once."""
    from inpaint.models.pixel_unet import load_base
    from inpaint.models.weight_files import content_key

    repo = tmp_path / "hub" / "models--org--m"
    blob = repo / "blobs" / ("e" * 64)
    blob.parent.mkdir(parents=True)
    shutil.copy(bin_ddpm / DDPM_BIN, blob)
    snapshots = [repo / "snapshots" / commit for commit in ("1" * 40, "2" * 40)]
    for snapshot in snapshots:
        shutil.copytree(bin_ddpm, snapshot)
        (snapshot / DDPM_BIN).unlink()
        (snapshot / DDPM_BIN).symlink_to(Path("../..") / "blobs" / blob.name)
    assert content_key(snapshots[0] / DDPM_BIN) == content_key(snapshots[1] / DDPM_BIN) == f"hub-blob:{blob.name}"
    first, second = load_base(snapshots[0])[0], load_base(snapshots[1])[0]
    assert same_weights(first, second) and len(converted_files(cache)) == 1


def test_sharded_bin_weights_are_converted_shard_by_shard(tiny_ddpm_dir, tmp_path, cache):
    from inpaint.models.pixel_unet import load_base

    folder = tmp_path / "sharded"
    shutil.copytree(tiny_ddpm_dir, folder)
    state = load_file(folder / DDPM_SAFE)
    (folder / DDPM_SAFE).unlink()
    names = sorted(state)
    shards = {
        "diffusion_pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
        "diffusion_pytorch_model-00002-of-00002.bin": names[len(names) // 2 :],
    }
    for shard, keys in shards.items():
        torch.save({k: state[k] for k in keys}, folder / shard)
    index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (folder / "diffusion_pytorch_model.bin.index.json").write_text(json.dumps(index))
    unet, _ = load_base(folder)
    reference, _ = load_base(tiny_ddpm_dir)
    assert same_weights(unet, reference)
    assert sorted(p.name for p in converted_files(cache)) == [
        "diffusion_pytorch_model-00001-of-00002.safetensors",
        "diffusion_pytorch_model-00002-of-00002.safetensors",
    ]


@pytest.mark.parametrize("form", ["raw", "zip"])
def test_a_bin_that_would_run_code_is_refused_in_one_line_and_nothing_runs(bin_ddpm, cache, tmp_path, form):
    from inpaint.models import load_inpainter
    from inpaint.models.pixel_unet import load_base

    marker = tmp_path / "pwned"
    write_malicious(bin_ddpm / DDPM_BIN, marker, form)
    with pytest.raises(InputError) as info:
        load_base(bin_ddpm)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{bin_ddpm / DDPM_BIN}: refused as unsafe")
    assert "weights_only=False" not in message  # torch's advice to unpickle it anyway is not passed on
    with pytest.raises(InputError, match="refused as unsafe"):
        load_inpainter("repaint", MethodOptions(weights=str(bin_ddpm), device="cpu"))
    assert not marker.exists() and not converted_files(cache)
    # The payload is real: a full unpickler runs it.
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("truncated", "refused as unreadable"),
        ("list", "not a flat mapping of names to tensors"),
        ("nested", "not a flat mapping of names to tensors"),
    ],
)
def test_unreadable_or_odd_bin_files_are_one_line(bin_ddpm, cache, damage, needle):
    from inpaint.models.pixel_unet import load_base

    path = bin_ddpm / DDPM_BIN
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "list":
        torch.save([torch.zeros(2)], path)
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(InputError) as info:
        load_base(bin_ddpm)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path)) and needle in str(info.value)
    assert not converted_files(cache)


def test_a_bin_only_base_in_the_hub_cache_resolves_offline(bin_ddpm, hub_cache, cache):
    from inpaint.models.ddpm import repaint_unavailable
    from inpaint.models.pixel_unet import DEFAULT_BASE, load_base

    testing.install_in_hub_cache(bin_ddpm, DEFAULT_BASE, hub_cache)
    assert repaint_unavailable(MethodOptions(local_only=True)) is None  # .bin weights count as weights
    unet, _ = load_base()
    reference, _ = load_base(bin_ddpm)
    assert same_weights(unet, reference)


# ---- revision and variant -----------------------------------------------------------------------


def test_a_revision_picks_a_branch_or_commit_of_the_cache(tiny_ddpm_dir, tmp_path, hub_cache):
    from inpaint.models.pixel_unet import load_base

    repo = "inpaint-tests/revisions"
    main, newer = "a" * 40, "b" * 40
    testing.install_in_hub_cache(tiny_ddpm_dir, repo, hub_cache, revision=main)
    other = testing.save_tiny_ddpm(tmp_path / "seed1", seed=1)
    testing.install_in_hub_cache(other, repo, hub_cache, revision=newer)
    (hub_cache / "models--inpaint-tests--revisions" / "refs" / "main").write_text(main)
    (hub_cache / "models--inpaint-tests--revisions" / "refs" / "v2").write_text(newer)
    reference, _ = load_base(tiny_ddpm_dir)
    expected, _ = load_base(other)
    assert same_weights(load_base(repo)[0], reference)
    assert same_weights(load_base(repo, revision="v2")[0], expected)
    assert same_weights(load_base(repo, revision=newer)[0], expected)
    with pytest.raises(InputError, match="not in the local Hugging Face cache at revision v3"):
        load_base(repo, revision="v3")
    with pytest.raises(InputError, match="--revision v2: only a hub model has revisions"):
        load_base(tiny_ddpm_dir, revision="v2")
    with pytest.raises(InputError, match="--variant 'fp16/../x'"):
        load_base(repo, variant="fp16/../x")


@pytest.fixture
def fp16_ddpm(tmp_path) -> Path:
    """The tiny DDPM with fp16-variant weights only (``diffusion_pytorch_model.fp16.safetensors``)."""
    folder = tmp_path / "ddpm-fp16"
    unet = testing.tiny_unet2d()
    unet.to(torch.float16).save_pretrained(folder, variant="fp16")
    testing.tiny_ddpm_scheduler().save_pretrained(folder)
    return folder


def test_the_fp16_variant_is_loaded_when_asked_for_and_named_when_not(fp16_ddpm):
    from inpaint.models import load_inpainter
    from inpaint.models.pixel_unet import load_base

    assert sorted(p.name for p in fp16_ddpm.glob("*.safetensors")) == ["diffusion_pytorch_model.fp16.safetensors"]
    unet, _ = load_base(fp16_ddpm, variant="fp16", dtype=torch.float32)
    stored = load_file(fp16_ddpm / "diffusion_pytorch_model.fp16.safetensors")
    assert all(p.dtype == torch.float32 for p in unet.parameters())
    assert all(torch.equal(unet.state_dict()[k], v.float()) for k, v in stored.items())
    with pytest.raises(InputError, match="diffusion_pytorch_model.fp16.safetensors: another --variant"):
        load_base(fp16_ddpm)
    method = load_inpainter("repaint", MethodOptions(weights=str(fp16_ddpm), variant="fp16", device="cpu"))
    assert next(method.unet.parameters()).dtype == torch.float32  # --dtype auto on the CPU: fp32


def test_fp16_variant_bases_train_in_fp32(fp16_ddpm):
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask

    module = DDPMTask(str(fp16_ddpm), DDPMOptions(), variant="fp16").build(torch.device("cpu"))
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    assert module.config.in_channels == 7


def test_fp16_variant_sd_base_trains_in_fp32(tiny_sd_inpaint_dir, tmp_path):
    from diffusers import StableDiffusionInpaintPipeline

    from inpaint.training.lora_task import LoRAOptions, LoRATask

    folder = tmp_path / "sd-fp16"
    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        tiny_sd_inpaint_dir, safety_checker=None, use_safetensors=True
    )
    pipe.to(torch.float16).save_pretrained(folder, variant="fp16")
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    task = LoRATask(str(folder), LoRAOptions(rank=4), variant="fp16")
    unet = task.build(torch.device("cpu"))
    assert {p.dtype for p in unet.parameters()} == {torch.float32}
    assert {p.dtype for p in task._parts["text_encoder"].parameters()} == {torch.float32}


def test_method_options_and_bench_settings_carry_revision_and_variant():
    from inpaint.bench.config import parse_method_settings
    from inpaint.models import get_method

    settings = parse_method_settings([], ["repaint.variant=fp16", "sd.revision=v2"], ["repaint", "sd"])
    assert settings == {"repaint": {"variant": "fp16"}, "sd": {"revision": "v2"}}
    options = MethodOptions(revision="v2", variant="fp16")
    for name in ("ddpm", "repaint", "sd"):
        assert get_method(name).ignored_options(options) == []
    assert get_method("telea").ignored_options(options) == ["--revision", "--variant"]


def test_train_config_records_revision_and_variant_for_resume():
    from inpaint.config import TrainConfig

    base = dict(method="ddpm", data="d", output="o", base="google/ddpm-celebahq-256")
    assert TrainConfig(**base, variant="fp16").trajectory_differences(TrainConfig(**base)) == ["variant"]
    assert TrainConfig(**base, revision="v2").trajectory_differences(TrainConfig(**base)) == ["revision"]
    assert TrainConfig.from_dict({**base, "lr": 1e-5}).revision is None  # configs written before these fields


# ---- the hub fetch order --------------------------------------------------------------------------


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """``snapshot_download`` replaced: it records each call and "downloads" the files matching the
    patterns from ``repository`` (a folder) into a snapshot folder named by a commit."""
    import fnmatch

    import huggingface_hub

    repository = tmp_path / "repository"
    snapshot = tmp_path / "snapshots" / ("c" * 40)
    calls: list[dict] = []

    def snapshot_download(repo_id, *, allow_patterns=None, revision=None, **kwargs):
        calls.append({"repo_id": repo_id, "allow_patterns": list(allow_patterns), "revision": revision})
        for path in repository.rglob("*"):
            name = path.relative_to(repository).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, snapshot / name)
        snapshot.mkdir(parents=True, exist_ok=True)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return repository, calls


def test_the_hub_fetch_takes_safetensors_and_a_bin_only_where_a_component_has_none(
    fake_hub, tiny_sd_inpaint_dir, cache
):
    from inpaint.models.sd_weights import PIPELINE_FILES, load_pipeline

    repository, calls = fake_hub
    shutil.copytree(tiny_sd_inpaint_dir, repository)
    to_bin(repository / "vae")
    pipe = load_pipeline("org/sd-vae-as-bin", revision="v1")
    assert [c["revision"] for c in calls] == ["v1", "c" * 40]  # the second pinned to the first's commit
    assert calls[0]["allow_patterns"] == PIPELINE_FILES.patterns()
    assert not any(".bin" in p for p in calls[0]["allow_patterns"])
    assert calls[1]["allow_patterns"] == [
        "vae/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.bin.index.json",
        "vae/diffusion_pytorch_model-*-of-*.bin",
    ]
    reference = load_pipeline(tiny_sd_inpaint_dir)
    assert same_weights(pipe.vae, reference.vae) and same_weights(pipe.unet, reference.unet)


def test_the_hub_fetch_never_asks_for_pickles_when_safetensors_exist(fake_hub, tiny_ddpm_dir, tmp_path):
    from inpaint.models.pixel_unet import load_base

    repository, calls = fake_hub
    shutil.copytree(tiny_ddpm_dir, repository)
    torch.save(load_file(repository / DDPM_SAFE), repository / DDPM_BIN)  # published both ways
    load_base("org/both")
    assert len(calls) == 1 and calls[0]["revision"] is None
    assert not list((tmp_path / "snapshots").rglob("*.bin"))


def test_the_fp16_variant_fetches_only_the_fp16_files(fake_hub, tiny_sd_inpaint_dir, tmp_path):
    from diffusers import StableDiffusionInpaintPipeline

    from inpaint.models.sd_weights import load_pipeline

    repository, calls = fake_hub
    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        tiny_sd_inpaint_dir, safety_checker=None, use_safetensors=True
    )
    pipe.save_pretrained(repository)
    pipe.to(torch.float16).save_pretrained(repository, variant="fp16")
    loaded = load_pipeline("org/sd", variant="fp16", dtype=torch.float32)
    assert len(calls) == 1
    patterns = calls[0]["allow_patterns"]
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in patterns
    assert "text_encoder/model.fp16.safetensors" in patterns
    assert "unet/diffusion_pytorch_model.safetensors" not in patterns
    fetched = sorted(
        p.relative_to(tmp_path / "snapshots").as_posix() for p in (tmp_path / "snapshots").rglob("*.safetensors")
    )
    assert fetched == [
        f"{'c' * 40}/{name}"
        for name in (
            "text_encoder/model.fp16.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.fp16.safetensors",
        )
    ]
    assert next(loaded.unet.parameters()).dtype == torch.float32


# ---- Stable Diffusion and BLIP ------------------------------------------------------------------


@pytest.fixture
def bin_sd(tiny_sd_inpaint_dir, tmp_path) -> Path:
    """The tiny SD inpainting pipeline with every component's weights as ``.bin`` only."""
    folder = tmp_path / "sd-bin"
    shutil.copytree(tiny_sd_inpaint_dir, folder)
    to_bin(folder / "unet")
    to_bin(folder / "vae")
    to_bin(folder / "text_encoder", "model.safetensors", "pytorch_model.bin")
    return folder


def test_a_bin_only_sd_pipeline_loads_as_its_safetensors_would(tiny_sd_inpaint_dir, bin_sd, cache):
    from inpaint.models import load_inpainter
    from inpaint.models.sd_weights import load_pipeline

    reference = load_pipeline(tiny_sd_inpaint_dir)
    pipe = load_pipeline(bin_sd)
    for part in ("unet", "vae", "text_encoder"):
        assert same_weights(getattr(pipe, part), getattr(reference, part)), part
    assert sorted(p.name for p in converted_files(cache)) == [DDPM_SAFE, DDPM_SAFE, "model.safetensors"]
    assert load_inpainter("sd", MethodOptions(weights=str(bin_sd), device="cpu")).pipe is not None


def test_a_malicious_sd_text_encoder_is_refused_and_nothing_runs(bin_sd, cache, tmp_path):
    from inpaint.models.sd_weights import load_pipeline

    marker = tmp_path / "pwned"
    write_malicious(bin_sd / "text_encoder" / "pytorch_model.bin", marker, "zip")
    with pytest.raises(InputError) as info:
        load_pipeline(bin_sd)
    assert str(info.value).startswith(f"{bin_sd / 'text_encoder' / 'pytorch_model.bin'}: refused as unsafe")
    assert "\n" not in str(info.value) and not marker.exists()


@pytest.fixture
def bin_blip(tiny_blip_dir, tmp_path) -> Path:
    """The tiny BLIP with ``pytorch_model.bin`` only, pickled from its state dict as transformers
    once did: the tied decoder embeddings share one tensor's storage."""
    from transformers import BlipForConditionalGeneration

    folder = tmp_path / "blip-bin"
    shutil.copytree(tiny_blip_dir, folder)
    model = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir, use_safetensors=True)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def test_a_bin_only_blip_captions_as_its_safetensors_would(tiny_blip_dir, bin_blip, cache, photo):
    from PIL import Image

    from inpaint.captions import BlipCaptioner

    reference, captioner = BlipCaptioner(str(tiny_blip_dir), "cpu"), BlipCaptioner(str(bin_blip), "cpu")
    assert same_weights(captioner.model, reference.model)
    image = Image.fromarray(photo)
    assert captioner([image]) == reference([image])
    assert [p.name for p in converted_files(cache)] == ["model.safetensors"]


def test_a_malicious_blip_is_refused_and_nothing_runs(bin_blip, cache, tmp_path):
    from inpaint.captions import BlipCaptioner

    marker = tmp_path / "pwned"
    write_malicious(bin_blip / "pytorch_model.bin", marker, "raw")
    with pytest.raises(InputError, match=r"pytorch_model\.bin: refused as unsafe"):
        BlipCaptioner(str(bin_blip), "cpu")
    assert not marker.exists()


# ---- through the command line -------------------------------------------------------------------


def test_complete_with_a_bin_only_base_and_a_malicious_one(cli, bin_ddpm, cache, tmp_path, photo, center_mask):
    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    args = ["complete", image, mask, "-m", "repaint", "--sampler", "fast", "--steps", "4", "--device", "cpu"]
    result = cli(*args, "-o", tmp_path / "out.png", "--weights", bin_ddpm)
    assert result.code == 0, result
    assert "converted the pickle weights" in result.err
    done = io.read_image(tmp_path / "out.png")
    assert np.array_equal(done[~center_mask], photo[~center_mask])

    evil = tmp_path / "evil"
    shutil.copytree(bin_ddpm, evil)
    marker = tmp_path / "pwned"
    write_malicious(evil / DDPM_BIN, marker, "zip")
    result = cli(*args, "-o", tmp_path / "evil.png", "--weights", evil)
    assert result.code == 2 and "Traceback" not in result.err, result
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "refused as unsafe" in errors[0] and str(evil / DDPM_BIN) in errors[0]
    assert not marker.exists() and not (tmp_path / "evil.png").exists()


def test_complete_passes_revision_and_variant(cli, fp16_ddpm, tmp_path, photo, center_mask):
    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    args = [
        "complete",
        image,
        mask,
        "-o",
        tmp_path / "out.png",
        "-m",
        "repaint",
        "--sampler",
        "fast",
        "--steps",
        "4",
        "--device",
        "cpu",
        "--weights",
        fp16_ddpm,
    ]
    result = cli(*args)
    assert result.code == 2 and "another --variant" in result.err, result
    assert cli(*args, "--variant", "fp16").code == 0
    result = cli(*args, "--variant", "fp16", "--revision", "main", "--overwrite")
    assert result.code == 2 and "--revision main: only a hub model has revisions" in result.err, result


def test_train_ddpm_records_the_variant_and_a_resume_must_keep_it(cli, fp16_ddpm, train_images, tmp_path):
    run = tmp_path / "run"
    args = [
        "train-ddpm",
        train_images,
        "-o",
        run,
        "--base",
        fp16_ddpm,
        "--batch-size",
        "2",
        "--val-images",
        "0",
        "--resolution",
        "32",
        "--device",
        "cpu",
        "--json",
    ]
    result = cli(*args, "--max-steps", "1", "--variant", "fp16")
    assert result.code == 0, result
    config = json.loads((run / "training_config.json").read_text())["train"]
    assert config["variant"] == "fp16" and config["revision"] is None
    result = cli(*args, "--max-steps", "2")
    assert result.code == 2 and "cannot resume with different variant" in result.err, result
    assert json.loads(cli(*args, "--max-steps", "2", "--variant", "fp16").out)["step"] == 2


def test_caption_passes_revision_and_variant_and_reads_a_bin_only_blip(cli, bin_blip, train_images, tmp_path, cache):
    out = tmp_path / "captions.json"
    args = ["caption", train_images, "-o", out, "--model", bin_blip, "--device", "cpu"]
    result = cli(*args, "--variant", "fp16")
    assert result.code == 2 and "no model.fp16.safetensors (fp16 variant)" in result.err, result
    result = cli(*args, "--revision", "v2")
    assert result.code == 2 and "--revision v2: only a hub model has revisions" in result.err, result
    result = cli(*args)
    assert result.code == 0, result
    assert len(json.loads(out.read_text())) == len(list(train_images.iterdir()))
