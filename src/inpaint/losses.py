"""Pure loss functions for training completion models."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The study's weights (shared/METHOD.md, Method 1): the hole counts 20 times as much as the rest.
HOLE_WEIGHT = 1.0
KNOWN_WEIGHT = 0.05


def weighted_eps_mse(
    eps_pred: torch.Tensor,
    eps: torch.Tensor,
    masks: torch.Tensor,
    hole_weight: float = HOLE_WEIGHT,
    known_weight: float = KNOWN_WEIGHT,
) -> torch.Tensor:
    """Spatially weighted epsilon-prediction MSE: ``mean((eps - eps_pred)^2 * W)``.

    eps_pred, eps: (N, C, H, W) predicted and true noise; masks: (N, 1, H, W) in {0, 1} with
    1 = hole, broadcast over channels. ``W = masks * hole_weight + (1 - masks) * known_weight``.
    The mean runs over every element (N*C*H*W), as in the study, so it is *not* normalised by the
    weights' sum: the loss scale follows the hole ratio. Computed in fp32 (AMP-safe). Returns a
    scalar tensor. (Objective of Ho et al. 2020, "simple" loss, with the study's weighting.)
    """
    if eps_pred.shape != eps.shape:
        raise ValueError(f"eps_pred {tuple(eps_pred.shape)} and eps {tuple(eps.shape)} differ")
    if masks.ndim != eps.ndim or masks.shape[1] != 1 or masks.shape[2:] != eps.shape[2:]:
        raise ValueError(
            f"masks must be (N, 1, H, W) matching eps {tuple(eps.shape)}, got {tuple(masks.shape)}"
        )
    masks = masks.float()
    weights = masks * hole_weight + (1.0 - masks) * known_weight
    return ((eps.float() - eps_pred.float()) ** 2 * weights).mean()
