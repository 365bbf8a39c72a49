"""The study's spatially weighted MSE (inpaint.losses) and the regression target it is taken against."""

from __future__ import annotations

import pytest
import torch

from inpaint.losses import hole_weighted_mse


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
    assert hole_weighted_mse(only_hole, eps, masks).item() == pytest.approx(hole_elements * 1.0 / n, abs=0)
    assert hole_weighted_mse(only_known, eps, masks).item() == pytest.approx(hole_elements * 0.05 / n, rel=1e-7)
    # everywhere wrong by 1: the mean of W
    assert hole_weighted_mse(torch.ones_like(eps), eps, masks).item() == pytest.approx(0.525, rel=1e-7)


def test_single_pixel_errors_are_squared_and_weighted():
    masks = _half_mask(n=1)
    eps = torch.zeros(1, 3, 4, 4)
    pred = eps.clone()
    pred[0, 1, 2, 0] = 3.0  # in the hole
    assert hole_weighted_mse(pred, eps, masks).item() == pytest.approx(9.0 / 48, rel=1e-7)
    pred = eps.clone()
    pred[0, 2, 2, 3] = -2.0  # known
    assert hole_weighted_mse(pred, eps, masks).item() == pytest.approx(4.0 * 0.05 / 48, rel=1e-7)


def test_custom_weights_and_plain_mse():
    g = torch.Generator().manual_seed(0)
    pred, eps = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    masks = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    plain = torch.nn.functional.mse_loss(pred, eps)
    assert torch.allclose(hole_weighted_mse(pred, eps, masks, hole_weight=1.0, known_weight=1.0), plain)
    assert hole_weighted_mse(pred, eps, torch.ones_like(masks), hole_weight=2.0).item() == pytest.approx(
        2 * plain.item(), rel=1e-6
    )


def test_gradients_flow_and_half_inputs_give_fp32():
    pred = torch.zeros(1, 3, 4, 4, requires_grad=True)
    loss = hole_weighted_mse(pred, torch.ones(1, 3, 4, 4), _half_mask(n=1))
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    half = hole_weighted_mse(torch.zeros(1, 3, 4, 4).half(), torch.ones(1, 3, 4, 4).half(), _half_mask(n=1))
    assert half.dtype == torch.float32 and half.ndim == 0


def test_shape_mismatches_raise():
    with pytest.raises(ValueError):
        hole_weighted_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError):
        hole_weighted_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_training_target_is_what_predict_x0_inverts(kind):
    """The target of each prediction type, fed back through predict_x0 at the same noise level,
    gives the clean image: training and sampling read the model's output the same way."""
    from diffusers import DDPMScheduler

    from inpaint.samplers import predict_x0, training_target

    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=kind)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.randn(3, 3, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    target = training_target(scheduler, x0, noise, t)
    expected = {"epsilon": noise, "sample": x0, "v_prediction": scheduler.get_velocity(x0, noise, t)}[kind]
    assert torch.equal(target, expected)
    x_t = scheduler.add_noise(x0, noise, t)
    for i in range(3):
        abar = float(scheduler.alphas_cumprod[int(t[i])])
        back = predict_x0(target[i : i + 1], x_t[i : i + 1], abar, kind)
        assert torch.allclose(back, x0[i : i + 1], atol=1e-3 if kind == "epsilon" else 1e-5)


def test_training_target_refuses_an_unknown_prediction_type():
    from types import SimpleNamespace

    from inpaint.samplers import training_target

    scheduler = SimpleNamespace(config=SimpleNamespace(prediction_type="flow"))
    with pytest.raises(ValueError, match="unknown prediction_type 'flow'; expected one of epsilon"):
        training_target(scheduler, torch.zeros(1), torch.zeros(1), torch.zeros(1))


def test_per_image_randn_draws_each_row_from_its_own_generator():
    from inpaint.seeding import per_image_randn

    def gens(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    batch = per_image_randn(gens(1, 2, 3), (3, 4, 4))
    assert batch.shape == (3, 3, 4, 4) and batch.dtype == torch.float32
    for i, seed in enumerate((1, 2, 3)):
        assert torch.equal(batch[i], per_image_randn(gens(seed), (3, 4, 4))[0])
        assert torch.equal(batch[i], torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(seed)))
    half = per_image_randn(gens(1, 2, 3), (3, 4, 4), device="cpu", dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, batch.half())  # drawn in fp32, then cast
    with pytest.raises(ValueError, match="no generators"):
        per_image_randn([], (3,))
