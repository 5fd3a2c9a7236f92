"""Training losses for the multi-axis heads (SPEC section 4).

``LOSSES[name](pred, target)`` takes float tensors ``(B, A)`` of z-scored scores
(one column per task axis, any A) and returns a scalar: the mean over the A axes of a
per-axis loss.  Loss parameters are keyword arguments with the paper's defaults,
e.g. ``LOSSES["utmos"](pred, target, tau=0.5)``.  Per-axis versions (``*_axis``,
on ``(B,)`` tensors) are exported for analysis and tests.

Adding a loss = one module defining ``<name>_axis`` and a ``@head_output``-tagged
``<name>_loss``, plus one line in ``LOSSES``.  ``loss_head_output(name)`` tells the
trainer which head output the loss consumes (``"scores"``, ``"distribution"`` or ``"coral"``).
``Z_LOSSES`` are the z-space point-score losses (what Track 2 trains); ``TRACK1_LOSSES`` take Track 1
head outputs on the 1-5 label scale (``losses.distribution``).
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from .base import SCORES, axis_losses, head_output, mean_over_axes
from .ccc import ccc_axis, ccc_loss
from .contrastive import contrastive_axis, contrastive_loss
from .dcq import dcq_axis, dcq_loss
from .distribution import coral, coral_logits, coral_score, expected_score, gaussian_target, kl_gaussian, kl_onehot, l1
from .utmos import clipped_mse_axis, utmos_axis, utmos_loss

#: Losses on z-scored point scores ``(B, A)`` of any task (Track 2's sweep trains these).
Z_LOSSES: dict[str, Callable[..., Tensor]] = {
    "utmos": utmos_loss,
    "contrastive": contrastive_loss,
    "dcq": dcq_loss,
    "ccc": ccc_loss,
}
#: Track 1 losses on the label scale (1-5): distribution/CORAL head outputs, and ``l1`` of a scalar head.
TRACK1_LOSSES: dict[str, Callable[..., Tensor]] = {
    "kl_gaussian": kl_gaussian,
    "kl_onehot": kl_onehot,
    "coral": coral,
    "l1": l1,
}
LOSSES: dict[str, Callable[..., Tensor]] = {**Z_LOSSES, **TRACK1_LOSSES}


def get_loss(name: str) -> Callable[..., Tensor]:
    """The registered loss ``name``; ``KeyError`` naming the valid names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}") from None


def loss_head_output(name: str) -> str:
    """The head output kind the loss ``name`` needs (e.g. ``"scores"``)."""
    return getattr(get_loss(name), "head_output", SCORES)


__all__ = [
    "LOSSES",
    "SCORES",
    "TRACK1_LOSSES",
    "Z_LOSSES",
    "axis_losses",
    "ccc_axis",
    "ccc_loss",
    "clipped_mse_axis",
    "contrastive_axis",
    "contrastive_loss",
    "coral",
    "coral_logits",
    "coral_score",
    "dcq_axis",
    "dcq_loss",
    "expected_score",
    "gaussian_target",
    "get_loss",
    "head_output",
    "kl_gaussian",
    "kl_onehot",
    "l1",
    "loss_head_output",
    "mean_over_axes",
    "utmos_axis",
    "utmos_loss",
]
