"""blstm_t's fused BLSTM (one input GEMM, both directions stepped together) equals the packed nn.LSTM
it replaced: outputs and gradients within 1e-5 on random inputs with ragged lengths."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmmos.heads import build_head
from mmmos.heads.blstm_t import FUSED_MAX_FRAMES, fused_bilstm_mean


def reference_forward(head, x, lengths):
    """blstm_t's forward as it was before the fused path (packed nn.LSTM, masked mean)."""
    t = x.shape[1]
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = head.lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
    valid = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    pooled = (out * valid.unsqueeze(2).to(out.dtype)).sum(dim=1) / lengths.unsqueeze(1).to(out.dtype)
    return head.heads(pooled)


def _grads(head):
    return {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("b,t,d,seed", [(5, 17, 40, 0), (1, 1, 8, 1), (4, 62, 96, 2), (3, 300, 16, 3)])
def test_outputs_and_gradients_match_reference(b, t, d, seed):
    torch.manual_seed(seed)
    head = build_head("blstm_t", d, lstm_hidden=32, axis_hidden=16, dropout=0.0)
    head.train()
    x = torch.randn(b, t, d)
    lengths = torch.randint(1, t + 1, (b,))
    lengths[0] = t
    ref = reference_forward(head, x, lengths)
    ref.pow(2).sum().backward()
    g_ref = _grads(head)
    head.zero_grad()
    got = head(x, lengths)
    got.pow(2).sum().backward()
    g_got = _grads(head)
    assert torch.allclose(got, ref, atol=1e-5, rtol=0)
    assert g_ref.keys() == g_got.keys()
    for n in g_ref:
        assert torch.allclose(g_got[n], g_ref[n], atol=1e-5, rtol=1e-4), n


def test_padding_never_reaches_the_result():
    torch.manual_seed(4)
    head = build_head("blstm_t", 12, lstm_hidden=8, axis_hidden=4, dropout=0.0).eval()
    x = torch.randn(3, 20, 12)
    lengths = torch.tensor([20, 7, 13])
    y = head(x, lengths)
    x2 = x.clone()
    for i, n in enumerate(lengths.tolist()):
        x2[i, n:] = 1e3 * torch.randn(20 - n, 12)  # garbage in the padding
    assert torch.allclose(head(x2, lengths), y, atol=1e-6)
    # each clip alone, unpadded, gives the same score
    for i, n in enumerate(lengths.tolist()):
        alone = head(x[i : i + 1, :n], torch.tensor([n]))
        assert torch.allclose(alone, y[i : i + 1], atol=1e-5)


def test_fused_is_used_up_to_the_limit_only(monkeypatch):
    import mmmos.heads.blstm_t as mod

    calls = []
    monkeypatch.setattr(mod, "fused_bilstm_mean", lambda *a: calls.append(a[1].shape[1]) or fused_bilstm_mean(*a))
    head = build_head("blstm_t", 4, lstm_hidden=4, axis_hidden=4, dropout=0.0)
    for t in (FUSED_MAX_FRAMES, FUSED_MAX_FRAMES + 1):
        head(torch.randn(2, t, 4), torch.tensor([t, 3]))
    assert calls == [FUSED_MAX_FRAMES]
