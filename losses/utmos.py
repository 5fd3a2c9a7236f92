"""UTMOS loss: clipped MSE plus alpha x the margin contrastive loss.

Per axis: L = L_reg + alpha * L_con with
L_reg = mean_i 1[|p_i - y_i| > tau] * (p_i - y_i)^2 (errors up to tau cost nothing;
the mean is over all B items, not only the clipped ones) and L_con from
``contrastive.py``.  Defaults tau = 0.5, margin = 0.1, alpha = 0.5 (SPEC section 4).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SCORES, check_axis, head_output, mean_over_axes
from .contrastive import contrastive_axis


def clipped_mse_axis(p: Tensor, y: Tensor, tau: float = 0.5) -> Tensor:
    """Clipped MSE of one axis: squared errors only where ``|p - y| > tau``, averaged over B."""
    y = check_axis(p, y, "clipped_mse_axis")
    err = p - y
    return torch.where(err.abs() > tau, err.square(), torch.zeros_like(err)).mean()


def utmos_axis(p: Tensor, y: Tensor, tau: float = 0.5, margin: float = 0.1, alpha: float = 0.5) -> Tensor:
    """UTMOS loss of one axis; ``p``, ``y`` are ``(B,)``."""
    return clipped_mse_axis(p, y, tau=tau) + alpha * contrastive_axis(p, y, margin=margin)


@head_output(SCORES)
def utmos_loss(
    pred: Tensor, target: Tensor, tau: float = 0.5, margin: float = 0.1, alpha: float = 0.5
) -> Tensor:
    """UTMOS loss over ``(B, A)`` scores, averaged over the axes."""
    return mean_over_axes(utmos_axis, pred, target, tau=tau, margin=margin, alpha=alpha)
