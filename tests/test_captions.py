"""BLIP captions: the JSON file, resume after an interruption, look-ups by name."""

from __future__ import annotations

import json

import pytest

from inpaint.captions import (
    DEFAULT_SUFFIX,
    BlipCaptioner,
    caption_folder,
    caption_for,
    caption_index,
    missing_captions,
)
from inpaint.errors import InputError


class Counting:
    """Wraps a captioner: counts the images it was asked about; can fail on its n-th call."""

    def __init__(self, inner, fail_on_call: int | None = None) -> None:
        self.inner, self.fail_on_call, self.calls, self.images = inner, fail_on_call, 0, 0

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.images += len(images)
        return self.inner(images)


@pytest.fixture(scope="module")
def blip(tiny_blip_dir):
    return BlipCaptioner(str(tiny_blip_dir), device="cpu")


def test_blip_captions_every_image_deterministically(tmp_path, train_images, blip):
    out = tmp_path / "captions.json"
    report = caption_folder(train_images, out, captioner=blip, batch_size=4)
    captions = json.loads(out.read_text())
    assert sorted(captions) == sorted(p.name for p in train_images.iterdir())
    assert report.total == 6 and len(report.captioned) == 6 and report.already_done == 0
    assert all(text.endswith(DEFAULT_SUFFIX) and len(text) > len(DEFAULT_SUFFIX) for text in captions.values())
    # Greedy decoding: a batch gives what single images give, and a second run the same text.
    again = caption_folder(train_images, tmp_path / "again.json", captioner=blip, batch_size=1, suffix="")
    assert json.loads((tmp_path / "again.json").read_text()) == {
        k: v[: -len(DEFAULT_SUFFIX)] for k, v in captions.items()
    }
    assert again.total == 6


def test_an_interrupted_run_keeps_finished_batches_and_resumes(tmp_path, train_images, blip):
    out = tmp_path / "captions.json"
    interrupted = Counting(blip, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        caption_folder(train_images, out, captioner=interrupted, batch_size=2)
    first = json.loads(out.read_text())
    assert len(first) == 2  # the first batch was written before the interruption
    resumed = Counting(blip)
    report = caption_folder(train_images, out, captioner=resumed, batch_size=2)
    assert resumed.images == 4 and report.already_done == 2 and len(report.captioned) == 4
    final = json.loads(out.read_text())
    assert len(final) == 6 and all(final[k] == v for k, v in first.items())
    assert list(final) == sorted(final)  # sorted by file name: stable diffs
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary files left behind
    # Nothing left to do: no model call at all; --overwrite captions everything again.
    idle = Counting(blip)
    assert caption_folder(train_images, out, captioner=idle).captioned == [] and idle.calls == 0
    redo = Counting(blip)
    caption_folder(train_images, out, captioner=redo, overwrite=True, suffix="!")
    assert redo.images == 6 and all(v.endswith("!") for v in json.loads(out.read_text()).values())


def test_malformed_existing_file_and_bad_inputs(tmp_path, train_images, blip):
    out = tmp_path / "captions.json"
    out.write_text("{not json")
    with pytest.raises(InputError, match="not a valid captions JSON file"):
        caption_folder(train_images, out, captioner=blip)
    out.write_text(json.dumps({"a.png": 3}))
    with pytest.raises(InputError, match="captions must be a JSON object"):
        caption_folder(train_images, out, captioner=blip)
    with pytest.raises(InputError, match="--batch-size 0"):
        caption_folder(train_images, tmp_path / "c.json", captioner=blip, batch_size=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found"):
        caption_folder(empty, captioner=blip)


def test_missing_model_is_one_clear_line(tmp_path):
    with pytest.raises(InputError) as error:
        BlipCaptioner("nobody/no-such-blip", device="cpu")
    message = str(error.value)
    assert "nobody/no-such-blip" in message and "offline" in message and "\n" not in message
    with pytest.raises(InputError, match="no config.json"):
        BlipCaptioner(str(tmp_path), device="cpu")


def test_a_blip_without_the_caption_decoder_is_refused_not_run_with_random_weights(tmp_path, tiny_blip_dir):
    import shutil

    from safetensors.torch import load_file, save_file

    partial = tmp_path / "blip-itm"
    shutil.copytree(tiny_blip_dir, partial)
    for weights in partial.glob("*.safetensors"):
        tensors = load_file(weights)
        save_file(
            {k: v for k, v in tensors.items() if not k.startswith("text_decoder.")}, weights, metadata={"format": "pt"}
        )
    with pytest.raises(InputError, match="lack .* of the captioning model's tensors .*text_decoder"):
        BlipCaptioner(str(partial), device="cpu")


def test_lookup_by_file_name_or_stem(tmp_path, train_images):
    captions = {"cat.png": "a cat", "dog.jpg": "a dog", "x.png": "x1", "x.jpg": "x2"}
    index = caption_index(captions)
    assert caption_for(index, "cat.png") == "a cat"
    assert caption_for(index, "cat") == "a cat"  # completion knows images by stem
    assert caption_for(index, "dog.png") == "a dog"
    assert caption_for(index, "x") is None  # ambiguous stem: no guess
    assert caption_for(index, "x.jpg") == "x2"
    assert sorted(missing_captions({"cat.png": "a cat", "coffee": "coffee"}, train_images)) == [
        "astronaut.png",
        "camera.png",
        "chelsea.png",
        "rocket.png",
    ]


def test_an_empty_caption_gets_the_suffix_alone(tmp_path, train_images):
    """A captioner that finds no words (an unusual image, an untrained model) must not leave a
    prompt that starts with ", "."""
    out = tmp_path / "captions.json"
    caption_folder(train_images, out, captioner=lambda images: [""] * len(images))
    captions = json.loads(out.read_text())
    assert set(captions.values()) == {DEFAULT_SUFFIX.lstrip(", ")}


def test_captions_for_training_decides_captions_or_one_prompt(tmp_path, train_images, caplog):
    import logging
    import shutil

    from inpaint.captions import captions_for_training
    from inpaint.models.sd import DEFAULT_PROMPT

    data = tmp_path / "data"
    shutil.copytree(train_images, data)
    # A prompt and no captions file: that prompt for every image, BLIP not even looked for.
    chosen = captions_for_training(data, prompt="a face", model="/nonexistent")
    assert (chosen.captions, chosen.prompt, chosen.reason, chosen.source) == (None, "a face", None, None)
    assert not (data / "captions.json").exists()
    # No BLIP here: the study's fixed prompt, with the reason and one warning.
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        fallback = captions_for_training(data, model=str(tmp_path / "no-blip"))
    assert fallback.captions is None and fallback.prompt == DEFAULT_PROMPT and "no such folder" in fallback.reason
    assert [r.getMessage() for r in caplog.records if "trains on the prompt" in r.getMessage()]
    # A captioner: DATA/captions.json is made, with the study's suffix, and found again next time.
    made = captions_for_training(data, captioner=lambda images: ["a photo"] * len(images))
    assert made.captioned == 6 and made.source == data / "captions.json"
    assert set(made.captions.values()) == {"a photo" + DEFAULT_SUFFIX}
    again = captions_for_training(data, model=str(tmp_path / "no-blip"))
    assert again.captions == made.captions and again.captioned == 0
