"""Tests for heads/: shapes, padding invariance, axis independence, registry, config, learning."""
from __future__ import annotations

import json

import pytest
import torch

from mmmos import heads
from mmmos.heads import AUDIO_HEADS, HEADS, build_head, build_head_from_config

D = 12  # tiny feature size
SMALL = {  # tiny hyperparameters so every test stays fast
    "mlp": {"axis_hidden": 16},
    "blstm_h": {"lstm_hidden": 8, "axis_hidden": 8},
    "blstm_t": {"lstm_hidden": 8, "axis_hidden": 8},
}


def make(name, seed=0, **over):
    torch.manual_seed(seed)
    return build_head(name, D, **{**SMALL[name], **over})


def inputs(name, b=5, t=7, seed=1):
    """Random input for head ``name``: (x, lengths or None)."""
    g = torch.Generator().manual_seed(seed)
    if HEADS[name].needs_frames:
        x = torch.randn(b, t, D, generator=g)
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        lengths[0] = t  # at least one full-length sequence
        return x, lengths
    return torch.randn(b, D, generator=g), None


# ---------------------------------------------------------------------------
# Registry and config
# ---------------------------------------------------------------------------


def test_registry_contents_and_flags():
    assert list(AUDIO_HEADS) == ["mlp", "blstm_h", "blstm_t"]
    assert HEADS["mlp"].needs_frames is False
    assert HEADS["blstm_h"].needs_frames is False
    assert HEADS["blstm_t"].needs_frames is True
    for name, cls in AUDIO_HEADS.items():
        assert cls.name == name
        assert cls.output_kind == "scores"
        assert issubclass(cls, heads.Head)


def test_unknown_head_lists_valid_names():
    with pytest.raises(KeyError) as e:
        build_head("transformer", D)
    for name in ["transformer", *HEADS]:
        assert name in str(e.value)


def test_bad_hyperparameters_are_refused():
    with pytest.raises(TypeError, match="mlp"):
        build_head("mlp", D, lstm_hidden=8)  # not a parameter of mlp
    with pytest.raises(ValueError, match="dropout"):
        build_head("blstm_t", D, dropout=1.0)
    with pytest.raises(ValueError, match="axis_hidden"):
        build_head("mlp", D, axis_hidden=0)
    with pytest.raises(ValueError, match="in_dim"):
        build_head("blstm_h", 0)


def test_documented_defaults():
    assert build_head("mlp", D).config == {"name": "mlp", "in_dim": D, "axis_hidden": 256, "dropout": 0.1}
    for name in ("blstm_h", "blstm_t"):
        assert build_head(name, D).config == {
            "name": name, "in_dim": D, "lstm_hidden": 128, "axis_hidden": 64, "dropout": 0.1,
        }


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
def test_config_round_trip_rebuilds_same_model(name):
    head = make(name, dropout=0.2).eval()
    cfg = json.loads(json.dumps(head.config))  # JSON-safe
    clone = build_head_from_config(cfg)
    clone.load_state_dict(head.state_dict())  # strict: same architecture
    clone.eval()
    x, lengths = inputs(name)
    assert torch.equal(head(x, lengths), clone(x, lengths))
    assert name in head.describe() and f"{head.n_params():,}" in head.describe()


def test_config_without_name_is_an_error():
    with pytest.raises(KeyError, match="name"):
        build_head_from_config({"in_dim": D})


# ---------------------------------------------------------------------------
# Forward behaviour
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
@pytest.mark.parametrize("b", [1, 5])
def test_output_shape(name, b):
    head = make(name).eval()
    x, lengths = inputs(name, b=b)
    out = head(x, lengths)
    assert out.shape == (b, 4) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
