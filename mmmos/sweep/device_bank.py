"""A feature bank whose arrays live on the training device, so crops and pooling run there.

:class:`~mmmos.cache_store.features.FeatureBank` keeps per-clip prefix sums (pooled heads) and the common-grid
frames (frame heads) in host memory and builds each batch with numpy; on a GPU that means a host-side loop and a
copy per batch.  :class:`TorchBank` uploads the same arrays once (flat tensors + offsets) and does the same
arithmetic as torch ops on the device.  Crop starts are still drawn by ``FeatureBank.random_starts`` with the
same RNG calls, and the frame intervals come from the same ``frame_range``, so a seed gives the same crops on
either path.  Pooled features agree with the numpy path to fp32 rounding; frame windows are pure indexing
and agree exactly.

Which path runs is :func:`device_bank`'s choice: the device path when the device is not ``cpu`` and the
arrays fit its free memory, the numpy path otherwise.  ``MMMOS_DEVICE_BANK=1`` forces the torch path (also on
``cpu``, for tests), ``MMMOS_DEVICE_BANK=0`` forces the numpy path.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from mmmos.cache_store import frame_range

log = logging.getLogger("mmmos.sweep")
_HEADROOM = 0.5  # leave half the free memory for the head, its optimiser and activations


class TorchBank:
    """The arrays of ``bank`` on ``device``; everything else (starts, lengths, ids) is delegated to ``bank``."""

    on_device = True

    def __init__(self, bank, device: str):
        import torch

        self.bank, self.device, self._torch = bank, torch.device(device), torch
        self.full = torch.from_numpy(bank.full).to(self.device)
        # prefix sums of every long clip and encoder, one flat (rows, 1 + max dim) tensor is wasteful with
        # different dims, so one flat tensor per encoder plus the row where each clip's prefix starts
        n_enc = len(bank.specs)
        self._pre_row = np.full((len(bank), n_enc), -1, np.int64)
        flat = []
        for j in range(n_enc):
            parts, row = [], 0
            for i, pre in sorted(bank._prefix.items()):
                self._pre_row[i, j] = row
                parts.append(pre[j])
                row += len(pre[j])
            flat.append(torch.from_numpy(np.concatenate(parts)).to(self.device) if parts else None)
        self._prefix = flat
        self.grid = torch.from_numpy(bank.grid).to(self.device) if bank.grid is not None else None

    def __getattr__(self, name):  # clip_ids, dim, grid_rate, random_starts, ... come from the host bank
        return getattr(self.bank, name)

    def __len__(self) -> int:
        return len(self.bank)

    def pooled(self, idx: np.ndarray, starts: np.ndarray | None = None):
        """As ``FeatureBank.pooled``, a float32 tensor on the device."""
        torch, bank = self._torch, self.bank
        out = self.full[torch.from_numpy(np.asarray(idx, np.int64)).to(self.device)]
        if starts is None:
            return out
        rows = [b for b, i in enumerate(idx) if self._pre_row[i, 0] >= 0]
        if not rows:
            return out
        col = 0
        for j, s in enumerate(bank.specs):
            ae = np.array([frame_range(float(starts[b]), bank.crop, s.frame_rate, int(bank._nframes[idx[b], j]))
                           for b in rows], np.int64)
            base = self._pre_row[np.asarray(idx)[rows], j]
            a = torch.from_numpy(base + ae[:, 0]).to(self.device)
            e = torch.from_numpy(base + ae[:, 1]).to(self.device)
            n = torch.from_numpy((ae[:, 1] - ae[:, 0]).astype(np.float32)).to(self.device)[:, None]
            p = self._prefix[j]
            m = (p[e] - p[a]) / n
            m = m / torch.clamp(torch.linalg.vector_norm(m, dim=-1, keepdim=True), min=1e-8)
            out[torch.as_tensor(rows, device=self.device), col : col + s.dim] = m
            col += s.dim
        return out

    def frame_batch(self, idx: np.ndarray, starts: np.ndarray | None = None):
        """As ``FeatureBank.frame_batch``: padded float32 frames ``(B, T, D)`` on the device, lengths on the host."""
        torch, bank = self._torch, self.bank
        if self.grid is None:
            raise RuntimeError("FeatureBank built without frames=True")
        offs, lens = np.zeros(len(idx), np.int64), np.zeros(len(idx), np.int64)
        for b, i in enumerate(idx):
            k = int(bank.grid_offsets[i + 1] - bank.grid_offsets[i])
            a, e = (0, k) if starts is None else frame_range(float(starts[b]), bank.crop, bank.grid_rate, k)
            offs[b], lens[b] = int(bank.grid_offsets[i]) + a, e - a
        t = int(lens.max())
        steps = np.arange(t)[None, :]
        valid = steps < lens[:, None]
        gather = np.where(valid, offs[:, None] + steps, 0)  # padding reads row 0, then is zeroed
        x = self.grid[torch.from_numpy(gather).to(self.device)].float()
        x = x * torch.from_numpy(valid).to(self.device)[..., None]
        return x, lens

    def nbytes(self) -> int:
        return nbytes(self.bank)


def nbytes(bank) -> int:
    """Bytes the device copy of ``bank`` takes."""
    pre = sum(p.nbytes for pres in bank._prefix.values() for p in pres)
    return int(bank.full.nbytes + pre + (bank.grid.nbytes if bank.grid is not None else 0))


def _free_bytes(device: str) -> int | None:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    return None  # host memory: the arrays are already there


def device_bank(bank, device: str, force: bool | None = None, budget: int | None = None):
    """``bank`` as :class:`TorchBank` on ``device``, or ``bank`` itself (the numpy path).

    ``force`` (default: ``MMMOS_DEVICE_BANK``, 1/0) overrides the choice by device; ``budget`` (bytes, default:
    the device's free memory) is the memory guard: a bank larger than half of it stays on the host, said in one
    log line.  One upload per bank and device: the bank is memoised per process, and so is its device copy."""
    if force is None and os.environ.get("MMMOS_DEVICE_BANK", "") in ("0", "1"):
        force = os.environ["MMMOS_DEVICE_BANK"] == "1"
    if getattr(bank, "on_device", False):
        return bank
    use = force if force is not None else str(device) != "cpu"
    if not use:
        return bank
    cache = bank.__dict__.setdefault("_device_copies", {})
    if str(device) in cache:
        return cache[str(device)]
    need = nbytes(bank)
    free = budget if budget is not None else _free_bytes(device)
    if free is not None and need > free * _HEADROOM:
        log.warning("sweep: features (%.1f MiB) do not fit %s's free memory (%.1f MiB, half kept for training); "
                    "crops and pooling stay on the host", need / 2**20, device, free / 2**20)
        return bank
    cache[str(device)] = TorchBank(bank, device)
    return cache[str(device)]
