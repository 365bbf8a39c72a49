"""Locating backbone weight files offline: explicit path, environment variable, torch.hub cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inpaint.errors import InputError
from inpaint.metrics import FID_INCEPTION, LPIPS_ALEX, MetricWeightsMissing, resolve_weights
from inpaint.metrics.weights import hub_cache_path, load_state_dict


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    """An empty $TORCH_HOME and no INPAINT_* variables: nothing to find unless a test puts it there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("INPAINT_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("INPAINT_FID_WEIGHTS", raising=False)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(1)}, path)
    return path


def test_missing_file_message_says_what_where_and_how(empty_hub):
    with pytest.raises(MetricWeightsMissing) as info:
        resolve_weights(LPIPS_ALEX)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, InputError) and info.value.exit_code == 2
    for part in (
        "alexnet-owt-7be5be79.pth",
        "--lpips-weights",
        "INPAINT_LPIPS_WEIGHTS",
        str(empty_hub / "alexnet-owt-7be5be79.pth"),
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ):
        assert part in message
    with pytest.raises(MetricWeightsMissing, match="--fid-weights.*INPAINT_FID_WEIGHTS"):
        resolve_weights(FID_INCEPTION)


def test_hub_cache_is_where_torch_hub_looks(empty_hub):
    assert hub_cache_path(LPIPS_ALEX) == Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_ALEX.filename
    cached = touch(empty_hub / LPIPS_ALEX.filename)
    assert resolve_weights(LPIPS_ALEX) == cached


def test_explicit_path_beats_environment_beats_cache(empty_hub, tmp_path, monkeypatch):
    touch(empty_hub / LPIPS_ALEX.filename)
    from_env = touch(tmp_path / "env" / "alex.pth")
    explicit = touch(tmp_path / "explicit" / "alex.pth")
    monkeypatch.setenv("INPAINT_LPIPS_WEIGHTS", str(from_env))
    assert resolve_weights(LPIPS_ALEX) == from_env
    assert resolve_weights(LPIPS_ALEX, explicit) == explicit
    # A directory holding the file under its exact name also works.
    in_dir = touch(tmp_path / "dir" / LPIPS_ALEX.filename)
    assert resolve_weights(LPIPS_ALEX, in_dir.parent) == in_dir


def test_a_given_path_that_does_not_exist_is_an_error_not_a_fallback(empty_hub, tmp_path, monkeypatch):
    touch(empty_hub / LPIPS_ALEX.filename)  # would be found if we fell through
    with pytest.raises(MetricWeightsMissing, match="nope.pth does not exist \\(from --lpips-weights"):
        resolve_weights(LPIPS_ALEX, tmp_path / "nope.pth")
    monkeypatch.setenv("INPAINT_LPIPS_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(MetricWeightsMissing, match="from \\$INPAINT_LPIPS_WEIGHTS="):
        resolve_weights(LPIPS_ALEX)


def test_a_file_that_is_not_weights_is_a_one_line_input_error(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint\n")
    with pytest.raises(InputError, match="junk.pth: cannot load as PyTorch weights") as info:
        load_state_dict(junk, LPIPS_ALEX)
    assert "\n" not in str(info.value)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(InputError, match="not a state dict"):
        load_state_dict(listed, LPIPS_ALEX)
