"""Distribution and ordinal losses of the Track 1 (MusicEval) heads, on the raw 1-5 score scale (SPEC section 9).

Unlike the z-space losses of the other modules, these take scores on the label scale ``[lo, hi]`` = [1, 5]:

* distribution heads emit ``num_bins`` = 20 logits per axis over the bin centres ``linspace(1, 5, 20)``
  (float32). :func:`kl_gaussian` trains them towards a Gaussian around the score (sigma 0.25, score clamped
  into range), :func:`kl_onehot` towards all mass on bin ``floor((clamp(s) - 1) / 4 * 19)`` (in float32, so 3.0
  lands in bin 9); both are KL(target || softmax) on ``log(p + 1e-10)`` with ``batchmean``, then the mean over
  axes. :func:`expected_score` turns logits into a score (``sum softmax * centres``).
* CORAL heads emit 4 ordered logits per axis (:func:`coral_logits` makes raw outputs monotone);
  :func:`coral` is the sum over thresholds j = 1..4 of BCE-with-logits on ``[s > j]`` (strict, unclamped),
  batch mean, mean over axes; :func:`coral_score` = ``1 + sum sigmoid``.
* :func:`l1` is the plain L1 loss of a scalar head.

Each loss carries ``head_output`` ("distribution", "coral", "scores") so the trainer can match it to a head.
Scores must be finite; shapes are checked with errors naming the function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SCORES, head_output

DISTRIBUTION = "distribution"   # head output: (B, A, num_bins) logits over the bin centres
CORAL = "coral"                 # head output: (B, A, 4) ordered threshold logits
NUM_BINS = 20
SIGMA = 0.25
LO, HI = 1.0, 5.0
CORAL_THRESHOLDS = 4
LOG_EPS = 1e-10


def bin_centres(num_bins: int = NUM_BINS, lo: float = LO, hi: float = HI, device=None) -> Tensor:
    """``linspace(lo, hi, num_bins)`` in float32 (the public code's centres)."""
    return torch.linspace(lo, hi, num_bins, dtype=torch.float32, device=device)


def _check(logits: Tensor, scores: Tensor, k: int | None, where: str) -> None:
    """``logits`` float (B, A, K) (K == k when given), ``scores`` float (B, A), finite, B >= 1."""
    for label, t in (("logits", logits), ("scores", scores)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"losses ({where}): {label} must be a float tensor")
    if logits.dim() != 3 or (k is not None and logits.shape[2] != k):
        want = f"(B, A, {k})" if k is not None else "(B, A, K)"
        raise ValueError(f"losses ({where}): logits must have shape {want}, got {tuple(logits.shape)}")
    if scores.shape != logits.shape[:2] or scores.shape[0] == 0:
        raise ValueError(f"losses ({where}): scores must have shape {tuple(logits.shape[:2])} with B >= 1, "
                         f"got {tuple(scores.shape)}")
    for label, t in (("logits", logits), ("scores", scores)):
        if not bool(torch.isfinite(t.detach()).all()):
            raise ValueError(f"losses ({where}): {label} contains NaN or inf")


# ---------------------------------------------------------------------------------------------
# distribution targets and KL
# ---------------------------------------------------------------------------------------------
def gaussian_target(scores: Tensor, num_bins: int = NUM_BINS, sigma: float = SIGMA,
                    lo: float = LO, hi: float = HI) -> Tensor:
    """``[..., num_bins]`` float32: ``exp(-(clamp(s) - c)^2 / (2 sigma^2))`` over the centres, normalised."""
    if not sigma > 0:
        raise ValueError(f"losses (gaussian_target): sigma must be > 0, got {sigma!r}")
    c = bin_centres(num_bins, lo, hi, scores.device)
    s = scores.detach().float().clamp(lo, hi).unsqueeze(-1)
    # Subtracting the row's largest exponent keeps the nearest bin at exp(0) = 1, so the sum is never 0.
    e = -((s - c) ** 2) / (2 * sigma * sigma)
    q = torch.exp(e - e.amax(dim=-1, keepdim=True))
    return q / q.sum(dim=-1, keepdim=True)


def onehot_bin(scores: Tensor, num_bins: int = NUM_BINS, lo: float = LO, hi: float = HI) -> Tensor:
    """The bin index ``floor((clamp(s) - lo) / (hi - lo) * (num_bins - 1))``, computed in float32 (int64)."""
    s = scores.detach().float().clamp(lo, hi)
    return torch.floor((s - lo) / (hi - lo) * (num_bins - 1)).long().clamp(0, num_bins - 1)


def onehot_target(scores: Tensor, num_bins: int = NUM_BINS, lo: float = LO, hi: float = HI) -> Tensor:
    """``[..., num_bins]`` float32 with all mass on :func:`onehot_bin`."""
    return F.one_hot(onehot_bin(scores, num_bins, lo, hi), num_bins).float()


def kl_to_target(logits: Tensor, target: Tensor) -> Tensor:
    """KL(target || softmax(logits)) on ``log(p + 1e-10)``, summed over bins, mean over batch and axes.

    ``xlogy`` makes ``0 log 0 = 0`` (one-hot targets) without a NaN in the value or the gradient.
    """
    logp = torch.log(torch.softmax(logits.float(), dim=-1) + LOG_EPS)
    kl = torch.special.xlogy(target, target) - target * logp
    # batchmean per axis = sum / B; the mean of that over A axes = sum / (B * A)
    return kl.sum(dim=-1).mean()


@head_output(DISTRIBUTION)
def kl_gaussian(logits: Tensor, scores: Tensor, sigma: float = SIGMA, lo: float = LO, hi: float = HI) -> Tensor:
    """KL from the Gaussian target (sigma 0.25 over ``logits.shape[-1]`` bins) to the softmax; scalar."""
    _check(logits, scores, None, "kl_gaussian")
    return kl_to_target(logits, gaussian_target(scores, logits.shape[-1], sigma, lo, hi))


@head_output(DISTRIBUTION)
def kl_onehot(logits: Tensor, scores: Tensor, lo: float = LO, hi: float = HI) -> Tensor:
    """KL from the one-hot target (see :func:`onehot_bin`) to the softmax (= cross-entropy); scalar."""
    _check(logits, scores, None, "kl_onehot")
    return kl_to_target(logits, onehot_target(scores, logits.shape[-1], lo, hi))


def expected_score(logits: Tensor, lo: float = LO, hi: float = HI) -> Tensor:
    """The prediction of a distribution head: ``sum softmax(logits) * centres`` over the last axis."""
    c = bin_centres(logits.shape[-1], lo, hi, logits.device)
    return (torch.softmax(logits.float(), dim=-1) * c).sum(dim=-1)


# ---------------------------------------------------------------------------------------------
# CORAL
# ---------------------------------------------------------------------------------------------
def coral_logits(raw: Tensor) -> Tensor:
    """Monotone threshold logits: ``z0 = r0``, ``zj = z(j-1) - softplus(rj)`` (non-increasing in j)."""
    if raw.shape[-1] < 1:
        raise ValueError("losses (coral_logits): raw outputs need at least one threshold")
    steps = F.softplus(raw[..., 1:])
    return torch.cat([raw[..., :1], raw[..., :1] - torch.cumsum(steps, dim=-1)], dim=-1)


def coral_levels(scores: Tensor, n_thresholds: int = CORAL_THRESHOLDS, lo: float = LO) -> Tensor:
    """``[..., n_thresholds]`` float: ``[s > lo + j]`` for j = 0..n-1 (thresholds 1..4 on 1-5), strict, unclamped."""
    thresholds = lo + torch.arange(n_thresholds, dtype=torch.float32, device=scores.device)
    return (scores.detach().float().unsqueeze(-1) > thresholds).float()


@head_output(CORAL)
def coral(logits: Tensor, scores: Tensor, lo: float = LO) -> Tensor:
    """Sum over thresholds of BCE-with-logits on ``[s > j]``, mean over the batch and the axes; scalar."""
    _check(logits, scores, None, "coral")
    bce = F.binary_cross_entropy_with_logits(logits.float(), coral_levels(scores, logits.shape[-1], lo),
                                             reduction="none")
    return bce.sum(dim=-1).mean()


def coral_score(logits: Tensor, lo: float = LO) -> Tensor:
    """The prediction of a CORAL head: ``lo + sum sigmoid(logits)`` over the last axis."""
    return lo + torch.sigmoid(logits.float()).sum(dim=-1)


# ---------------------------------------------------------------------------------------------
# scalar head
# ---------------------------------------------------------------------------------------------
@head_output(SCORES)
def l1(pred: Tensor, scores: Tensor) -> Tensor:
    """Mean absolute error of a scalar head ``(B, A)`` against the scores ``(B, A)``; scalar."""
    for label, t in (("pred", pred), ("scores", scores)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"losses (l1): {label} must be a float tensor")
    if pred.dim() != 2 or pred.shape != scores.shape or pred.shape[0] == 0:
        raise ValueError(f"losses (l1): pred and scores must both be (B, A) with B >= 1, got "
                         f"{tuple(pred.shape)} and {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()) or not bool(torch.isfinite(pred.detach()).all()):
        raise ValueError("losses (l1): pred or scores contain NaN or inf")
    return (pred - scores.to(pred.dtype)).abs().mean()


# ---------------------------------------------------------------------------------------------
# head outputs (numpy, as prediction tables hold them) -> scores and bin probabilities
# ---------------------------------------------------------------------------------------------
def scores_of(logits, output: str, lo: float, hi: float):
    """``(N, A)`` float64 scores on the label scale from a head's ``(N, A, K)`` outputs of kind ``output``
    (``"distribution"``: expected score; ``"coral"``: CORAL score; else the scalar outputs as they are)."""
    import numpy as np

    t = torch.from_numpy(np.asarray(logits, np.float32))
    if output == "distribution":
        return expected_score(t, lo, hi).double().numpy()
    if output == "coral":
        return coral_score(t, lo).double().numpy()
    return t.double().numpy().reshape(len(t), -1)


def distributions(logits):
    """Softmax over the bins of ``(N, A, K)`` logits, float64."""
    import numpy as np

    z = np.asarray(logits).astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


__all__ = [
    "CORAL", "DISTRIBUTION", "NUM_BINS", "bin_centres", "coral", "coral_levels", "coral_logits", "coral_score",
    "distributions", "expected_score", "gaussian_target", "kl_gaussian", "kl_onehot", "kl_to_target", "l1",
    "onehot_bin", "onehot_target", "scores_of",
]
