"""Base class of the prediction heads: config record, input checks, shared attributes.

A head maps features to one score per axis, ``(B, A)`` in z-space, A = ``n_axes`` (the task's
axes, in the task's order; the trainer passes ``n_axes=len(task.axes)``).  Class attributes tell the
trainer what to feed it:

* ``needs_frames`` - False: pooled features ``(B, D)``; True: a padded frame
  sequence ``(B, T, D)`` plus ``lengths`` ``(B,)``.
* ``output_kind`` - what ``forward`` returns; ``"scores"`` for all current heads
  (matches ``losses.loss_head_output``; distribution heads would use another kind).

``config`` is a JSON-safe dict ``{"name", "in_dim", ["n_axes",] **hyperparameters}`` from which
``heads.build_head_from_config`` rebuilds the same architecture.  ``n_axes`` is recorded when it was
given; a config without it (records written before tasks existed) means the default task's axis count.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmmos.core.tasks import DEFAULT_TASK, get_task


def default_n_axes() -> int:
    """The axis count of the default task (what a head without ``n_axes`` predicts)."""
    return get_task(DEFAULT_TASK).n_axes


def check_positive_int(value: Any, what: str, where: str) -> int:
    """``value`` as an int >= 1, else ValueError naming the head and the parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"heads ({where}): {what} must be a positive int, got {value!r}")
    return value


def check_dropout(value: Any, where: str) -> float:
    """``value`` as a float probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"heads ({where}): dropout must be in [0, 1), got {value!r}")
    return float(value)


class Head(nn.Module):
    """Common behaviour of all heads; subclasses set ``name``/``needs_frames`` and build layers."""

    name: ClassVar[str] = ""
    needs_frames: ClassVar[bool] = False
    output_kind: ClassVar[str] = "scores"

    def __init__(self, in_dim: int, n_axes: int | None = None, **hparams: Any) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim", self.name)
        given = {} if n_axes is None else {"n_axes": check_positive_int(n_axes, "n_axes", self.name)}
        self.n_axes = given.get("n_axes", default_n_axes())
        self._config: dict[str, Any] = {"name": self.name, "in_dim": self.in_dim, **given, **hparams}

    @property
    def config(self) -> dict[str, Any]:
        """Name, input size and hyperparameters (a copy; safe to JSON-dump)."""
        return dict(self._config)

    def n_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> str:
        """One line for logs: name, config and parameter count."""
        args = ", ".join(f"{k}={v}" for k, v in self._config.items() if k != "name")
        return f"{self.name}({args}) - {self.n_params():,} params"

    # -- input checks -------------------------------------------------------
    def check_pooled(self, x: Tensor) -> None:
        """``x`` must be a float ``(B, in_dim)`` tensor with B >= 1."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"heads ({self.name}): input must be a float tensor")
        if x.dim() != 2 or x.shape[1] != self.in_dim or x.shape[0] == 0:
            raise ValueError(
                f"heads ({self.name}): expected pooled features (B, {self.in_dim}), got {tuple(x.shape)}"
            )

    def check_frames(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """``x`` float ``(B, T, in_dim)``; ``lengths`` integer ``(B,)`` in [1, T]. Returns lengths (int64)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"heads ({self.name}): input must be a float tensor")
        if x.dim() != 3 or x.shape[2] != self.in_dim or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"heads ({self.name}): expected frames (B, T, {self.in_dim}), got {tuple(x.shape)}"
            )
        if lengths is None:
            raise ValueError(f"heads ({self.name}): lengths (B,) is required for frame input")
        if not isinstance(lengths, Tensor) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError(f"heads ({self.name}): lengths must be an integer tensor")
        if lengths.shape != (x.shape[0],):
            raise ValueError(
                f"heads ({self.name}): lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}"
            )
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > x.shape[1]:
            raise ValueError(
                f"heads ({self.name}): lengths must lie in [1, T={x.shape[1]}], got min {lo}, max {hi}"
            )
        return lengths.long()
