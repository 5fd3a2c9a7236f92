"""A small synthetic frame cache whose frames carry the labels (for sweep/ensemble tests).

Two encoders at different rates (50 Hz x 12-d, 6.25 Hz x 6-d).  Each clip has a latent
vector z of 16 values; the labels are 5 + 1.5 z[:4] (+ small noise), and every frame is
``W_e z + noise``, so a working pipeline learns the labels and a shuffled one does not
(the 12 nuisance dimensions keep a random projection from matching the labels by chance).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from mmmos.cache_store import open_store
from mmmos.core.tasks import get_task

ENCS = {"encA": (50.0, 12), "encB": (6.25, 6)}


def _ident(name, rate, dim):
    return {"name": name, "weights": None, "sha256": None, "sample_rate": 16000, "frame_rate": rate, "dim": dim,
            "config": {"synthetic": True}, "code_version": "1"}


def make_synthetic(root: Path, n_train=160, n_dev=48, n_pam=40, seed=0, missing_label=0):
    axes = get_task().axes
    rng = np.random.default_rng(seed)
    root = Path(root)
    store = open_store(root / "cache.zarr", create=True)
    W = {e: rng.standard_normal((16, d)) for e, (_, d) in ENCS.items()}
    writers = {e: store.writer(_ident(e, r, d)) for e, (r, d) in ENCS.items()}
    sets = {}
    for split, n, systems in (("train", n_train, 6), ("dev", n_dev, 6), ("pam_dev", n_pam, 4)):
        rows = []
        for i in range(n):
            cid = f"{split}/clip{i:04d}.wav"
            z = rng.standard_normal(16)
            dur = float(rng.choice([4.0, 10.0, 17.3]))
            for e, (rate, dim) in ENCS.items():
                t = max(1, int(dur * rate))
                # the label signal lives in the first 10 s only: crops beyond matter
                frames = np.tile(z @ W[e], (t, 1)) + 0.3 * rng.standard_normal((t, dim))
                writers[e].write(cid, frames.astype(np.float32), f"/audio/{cid}", dur)
            y = np.clip(5 + 1.5 * z[:4] + 0.2 * rng.standard_normal(4), 0, 10)
            rows.append({"clip_id": cid, "path": f"/audio/{cid}", "system": f"{split}_sys{i % systems}",
                         "domain": ["speech", "music", "sound"][i % 3], "split": split,
                         **dict(zip(axes, y.tolist()))})
        if split == "train" and missing_label:
            for r in rows[:missing_label]:
                r[axes[2]] = None
        df = pl.DataFrame(rows)
        df.write_csv(root / f"{split}.csv")
        sets[split] = root / f"{split}.csv"
    for w in writers.values():
        w.close()
    return root / "cache.zarr", sets
