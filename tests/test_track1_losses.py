"""Track 1 losses: hand-worked targets, KL against numpy, CORAL against a hand example, extreme inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmmos.losses.distribution import (
    bin_centres, coral, coral_levels, coral_logits, coral_score, expected_score, gaussian_target, kl_gaussian,
    kl_onehot, l1, onehot_bin,
)

C = np.linspace(1, 5, 20, dtype=np.float32)


def np_gauss(s, sigma=0.25):
    s = min(max(s, 1.0), 5.0)
    q = np.exp(-((s - C.astype(np.float64)) ** 2) / (2 * sigma**2))
    return q / q.sum()


def np_kl(logits, targets):
    """KL(q || softmax) with log(p + 1e-10), batchmean per axis, mean over axes - written out in numpy."""
    logits = np.asarray(logits, np.float64)
    per_axis = []
    for a in range(logits.shape[1]):
        total = 0.0
        for b in range(logits.shape[0]):
            z = logits[b, a] - logits[b, a].max()
            p = np.exp(z) / np.exp(z).sum()
            q = targets[b][a]
            total += sum(qk * (math.log(qk) - math.log(pk + 1e-10)) for qk, pk in zip(q, p) if qk > 0)
        per_axis.append(total / logits.shape[0])
    return float(np.mean(per_axis))


def test_centres_are_float32_linspace():
    c = bin_centres()
    assert c.dtype == torch.float32 and c.shape == (20,)
    # the public code's torch.linspace; numpy's float32 linspace differs by 1 ulp on one centre
    np.testing.assert_array_equal(c.numpy(), torch.linspace(1, 5, 20).numpy())
    np.testing.assert_allclose(c.numpy(), C, atol=2e-7)


@pytest.mark.parametrize("s, peak", [(1.0, 0), (5.0, 19), (float(C[7]), 7), (0.0, 0), (9.0, 19), (-3.0, 0)])
def test_gaussian_target_on_ends_centres_and_out_of_range(s, peak):
    q = gaussian_target(torch.tensor([s]))[0].numpy()
    assert q.dtype == np.float32 and abs(q.sum() - 1) < 1e-6 and int(q.argmax()) == peak
    np.testing.assert_allclose(q, np_gauss(s), atol=1e-6)


def test_gaussian_target_hand_values():
    # s = 1 (on the first centre): weights exp(-(k*4/19)^2 / (2*0.0625)), k = 0, 1, 2...
    d = 4 / 19
    w = np.array([math.exp(-((k * d) ** 2) / 0.125) for k in range(20)])
    np.testing.assert_allclose(gaussian_target(torch.tensor([1.0]))[0].numpy(), w / w.sum(), atol=1e-6)
    # exactly between centres 9 and 10: the two neighbours share the top, symmetric
    mid = float((C[9] + C[10]) / 2)
    q = gaussian_target(torch.tensor([mid]))[0].numpy()
    assert abs(q[9] - q[10]) < 1e-6 and abs(q[8] - q[11]) < 1e-6 and q[9] > q[8]
    # out of range clamps: 7 and -2 give the targets of 5 and 1
    np.testing.assert_array_equal(gaussian_target(torch.tensor([7.0, -2.0])).numpy(),
                                  gaussian_target(torch.tensor([5.0, 1.0])).numpy())


def test_onehot_bins():
    s = torch.tensor([1.0, 3.0, 5.0, 1.2, 4.8, 2.6, 0.0, 6.0])
    # floor((s-1)/4*19) in float32: 3.0 -> 9.5 -> 9; 1.2 -> 0.95 -> 0; 4.8 -> 18.05 -> 18; 2.6 -> 7.6 -> 7
    assert onehot_bin(s).tolist() == [0, 9, 19, 0, 18, 7, 0, 19]


def test_kl_gaussian_matches_numpy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 20, generator=g) * 3
    scores = torch.tensor([[1.0, 5.0], [3.0, float(C[4])], [2.5, 7.0]])
    want = np_kl(logits.numpy(), [[np_gauss(float(s)) for s in row] for row in scores])
    assert abs(float(kl_gaussian(logits, scores)) - want) < 1e-5


def test_kl_onehot_matches_numpy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 2, 20, generator=g)
    scores = torch.tensor([[1.0, 3.0], [5.0, 2.2], [4.4, 0.5], [3.6, 1.8]])
    targets = [[np.eye(20)[int(b)] for b in row] for row in onehot_bin(scores).tolist()]
    assert abs(float(kl_onehot(logits, scores)) - np_kl(logits.numpy(), targets)) < 1e-5


def test_kl_is_zero_at_the_target():
    scores = torch.tensor([[2.2, 4.6]])
    q = gaussian_target(scores)
    assert float(kl_gaussian(torch.log(q.clamp_min(1e-30)), scores)) < 1e-6


def test_coral_logits_are_monotone_and_exact():
    raw = torch.tensor([[[0.5, 0.0, 2.0, -1.0]]])
    z = coral_logits(raw)[0, 0].tolist()
    sp = [math.log1p(math.exp(x)) for x in (0.0, 2.0, -1.0)]
    want = [0.5, 0.5 - sp[0], 0.5 - sp[0] - sp[1], 0.5 - sum(sp)]
    np.testing.assert_allclose(z, want, atol=1e-6)


def test_coral_hand_example():
    # one clip, one axis, s = 2.6: levels [1, 1, 0, 0] (2.6 > 1, > 2, not > 3, not > 4)
    z = torch.tensor([[[2.0, 0.0, -1.0, -3.0]]])
    s = torch.tensor([[2.6]])
    assert coral_levels(s)[0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]

    def sp(x):
        return math.log1p(math.exp(x))

    want = sp(-2.0) + sp(0.0) + sp(-1.0) + sp(-3.0)  # BCE: y=1 -> softplus(-z), y=0 -> softplus(z)
    assert abs(float(coral(z, s)) - want) < 1e-6
    # strict and unclamped: 4.0 is not > 4; 5.0 is > every threshold; 0.0 is > none
    assert coral_levels(torch.tensor([4.0, 5.0, 0.0])).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert abs(float(coral_score(z)[0, 0]) - (1 + sum(1 / (1 + math.exp(-v)) for v in (2.0, 0.0, -1.0, -3.0)))) < 1e-6


def test_coral_means_over_batch_and_axes():
    z = torch.randn(3, 2, 4)
    s = torch.tensor([[1.0, 2.0], [3.4, 5.0], [4.2, 1.6]])
    each = [float(coral(z[b:b + 1, a:a + 1], s[b:b + 1, a:a + 1])) for b in range(3) for a in range(2)]
    assert abs(float(coral(z, s)) - np.mean(each)) < 1e-6


def test_expected_score_and_l1():
    logits = torch.full((2, 20), -1e4)
    logits[0, 0] = 0.0
    logits[1, 19] = 0.0
    assert expected_score(logits).tolist() == pytest.approx([1.0, 5.0])
    assert float(expected_score(torch.zeros(20))) == pytest.approx(3.0)
    assert float(l1(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 4.0]]))) == pytest.approx(1.5)


@pytest.mark.parametrize("fn, k", [(kl_gaussian, 20), (kl_onehot, 20), (coral, 4)])
def test_never_nan_with_extreme_logits_and_scores(fn, k):
    scores = torch.tensor([[1.0, 5.0, float(C[3]), 2.9, 7.5, -1.0]])  # B = 1: ends, centre, between, out of range
    for fill in (30.0, -30.0):
        logits = torch.full((1, 6, k), fill)
        logits[..., ::2] *= -1  # alternate +-30 so the softmax is as peaked as it gets
        logits.requires_grad_(True)
        value = fn(logits, scores)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    raw = torch.full((1, 6, 4), 30.0, requires_grad=True)
    coral(coral_logits(raw), scores).backward()
    assert torch.isfinite(raw.grad).all()


def test_head_output_tags_and_input_checks():
    assert kl_gaussian.head_output == kl_onehot.head_output == "distribution"
    assert coral.head_output == "coral" and l1.head_output == "scores"
    with pytest.raises(ValueError, match="shape"):
        kl_gaussian(torch.zeros(2, 20), torch.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        coral(torch.zeros(1, 1, 4), torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="B >= 1"):
        kl_onehot(torch.zeros(0, 2, 20), torch.zeros(0, 2))
