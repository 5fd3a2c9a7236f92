"""``blstm_t`` head (time-pooled aggregation): the frame sequence through a BLSTM.

Frames ``(B, T, D)`` with valid lengths ``(B,)`` go through a single-layer
bidirectional LSTM as a packed sequence (so padding never enters the recurrence,
in either direction); the outputs ``(B, T, 2H)`` are mean-pooled over each clip's
valid frames only and scored by the per-axis MLPs.  Defaults as ``blstm_h``:
H = 128 per direction, per-axis ``256 -> 64 -> 1``, dropout 0.1.

Speed (CPU training is ~70 % of a sweep): for sequences up to :data:`FUSED_MAX_FRAMES` frames the same
BLSTM is computed by :func:`fused_bilstm_mean` - one input-projection GEMM for both directions over the
whole batch, each clip's reverse direction read back-to-front within its own length, both directions'
recurrences stepped together, the mean accumulated on the fly.  Same parameters (``self.lstm``, so saved
models load unchanged), same outputs within float rounding; measured 1.2x faster per training step at
the sweep's shape (T = 62, D = 5632) on a 2-core AVX2 CPU.  Longer sequences use the packed
``nn.LSTM``, whose C++ recurrence beats a Python time loop there (0.85x at T = 500).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .blstm_h import BiLSTMHead


FUSED_MAX_FRAMES = 256  # above this the per-step Python overhead outweighs the fused projection


def fused_bilstm_mean(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> Tensor:
    """Mean over each clip's valid frames of a 1-layer bidirectional ``lstm``'s outputs, ``(B, 2H)``.

    Equal to running ``lstm`` on the packed sequence: the forward direction is causal, so frames past
    a clip's length never reach its valid outputs; the reverse direction runs on each clip reversed within
    its length (padding moved to the end), and a mean does not depend on the order of its terms."""
    b, t, _ = x.shape
    hid = lstm.hidden_size
    steps = torch.arange(t, device=x.device)
    valid = (steps.unsqueeze(0) < lengths.unsqueeze(1)).to(x.dtype)  # (B, T)
    w_ih = torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse])  # (8H, D)
    bias = torch.cat([lstm.bias_ih_l0 + lstm.bias_hh_l0, lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse])
    gates_in = F.linear(x, w_ih, bias)  # (B, T, 8H): the one large GEMM
    fwd, rev = gates_in[..., : 4 * hid], gates_in[..., 4 * hid :]
    back = (lengths.unsqueeze(1) - 1 - steps.unsqueeze(0)).clamp_min(0)  # (B, T); past the length: any frame
    rev = rev[torch.arange(b, device=x.device).unsqueeze(1), back]
    both = torch.stack([fwd, rev], dim=2)  # (B, T, 2, 4H)
    w_hh = torch.stack([lstm.weight_hh_l0, lstm.weight_hh_l0_reverse]).transpose(1, 2)  # (2, H, 4H)
    h = x.new_zeros(2, b, hid)
    c = x.new_zeros(2, b, hid)
    total = x.new_zeros(2, b, hid)
    for s in range(t):
        gates = both[:, s].transpose(0, 1) + torch.bmm(h, w_hh)  # (2, B, 4H), PyTorch's i, f, g, o order
        i, f, g, o = gates.chunk(4, dim=2)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        total = total + h * valid[:, s].view(1, b, 1)
    return torch.cat([total[0], total[1]], dim=1) / lengths.unsqueeze(1).to(x.dtype)


def packed_bilstm_mean(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> Tensor:
    """The same mean through ``nn.LSTM`` on a packed sequence (padding never enters the recurrence)."""
    t = x.shape[1]
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)  # (B, T, 2H)
    lengths = lengths.to(out.device)
    valid = torch.arange(t, device=out.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    # pad_packed already zero-fills padding; the mask makes the mean's support explicit.
    return (out * valid.unsqueeze(2).to(out.dtype)).sum(dim=1) / lengths.unsqueeze(1).to(out.dtype)


class BLSTMTimeHead(BiLSTMHead):
    """Frames ``(B, T, D)`` + ``lengths`` ``(B,)`` -> scores ``(B, n_axes)``."""

    name = "blstm_t"
    needs_frames = True

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        lengths = self.check_frames(x, lengths)
        if x.shape[1] <= FUSED_MAX_FRAMES and x.device.type == "cpu":
            pooled = fused_bilstm_mean(self.lstm, x, lengths.to(x.device))
        else:  # long sequences, and GPUs (cuDNN's packed BLSTM)
            pooled = packed_bilstm_mean(self.lstm, x, lengths)
        return self.heads(pooled)
