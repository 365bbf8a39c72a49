"""LPIPS with a locally loaded backbone equals lpips' own pretrained path fed the same weights.

Real backbones cannot be downloaded here, so the tests save randomly initialised torchvision
backbones to files. The reference is lpips itself, built with ``pnet_rand=False`` while torchvision's
constructor is patched to return the model loaded from that file: exactly what lpips does after a
successful download.
"""

from __future__ import annotations

import math
import types

import lpips as lpips_package
import numpy as np
import pytest
import torch
import torchvision

from inpaint import io
from inpaint.metrics import LPIPSMetric, MetricWeightsMissing, lpips, seam_band, seam_lpips
from inpaint.metrics.perceptual import build_lpips


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory):
    """A full torchvision AlexNet state dict (features and classifier), random init, seed 0."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lpips") / "alexnet-random.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def alex_metric(alex_file) -> LPIPSMetric:
    return LPIPSMetric("alex", weights=alex_file)


@pytest.fixture(scope="module")
def vgg_features_file(tmp_path_factory):
    """VGG16's `features` only (the 500 MB classifier is irrelevant to LPIPS), random init."""
    torch.manual_seed(1)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    path = tmp_path_factory.mktemp("lpips") / "vgg16-features-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def reference_lpips(monkeypatch, net: str, weights_file) -> lpips_package.LPIPS:
    """lpips' own pretrained-backbone path, with torchvision returning the weights from our file."""
    state = torch.load(weights_file, weights_only=True)
    if net == "alex":
        original = torchvision.models.alexnet

        def fake_alexnet(*args, **kwargs):
            model = original(weights=None)
            model.load_state_dict(state)
            return model

        monkeypatch.setattr(torchvision.models, "alexnet", fake_alexnet)
    else:
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
        features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
        monkeypatch.setattr(torchvision.models, "vgg16", lambda *a, **k: types.SimpleNamespace(features=features))
    model = lpips_package.LPIPS(pretrained=True, net=net, pnet_rand=False, verbose=False).eval()
    monkeypatch.undo()
    return model


@pytest.fixture
def pair(photo):
    """The 64 px photo and a noisy, partly shifted version, on the 8-bit grid, as [0, 1] tensors."""
    rng = np.random.default_rng(0)
    fake = np.clip(photo.astype(int) + rng.normal(0, 15, photo.shape).round().astype(int), 0, 255)
    fake[20:44, 20:44] = photo[24:48, 16:40]
    return io.to_tensor(np.stack([fake.astype(np.uint8), photo])), io.to_tensor(np.stack([photo, photo]))


def test_alexnet_lpips_equals_lpips_own_pretrained_path(monkeypatch, alex_file, alex_metric, pair, center_mask):
    pred, target = pair
    ours = alex_metric
    reference = reference_lpips(monkeypatch, "alex", alex_file)
    with torch.no_grad():
        ref_whole = reference(pred * 2 - 1, target * 2 - 1).flatten().double()
        reference.spatial = True
        ref_map = reference(pred * 2 - 1, target * 2 - 1).double()  # (N, 1, H, W)
    whole = ours(pred, target)
    assert whole.dtype == torch.float64 and whole.shape == (2,)
    np.testing.assert_allclose(whole.numpy(), ref_whole.numpy(), rtol=0, atol=1e-6)
    assert whole[0] > 0.0 and whole[1] == 0.0  # identical images are at distance 0

    masks = io.mask_to_tensor(np.stack([center_mask, center_mask]))
    hole = ours(pred, target, masks)
    expected = [ref_map[i, 0][masks[i, 0].bool()].mean().item() for i in range(2)]
    np.testing.assert_allclose(hole.numpy(), expected, rtol=0, atol=1e-6)
    # The shifted patch sits in the hole: the hole is farther than the whole image on average.
    assert hole[0] > whole[0]


def test_vgg_lpips_equals_lpips_own_pretrained_path(monkeypatch, vgg_features_file, pair):
    pred, target = pair
    reference = reference_lpips(monkeypatch, "vgg", vgg_features_file)
    with torch.no_grad():
        expected = reference(pred * 2 - 1, target * 2 - 1).flatten().double()
    ours = LPIPSMetric("vgg", weights=vgg_features_file)(pred, target)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=0, atol=1e-6)


def test_function_api_environment_variable_and_seam(monkeypatch, alex_file, alex_metric, pair, center_mask, capsys):
    pred, target = pair
    monkeypatch.setenv("INPAINT_LPIPS_WEIGHTS", str(alex_file))
    metric = alex_metric
    masks = io.mask_to_tensor(np.stack([center_mask, center_mask]))
    assert torch.equal(lpips(pred, target), metric(pred, target))
    assert torch.equal(lpips(pred, target, masks), metric(pred, target, masks))
    seam = seam_lpips(pred, target, masks, width=4)
    assert torch.equal(seam, metric(pred, target, seam_band(masks, 4)))
    empty = torch.zeros(2, 1, 64, 64)
    assert all(math.isnan(v) for v in lpips(pred, target, empty).tolist())
    assert capsys.readouterr().out == ""  # library code never prints (lpips would, verbose=True)


def test_missing_or_wrong_backbone_is_a_clear_error(monkeypatch, tmp_path, alex_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("INPAINT_LPIPS_WEIGHTS", raising=False)
    with pytest.raises(MetricWeightsMissing, match="alexnet-owt-7be5be79.pth.*--lpips-weights"):
        lpips(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(MetricWeightsMissing, match="vgg16-397923af.pth"):
        build_lpips("vgg")
    with pytest.raises(Exception, match="not interchangeable|has no"):
        build_lpips("vgg", weights=alex_file)
