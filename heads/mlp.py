"""``mlp`` head: mean-pooled features straight into the per-axis MLPs (one per task axis).

Default: each axis ``D -> 256 -> 1`` (ReLU, dropout 0.1).  With the TriEnc
D = 5632 that is about 5.8 M parameters in total.  The paper does not give the
sizes; 256 keeps the head light next to the 5632-d input.
"""
from __future__ import annotations

from torch import Tensor

from .axis_mlp import AxisHeads
from .base import Head, check_dropout, check_positive_int


class MLPHead(Head):
    """Pooled features ``(B, D)`` -> scores ``(B, n_axes)``."""

    name = "mlp"
    needs_frames = False

    def __init__(
        self, in_dim: int, axis_hidden: int = 256, dropout: float = 0.1, n_axes: int | None = None
    ) -> None:
        axis_hidden = check_positive_int(axis_hidden, "axis_hidden", self.name)
        dropout = check_dropout(dropout, self.name)
        super().__init__(in_dim, n_axes, axis_hidden=axis_hidden, dropout=dropout)
        self.heads = AxisHeads(self.in_dim, axis_hidden, dropout, self.n_axes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``lengths`` is accepted for a uniform call signature and unused (features are pooled)."""
        self.check_pooled(x)
        return self.heads(x)
