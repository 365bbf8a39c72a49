"""The study's spatially weighted epsilon MSE (inpaint.losses)."""

from __future__ import annotations

import pytest
import torch

from inpaint.losses import weighted_eps_mse


def _half_mask(n: int = 2, size: int = 4) -> torch.Tensor:
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, :, : size // 2] = 1.0  # left half is the hole
    return masks


def test_hole_weighs_one_and_known_region_five_hundredths():
    masks = _half_mask()
    eps = torch.zeros(2, 3, 4, 4)
    only_hole = torch.where(masks.bool().expand_as(eps), torch.ones_like(eps), eps)
    only_known = torch.where(masks.bool().expand_as(eps), eps, torch.ones_like(eps))
    n = eps.numel()
    hole_elements = n // 2
    assert weighted_eps_mse(only_hole, eps, masks).item() == pytest.approx(hole_elements * 1.0 / n, abs=0)
    assert weighted_eps_mse(only_known, eps, masks).item() == pytest.approx(
        hole_elements * 0.05 / n, rel=1e-7
    )
    # everywhere wrong by 1: the mean of W
    assert weighted_eps_mse(torch.ones_like(eps), eps, masks).item() == pytest.approx(0.525, rel=1e-7)


def test_single_pixel_errors_are_squared_and_weighted():
    masks = _half_mask(n=1)
    eps = torch.zeros(1, 3, 4, 4)
    pred = eps.clone()
    pred[0, 1, 2, 0] = 3.0  # in the hole
    assert weighted_eps_mse(pred, eps, masks).item() == pytest.approx(9.0 / 48, rel=1e-7)
    pred = eps.clone()
    pred[0, 2, 2, 3] = -2.0  # known
    assert weighted_eps_mse(pred, eps, masks).item() == pytest.approx(4.0 * 0.05 / 48, rel=1e-7)


def test_custom_weights_and_plain_mse():
    g = torch.Generator().manual_seed(0)
    pred, eps = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    masks = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    plain = torch.nn.functional.mse_loss(pred, eps)
    assert torch.allclose(weighted_eps_mse(pred, eps, masks, hole_weight=1.0, known_weight=1.0), plain)
    assert weighted_eps_mse(pred, eps, torch.ones_like(masks), hole_weight=2.0).item() == pytest.approx(
        2 * plain.item(), rel=1e-6
    )


def test_gradients_flow_and_half_inputs_give_fp32():
    pred = torch.zeros(1, 3, 4, 4, requires_grad=True)
    loss = weighted_eps_mse(pred, torch.ones(1, 3, 4, 4), _half_mask(n=1))
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    half = weighted_eps_mse(torch.zeros(1, 3, 4, 4).half(), torch.ones(1, 3, 4, 4).half(), _half_mask(n=1))
    assert half.dtype == torch.float32 and half.ndim == 0


def test_shape_mismatches_raise():
    with pytest.raises(ValueError):
        weighted_eps_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError):
        weighted_eps_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
