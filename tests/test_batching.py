"""The batching engine folder ``complete`` and ``bench`` share: its guarantees, and that both use it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inpaint import batching, io, models
from inpaint.completion import Pair
from inpaint.errors import Stopped


class Spy:
    """An inpainter wrapper that records the batch sizes it is called with."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, []

    def __call__(self, images, masks, seeds, **kwargs):
        self.calls.append(images.shape[0])
        return self.inner(images, masks, seeds, **kwargs)


def _pairs(tmp_path, photo, center_mask, sizes):
    pairs = []
    for i, size in enumerate(sizes):
        image = io.save_image(
            np.ascontiguousarray(np.roll(photo, 5 * i, axis=1)[:size, :size]), tmp_path / "images" / f"im{i}.png"
        )
        mask = io.save_mask(center_mask[:size, :size], tmp_path / "masks" / f"im{i}.png")
        pairs.append(Pair(image=image, mask=mask, output=tmp_path / "out" / f"im{i}.png", name=f"im{i}"))
    return pairs


def test_a_size_change_closes_the_batch_and_bad_pairs_fail_alone(tmp_path, photo, center_mask):
    pairs = _pairs(tmp_path, photo, center_mask, (64, 64, 64, 48, 64, 64, 64))
    pairs[1].image.write_bytes(b"\x89PNG broken")  # unreadable: fails before batching
    io.save_mask(np.ones((64, 64), bool), pairs[5].mask)  # biharmonic refuses a mask without known pixels
    spy = Spy(models.load_inpainter("biharmonic"))
    outcomes = list(batching.complete_batches(spy, pairs, seed=3, batch_size=3))
    by_name = {o.pair.name: o for o in outcomes}
    assert sorted(by_name) == [f"im{i}" for i in range(7)]
    assert by_name["im1"].unreadable and by_name["im1"].completed is None
    refused = by_name["im5"]
    assert not refused.unreadable and str(refused.error).startswith(f"{pairs[5].image}: biharmonic needs some known")
    # The 48-px im3 closes [im0, im2] and runs alone; [im4, im5, im6] is refused for im5 and retried
    # one image at a time.
    assert spy.calls == [2, 1, 3, 1, 1, 1]
    alone = batching.complete_batches(models.load_inpainter("biharmonic"), [pairs[6]], seed=3)
    assert np.array_equal(next(alone).completed.result, by_name["im6"].completed.result)  # batch size 1's result


def test_pairs_are_taken_lazily_and_a_stop_leaves_the_rest(tmp_path, photo, center_mask):
    pairs = _pairs(tmp_path, photo, center_mask, (64,) * 5)
    taken = []

    def stream():
        for pair in pairs:
            taken.append(pair.name)
            yield pair

    asked = []

    def stop_on_the_second_batch() -> bool:
        asked.append(1)
        return len(asked) > 1

    outcomes = batching.complete_batches(
        models.load_inpainter("telea"), stream(), seed=0, batch_size=2, stop_requested=stop_on_the_second_batch
    )
    first = next(outcomes)
    assert taken == ["im0", "im1"] and first.pair.name == "im0"  # one batch read, no more
    assert next(outcomes).pair.name == "im1"
    with pytest.raises(Stopped):
        next(outcomes)
    assert taken == ["im0", "im1", "im2", "im3"]


def test_complete_and_bench_make_the_same_raw_outputs(
    cli, tmp_path, photo, center_mask, tiny_unet7_dir, no_metric_weights
):
    pairs = _pairs(tmp_path, photo, center_mask, (64, 64, 48, 64))
    images, masks = pairs[0].image.parent, pairs[0].mask.parent
    done = cli(
        "complete",
        images,
        masks,
        "-o",
        tmp_path / "complete",
        "-m",
        "ddpm",
        "--weights",
        tiny_unet7_dir,
        "--steps",
        "2",
        "--device",
        "cpu",
        "--no-paste-back",
        "--seed",
        "4",
        "--json",
    )
    assert done.code == 0, done
    bench = cli(
        "bench",
        "-m",
        "ddpm",
        "-w",
        f"ddpm={tiny_unet7_dir}",
        "--model-option",
        "ddpm.steps=2",
        "--data",
        images,
        "--masks",
        masks,
        "-o",
        tmp_path / "bench",
        "--eval-size",
        "32",
        "--device",
        "cpu",
        "--seed",
        "4",
        "--batch-size",
        "3",
        "--grid-images",
        "0",
        "--worst-k",
        "0",
        "--json",
    )
    assert bench.code == 0, bench
    assert json.loads(done.out)["written"] == [p.name for p in pairs]
    for pair in pairs:
        a = io.read_image(tmp_path / "complete" / f"{pair.name}.png").astype(int)
        b = io.read_image(tmp_path / "bench" / "outputs" / "ddpm" / f"{pair.name}.png").astype(int)
        assert np.abs(a - b).max() <= 1, pair.name  # batch 3 vs 1: float summation order only
