"""Margin contrastive (pairwise ranking) loss, as used inside UTMOS.

Per axis: L_con = sum over ordered pairs i != j of ReLU(|(y_i - y_j) - (p_i - p_j)| - m),
divided by B(B - 1).  Predicted gaps that match the true gaps to within the margin
m cost nothing.  A batch of one has no pairs and gives 0.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import SCORES, check_axis, head_output, mean_over_axes, pair_differences


def contrastive_axis(p: Tensor, y: Tensor, margin: float = 0.1) -> Tensor:
    """Contrastive loss of one axis; ``p``, ``y`` are ``(B,)``."""
    y = check_axis(p, y, "contrastive_axis")
    b = p.shape[0]
    gap = (pair_differences(y) - pair_differences(p)).abs()
    off_diag = ~torch.eye(b, dtype=torch.bool, device=p.device)
    # Mask rather than rely on the diagonal being |0| - m < 0: a negative margin must not count it.
    total = torch.where(off_diag, torch.relu(gap - margin), torch.zeros_like(gap)).sum()
    return total / max(b * (b - 1), 1)


@head_output(SCORES)
def contrastive_loss(pred: Tensor, target: Tensor, margin: float = 0.1) -> Tensor:
    """Contrastive loss over ``(B, A)`` scores, averaged over the axes."""
    return mean_over_axes(contrastive_axis, pred, target, margin=margin)
