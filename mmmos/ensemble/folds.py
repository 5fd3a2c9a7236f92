"""Cross-validation folds grouped by system: one system's clips never sit on both sides of a fold."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_ids(systems: Sequence[str | None], clip_ids: Sequence[str]) -> list[str]:
    """Each clip's fold group: its system id, or (no system) the clip itself, which cannot leak a system."""
    return [f"system:{s}" if s is not None else f"clip:{c}" for s, c in zip(systems, clip_ids)]


def grouped_folds(groups: Sequence[str], k: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..k'-1) per clip, k' = min(k, number of groups); every group lies in one fold.

    Groups are shuffled with ``seed`` and dealt, largest first, to the fold with the fewest clips so far
    (ties: lowest fold number), which balances fold sizes; the result depends only on the groups and the seed.
    """
    if k < 2:
        raise ValueError(f"folds must be >= 2, got {k}")
    names, inverse, counts = np.unique(np.asarray(list(groups), dtype=object).astype(str), return_inverse=True,
                                       return_counts=True)
    if len(names) < 2:
        raise ValueError(f"grouped folds need at least 2 groups (systems), got {len(names)}")
    k = min(k, len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of_group = np.empty(len(names), dtype=np.int64)
    size = np.zeros(k, dtype=np.int64)
    for g in order:
        f = int(np.argmin(size))
        fold_of_group[g] = f
        size[f] += counts[g]
    return fold_of_group[inverse]


__all__ = ["group_ids", "grouped_folds"]
