"""Shared plumbing for the losses: input checks, axis averaging, head-output tags.

Every registered loss has the signature ``loss(pred, target, **params) -> scalar``
with ``pred``/``target`` float tensors of shape ``(B, A)`` in z-space, one column per
task axis (any A >= 1).  It is the mean over the A axes of a per-axis loss computed
on ``(B,)`` columns; the per-axis functions live next to each loss and take their
parameters as keyword defaults.

``head_output`` tags say which head output a loss consumes.  All current losses
take point scores ``(B, A)`` (tag ``"scores"``); a future distribution loss
(e.g. Gaussian-KL or CORAL) would carry another tag and its own input contract,
and the trainer can compare it with a head's ``output_kind`` before training.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import Tensor

SCORES = "scores"  # head output: one real number per axis, shape (B, A)

F = TypeVar("F", bound=Callable[..., Tensor])


def head_output(kind: str) -> Callable[[F], F]:
    """Decorator tagging a loss with the head output it needs (read back by ``loss_head_output``)."""

    def tag(fn: F) -> F:
        fn.head_output = kind  # type: ignore[attr-defined]
        return fn

    return tag


def _check_tensors(pred: Tensor, target: Tensor, where: str) -> Tensor:
    """Type/finiteness checks shared by both shapes; returns ``target`` in ``pred``'s dtype."""
    for label, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"losses ({where}): {label} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"losses ({where}): {label} must be a float tensor, got {t.dtype}")
    if pred.shape != target.shape:
        raise ValueError(
            f"losses ({where}): pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    if pred.shape[0] == 0:
        raise ValueError(f"losses ({where}): empty batch (B = 0)")
    # A NaN/inf here is a missing label or a diverged model; a loss value would hide it.
    for label, t in (("pred", pred), ("target", target)):
        if not bool(torch.isfinite(t.detach()).all()):
            raise ValueError(f"losses ({where}): {label} contains NaN or inf")
    return target.to(pred.dtype)


def check_axis(p: Tensor, y: Tensor, where: str) -> Tensor:
    """Validate one axis: ``p`` and ``y`` both ``(B,)`` with B >= 1. Returns ``y`` cast to ``p``'s dtype."""
    if isinstance(p, Tensor) and p.dim() != 1:
        raise ValueError(f"losses ({where}): per-axis input must be 1-D (B,), got shape {tuple(p.shape)}")
    return _check_tensors(p, y, where)


def check_batch(pred: Tensor, target: Tensor, where: str) -> Tensor:
    """Validate a multi-axis batch: both ``(B, A)`` with A >= 1. Returns ``target`` cast to ``pred``'s dtype."""
    if isinstance(pred, Tensor) and (pred.dim() != 2 or pred.shape[1] < 1):
        raise ValueError(
            f"losses ({where}): pred must have shape (B, A), one column per axis, got {tuple(pred.shape)}"
        )
    return _check_tensors(pred, target, where)


def axis_losses(axis_fn: Callable[..., Tensor], pred: Tensor, target: Tensor, **params) -> Tensor:
    """Per-axis losses ``(A,)``: ``axis_fn(pred[:, k], target[:, k], **params)`` for each axis k."""
    target = check_batch(pred, target, getattr(axis_fn, "__name__", "loss"))
    return torch.stack([axis_fn(pred[:, k], target[:, k], **params) for k in range(pred.shape[1])])


def mean_over_axes(axis_fn: Callable[..., Tensor], pred: Tensor, target: Tensor, **params) -> Tensor:
    """Scalar loss: the mean over the A axes of ``axis_fn`` (equal weight per axis)."""
    return axis_losses(axis_fn, pred, target, **params).mean()


def pair_differences(v: Tensor) -> Tensor:
    """``D[i, j] = v[j] - v[i]`` for all B x B ordered pairs (diagonal 0)."""
    return v.unsqueeze(0) - v.unsqueeze(1)
