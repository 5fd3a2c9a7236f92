"""Feeding a head from the cache: memoised feature banks, batch order, inputs on the device, prediction."""
from __future__ import annotations

import numpy as np


def zstats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis mean and standard deviation of training labels (a constant axis gets sd 1)."""
    mu = y.mean(axis=0)
    sd = y.std(axis=0)
    return mu, np.where(sd > 1e-8, sd, 1.0)


def batches(n: int, bs: int, rng: np.random.Generator | None):
    """Index batches over ``n`` items: shuffled with ``rng``, in order without."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, bs):
        yield order[s : s + bs]


def inputs(bank, head, idx, starts, torch, device):
    """The head's input for items ``idx`` (crops at ``starts``; None = whole clips), on ``device``."""
    if getattr(bank, "on_device", False):  # a TorchBank (device_bank.py): the tensors are already there
        if head.needs_frames:
            x, lengths = bank.frame_batch(idx, starts)
            return x, torch.from_numpy(lengths)
        return bank.pooled(idx, starts), None
    if head.needs_frames:
        x, lengths = bank.frame_batch(idx, starts)
        # lengths stay on the CPU: pack_padded_sequence wants them there
        return torch.from_numpy(x).to(device), torch.from_numpy(lengths)
    return torch.from_numpy(bank.pooled(idx, starts)).to(device), None


def predict(head, bank, bs, torch, device, n_axes: int) -> np.ndarray:
    """z-space predictions ``(N, n_axes)`` for every clip of ``bank`` (whole clips, eval mode)."""
    head.eval()
    out = []
    with torch.inference_mode():
        for idx in batches(len(bank), bs, None):
            x, lengths = inputs(bank, head, idx, None, torch, device)
            out.append(head(x, lengths).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, n_axes), np.float32)


_BANKS: dict[tuple, object] = {}
_BANKS_MAX = 10  # pooled banks are small; frame banks exist for one encoder set only (~3 GB at challenge size)


def feature_bank(groups, clip_ids: list[str], crop: float, frames: bool, grid_rate: float | None):
    """FeatureBank memoised per process: configurations that share encoders and clips
    (e.g. the four losses of one head) read the cache once."""
    from mmmos.cache_store.features import FeatureBank

    key = (tuple(g.root for g in groups), tuple(clip_ids), crop, frames, grid_rate)
    bank = _BANKS.pop(key, None)
    if bank is None:
        bank = FeatureBank(groups, clip_ids, crop, frames, grid_rate)
    _BANKS[key] = bank  # most recent last
    while len(_BANKS) > _BANKS_MAX:
        _BANKS.pop(next(iter(_BANKS)))
    return bank


def default_batch_size(frames: bool) -> int:
    """The paper's batch sizes: 16 for frame heads, 32 for pooled heads."""
    return 16 if frames else 32
