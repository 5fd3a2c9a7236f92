"""``blstm_h`` head (hidden-state aggregation): pooled features through a one-step BLSTM.

The pooled vector ``(B, D)`` is a length-1 sequence into a single-layer
bidirectional LSTM; the final forward and backward hidden states are concatenated
``(B, 2H)`` and scored by the per-axis MLPs.  Defaults: H = 128 per direction,
per-axis ``256 -> 64 -> 1``, dropout 0.1 (about 5.9 M parameters for D = 5632;
sizes are ours, the paper does not give them).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .axis_mlp import AxisHeads
from .base import Head, check_dropout, check_positive_int


class BiLSTMHead(Head):
    """What both BLSTM heads share: a single-layer bidirectional LSTM of ``lstm_hidden`` units per direction
    over the encoder features, and per-axis MLPs on its ``2 * lstm_hidden`` outputs.  Subclasses differ in what
    goes in (a pooled vector or the frame sequence) and how the outputs are aggregated."""

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


class BLSTMHiddenHead(BiLSTMHead):
    """Pooled features ``(B, D)`` -> scores ``(B, n_axes)`` via a BLSTM's final hidden state."""

    name = "blstm_h"
    needs_frames = False

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``lengths`` is accepted for a uniform call signature and unused (features are pooled)."""
        self.check_pooled(x)
        _, (h_n, _) = self.lstm(x.unsqueeze(1))  # h_n: (2 directions, B, H)
        return self.heads(torch.cat([h_n[0], h_n[1]], dim=1))
