"""Tests for losses/: each loss against independent loop-based references and hand-worked values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmmos import losses
from mmmos.losses import LOSSES, Z_LOSSES, get_loss

# ---------------------------------------------------------------------------
# Independent references: plain python loops over items and ordered pairs.
# ---------------------------------------------------------------------------


def ref_clipped_mse(p, y, tau=0.5):
    total = 0.0
    for a, b in zip(p, y):
        if abs(a - b) > tau:
            total += (a - b) ** 2
    return total / len(p)


def ref_contrastive(p, y, margin=0.1):
    n = len(p)
    if n < 2:
        return 0.0
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += max(abs((y[i] - y[j]) - (p[i] - p[j])) - margin, 0.0)
    return total / (n * (n - 1))


def ref_utmos(p, y, tau=0.5, margin=0.1, alpha=0.5):
    return ref_clipped_mse(p, y, tau) + alpha * ref_contrastive(p, y, margin)


def _sign(v):
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


def ref_dcq(p, y):
    n = len(p)
    dev = rank = 0.0
    for i in range(n):
        for j in range(n):  # diagonal included
            dp, dy = p[j] - p[i], y[j] - y[i]
            dev += (dp - dy) ** 2
            rank += dp * _sign(dy)
    return dev / n**2 - rank / n**2


def ref_ccc(p, y, eps=1e-6):
    n = len(p)
    mp, my = sum(p) / n, sum(y) / n
    vp = sum((a - mp) ** 2 for a in p) / (n - 1)  # unbiased
    vy = sum((b - my) ** 2 for b in y) / (n - 1)
    cov = sum((a - mp) * (b - my) for a, b in zip(p, y)) / n  # mean of products
    return 1 - 2 * cov / (vp + vy + (mp - my) ** 2 + eps)


REFS = {"utmos": ref_utmos, "contrastive": ref_contrastive, "dcq": ref_dcq, "ccc": ref_ccc}
AXIS_FNS = {
    "utmos": losses.utmos_axis,
    "contrastive": losses.contrastive_axis,
    "dcq": losses.dcq_axis,
    "ccc": losses.ccc_axis,
}


def ref_multi(name, pred, target):
    """Reference (B, A) loss: plain mean of per-axis references over the A columns."""
    pred, target = np.asarray(pred, dtype=float), np.asarray(target, dtype=float)
    a = pred.shape[1]
    cols = [([float(v) for v in pred[:, k]], [float(v) for v in target[:, k]]) for k in range(a)]
    return sum(REFS[name](p, y) for p, y in cols) / a


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def test_registry_names_and_lookup():
    assert list(Z_LOSSES) == ["utmos", "contrastive", "dcq", "ccc"]
    assert set(Z_LOSSES) <= set(LOSSES)
    for name, fn in Z_LOSSES.items():
        assert get_loss(name) is fn
        assert losses.loss_head_output(name) == "scores"


def test_unknown_loss_lists_valid_names():
    with pytest.raises(KeyError) as e:
        get_loss("mse")
    msg = str(e.value)
    assert "mse" in msg
    for name in LOSSES:
        assert name in msg


# ---------------------------------------------------------------------------
# Hand-worked B = 3 example: p = [0, 1, 3], y = [0.2, 2, 2.5]
#   errors -0.2, -1, 0.5 -> only |-1| > 0.5 counts: clipped MSE = 1/3
#   pair gaps |dy - dp|: (0,1) 0.8, (0,2) 0.7, (1,2) 1.5 -> minus 0.1, both orders: 5.4 / 6 = 0.9
#   dcq: sum (dp-dy)^2 over ordered pairs = 2(0.64+0.49+2.25) = 6.76; ranking sum = 2(1+3+2) = 12
#   ccc: cov = 97/90, var_p + var_y + (mu_p-mu_y)^2 = 7/3 + 439/300 + 49/900 = 1733/450
# ---------------------------------------------------------------------------
P3, Y3 = [0.0, 1.0, 3.0], [0.2, 2.0, 2.5]
HAND = {
    "clipped": 1 / 3,
    "contrastive": 0.9,
    "utmos": 1 / 3 + 0.5 * 0.9,
    "dcq": (6.76 - 12) / 9,
    "ccc": 1 - 2 * (97 / 90) / (1733 / 450 + 1e-6),
}


def test_hand_worked_values_per_axis():
    p, y = t64(P3), t64(Y3)
    assert losses.clipped_mse_axis(p, y).item() == pytest.approx(HAND["clipped"], abs=1e-12)
    for name, fn in AXIS_FNS.items():
        assert fn(p, y).item() == pytest.approx(HAND[name], abs=1e-12), name
        assert REFS[name](P3, Y3) == pytest.approx(HAND[name], abs=1e-12), name  # reference agrees


@pytest.mark.parametrize("name", list(Z_LOSSES))
@pytest.mark.parametrize("b", [2, 3, 7])
def test_matches_loop_reference_on_random_batches(name, b):
    rng = np.random.default_rng(100 + b)
    pred = rng.normal(size=(b, 4))
    target = np.round(rng.normal(size=(b, 4)), 1)  # rounding creates some ties
    got = LOSSES[name](t64(pred), t64(target)).item()
    assert got == pytest.approx(ref_multi(name, pred, target), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", list(Z_LOSSES))
@pytest.mark.parametrize("a", [1, 3, 6])
def test_any_number_of_axes_matches_the_reference(name, a):
    """Losses are task-agnostic: a task with A axes gives the mean of A per-axis losses."""
    rng = np.random.default_rng(7 * a)
    pred, target = rng.normal(size=(6, a)), np.round(rng.normal(size=(6, a)), 1)
    got = LOSSES[name](t64(pred), t64(target)).item()
    assert got == pytest.approx(ref_multi(name, pred, target), rel=1e-10, abs=1e-12)


def test_float32_inputs_match_reference():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    for name in Z_LOSSES:
        got = LOSSES[name](torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
        assert got.dtype == torch.float32 and got.dim() == 0
        assert got.item() == pytest.approx(ref_multi(name, pred, target), rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------------------
# Specific behaviours
# ---------------------------------------------------------------------------


def test_tau_clipping_boundary():
    y = t64([0.0, 0.0, 0.0, 0.0])
    # |err| <= tau contributes nothing, including exactly tau (0.5 is exact in binary).
    assert losses.clipped_mse_axis(t64([0.5, -0.5, 0.25, 0.0]), y).item() == 0.0
    # just above tau: the whole squared error counts, divided by all B items
    assert losses.clipped_mse_axis(t64([0.5, 0.75, 0.0, 0.0]), y).item() == pytest.approx(0.75**2 / 4)
    # a larger tau removes it; tau passes through the registry
    assert losses.clipped_mse_axis(t64([0.5, 0.75, 0.0, 0.0]), y, tau=0.8).item() == 0.0
    pred = torch.zeros(4, 4, dtype=torch.float64)
    pred[1, 2] = 0.75
    z = torch.zeros(4, 4, dtype=torch.float64)
    assert LOSSES["utmos"](pred, z, tau=0.8, margin=10.0).item() == 0.0
    assert LOSSES["utmos"](pred, z, margin=10.0).item() == pytest.approx(0.75**2 / 4 / 4)


def test_contrastive_margin():
    y = t64([0.0, 1.0, 2.0])
    # every predicted gap within 0.1 of the true gap: nothing
    assert losses.contrastive_axis(t64([0.05, 1.0, 2.0]), y).item() == 0.0
    # item 0 off by 0.3: pairs (0,1) and (0,2) exceed the margin by 0.2, each in both orders
    assert losses.contrastive_axis(t64([0.3, 1.0, 2.0]), y).item() == pytest.approx(4 * 0.2 / 6)
    # a larger margin swallows it
    assert losses.contrastive_axis(t64([0.3, 1.0, 2.0]), y, margin=0.35).item() == 0.0
    # a constant offset of all predictions keeps every gap: no contrastive loss
    assert losses.contrastive_axis(y + 5.0, y).item() == 0.0


def test_contrastive_negative_margin_excludes_diagonal():
    p, y = t64([0.0, 1.0]), t64([0.0, 1.0])
    # only the two off-diagonal pairs count: each ReLU(0 + 0.2) = 0.2 -> 0.4 / 2
    assert losses.contrastive_axis(p, y, margin=-0.2).item() == pytest.approx(0.2)
    assert ref_contrastive([0.0, 1.0], [0.0, 1.0], margin=-0.2) == pytest.approx(0.2)


def test_utmos_alpha_weights_contrastive():
    p, y = t64(P3), t64(Y3)
    for alpha in (0.0, 0.5, 2.0):
        got = losses.utmos_axis(p, y, alpha=alpha).item()
        assert got == pytest.approx(HAND["clipped"] + alpha * HAND["contrastive"])


def test_dcq_includes_diagonal():
    # p = [0, 1], y tied: dp matrix [[0, 1], [-1, 0]], dy = 0.
    # Mean over all 4 pairs of dp^2 = 2/4 = 0.5 (it would be 1.0 without the diagonal); ranking term 0.
    assert losses.dcq_axis(t64([0.0, 1.0]), t64([0.0, 0.0])).item() == pytest.approx(0.5)
    # Correct order, exact gaps: deviation 0, ranking = (1*1 + (-1)(-1)) / 4 = 0.5 -> -0.5
    assert losses.dcq_axis(t64([0.0, 1.0]), t64([0.0, 1.0])).item() == pytest.approx(-0.5)
    # Reversed order with the same gap size: deviation (2^2 * 2)/4 = 2, ranking -0.5 -> 2.5
    assert losses.dcq_axis(t64([1.0, 0.0]), t64([0.0, 1.0])).item() == pytest.approx(2.5)


def test_ccc_uses_unbiased_var_and_mean_cov():
    # Perfect prediction: cov = (B-1)/B var, so loss = 1 - 2 (B-1)/B var / (2 var + eps) ~ 1/B.
    for b in (2, 4, 10):
        y = torch.arange(b, dtype=torch.float64)
        var = float(np.var(np.arange(b), ddof=1))
        expect = 1 - 2 * ((b - 1) / b) * var / (2 * var + 1e-6)
        assert losses.ccc_axis(y, y).item() == pytest.approx(expect, abs=1e-12)
        assert expect == pytest.approx(1 / b, abs=1e-6)
    # Against numpy's own var(ddof=1) and mean of products on a random case.
    rng = np.random.default_rng(3)
    p, y = rng.normal(size=6), rng.normal(size=6) + 0.4
    cov = np.mean((p - p.mean()) * (y - y.mean()))
    expect = 1 - 2 * cov / (np.var(p, ddof=1) + np.var(y, ddof=1) + (p.mean() - y.mean()) ** 2 + 1e-6)
    assert losses.ccc_axis(t64(p), t64(y)).item() == pytest.approx(expect, rel=1e-12)


def test_batch_of_one():
    p, y = t64([[0.3, -1.0, 2.0, 0.0]]), t64([[1.3, -1.2, 2.0, 5.0]])
    assert LOSSES["contrastive"](p, y).item() == 0.0
    assert LOSSES["dcq"](p, y).item() == 0.0
    # utmos = clipped part only: errors -1, 0.2, 0, -5 -> (1 + 25) / 4 axes
    assert LOSSES["utmos"](p, y).item() == pytest.approx(26 / 4)
    # ccc: var := 0 for B = 1 (documented), cov = 0 -> 1 on every axis
    assert LOSSES["ccc"](p, y).item() == 1.0


@pytest.mark.parametrize("name", list(Z_LOSSES))
@pytest.mark.parametrize(
    "pred,target",
    [
        ([[0.5, 0.5, 0.5, 0.5]], [[1.0, 1.0, 1.0, 1.0]]),  # B = 1
        ([[0.0] * 4] * 5, [[0.0] * 4] * 5),  # everything constant and equal
        ([[1.0] * 4] * 5, [[-2.0] * 4] * 5),  # constant predictions, tied targets
        ([[float(i)] * 4 for i in range(5)], [[3.0] * 4] * 5),  # tied targets only
        ([[2.0] * 4] * 5, [[float(i)] * 4 for i in range(5)]),  # constant predictions only
    ],
)
def test_degenerate_batches_are_finite_with_finite_gradients(name, pred, target):
    for dtype in (torch.float32, torch.float64):
        p = torch.tensor(pred, dtype=dtype, requires_grad=True)
        loss = LOSSES[name](p, torch.tensor(target, dtype=dtype))
        assert torch.isfinite(loss)
        loss.backward()
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", list(Z_LOSSES))
def test_gradients_flow_and_reduce_loss(name):
    torch.manual_seed(0)
    target = torch.randn(8, 4)
    pred = torch.randn(8, 4, requires_grad=True)
    loss = LOSSES[name](pred, target)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # a small step against the gradient lowers the loss
    with torch.no_grad():
        stepped = LOSSES[name](pred - 1e-3 * pred.grad, target)
    assert stepped < loss


@pytest.mark.parametrize("name", list(Z_LOSSES))
def test_mean_over_axes(name):
    rng = np.random.default_rng(7)
    pred, target = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    base = LOSSES[name](t64(pred), t64(target)).item()
    changed = pred.copy()
    changed[:, 2] = changed[:, 2] * 3.0 - 1.0  # change only axis CE
    axis_fn = AXIS_FNS[name]
    delta_axis = (axis_fn(t64(changed[:, 2]), t64(target[:, 2])) - axis_fn(t64(pred[:, 2]), t64(target[:, 2]))).item()
    assert abs(delta_axis) > 1e-3
    assert LOSSES[name](t64(changed), t64(target)).item() - base == pytest.approx(delta_axis / 4, abs=1e-12)
    # and axis_losses exposes the four per-axis values whose mean is the loss
    per_axis = losses.axis_losses(axis_fn, t64(pred), t64(target))
    assert per_axis.shape == (4,)
    assert per_axis.mean().item() == pytest.approx(base, abs=1e-12)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(Z_LOSSES))
def test_shape_errors(name):
    fn = LOSSES[name]
    with pytest.raises(ValueError, match=r"\(B, A\)"):
        fn(torch.zeros(5), torch.zeros(5))
    with pytest.raises(ValueError, match=r"\(B, A\)"):
        fn(torch.zeros(5, 0), torch.zeros(5, 0))
    with pytest.raises(ValueError, match="differ"):
        fn(torch.zeros(5, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="empty"):
        fn(torch.zeros(0, 4), torch.zeros(0, 4))


@pytest.mark.parametrize("name", list(AXIS_FNS))
def test_axis_function_shape_errors(name):
    fn = AXIS_FNS[name]
    with pytest.raises(ValueError, match="1-D"):
        fn(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="differ"):
        fn(torch.zeros(3), torch.zeros(3, 1))


def test_type_and_finiteness_errors():
    fn = LOSSES["utmos"]
    with pytest.raises(TypeError, match="float"):
        fn(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="Tensor"):
        fn(np.zeros((3, 4)), torch.zeros(3, 4))
    bad = torch.zeros(3, 4)
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match="target contains NaN"):
        fn(torch.zeros(3, 4), bad)
    with pytest.raises(ValueError, match="pred contains NaN"):
        fn(bad, torch.zeros(3, 4))


def test_mixed_float_dtypes_follow_pred():
    pred = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 2.0, 1.0]], dtype=torch.float32)
    target = pred.double() + 1.0
    out = LOSSES["dcq"](pred, target)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref_multi("dcq", pred.numpy(), target.numpy()), abs=1e-6)
