"""Dual-criterion quality (DCQ) loss: pairwise deviation term minus a ranking term.

Per axis, over all B x B ordered pairs *including the diagonal* (SPEC section 4;
diagonal pairs add 0 to both sums but count in the mean), with
dp_ij = p_j - p_i and dy_ij = y_j - y_i:

    L = mean((dp - dy)^2) - mean(dp * sign(dy))

The ranking term rewards predicted gaps in the direction of the true order; tied
targets (sign 0) add nothing to it.  A batch of one gives 0.  The value can be
negative: it is an objective to minimise, not a distance.
"""
from __future__ import annotations

from torch import Tensor

from .base import SCORES, check_axis, head_output, mean_over_axes, pair_differences


def dcq_axis(p: Tensor, y: Tensor) -> Tensor:
    """DCQ loss of one axis; ``p``, ``y`` are ``(B,)``."""
    y = check_axis(p, y, "dcq_axis")
    dp = pair_differences(p)
    dy = pair_differences(y)
    return (dp - dy).square().mean() - (dp * dy.sign()).mean()


@head_output(SCORES)
def dcq_loss(pred: Tensor, target: Tensor) -> Tensor:
    """DCQ loss over ``(B, A)`` scores, averaged over the axes."""
    return mean_over_axes(dcq_axis, pred, target)
