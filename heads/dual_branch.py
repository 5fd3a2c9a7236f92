"""The Track 1 dual-branch head (ASTAR-NTU, SPEC section 9): audio frames + prompt tokens -> MI and TA outputs.

MI branch (first task axis): sinusoidal positional encoding -> one post-LN Transformer encoder layer
(``d_model`` = ``in_dim``, 4 heads, FF 2048, ReLU, dropout 0.3) -> attentive pooling over the valid frames ->
MLP ``in_dim -> 512 -> 256 -> K``. In training, dropout (the head's ``dropout``) is applied to the input frames
plus positional encoding before the Transformer, as the public code's positional-encoding module does.

TA branch (second axis): the audio (the Transformer output; the raw frames when ``decoupled``) and the text
(``text_dim -> ta_dim``) are projected to ``ta_dim`` = 768 -> multi-head cross-attention (4 heads, dropout 0.3,
text = query, audio = key/value) -> LayerNorm (no residual) -> attentive pooling over the real text tokens ->
MLP ``ta_dim -> 384 -> 192 -> K`` (CORAL: the recipe gives both branches 512 -> 256).

Dropout inside the output MLPs follows the public modules: the distribution and scalar MLPs drop out after
their first hidden layer only; the CORAL head after every hidden layer.

``lstm_head``: each branch's pooled vector goes through a one-directional LSTM as a length-1 sequence
(MI ``in_dim -> mi_lstm`` = 512, TA ``ta_dim -> ta_lstm`` = 384) and then one Linear to K, which replaces the
whole output MLP (the public LSTM-head model). ``output``: ``distribution`` (K = ``num_bins`` logits), ``coral`` (K = 4 monotone threshold
logits, ``z0 = r0, zj = z(j-1) - softplus(rj)``), ``scores`` (K = 1, returned as ``(B, 2)``).

Masks are real, unlike the public code: padded audio frames never enter self-attention, cross-attention keys
or pooling; pad tokens never enter pooling; the positional encoding is added for every batch size. So a
clip's output does not depend on what it is batched with (eval mode).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Head, check_dropout, check_positive_int

OUTPUT_K = {"distribution": None, "coral": 4, "scores": 1}   # None: num_bins
N_BRANCHES = 2  # Track 1 has exactly two axes: overall impression (audio only) and text alignment


def sinusoidal_encoding(length: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """``(length, dim)`` sin/cos positional encoding (Vaswani et al.); an odd ``dim`` drops the last cos."""
    pos = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float32, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


class AttentivePooling(nn.Module):
    """A linear score per position, softmax over the valid positions only, weighted sum -> ``(B, D)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """``x`` (B, T, D); ``valid`` bool (B, T), True = a real position (each row needs one)."""
        s = self.score(x).squeeze(-1).masked_fill(~valid, float("-inf"))
        w = torch.softmax(s, dim=-1).masked_fill(~valid, 0.0)  # exact zeros: pads contribute nothing
        return torch.bmm(w.unsqueeze(1), x).squeeze(1)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float, dropout_all: bool = False) -> nn.Sequential:
    """``in -> h1 -> ... -> out`` with ReLU after each hidden layer and dropout after the first one
    (``dropout_all``: after each one). Both patterns are the public modules' (module indices match theirs)."""
    layers: list[nn.Module] = []
    d = in_dim
    for i, h in enumerate(hidden):
        layers += [nn.Linear(d, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout_all or i == 0 else [])
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class BranchOutput(nn.Module):
    """Pooled vector -> MLP -> K outputs, or (``lstm`` = its hidden size) a length-1 LSTM -> one Linear -> K;
    made monotone for CORAL."""

    def __init__(self, dim: int, hidden: Sequence[int], k: int, dropout: float, lstm: int | None,
                 coral: bool) -> None:
        super().__init__()
        self.lstm: nn.LSTM | None = None
        self.fc: nn.Linear | None = None
        self.mlp: nn.Sequential | None = None
        if lstm:
            self.lstm, self.fc = nn.LSTM(dim, lstm, batch_first=True), nn.Linear(lstm, k)
        else:  # the public CORAL head drops out after each hidden layer, its distribution/scalar MLPs after the first
            self.mlp = mlp(dim, hidden, k, dropout, dropout_all=coral)
        self.coral = coral

    def forward(self, pooled: Tensor) -> Tensor:
        if self.lstm is not None:
            out = self.fc(self.lstm(pooled.unsqueeze(1))[0].squeeze(1))
        else:
            out = self.mlp(pooled)
        if self.coral:  # same rule as losses.coral_logits (heads may not import losses)
            out = torch.cat([out[:, :1], out[:, :1] - torch.cumsum(F.softplus(out[:, 1:]), dim=-1)], dim=-1)
        return out


class DualBranchHead(Head):
    """See the module doc. ``forward(audio, lengths, text, text_mask)`` -> ``(B, 2, K)`` (``(B, 2)`` for scores)."""

    name: ClassVar[str] = "dual_branch"
    needs_frames: ClassVar[bool] = True
    needs_text: ClassVar[bool] = True

    def __init__(self, in_dim: int = 1024, n_axes: int | None = N_BRANCHES, *, text_dim: int = 768,
                 ta_dim: int = 768, n_heads: int = 4, ff_dim: int = 2048, dropout: float = 0.3,
                 output: str = "distribution", num_bins: int = 20, decoupled: bool = False,
                 lstm_head: bool = False, mi_hidden: Sequence[int] = (512, 256),
                 ta_hidden: Sequence[int] = (384, 192), mi_lstm: int = 512, ta_lstm: int = 384) -> None:
        if output not in OUTPUT_K:
            raise ValueError(f"heads (dual_branch): output must be one of {', '.join(OUTPUT_K)}, got {output!r}")
        hp: dict[str, Any] = dict(text_dim=text_dim, ta_dim=ta_dim, n_heads=n_heads, ff_dim=ff_dim, dropout=dropout,
                                  output=output, num_bins=num_bins, decoupled=bool(decoupled),
                                  lstm_head=bool(lstm_head), mi_hidden=list(mi_hidden), ta_hidden=list(ta_hidden),
                                  mi_lstm=mi_lstm, ta_lstm=ta_lstm)
        super().__init__(in_dim, n_axes=N_BRANCHES if n_axes is None else n_axes, **hp)
        if self.n_axes != N_BRANCHES:
            raise ValueError(f"heads (dual_branch): predicts exactly {N_BRANCHES} axes, got n_axes={self.n_axes}")
        for what, v in (("text_dim", text_dim), ("ta_dim", ta_dim), ("n_heads", n_heads), ("ff_dim", ff_dim),
                        ("num_bins", num_bins), ("mi_lstm", mi_lstm), ("ta_lstm", ta_lstm),
                        *((f"mi_hidden[{i}]", h) for i, h in enumerate(mi_hidden)),
                        *((f"ta_hidden[{i}]", h) for i, h in enumerate(ta_hidden))):
            check_positive_int(v, what, self.name)
        for what, d in (("in_dim", in_dim), ("ta_dim", ta_dim)):
            if d % n_heads:
                raise ValueError(f"heads (dual_branch): {what}={d} must be divisible by n_heads={n_heads}")
        dropout = check_dropout(dropout, self.name)
        self.output_kind = output  # instance value: what the matching loss consumes
        self.text_dim, self.decoupled = text_dim, bool(decoupled)
        k = OUTPUT_K[output] or num_bins
        self.k = k
        self.input_dropout = nn.Dropout(dropout)  # the public positional-encoding module's dropout (frames + PE)
        self.encoder = nn.TransformerEncoderLayer(in_dim, n_heads, ff_dim, dropout, activation="relu",
                                                  batch_first=True, norm_first=False)
        self.mi_pool = AttentivePooling(in_dim)
        self.mi_out = BranchOutput(in_dim, mi_hidden, k, dropout, mi_lstm if lstm_head else None, output == "coral")
        self.audio_proj = nn.Linear(in_dim, ta_dim)
        self.text_proj = nn.Linear(text_dim, ta_dim)
        self.cross = nn.MultiheadAttention(ta_dim, n_heads, dropout=dropout, batch_first=True)
        self.cross_norm = nn.LayerNorm(ta_dim)
        self.ta_pool = AttentivePooling(ta_dim)
        self.ta_out = BranchOutput(ta_dim, ta_hidden, k, dropout, ta_lstm if lstm_head else None, output == "coral")

    def _check_text(self, text: Tensor, text_mask: Tensor, batch: int) -> Tensor:
        """``text`` float (B, L, text_dim), ``text_mask`` (B, L) with >= 1 real token a row; returns bool mask."""
        if not isinstance(text, Tensor) or not text.is_floating_point():
            raise TypeError(f"heads ({self.name}): text must be a float tensor")
        if text.dim() != 3 or text.shape[0] != batch or text.shape[2] != self.text_dim or text.shape[1] == 0:
            raise ValueError(f"heads ({self.name}): expected text ({batch}, L, {self.text_dim}), got {tuple(text.shape)}")
        if not isinstance(text_mask, Tensor) or text_mask.shape != text.shape[:2]:
            raise ValueError(f"heads ({self.name}): text_mask must be a tensor of shape {tuple(text.shape[:2])}")
        valid = text_mask.bool()
        if not bool(valid.any(dim=1).all()):
            raise ValueError(f"heads ({self.name}): every prompt needs at least one real token (text_mask all 0)")
        return valid

    def forward(self, audio: Tensor, lengths: Tensor | None = None, text: Tensor | None = None,
                text_mask: Tensor | None = None) -> Tensor:
        """``audio`` (B, T, in_dim), ``lengths`` (B,), ``text`` (B, L, text_dim), ``text_mask`` (B, L) 1 = real token."""
        lengths = self.check_frames(audio, lengths)
        if text is None or text_mask is None:
            raise ValueError(f"heads ({self.name}): text and text_mask are required")
        text_valid = self._check_text(text, text_mask, audio.shape[0])
        t = audio.shape[1]
        audio_valid = torch.arange(t, device=audio.device).unsqueeze(0) < lengths.to(audio.device).unsqueeze(1)
        pad = ~audio_valid
        x = self.input_dropout(audio + sinusoidal_encoding(t, audio.shape[2], audio.device, audio.dtype).unsqueeze(0))
        h = self.encoder(x, src_key_padding_mask=pad)  # decoupled TA keys below use the raw frames, undropped
        mi = self.mi_out(self.mi_pool(h, audio_valid))
        keys = self.audio_proj(audio if self.decoupled else h)
        query = self.text_proj(text)
        fused, _ = self.cross(query, keys, keys, key_padding_mask=pad, need_weights=False)
        ta = self.ta_out(self.ta_pool(self.cross_norm(fused), text_valid))
        out = torch.stack([mi, ta], dim=1)
        return out.squeeze(-1) if self.output_kind == "scores" else out


__all__ = ["AttentivePooling", "DualBranchHead", "sinusoidal_encoding"]
