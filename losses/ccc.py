"""Concordance correlation coefficient (CCC) loss, in the public MMMOS code's form.

Per axis: L = 1 - 2 cov / (var_p + var_y + (mu_p - mu_y)^2 + eps), eps = 1e-6, with
the variances *unbiased* (divide by B - 1) and the covariance the plain mean of
products of deviations (divide by B).  This mix is what the paper ran, so it is kept;
one consequence is that a perfect prediction scores 1/B rather than 0.

B = 1: the unbiased variance is undefined (0/0).  We define it as 0 (one value shows
no spread), so the loss is 1 - 0 / ((mu_p - mu_y)^2 + eps) = 1, finite, with zero
gradient.  Constant predictions or tied targets likewise give cov = 0 and a finite
value thanks to eps.
"""
from __future__ import annotations

from torch import Tensor

from .base import SCORES, check_axis, head_output, mean_over_axes


def ccc_axis(p: Tensor, y: Tensor, eps: float = 1e-6) -> Tensor:
    """CCC loss of one axis; ``p``, ``y`` are ``(B,)``."""
    y = check_axis(p, y, "ccc_axis")
    b = p.shape[0]
    mu_p, mu_y = p.mean(), y.mean()
    dev_p, dev_y = p - mu_p, y - mu_y
    var_p = dev_p.square().sum() / max(b - 1, 1)  # B = 1: sum is 0, so var := 0
    var_y = dev_y.square().sum() / max(b - 1, 1)
    cov = (dev_p * dev_y).mean()
    return 1.0 - 2.0 * cov / (var_p + var_y + (mu_p - mu_y).square() + eps)


@head_output(SCORES)
def ccc_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """CCC loss over ``(B, A)`` scores, averaged over the axes."""
    return mean_over_axes(ccc_axis, pred, target, eps=eps)
