"""Random-weight M2D checkpoints laid out like the official releases (tests, demos, benchmarks).

Not part of the encoder: ``mmmos.extract.m2d`` only loads; this module writes files it can load.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
from pathlib import Path

import numpy as np
import torch

from mmmos.extract.m2d import DEFAULT_NORM_STATS, HEAD_DIM, N_MELS, NORM_STATS_KEY, M2DViT

_SIZES = {"tiny": {"width": 64, "depth": 2, "mlp": 4, "dec_width": 32, "dec_depth": 1, "text_dim": 32},
          "full": {"width": 768, "depth": 12, "mlp": 4, "dec_width": 512, "dec_depth": 8, "text_dim": 768}}


def _rand_like(t: torch.Tensor, name: str, gen: torch.Generator) -> torch.Tensor:
    """LayerNorm gains near 1, matrices ~ 1/sqrt(fan_in), embeddings O(0.5), biases small."""
    z = torch.randn(t.shape, generator=gen)
    if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
        return 1.0 + 0.1 * z
    if name.endswith(("pos_embed", "cls_token")):
        return 0.5 * z
    if t.ndim >= 2:
        return z / math.sqrt(int(np.prod(t.shape[1:])))
    return 0.02 * z


def _encoder_state(size: str, input_frames: int, gen: torch.Generator) -> tuple[M2DViT, dict[str, torch.Tensor]]:
    """The ViT of ``size`` and a random state dict for it, drawn from ``gen``."""
    if size not in _SIZES:
        raise ValueError(f"size must be one of {sorted(_SIZES)}, got {size!r}")
    s = _SIZES[size]
    width = s["width"]
    enc = M2DViT(width, s["depth"], width // HEAD_DIM, s["mlp"] * width, (N_MELS // 16, input_frames // 16), (16, 16))
    return enc, {k: _rand_like(v, k, gen) for k, v in enc.state_dict().items()}


def random_encoder(size: str = "tiny", input_frames: int = 1001, seed: int = 0, device: str = "cpu"):
    """A frozen ``M2DEncoder`` with the encoder weights ``write_random_checkpoint`` would write, in memory."""
    from mmmos.extract.m2d import M2DEncoder

    enc, sd = _encoder_state(size, input_frames, torch.Generator().manual_seed(seed))
    enc.load_state_dict(sd, strict=True)
    stats = tuple(float(v) for v in torch.tensor(DEFAULT_NORM_STATS))  # as a file holds them: float32
    return M2DEncoder(enc, input_frames=input_frames, norm_stats=stats, device=device)


def write_random_checkpoint(
    out_dir: str | os.PathLike,
    size: str = "tiny",
    input_frames: int = 608,
    fmt: str = "pth",
    pretraining_keys: bool = False,
    seed: int = 0,
    norm_stats: tuple[float, float] | None = DEFAULT_NORM_STATS,
) -> Path:
    """Save a randomly initialised M2D encoder the way the releases are laid out; return the file.

    Folder ``m2d_vit_base-80x{input_frames}p16x16-random[_tiny]`` (``m2d_clap_vit_base-...`` for
    1001 frames, whose files also carry the CLAP ``audio_proj``/``text_proj`` heads).
    ``fmt``: ``"pth"`` -> ``checkpoint-300.pth`` holding ``{'model': sd, 'epoch', 'args': Namespace}``
    like a pre-training file; ``"flat"`` -> ``weights_enconly.pth`` holding the bare state dict like
    the ``_enconly`` releases; ``"safetensors"`` -> ``model.safetensors``.  ``pretraining_keys`` adds
    target encoder, decoder and ``mask_token`` tensors.  ``norm_stats`` None leaves the key out
    (as in 2022 files).  The encoder tensors depend only on (size, input_frames, seed).
    """
    if size not in _SIZES:
        raise ValueError(f"size must be one of {sorted(_SIZES)}, got {size!r}")
    if fmt not in ("pth", "flat", "safetensors"):
        raise ValueError(f"fmt must be 'pth', 'flat' or 'safetensors', got {fmt!r}")
    s = _SIZES[size]
    width = s["width"]
    grid = (N_MELS // 16, input_frames // 16)
    clap = input_frames == 1001
    model_name = "m2d_clap_vit_base" if clap else "m2d_vit_base"
    folder = Path(out_dir) / f"{model_name}-80x{input_frames}p16x16-random{'' if size == 'full' else '_' + size}"
    folder.mkdir(parents=True, exist_ok=True)

    gen = torch.Generator().manual_seed(seed)

    enc, sd = _encoder_state(size, input_frames, gen)
    rand_like = functools.partial(_rand_like, gen=gen)
    if norm_stats is not None:
        sd[NORM_STATS_KEY] = torch.tensor([float(norm_stats[0]), float(norm_stats[1])])
    if clap:
        sd["audio_proj.0.weight"] = torch.randn(width, width, generator=gen) / math.sqrt(width)
        sd["audio_proj.0.bias"] = torch.zeros(width)
        sd["audio_proj.2.weight"] = torch.randn(width, width, generator=gen) / math.sqrt(width)
        sd["audio_proj.2.bias"] = torch.zeros(width)
        sd["text_proj.weight"] = torch.randn(width, s["text_dim"], generator=gen) / math.sqrt(s["text_dim"])
        sd["text_proj.bias"] = torch.zeros(width)
    if pretraining_keys:
        for k, v in enc.state_dict().items():
            if k.startswith("blocks."):
                sd["target_" + k] = sd[k].clone()
            elif k.startswith("norm."):
                sd["target_" + k] = sd[k].clone()
        dw = s["dec_width"]
        dec = M2DViT(dw, s["dec_depth"], max(1, dw // HEAD_DIM), s["mlp"] * dw, grid, (16, 16))
        sd["decoder_embed.weight"] = torch.randn(dw, width, generator=gen) / math.sqrt(width)
        sd["decoder_embed.bias"] = torch.zeros(dw)
        sd["mask_token"] = 0.02 * torch.randn(1, 1, dw, generator=gen)
        sd["decoder_pos_embed"] = 0.5 * torch.randn(1, 1 + grid[0] * grid[1], dw, generator=gen)
        for k, v in dec.state_dict().items():
            if k.startswith("blocks.") or k.startswith("norm."):
                sd["decoder_" + k] = rand_like(v, k)
        sd["decoder_pred.weight"] = torch.randn(width, dw, generator=gen) / math.sqrt(dw)
        sd["decoder_pred.bias"] = torch.zeros(width)

    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = folder / "model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        return path
    if fmt == "flat":
        path = folder / "weights_enconly.pth"
        torch.save(sd, path)
        return path
    args = argparse.Namespace(
        model=model_name, input_size=[N_MELS, input_frames], patch_size=[16, 16], norm_stats=None,
        epochs=300, batch_size=2048, mask_ratio=0.7, decoder_depth=s["dec_depth"], seed=seed,
        output_dir=str(folder.name),
    )
    path = folder / "checkpoint-300.pth"
    torch.save({"model": sd, "epoch": 300, "args": args}, path)
    return path
