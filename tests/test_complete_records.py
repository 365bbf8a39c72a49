"""Folder ``complete`` records what made its outputs: a rerun resumes only its own work.

Another method, other options or retrained weights are refused before the model loads; a changed
image or mask redoes its output; an interrupted run resumes; outputs of an earlier version (no
record) are kept, as that version would.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inpaint import io
from inpaint.folder_record import LOG_FILE, RUN_FILE

NAMES = [f"img{i}" for i in range(6)]


@pytest.fixture
def folders(tmp_path, photo, center_mask):
    """Six 32x32 images and their masks: (images/, masks/)."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i, name in enumerate(NAMES):
        io.save_image(np.ascontiguousarray(np.roll(photo, 7 * i, axis=1)[16:48, 16:48]), images / f"{name}.png")
        io.save_mask(np.roll(center_mask, 3 * i, axis=0)[16:48, 16:48], masks / f"{name}.png")
    return images, masks


def _files(folder):
    """Every file of the folder (the record included), name -> (bytes, mtime)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run(cli, images, masks, out, *args):
    result = cli("complete", images, masks, "-o", out, "--json", *args)
    assert result.code == 0, result
    return json.loads(result.out)


def test_another_method_is_refused_naming_it_and_overwrite_redoes_every_image(cli, tmp_path, folders):
    images, masks = folders
    out = tmp_path / "o"
    assert _run(cli, images, masks, out, "-m", "telea")["written"] == NAMES
    before = _files(out)
    assert set(before) == {RUN_FILE, LOG_FILE, *(f"{n}.png" for n in NAMES)}

    result = cli("complete", images, masks, "-o", out, "-m", "biharmonic")
    assert result.code == 2 and result.out == ""
    assert result.err == (
        f"error: {out}/: made with --model telea; this run asks for biharmonic "
        "(use --overwrite to redo every image, or another -o)\n"
    )
    assert _files(out) == before  # nothing touched, not even a time

    summary = _run(cli, images, masks, out, "-m", "biharmonic", "--overwrite")
    assert summary["written"] == NAMES and summary["skipped_existing"] == []
    assert all(_files(out)[f"{n}.png"][0] != before[f"{n}.png"][0] for n in NAMES)  # biharmonic's now
    assert json.loads((out / RUN_FILE).read_text())["model"] == "biharmonic"
    assert _run(cli, images, masks, out, "-m", "biharmonic")["skipped_existing"] == NAMES
    assert cli("complete", images, masks, "-o", out, "-m", "telea").code == 2  # and telea is the other one now


def test_a_resumed_interrupted_run_skips_what_it_made_and_makes_the_rest(cli, tmp_path, folders):
    images, masks = folders
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(cli, images, masks, straight, "-m", "telea")
    # Killed after img0..img3 were written and img0..img2 recorded (img3 between its file and its line).
    shutil.copytree(straight, resumed)
    for name in NAMES[4:]:
        (resumed / f"{name}.png").unlink()
    lines = (straight / LOG_FILE).read_text().splitlines(keepends=True)
    (resumed / LOG_FILE).write_text("".join(lines[:3]) + lines[3][:20])  # a torn last line
    summary = _run(cli, images, masks, resumed, "-m", "telea")
    assert summary["skipped_existing"] == NAMES[:3] and summary["written"] == NAMES[3:]
    assert summary["redone_unrecorded"] == ["img3"] and summary["redone_inputs_changed"] == []
    assert summary["files"] == [str(resumed / f"{n}.png") for n in NAMES[3:]]
    # The same outputs as the uninterrupted run; its record holds every image.
    assert {k: v[0] for k, v in _files(resumed).items() if k != LOG_FILE} == {
        k: v[0] for k, v in _files(straight).items() if k != LOG_FILE
    }
    recorded = [json.loads(line) for line in (resumed / LOG_FILE).read_text().splitlines()[4:]]
    assert [entry["name"] for entry in recorded] == NAMES[3:]
    assert _run(cli, images, masks, resumed, "-m", "telea")["skipped_existing"] == NAMES


def test_a_changed_mask_or_image_redoes_only_its_output_and_its_concat_file(cli, tmp_path, folders, center_mask):
    images, masks = folders
    out = tmp_path / "o"
    _run(cli, images, masks, out, "-m", "telea", "--concat")
    before = _files(out)
    io.save_mask(np.roll(center_mask, 9, axis=1)[16:48, 16:48], masks / "img1.png")
    shutil.copy(images / "img0.png", images / "img4.png")
    # Without --concat: the concat files of redone images are rewritten all the same.
    result = cli("complete", images, masks, "-o", out, "-m", "telea")
    assert result.code == 0, result
    assert "2 written (2 redone: inputs changed), 4 already done, 0 failed" in result.err
    after = _files(out)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"img1.png", "img4.png", "concat/img1.png", "concat/img4.png", LOG_FILE}
    for name in ("img1", "img4"):
        concat = io.read_image(out / "concat" / f"{name}.png")
        assert np.array_equal(concat[:, -32:], io.read_image(out / f"{name}.png"))  # shows the new result
    summary = _run(cli, images, masks, out, "-m", "telea")
    assert summary["skipped_existing"] == NAMES and summary["written"] == []


def test_weights_retrained_into_the_same_folder_are_other_settings(cli, tmp_path, folders, tiny_unet7_dir):
    from safetensors.torch import load_file, save_file

    images, masks = folders
    weights, out = tmp_path / "run", tmp_path / "o"
    shutil.copytree(tiny_unet7_dir, weights)
    ddpm = ["-m", "ddpm", "--sampler", "ddim", "--steps", "2", "--device", "cpu"]
    assert _run(cli, images, masks, out, *ddpm, "-w", weights)["written"] == NAMES
    # The same files named otherwise are the same weights.
    assert _run(cli, images, masks, out, *ddpm, "-w", f"{weights}/")["skipped_existing"] == NAMES
    before = _files(out)
    path = weights / "diffusion_pytorch_model.safetensors"
    save_file({k: v + 0.01 for k, v in load_file(path).items()}, path)
    result = cli("complete", images, masks, "-o", out, *ddpm, "-w", weights)
    assert result.code == 2
    assert (
        f"{out}/: made with --weights {weights} with other contents; this run asks for {weights} as it is now "
        "(use --overwrite"
    ) in result.err
    assert _files(out) == before
    assert _run(cli, images, masks, out, *ddpm, "-w", weights, "--overwrite")["written"] == NAMES


def test_the_record_keeps_non_default_options_and_refuses_other_values(cli, tmp_path, folders, tiny_unet7_dir):
    images, masks = folders
    out = tmp_path / "o"
    ddpm = ["-m", "ddpm", "-w", tiny_unet7_dir, "--sampler", "ddim", "--device", "cpu"]
    assert _run(cli, images, masks, out, *ddpm, "--steps", "2", "--seed", "5")["written"] == NAMES
    recorded = json.loads((out / RUN_FILE).read_text())
    assert recorded["seed"] == 5 and recorded["options"] == {
        "weights": str(tiny_unet7_dir),
        "sampler": "ddim",
        "steps": 2,
    }
    assert set(recorded["fingerprints"]) == {"weights"} and recorded["weights_used"] == {"weights": "."}
    summary = _run(cli, images, masks, out, *ddpm, "--steps", "2", "--seed", "5", "--batch-size", "3")
    assert summary["skipped_existing"] == NAMES  # batch size and device are not settings: same outputs
    before = _files(out)
    for args, message in [
        (["--steps", "3", "--seed", "5"], "made with --steps 2; this run asks for 3 ("),
        (["--steps", "2"], "made with --seed 5; this run asks for 0 ("),
        (
            ["--steps", "2", "--seed", "5", "--no-paste-back"],
            "made with --paste-back; this run asks for --no-paste-back",
        ),
        (["--seed", "5"], "made with --steps 2; this run asks for the default ("),
        (["--steps", "1", "--seed", "1"], "made with --steps 2, --seed 5; this run asks for --steps 1, --seed 1 ("),
    ]:
        result = cli("complete", images, masks, "-o", out, *ddpm, *args)
        assert result.code == 2 and message in result.err, (args, result)
    assert _files(out) == before
    # Options the method does not read are not settings (telea ignores --steps, with a warning).
    telea = tmp_path / "t"
    _run(cli, images, masks, telea, "-m", "telea", "--steps", "4")
    assert _run(cli, images, masks, telea, "-m", "telea")["skipped_existing"] == NAMES


def test_outputs_of_an_earlier_version_are_kept_and_recorded_from_then_on(cli, tmp_path, folders, center_mask):
    images, masks = folders
    out = tmp_path / "o"
    _run(cli, images, masks, out, "-m", "telea")
    (out / RUN_FILE).unlink()
    (out / LOG_FILE).unlink()
    for name in NAMES[3:]:  # an interrupted run of an earlier version
        (out / f"{name}.png").unlink()
    result = cli("complete", images, masks, "-o", out, "-m", "telea", "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["skipped_existing"] == summary["skipped_unverified"] == NAMES[:3]
    assert summary["written"] == NAMES[3:]
    assert "warning: " in result.err and "3 output(s) made before inpaint recorded their settings" in result.err
    # From then on they are recorded: a changed mask redoes its image, another method is refused.
    io.save_mask(np.roll(center_mask, 9, axis=1)[16:48, 16:48], masks / "img0.png")
    summary = _run(cli, images, masks, out, "-m", "telea")
    assert summary["redone_inputs_changed"] == ["img0"] and summary["skipped_unverified"] == []
    assert cli("complete", images, masks, "-o", out, "-m", "biharmonic").code == 2


def test_the_python_api_keeps_the_same_record(tmp_path, folders):
    from inpaint import completion, models
    from inpaint.errors import InputError

    images, masks = folders
    pairs, _ = completion.pair_folders(images, masks, tmp_path / "o")
    report = completion.complete_folder(models.load_inpainter("telea"), pairs)
    assert report.written == NAMES
    with pytest.raises(InputError, match=r"made with --model telea; this run asks for biharmonic"):
        completion.complete_folder(models.load_inpainter("biharmonic"), pairs)
    assert completion.complete_folder(models.load_inpainter("telea"), pairs).skipped_existing == NAMES


def test_changes_name_what_differs_and_take_the_same_files_by_another_path_for_the_same(tmp_path):
    """The comparison bench and folder complete share (inpaint.provenance.changes)."""
    from inpaint import provenance
    from inpaint.folder_record import describe
    from inpaint.models.base import MethodOptions

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    recorded = provenance.method_settings("ddpm", MethodOptions(weights=str(run)))
    assert provenance.changes(recorded, provenance.method_settings("ddpm", MethodOptions(weights=f"{run}/"))) == []
    (run / "config.json").write_text('{"retrained": true}')
    now = provenance.method_settings("ddpm", MethodOptions(weights=str(run), steps=3, ema=False))
    found = provenance.changes({**recorded, "seed": 0}, {**now, "seed": 1})
    assert [(c.key, c.note) for c in found] == [
        ("ema", None),
        ("steps", None),
        ("weights", "files changed"),
        ("seed", None),
    ]
    assert describe(found) == (
        f"made with --ema, the default --steps, --weights {run} with other contents, --seed 0; "
        f"this run asks for --no-ema, --steps 3, --weights {run} as it is now, --seed 1"
    )
