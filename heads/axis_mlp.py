"""Independent per-axis MLPs (one per task axis), the common end of every head.

Axis k has its own ``Linear(in, hidden) -> ReLU -> Dropout -> Linear(hidden, 1)``;
no weights are shared, so the gradient of one axis' output never reaches another
axis' parameters.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def axis_mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """One axis' scorer: ``(B, in_dim) -> (B, 1)``."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


class AxisHeads(nn.Module):
    """``(B, in_dim) -> (B, n_axes)``: one independent MLP per axis, in the task's axis order."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, n_axes: int) -> None:
        super().__init__()
        self.axes = nn.ModuleList(axis_mlp(in_dim, hidden, dropout) for _ in range(n_axes))

    def forward(self, z: Tensor) -> Tensor:
        return torch.cat([mlp(z) for mlp in self.axes], dim=1)
