"""The dual-branch Track 1 head: output shapes per K, real masks (batch-invariance), positional encoding."""
from __future__ import annotations

import pytest
import torch

from mmmos.heads.dual_branch import AttentivePooling, DualBranchHead, sinusoidal_encoding
from mmmos.losses.distribution import coral_logits, expected_score, kl_gaussian

DA, DT = 16, 8
TINY = dict(text_dim=DT, ta_dim=12, n_heads=4, ff_dim=32, mi_hidden=(8, 4), ta_hidden=(6, 3), mi_lstm=8, ta_lstm=6)
VARIANTS = [
    dict(output="distribution"),
    dict(output="distribution", decoupled=True),
    dict(output="distribution", decoupled=True, lstm_head=True),
    dict(output="coral"),
    dict(output="scores", lstm_head=True),
]


def head(seed=0, **kw):
    torch.manual_seed(seed)
    return DualBranchHead(DA, **{**TINY, **kw}).eval()


def batch(seed=1):
    """Three clips of different lengths and prompts with pads (1 = real token)."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(3, 11, DA, generator=g)
    lengths = torch.tensor([5, 11, 8])
    text = torch.randn(3, 6, DT, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    return audio, lengths, text, mask


@pytest.mark.parametrize("kw, shape", [(dict(output="distribution"), (3, 2, 20)),
                                       (dict(output="distribution", num_bins=7), (3, 2, 7)),
                                       (dict(output="coral"), (3, 2, 4)), (dict(output="scores"), (3, 2))])
def test_output_shapes(kw, shape):
    h = head(**kw)
    assert h(*batch()).shape == shape and h.output_kind == kw["output"]


def test_coral_outputs_are_monotone_thresholds():
    out = head(output="coral")(*batch())
    assert bool((out[..., 1:] <= out[..., :-1]).all())
    # the head's transform is losses.coral_logits: re-deriving raw outputs from z and mapping back is exact
    raw = torch.cat([out[..., :1], torch.log(torch.expm1(out[..., :-1] - out[..., 1:]))], dim=-1)
    torch.testing.assert_close(coral_logits(raw), out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", VARIANTS)
def test_clip_alone_equals_clip_in_padded_batch(kw):
    h = head(**kw)
    audio, lengths, text, mask = batch()
    with torch.no_grad():
        together = h(audio, lengths, text, mask)
        for i in range(3):
            n, m = int(lengths[i]), int(mask[i].sum())
            alone = h(audio[i:i + 1, :n], lengths[i:i + 1], text[i:i + 1, :m], mask[i:i + 1, :m])
            torch.testing.assert_close(alone, together[i:i + 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", VARIANTS)
def test_pad_values_never_change_the_output(kw):
    h = head(**kw)
    audio, lengths, text, mask = batch()
    a2, t2 = audio.clone(), text.clone()
    for i in range(3):
        a2[i, int(lengths[i]):] = 1e3 * torch.randn_like(a2[i, int(lengths[i]):])
    t2[mask == 0] = -1e3
    with torch.no_grad():
        torch.testing.assert_close(h(a2, lengths, t2, mask), h(audio, lengths, text, mask), atol=1e-5, rtol=0)


def test_real_tokens_matter_and_only_for_ta():
    h = head()
    audio, lengths, text, mask = batch()
    t2 = text.clone()
    t2[0, 0] += 1.0  # a real token of clip 0
    with torch.no_grad():
        a, b = h(audio, lengths, text, mask), h(audio, lengths, t2, mask)
    torch.testing.assert_close(a[:, 0], b[:, 0])            # MI: audio only
    assert (a[0, 1] - b[0, 1]).abs().max() > 1e-4           # TA of clip 0 moves
    torch.testing.assert_close(a[1:, 1], b[1:, 1])           # the other clips' TA does not


def test_positional_encoding_is_applied_for_batch_above_one():
    # Without a positional encoding, self-attention + attentive pooling ignore frame order; with it they do not.
    h = head()
    audio, lengths, text, mask = batch()
    lengths = torch.tensor([11, 11, 11])
    flipped = audio.flip(1)
    with torch.no_grad():
        a, b = h(audio, lengths, text, mask), h(flipped, lengths, text, mask)
    assert bool(((a[:, 0] - b[:, 0]).abs().amax(dim=-1) > 1e-4).all())
    pe = sinusoidal_encoding(11, DA)
    assert pe.shape == (11, DA) and torch.allclose(pe[0, 0::2], torch.zeros(DA // 2))
    assert torch.allclose(pe[0, 1::2], torch.ones(DA // 2))


def test_attentive_pooling_ignores_invalid_positions():
    torch.manual_seed(0)
    pool = AttentivePooling(4)
    x = torch.randn(2, 5, 4)
    valid = torch.tensor([[True, True, False, False, False], [True] * 5])
    out = pool(x, valid)
    w = torch.softmax(pool.score(x[0, :2]).squeeze(-1), dim=0)
    torch.testing.assert_close(out[0], (w.unsqueeze(1) * x[0, :2]).sum(0))


def test_config_rebuilds_the_same_architecture_and_checks():
    h = head(output="coral", decoupled=True, lstm_head=True)
    cfg = h.config
    assert cfg["name"] == "dual_branch" and cfg["n_axes"] == 2
    cfg.pop("name")
    again = DualBranchHead(cfg.pop("in_dim"), **cfg)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in h.state_dict().items()}
    with pytest.raises(ValueError, match="exactly 2 axes"):
        DualBranchHead(DA, n_axes=4, **TINY)
    with pytest.raises(ValueError, match="output"):
        DualBranchHead(DA, output="softmax", **TINY)
    with pytest.raises(ValueError, match="divisible"):
        DualBranchHead(DA, **{**TINY, "n_heads": 3})
    audio, lengths, text, mask = batch()
    with pytest.raises(ValueError, match="real token"):
        h(audio, lengths, text, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="lengths"):
        h(audio, torch.tensor([0, 3, 3]), text, mask)


def test_default_sizes_follow_the_spec():
    h = DualBranchHead()
    assert h.encoder.self_attn.embed_dim == 1024 and h.encoder.linear1.out_features == 2048
    assert h.encoder.norm_first is False and h.cross.embed_dim == 768 and h.cross.num_heads == 4
    assert h.text_proj.in_features == 768 and h.mi_out.mlp[0].out_features == 512
    assert h.ta_out.mlp[-1].out_features == 20 and h.cross.dropout == 0.3


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread (and the machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_trains_on_a_tiny_problem(one_thread):
    torch.manual_seed(0)
    h = DualBranchHead(DA, **{**TINY, "dropout": 0.0})
    audio, lengths, text, mask = batch()
    scores = torch.tensor([[1.4, 4.2], [3.0, 2.0], [4.8, 1.0]])
    opt = torch.optim.AdamW(h.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        loss = kl_gaussian(h(audio, lengths, text, mask), scores)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    with torch.no_grad():
        pred = expected_score(h.eval()(audio, lengths, text, mask))
    assert (pred - scores).abs().max() < 0.5


# --- the public modules' layout (issue 18): LSTM-head widths, dropout positions, CORAL widths ------------------
def _kinds(seq):
    return [type(m).__name__ for m in seq]


def test_lstm_head_is_an_lstm_then_one_linear_at_the_public_widths():
    h = DualBranchHead(decoupled=True, lstm_head=True)  # full size: shapes only, no forward
    assert tuple(h.mi_out.lstm.weight_ih_l0.shape) == (4 * 512, 1024) and h.mi_out.lstm.bidirectional is False
    assert tuple(h.mi_out.fc.weight.shape) == (20, 512) and h.mi_out.mlp is None
    assert tuple(h.ta_out.lstm.weight_ih_l0.shape) == (4 * 384, 768) and tuple(h.ta_out.fc.weight.shape) == (20, 384)
    assert 17.0e6 < h.n_params() < 17.2e6  # the public model's 17.1 M trainable parameters


def test_lstm_head_output_equals_lstm_last_step_then_linear():
    h = head(output="distribution", decoupled=True, lstm_head=True)
    pooled = torch.randn(3, DA)
    with torch.no_grad():
        # one LSTM step from zero state, written out: gates i, f, g, o; c = i*g; h = o*tanh(c)
        m = h.mi_out.lstm
        g = pooled @ m.weight_ih_l0.T + m.bias_ih_l0 + m.bias_hh_l0
        i, f, gg, o = g.chunk(4, dim=-1)
        hid = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(gg))
        torch.testing.assert_close(h.mi_out(pooled), hid @ h.mi_out.fc.weight.T + h.mi_out.fc.bias)


def test_output_mlp_dropout_follows_the_public_modules():
    dist = DualBranchHead(DA, **TINY)
    assert _kinds(dist.mi_out.mlp) == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert _kinds(dist.ta_out.mlp) == _kinds(dist.mi_out.mlp)
    coral_h = DualBranchHead(DA, **{**TINY, "output": "coral"})
    assert _kinds(coral_h.mi_out.mlp) == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]


def test_input_frames_are_dropped_out_in_training_only():
    h = head(dropout=0.5)
    audio, lengths, text, mask = batch()
    seen = []
    hook = h.encoder.register_forward_pre_hook(lambda mod, args, kw: seen.append(args[0].detach().clone()),
                                               with_kwargs=True)
    clean = audio + sinusoidal_encoding(audio.shape[1], DA).unsqueeze(0)
    with torch.no_grad():
        h.eval()(audio, lengths, text, mask)
        h.train()(audio, lengths, text, mask)
    hook.remove()
    torch.testing.assert_close(seen[0], clean)              # eval: frames + PE unchanged
    kept = seen[1] != 0
    assert 0.3 < float((~kept).float().mean()) < 0.7        # train: about half the values dropped
    torch.testing.assert_close(seen[1][kept], (clean * 2.0)[kept])  # the rest scaled by 1 / (1 - p)


def test_recipe_coral_run_has_the_public_512_256_ta_mlp():
    from mmmos.heads import build_head
    from mmmos.sweep.track1 import recipe_configs

    cfg = next(c for c in recipe_configs() if c.loss == "coral")
    h = build_head("dual_branch", 1024, n_axes=2, **cfg.head_cfg)
    assert tuple(h.ta_out.mlp[0].weight.shape) == (512, 768) and tuple(h.ta_out.mlp[3].weight.shape) == (256, 512)
    assert tuple(h.mi_out.mlp[0].weight.shape) == (512, 1024)
    others = [c for c in recipe_configs() if c.loss != "coral"]
    assert all("ta_hidden" not in c.head_cfg for c in others)