@pytest.mark.parametrize("n_axes", [1, 6])
def test_output_size_follows_the_task_axis_count(name, n_axes):
    head = make(name, n_axes=n_axes).eval()
    x, lengths = inputs(name, b=3)
    assert head(x, lengths).shape == (3, n_axes)
    cfg = json.loads(json.dumps(head.config))
    assert cfg["n_axes"] == n_axes
    clone = build_head_from_config(cfg)
    clone.load_state_dict(head.state_dict())  # strict: same number of per-axis MLPs
    assert torch.equal(clone.eval()(x, lengths), head(x, lengths))


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
def test_config_without_n_axes_rebuilds_the_default_task_head(name):
    """Head configs saved before tasks existed have no n_axes: they mean the default task (4 axes)."""
    from mmmos.core.tasks import get_task

    cfg = make(name).config
    assert "n_axes" not in cfg
    assert build_head_from_config(cfg)(*inputs(name, b=2)).shape == (2, get_task().n_axes)
    with pytest.raises(ValueError, match="n_axes"):
        build_head(name, D, n_axes=0)


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
def test_deterministic_init_for_a_seed(name):
    a, b, c = make(name, seed=5), make(name, seed=5), make(name, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
def test_eval_is_deterministic_and_dropout_acts_in_train(name):
    head = make(name, dropout=0.5)
    x, lengths = inputs(name, b=16)
    head.eval()
    assert torch.equal(head(x, lengths), head(x, lengths))
    head.train()
    torch.manual_seed(0)
    assert not torch.equal(head(x, lengths), head.eval()(x, lengths))
    # dropout 0: training and eval modes agree
    head0 = make(name, dropout=0.0)
    assert torch.equal(head0.train()(x, lengths), head0.eval()(x, lengths))


def test_blstm_t_ignores_padding():
    head = make("blstm_t").eval()
    torch.manual_seed(3)
    lens = [3, 7, 1, 5]
    seqs = [torch.randn(n, D) for n in lens]
    t = 9
    padded = torch.randn(len(lens), t, D) * 50.0 + 1e3  # large garbage beyond each length
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    batch_out = head(padded, torch.tensor(lens))
    for i, s in enumerate(seqs):
        alone = head(s.unsqueeze(0), torch.tensor([len(s)]))
        torch.testing.assert_close(batch_out[i], alone[0], rtol=1e-5, atol=1e-6)
    # different garbage -> identical outputs
    padded2 = padded.clone()
    for i, n in enumerate(lens):
        padded2[i, n:] = -padded2[i, n:] * 3.0
    torch.testing.assert_close(head(padded2, torch.tensor(lens)), batch_out, rtol=0, atol=0)


def test_blstm_t_mean_pools_valid_outputs_only():
    """Pooled vector == mean of the LSTM outputs of the valid frames, computed directly."""
    head = make("blstm_t").eval()
    torch.manual_seed(4)
    x = torch.randn(1, 6, D)
    n = 4
    with torch.no_grad():
        out_valid, _ = head.lstm(x[:, :n])  # run the LSTM on the valid part only
        expect = head.heads(out_valid.mean(dim=1))
        got = head(x, torch.tensor([n]))
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)


def test_blstm_h_uses_final_hidden_states_of_one_step():
    head = make("blstm_h").eval()
    x, _ = inputs("blstm_h", b=3)
    with torch.no_grad():
        out, _ = head.lstm(x.unsqueeze(1))  # length 1: output step == final hidden (both directions)
        expect = head.heads(out[:, 0])
        got = head(x)
    torch.testing.assert_close(got, expect, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
def test_axis_heads_are_independent(name):
    head = make(name).eval()
    x, lengths = inputs(name)
    for k in range(4):
        head.zero_grad()
        head(x, lengths)[:, k].sum().backward()
        for j, axis_mlp in enumerate(head.heads.axes):
            grads = [p.grad for p in axis_mlp.parameters()]
            total = sum(0.0 if g is None else g.abs().sum().item() for g in grads)
            if j == k:
                assert total > 0
            else:
                assert total == 0.0


@pytest.mark.parametrize("name", ["mlp", "blstm_h"])
def test_pooled_heads_input_errors(name):
    head = make(name)
    with pytest.raises(ValueError, match=rf"\(B, {D}\)"):
        head(torch.zeros(2, 3, D))  # frames given to a pooled head
    with pytest.raises(ValueError, match=name):
        head(torch.zeros(2, D + 1))
    with pytest.raises(TypeError, match="float"):
        head(torch.zeros(2, D, dtype=torch.long))


def test_blstm_t_input_errors():
    head = make("blstm_t")
    x = torch.zeros(2, 5, D)
    with pytest.raises(ValueError, match="lengths"):
        head(x)
    with pytest.raises(ValueError, match=r"\[1, T=5\]"):
        head(x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"\[1, T=5\]"):
        head(x, torch.tensor([6, 5]))
    with pytest.raises(ValueError, match="shape"):
        head(x, torch.tensor([5, 5, 5]))
    with pytest.raises(TypeError, match="integer"):
        head(x, torch.tensor([5.0, 5.0]))
    with pytest.raises(ValueError, match=r"\(B, T, "):
        head(torch.zeros(2, D), torch.tensor([1, 1]))


# ---------------------------------------------------------------------------
# Learning
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(AUDIO_HEADS))
def test_tiny_overfit_linear_target(name):
    g = torch.Generator().manual_seed(11)
    n = 64
    w = torch.randn(D, 4, generator=g) / D**0.5
    if HEADS[name].needs_frames:
        x = torch.randn(n, 5, D, generator=g)
        lengths = torch.randint(2, 6, (n,), generator=g)
        mask = (torch.arange(5)[None, :] < lengths[:, None]).float()
        pooled = (x * mask[..., None]).sum(1) / lengths[:, None]
        y = pooled @ w * 3.0
    else:
        x, lengths = torch.randn(n, D, generator=g), None
        y = x @ w
    y = (y - y.mean(0)) / y.std(0)
    head = make(name, seed=0, dropout=0.0, **({"lstm_hidden": 16, "axis_hidden": 16} if name != "mlp" else {}))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    loss0 = torch.nn.functional.mse_loss(head(x, lengths), y).item()
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(head(x, lengths), y)
        loss.backward()
        opt.step()
    final = torch.nn.functional.mse_loss(head.eval()(x, lengths), y).item()
    assert final < 0.1 * loss0 and final < 0.1, (loss0, final)
