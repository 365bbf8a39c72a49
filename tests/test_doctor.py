"""`inpaint doctor`: versions, devices, cached hub models and metric weights, offline."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest


@pytest.fixture
def fake_hub_cache(tmp_path, monkeypatch):
    """A hub cache holding google/ddpm-celebahq-256 complete and BLIP's config only."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    for repo, files in {
        "google/ddpm-celebahq-256": ["config.json", "diffusion_pytorch_model.safetensors"],
        "Salesforce/blip-image-captioning-base": ["config.json"],
    }.items():
        folder = cache / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text("abc123")
        for name in files:
            path = folder / "snapshots" / "abc123" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_doctor_json_reports_versions_devices_models_and_weights(cli, fake_hub_cache, no_metric_weights):
    checkpoints = no_metric_weights / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    result = cli("doctor", "--json")
    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["packages"]["torch"] == importlib.metadata.version("torch")
    assert report["packages"]["lpips"] and report["packages"]["pytorch-fid"] and report["packages"]["opencv (cv2)"]
    assert any(d["device"] == "cpu" for d in report["devices"])
    status = {m["repo_id"]: m["status"] for m in report["models"]}
    assert status == {
        "google/ddpm-celebahq-256": "cached",
        "stable-diffusion-v1-5/stable-diffusion-inpainting": "missing",
        "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": "missing",
        "black-forest-labs/FLUX.1-Fill-dev": "missing",
        "kandinsky-community/kandinsky-2-2-decoder-inpaint": "missing",
        "kandinsky-community/kandinsky-2-2-prior": "missing",
        "Salesforce/blip-image-captioning-base": "incomplete",
    }
    missing = next(m for m in report["models"] if m["status"] == "missing")
    assert "inpaint download sd" in missing["get"]
    weights = {w["file"]: w for w in report["metric_weights"]}
    assert weights["alexnet-owt-7be5be79.pth"]["found"] == str(checkpoints / "alexnet-owt-7be5be79.pth")
    inception = weights["pt_inception-2015-12-05-6726825d.pth"]
    assert (
        inception["found"] is None and "--fid-weights" in inception["get"] and inception["url"].startswith("https://")
    )
    methods = {m["method"]: m["available"] for m in report["methods"]}
    assert methods["telea"] is True and methods["ddpm"] is False


def test_doctor_tables_say_how_to_get_what_is_missing(cli, fake_hub_cache, no_metric_weights):
    result = cli("doctor")
    assert result.code == 0, result
    text = " ".join(result.out.split())
    for needle in (
        "google/ddpm-celebahq-256",
        "cached",
        "missing",
        "inpaint download sd",
        "inpaint download fid",
        "pt_inception-2015-12-05-6726825d.pth",
        "Devices",
        "telea",
    ):
        assert needle in text


def test_pickle_weights_count_as_weights_and_a_config_alone_does_not(cli, fake_hub_cache, no_metric_weights):
    """The loaders convert .bin weights (weights-only unpickler): a cache holding them is ready; a
    config without any weights is not."""
    snapshot = fake_hub_cache / "models--google--ddpm-celebahq-256" / "snapshots" / "abc123"
    (snapshot / "diffusion_pytorch_model.safetensors").rename(snapshot / "diffusion_pytorch_model.bin")
    report = json.loads(cli("doctor", "--json").out)
    ddpm = next(m for m in report["models"] if m["repo_id"] == "google/ddpm-celebahq-256")
    assert ddpm["status"] == "cached" and ddpm["get"] is None
    assert next(m for m in report["methods"] if m["method"] == "repaint")["available"] is True

    (snapshot / "diffusion_pytorch_model.bin").unlink()
    report = json.loads(cli("doctor", "--json").out)
    ddpm = next(m for m in report["models"] if m["repo_id"] == "google/ddpm-celebahq-256")
    assert ddpm["status"] == "incomplete" and "`inpaint download ddpm`" in ddpm["get"]
    repaint = next(m for m in report["methods"] if m["method"] == "repaint")
    assert repaint["available"] is False and "cached without its weights" in repaint["reason"]
    assert "`inpaint download ddpm`" in repaint["reason"]


def test_help_of_new_commands_imports_nothing_heavy():
    code = (
        "import sys; from inpaint.cli.app import main; "
        "main(['bench', '--help']); main(['doctor', '--help']); main(['download', '--help']);"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'skimage', 'cv2', 'lpips') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "inpaint bench --models ddpm sd --data test/ --masks masks/ -o results/" in out
    assert out.strip().endswith("HEAVY []")
