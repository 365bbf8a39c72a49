"""The project folder convention: run folders, test folders and inpaint.toml found without flags."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inpaint import io


@pytest.fixture
def in_project(tmp_path, monkeypatch, photo, center_mask):
    """An empty project folder as the current directory, holding one image and its mask."""
    io.save_image(photo, tmp_path / "photo.png")
    io.save_mask(center_mask, tmp_path / "hole.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_inpaint_toml_in_the_current_folder_sets_defaults(cli, in_project):
    (in_project / "inpaint.toml").write_text('[complete]\nmodel = "telea"\n')
    result = cli("complete", "photo.png", "hole.png", "--json")
    assert result.code == 0, result
    assert "inpaint.toml" in result.err and json.loads(result.out)["method"] == "telea"
    flag = cli("complete", "photo.png", "hole.png", "-m", "biharmonic", "-o", "b.png", "--json")
    assert json.loads(flag.out)["method"] == "biharmonic"  # the command line wins
    ignored = cli("complete", "photo.png", "hole.png", "--config", "/dev/null", "-o", "c.png", "--json")
    assert ignored.code == 0 and json.loads(ignored.out)["method"] != "telea"
    (in_project / "inpaint.toml").write_text("[complete]\nno-such-option = 1\n")
    typo = cli("complete", "photo.png", "hole.png", "-o", "d.png")
    assert typo.code == 2 and "no-such-option" in typo.err


def test_complete_uses_the_projects_ddpm_run(cli, in_project, tiny_unet7_dir):
    shutil.copytree(tiny_unet7_dir, in_project / "runs" / "ddpm")
    explicit = cli(
        "complete",
        "photo.png",
        "hole.png",
        "-m",
        "ddpm",
        "--steps",
        "2",
        "-o",
        "a.png",
        "--weights",
        in_project / "runs" / "ddpm",
    )
    assert explicit.code == 0, explicit
    implicit = cli("complete", "photo.png", "hole.png", "-m", "ddpm", "--steps", "2")
    assert implicit.code == 0, implicit
    assert "ddpm weights: runs/ddpm" in implicit.err
    assert np.array_equal(io.read_image(in_project / "a.png"), io.read_image(in_project / "photo_inpainted.png"))
    # With no --model, a finished run makes ddpm available (no SD cached here: it is the best).
    chosen = cli("complete", "photo.png", "hole.png", "--steps", "2", "-o", "b.png", "--json")
    assert chosen.code == 0, chosen
    assert json.loads(chosen.out)["method"] == "ddpm" and "runs/ddpm" in chosen.err
    listed = cli("complete", "--list-models")
    assert "ddpm" in listed.out and listed.out.count("yes") >= 4


def test_complete_refuses_an_unknown_folder_before_writing_anything(cli, in_project):
    (in_project / "imgs").mkdir()
    io.save_image(np.zeros((8, 8, 3), np.uint8), in_project / "imgs" / "a.png")
    result = cli("complete", "imgs", "no-masks", "-m", "telea")
    assert result.code == 2 and not (in_project / "imgs_inpainted").exists()


def test_completed_results_beside_their_input_are_not_taken_for_inputs(cli, in_project):
    (in_project / "test").mkdir()
    (in_project / "masks").mkdir()
    for name in ("a", "b"):
        shutil.copy(in_project / "photo.png", in_project / "test" / f"{name}.png")
        shutil.copy(in_project / "hole.png", in_project / "masks" / f"{name}.png")
    assert cli("complete", "test/a.png", "masks/a.png", "-m", "telea").code == 0
    assert (in_project / "test" / "a_inpainted.png").is_file()
    images, _ = io.list_images(in_project / "test")
    assert [p.name for p in images] == ["a.png", "b.png"]
    # A file that merely ends like a result, with no image of the stem beside it, is an image.
    shutil.copy(in_project / "photo.png", in_project / "test" / "c_inpainted.png")
    assert [p.name for p in io.list_images(in_project / "test")[0]] == ["a.png", "b.png", "c_inpainted.png"]
    folder = cli("complete", "test", "masks", "-m", "telea", "--json")
    assert folder.code == 2 and "c_inpainted" in folder.err  # no mask for it: refused, nothing written


def test_bench_finds_test_masks_and_results_by_convention(cli, in_project):
    (in_project / "test").mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(in_project / "photo.png", in_project / "test" / f"{name}.png")
    result = cli("bench", "--models", "telea", "--no-lpips", "--no-fid")
    assert result.code == 0, result
    assert "test images: test/" in result.err and "results folder: results/" in result.err
    assert "LaMa's thin/medium/thick mixture" in result.err
    results = json.loads((in_project / "results" / "results.json").read_text())
    assert results["protocol"]["masks"]["preset"] == "lama-thin,lama-medium,lama-thick"
    assert len(results["protocol"]["implicit_choices"]) == 3
    manifest = json.loads((in_project / "results" / "masks" / "manifest.json").read_text())
    assert manifest["presets"] == ["lama-thin", "lama-medium", "lama-thick"]
    assert {entry["preset"] for entry in manifest["files"].values()} <= set(manifest["presets"])

    # A masks/ folder beside test/ is taken instead (matched by stem), and said so.
    shutil.copytree(in_project / "results" / "masks", in_project / "masks")
    again = cli("bench", "--models", "telea", "--no-lpips", "--no-fid", "-o", "results2")
    assert again.code == 0, again
    assert "test masks: masks/" in again.err
    assert json.loads((in_project / "results2" / "results.json").read_text())["protocol"]["masks"]["source"] == "folder"


def test_bench_mixture_masks_match_make_masks_mixture(cli, in_project):
    (in_project / "test").mkdir()
    for name in ("a", "b", "c", "d"):
        shutil.copy(in_project / "photo.png", in_project / "test" / f"{name}.png")
    assert cli("make-masks", "test", "-p", "lama-thin", "-p", "lama-thick", "--seed", "3", "-o", "mm").code == 0
    result = cli(
        "bench",
        "--models",
        "telea",
        "--data",
        "test",
        "--masks",
        "lama-thin,lama-thick",
        "--seed",
        "3",
        "--no-lpips",
        "--no-fid",
        "-o",
        "res",
    )
    assert result.code == 0, result
    for name in ("a", "b", "c", "d"):  # the same masks, pixel for pixel, as make-masks draws
        assert np.array_equal(
            io.read_mask(in_project / "res" / "masks" / f"{name}.png"), io.read_mask(in_project / "mm" / f"{name}.png")
        )
    bad = cli("bench", "--models", "telea", "--data", "test", "--masks", "lama-thin,no-such", "-o", "res3")
    assert bad.code == 2 and "--masks" in bad.err


def test_train_lora_captions_its_data_with_blip_first(
    cli, tmp_path, monkeypatch, tiny_sd_inpaint_dir, tiny_blip_dir, train_images
):
    data = tmp_path / "data"
    shutil.copytree(train_images, data)
    monkeypatch.chdir(tmp_path)
    args = [
        "--base",
        tiny_sd_inpaint_dir,
        "--resolution",
        "32",
        "--max-steps",
        "1",
        "--val-images",
        "0",
        "--batch-size",
        "2",
    ]
    result = cli("train-lora", "data", "--caption-model", tiny_blip_dir, *args)
    assert result.code == 0, result
    captions = json.loads((data / "captions.json").read_text())
    assert sorted(captions) == sorted(p.name for p in train_images.glob("*.png"))
    assert all(text.endswith(", high quality, realistic, sharp focus") for text in captions.values())
    assert "captioned 6 image(s)" in result.err
    # The same JSON `inpaint caption` writes: captioning again finds nothing to do.
    again = cli("caption", "data", "--model", tiny_blip_dir, "--json")
    assert json.loads(again.out)["captioned"] == 0
    # --prompt: one prompt, no captions (and no BLIP).
    prompt = cli(
        "train-lora", "data", "-o", "runs/other", "--prompt", "a photo", "--caption-model", "/nonexistent", *args
    )
    assert prompt.code == 0, prompt
    assert "captions" not in prompt.err
