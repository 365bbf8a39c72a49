"""File names that are not valid UTF-8 go through every command, and reruns find what was done.

A POSIX file name is bytes; Python hands ``b"bad\\xff.png"`` over as ``"bad\\udcff.png"``
(``surrogateescape``). Each command must read such a file, name its outputs by the same bytes,
write JSON that reads back to the same name, write reports and console lines that stay UTF-8,
and seed it by its bytes, while valid names keep the seeds they always had.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from inpaint import atomic, names
from inpaint.seeding import derive_seed

BAD = os.fsdecode(b"bad\xff")  # "bad\udcff"
BAD_PNG = f"{BAD}.png"


def listing(folder: Path) -> set[bytes]:
    """The names in ``folder`` as the file system holds them."""
    return set(os.listdir(os.fsencode(folder)))


@pytest.fixture
def data(tmp_path, train_images) -> Path:
    """Three small photos: one under a non-UTF-8 name, one under a valid non-ASCII name, one plain."""
    folder = tmp_path / "data"
    folder.mkdir()
    sources = sorted(train_images.iterdir())
    for source, name in zip(sources, (BAD_PNG, "café.png", "plain.png")):
        shutil.copyfile(source, folder / name)
    assert b"bad\xff.png" in listing(folder)
    return folder


def test_seeds_of_valid_names_are_unchanged_and_others_use_their_bytes():
    # Computed with the code as it was before non-UTF-8 names were handled: they must never change.
    assert derive_seed(0, "mask", "a.png") == 1083876164361721195
    assert derive_seed(7, "noise", "café.png", 3) == 9003976813301369592
    assert derive_seed(123, "img_001") == 7171190502330142093
    # A non-UTF-8 name is seeded by its own bytes, as the same formula on bytes gives.
    expected = int.from_bytes(hashlib.sha256(b"0\x1fmask\x1fbad\xff.png").digest()[:8], "little") >> 1
    assert derive_seed(0, "mask", BAD_PNG) == expected
    assert derive_seed(0, "mask", BAD_PNG) != derive_seed(0, "mask", os.fsdecode(b"bad\xfe.png"))


def test_json_round_trips_any_name_and_text_shows_its_bytes(tmp_path):
    record = {BAD_PNG: "a caption", "café.png": "x", "list": [BAD]}
    atomic.write_json(tmp_path / "r.json", record)
    raw = (tmp_path / "r.json").read_bytes()
    raw.decode("utf-8")  # valid UTF-8
    assert b'"bad\\udcff.png"' in raw and "café".encode() in raw  # valid names stay readable
    back = json.loads(raw)
    assert back == record and os.fsencode(next(iter(back))) == b"bad\xff.png"
    # Text without such names is written exactly as before.
    assert names.json_text({"café": 1}, indent=2) == json.dumps({"café": 1}, indent=2, ensure_ascii=False)
    atomic.write_text(tmp_path / "r.md", f"| {BAD} | café |\n")
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == "| bad\\xff | café |\n"
    assert names.printable("plain café") == "plain café" and names.name_bytes(BAD_PNG) == b"bad\xff.png"


def test_make_masks_and_complete_name_outputs_by_the_original_bytes(cli, tmp_path, data):
    masks = tmp_path / "masks"
    made = cli("make-masks", data, "-o", masks, "-p", "box-center", "--json")
    assert made.code == 0, made
    assert {b"bad\xff.png", "café.png".encode(), b"plain.png", b"manifest.json"} == listing(masks)
    assert os.path.join(masks, BAD_PNG) in json.loads(made.out)["files"]
    manifest = json.loads((masks / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"][BAD_PNG]["image"] == BAD_PNG
    refused = cli("make-masks", data, "-o", masks, "-p", "box-center")  # the message names it, escaped
    assert refused.code == 2 and "bad\\xff.png" in refused.err

    out = tmp_path / "out"
    first = cli("complete", data, masks, "-o", out, "-m", "telea", "--json")
    assert first.code == 0, first
    assert {b"bad\xff.png", "café.png".encode(), b"plain.png"} <= listing(out)
    assert BAD in json.loads(first.out)["written"]
    again = cli("complete", data, masks, "-o", out, "-m", "telea", "--json")  # resumes: nothing to redo
    assert again.code == 0, again
    summary = json.loads(again.out)
    assert summary["written"] == [] and BAD in summary["skipped_existing"]
    text = cli("complete", data, masks, "-o", out, "-m", "telea")  # the summary line for people
    assert text.code == 0, text

    single = cli("complete", data / BAD_PNG, masks / BAD_PNG, "-m", "telea", "--json")
    assert single.code == 0, single
    assert b"bad\xff_inpainted.png" in listing(data)
    named = cli("complete", data / BAD_PNG, masks / BAD_PNG, "-m", "telea", "-o", tmp_path / os.fsdecode(b"x\xfe.png"))
    assert named.code == 0 and "x\\xfe.png" in named.err, named
    assert b"x\xfe.png" in listing(tmp_path)


def test_caption_writes_keys_that_read_back_and_resumes(cli, tmp_path, data, tiny_blip_dir):
    from inpaint.captions import caption_for, caption_index, missing_captions
    from inpaint.data import load_captions

    output = tmp_path / "captions.json"
    first = cli("caption", data, "-o", output, "--model", tiny_blip_dir, "--device", "cpu", "--json")
    assert first.code == 0, first
    captions = load_captions(output)
    assert set(captions) == {BAD_PNG, "café.png", "plain.png"}
    assert missing_captions(captions, data) == [] and caption_for(caption_index(captions), BAD) == captions[BAD_PNG]
    again = cli("caption", data, "-o", output, "--model", tiny_blip_dir, "--device", "cpu", "--json")
    assert again.code == 0, again
    assert json.loads(again.out)["captioned"] == 0 and json.loads(again.out)["already_done"] == 3
    assert load_captions(output) == captions


def test_train_ddpm_records_and_resumes(cli, tmp_path, data, tiny_ddpm_dir):
    run = tmp_path / "run"
    args = [
        "train-ddpm",
        data,
        "-o",
        run,
        "--base",
        tiny_ddpm_dir,
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--val-images",
        "0",
        "--device",
        "cpu",
        "--json",
    ]
    first = cli(*args, "--max-steps", "2")
    assert first.code == 0, first
    # The data fingerprint covers the non-UTF-8 name: the rerun recognises its data and continues.
    resumed = cli(*args, "--max-steps", "3")
    assert resumed.code == 0, resumed
    assert json.loads(resumed.out)["resumed_from"] == 2 and json.loads(resumed.out)["step"] == 3


def test_a_held_out_validation_image_with_such_a_name_is_recorded_and_resumed(cli, tmp_path, data, tiny_ddpm_dir):
    from inpaint.data import choose_validation, list_folder_images

    for i in range(3):  # five images: enough to hold one out of training
        shutil.copyfile(data / "plain.png", data / f"copy{i}.png")
    seed = next(
        s for s in range(100) if [p.name for p in choose_validation(list_folder_images(data), 1, s)] == [BAD_PNG]
    )
    run = tmp_path / "run"
    args = [
        "train-ddpm",
        data,
        "-o",
        run,
        "--base",
        tiny_ddpm_dir,
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--val-images",
        "1",
        "--val-steps",
        "2",
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--json",
    ]
    first = cli(*args, "--max-steps", "1")
    assert first.code == 0, first
    record = json.loads((run / "training_config.json").read_text(encoding="utf-8"))
    assert record["val_source"] == "held-out" and record["val_names"] == [BAD_PNG]
    resumed = cli(*args, "--max-steps", "2")  # the same image is held out: not a changed split
    assert resumed.code == 0, resumed
    assert json.loads(resumed.out)["resumed_from"] == 1


def test_bench_names_outputs_writes_readable_reports_and_resumes(cli, tmp_path, data, no_metric_weights):
    folder = tmp_path / os.fsdecode(b"test\xfe")  # a non-UTF-8 folder name too
    data.rename(folder)
    out = tmp_path / "results"
    args = [
        "bench",
        "--models",
        "telea",
        "--data",
        folder,
        "--masks",
        "box-center",
        "-o",
        out,
        "--eval-size",
        "32",
        "--no-lpips",
        "--no-fid",
        "--worst-k",
        "3",
    ]
    first = cli(*args, "--json")
    assert first.code == 0, first
    assert json.loads(first.out)["n_images"] == 3
    assert {b"bad\xff.png", "café.png".encode(), b"plain.png"} <= listing(out / "outputs" / "telea")
    assert {b"bad\xff.png", "café.png".encode(), b"plain.png"} <= listing(out / "masks")
    assert "bad\\xff," in (out / "per_image.csv").read_text(encoding="utf-8")
    assert "bad\\xff" in (out / "report.md").read_text(encoding="utf-8")
    logged = [json.loads(line)["name"] for line in (out / "outputs" / "telea" / "log-rank0.jsonl").open()]
    assert BAD in logged
    masks_before = {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()}

    again = cli(*args)  # the run.json comparison, the mask manifest and the logs all match: nothing redone
    assert again.code == 0, again
    assert "telea 0 new / 3 reused" in again.err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()} == masks_before


def test_doctor_shows_non_utf8_paths_in_its_tables(cli, tmp_path, monkeypatch, no_metric_weights):
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)  # short relative paths: the tables show them whole
    monkeypatch.setattr(constants, "HF_HUB_CACHE", os.fsdecode(b"hub\xff"))
    weights = Path(os.fsdecode(b"w\xfe")) / "alexnet-owt-7be5be79.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    monkeypatch.setenv("INPAINT_LPIPS_WEIGHTS", str(weights))
    result = cli("doctor")  # rich tables on a strict UTF-8 stdout
    assert result.code == 0, result
    assert "Hugging Face cache: hub\\xff" in result.out and "w\\xfe" in result.out
    assert json.loads(cli("doctor", "--json").out)["hub_cache"] == os.fsdecode(b"hub\xff")
