"""Pure loss functions for training completion models."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The study's weights (docs/method.md, Method 1): the hole counts 20 times as much as the rest.
HOLE_WEIGHT = 1.0
KNOWN_WEIGHT = 0.05


def hole_weighted_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    masks: torch.Tensor,
    hole_weight: float = HOLE_WEIGHT,
    known_weight: float = KNOWN_WEIGHT,
) -> torch.Tensor:
    """Spatially weighted MSE of a diffusion model's output: ``mean((target - prediction)^2 * W)``.

    prediction, target: (N, C, H, W), the model's output and its regression target, whatever the
    model predicts (noise, velocity or x0: :func:`inpaint.samplers.training_target`); masks:
    (N, 1, H, W) in {0, 1} with 1 = hole, broadcast over channels.
    ``W = masks * hole_weight + (1 - masks) * known_weight``. The mean runs over every element
    (N*C*H*W), as in the study, so it is *not* normalised by the weights' sum: the loss scale
    follows the hole ratio. Computed in fp32 (AMP-safe). Returns a scalar tensor. (The "simple"
    objective of Ho et al. 2020, with the study's weighting.)
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    if masks.ndim != target.ndim or masks.shape[1] != 1 or masks.shape[2:] != target.shape[2:]:
        raise ValueError(
            f"masks must be (N, 1, H, W) matching the target {tuple(target.shape)}, got {tuple(masks.shape)}"
        )
    masks = masks.float()
    weights = masks * hole_weight + (1.0 - masks) * known_weight
    return ((target.float() - prediction.float()) ** 2 * weights).mean()
