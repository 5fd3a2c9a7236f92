"""``blstm_t`` head (time-pooled aggregation): the frame sequence through a BLSTM.

Frames ``(B, T, D)`` with valid lengths ``(B,)`` go through a single-layer
bidirectional LSTM as a packed sequence (so padding never enters the recurrence,
in either direction); the outputs ``(B, T, 2H)`` are mean-pooled over each clip's
valid frames only and scored by the per-axis MLPs.  Defaults as ``blstm_h``:
H = 128 per direction, per-axis ``256 -> 64 -> 1``, dropout 0.1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .axis_mlp import AxisHeads
from .base import Head, check_dropout, check_positive_int


class BLSTMTimeHead(Head):
    """Frames ``(B, T, D)`` + ``lengths`` ``(B,)`` -> scores ``(B, n_axes)``."""

    name = "blstm_t"
    needs_frames = True

    def __init__(
        self,
        in_dim: int,
        lstm_hidden: int = 128,
        axis_hidden: int = 64,
        dropout: float = 0.1,
        n_axes: int | None = None,
    ) -> None:
        lstm_hidden = check_positive_int(lstm_hidden, "lstm_hidden", self.name)
        axis_hidden = check_positive_int(axis_hidden, "axis_hidden", self.name)
        dropout = check_dropout(dropout, self.name)
        super().__init__(in_dim, n_axes, lstm_hidden=lstm_hidden, axis_hidden=axis_hidden, dropout=dropout)
        self.lstm = nn.LSTM(self.in_dim, lstm_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.heads = AxisHeads(2 * lstm_hidden, axis_hidden, dropout, self.n_axes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        lengths = self.check_frames(x, lengths)
        t = x.shape[1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)  # (B, T, 2H)
        lengths = lengths.to(out.device)
        valid = torch.arange(t, device=out.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        # pad_packed already zero-fills padding; the mask makes the mean's support explicit.
        pooled = (out * valid.unsqueeze(2).to(out.dtype)).sum(dim=1) / lengths.unsqueeze(1).to(out.dtype)
        return self.heads(pooled)
