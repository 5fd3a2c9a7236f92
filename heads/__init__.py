"""Prediction heads (SPEC section 4 aggregators): features -> scores ``(B, A)``, one per task axis.

``HEADS`` maps a registry name to its class; ``build_head(name, in_dim, **cfg)``
builds one; ``n_axes`` (``len(task.axes)``, default: the default task's) sizes the output.  Every head class has ``needs_frames`` (False: pooled ``(B, D)``; True:
frames ``(B, T, D)`` plus ``lengths``), ``output_kind`` and a ``config`` dict from
which ``build_head_from_config`` rebuilds it; ``rebuild(config, state)`` also loads saved weights strictly and
sets eval mode; ``predict_logits`` applies a frame head to every clip of a Track 1 bank (windows averaged).  ``forward(x, lengths=None)``.

==========  ==============  ==========================================================================================
name        input           architecture (defaults)
==========  ==============  ==========================================================================================
mlp         (B, D)          per-axis MLP D -> 256 -> 1
blstm_h     (B, D)          BLSTM(H=128 x 2) on a length-1 sequence, final [h_fwd; h_bwd] (256) -> 64 -> 1
blstm_t     (B, T, D)       BLSTM(H=128 x 2) over valid frames, mean of outputs (256) -> 64 -> 1
dual_branch (B, T, D)+text  Track 1: MI (Transformer + pooling) and TA (cross-attention to the prompt) branches
==========  ==============  ==========================================================================================

``AUDIO_HEADS`` lists the heads without ``needs_text`` (every head but ``dual_branch``).

All heads take ``dropout`` (default 0.1, inside each per-axis MLP).  Adding a head =
one module with a ``Head`` subclass plus one line in ``HEADS``.
"""
from __future__ import annotations

from typing import Any, Mapping

from .axis_mlp import AxisHeads, axis_mlp
from .base import Head
from .blstm_h import BLSTMHiddenHead
from .blstm_t import BLSTMTimeHead
from .dual_branch import DualBranchHead
from .mlp import MLPHead

HEADS: dict[str, type[Head]] = {
    "mlp": MLPHead,
    "blstm_h": BLSTMHiddenHead,
    "blstm_t": BLSTMTimeHead,
    "dual_branch": DualBranchHead,
}
#: The heads that read audio features only (``needs_text`` unset): what Track 2 configurations may use.
AUDIO_HEADS: dict[str, type[Head]] = {n: c for n, c in HEADS.items() if not getattr(c, "needs_text", False)}


def head_class(name: str) -> type[Head]:
    """The registered head class ``name``; ``KeyError`` naming the valid names otherwise."""
    try:
        return HEADS[name]
    except KeyError:
        raise KeyError(f"unknown head {name!r}; valid heads: {', '.join(HEADS)}") from None


def build_head(name: str, in_dim: int, n_axes: int | None = None, **cfg: Any) -> Head:
    """Build head ``name`` for ``in_dim``-dimensional features and ``n_axes`` outputs; ``cfg`` overrides its defaults."""
    cls = head_class(name)
    if n_axes is not None:
        cfg = {**cfg, "n_axes": n_axes}
    try:
        return cls(in_dim, **cfg)
    except TypeError as e:
        raise TypeError(f"heads ({name}): bad configuration {cfg!r}: {e}") from e


def build_head_from_config(config: Mapping[str, Any]) -> Head:
    """Rebuild a head from its ``config`` dict (``{"name", "in_dim", **hyperparameters}``)."""
    cfg = dict(config)
    try:
        name, in_dim = cfg.pop("name"), cfg.pop("in_dim")
    except KeyError as e:
        raise KeyError(f"heads: config lacks {e.args[0]!r}: {dict(config)!r}") from None
    return build_head(name, in_dim, **cfg)


def rebuild(config: Mapping[str, Any], state: Mapping[str, Any], device: str = "cpu") -> Head:
    """A saved head: rebuilt from its ``config``, weights ``state`` loaded strictly, on ``device``, in eval mode.

    The one way every reader of a saved head (predict, the sweep's evaluation and Track 1 checkpoints) gets it
    back, so a head whose weights do not fit its config fails the same way everywhere (``RuntimeError``)."""
    head = build_head_from_config(config)
    head.load_state_dict(state, strict=True)
    return head.to(device).eval()


from .inference import predict_logits  # noqa: E402 - after rebuild: inference imports nothing from here

__all__ = [
    "AUDIO_HEADS",
    "HEADS",
    "AxisHeads",
    "BLSTMHiddenHead",
    "BLSTMTimeHead",
    "DualBranchHead",
    "Head",
    "MLPHead",
    "axis_mlp",
    "build_head",
    "build_head_from_config",
    "head_class",
    "predict_logits",
    "rebuild",
]
