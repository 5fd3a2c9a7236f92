"""``mmmos cache STORE [--verify]``: what a cache holds and, with ``--verify``, which clips are damaged.

Exit status: 0, or 3 when ``--verify`` finds damage (each damaged clip printed with encoder, clip id and file;
``mmmos extract`` over the same manifest re-extracts them).  A missing or foreign store is a ``UserError``.
"""
from __future__ import annotations

import argparse

from mmmos.core.errors import EXIT_OK, EXIT_PARTIAL

DESCRIPTION = ("List the encoders and clips a cache holds. With --verify, read every clip and check its "
               "checksums; damaged clips are listed (exit status 3) and the next `mmmos extract` repairs them.")


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("store", help="cache folder")
    c.add_argument("--verify", action="store_true", help="read every clip and list damaged ones (exit 3 if any)")


def policy_lines(clips) -> list[str]:
    """How a group's clips were computed (device, batch size, threads, precision), one line per policy with its
    clip count; clips written before the policy was recorded are counted as such."""
    counts: dict[str, int] = {}
    for c in clips:
        p = c.computed
        key = ("computed on {device}, batch {batch_size}, {threads} thread(s), {precision}".format(
            **{k: p.get(k, "?") for k in ("device", "batch_size", "threads", "precision")})
            if p else "computed how: not recorded (written by an older mmmos)")
        counts[key] = counts.get(key, 0) + 1
    return [f"{k}: {n} clips" for k, n in sorted(counts.items())]


def run_cli(a: argparse.Namespace) -> int:
    from mmmos.cache_store import open_store

    st = open_store(a.store)
    print(f"{a.store}: {st.backend} cache")
    damage = {}
    for info in st.encoders():
        g = st.group(info.key)
        frames = sum(c.n_frames for c in g.index.values())
        dur = sum(c.duration for c in g.index.values())
        unverified = sum(c.source is None for c in g.index.values())
        print(f"  {info.key:28s} {len(g):6d} clips  {dur:9.1f} s  {frames:9d} frames  dim {info.dim}  "
              f"{info.frame_rate:g} Hz  {info.dtype}  sha256 {str(info.identity.get('sha256'))[:12]}"
              + (f"  ({unverified} without recorded source)" if unverified else ""))
        for line in policy_lines(g.index.values()):
            print(f"    {line}")
        if a.verify:
            damage[info.key] = g.verify()
    for d in st.damaged_encoders():  # one encoder's damaged record: that encoder only, named
        print(f"  {d.encoder:28s} DAMAGED  {d.file}: {d.reason} (`mmmos extract --encoders "
              f"{d.encoder.rsplit('-', 1)[0]}` over the same manifest rebuilds it)")
        damage[d.encoder] = [d]
    if not a.verify:
        return EXIT_OK
    bad = [d for ds in damage.values() for d in ds]
    if not bad:
        print(f"verify: all clips of {len(damage)} encoder(s) read back intact")
        return EXIT_OK
    print(f"verify: {len(bad)} damaged entries (run `mmmos extract` over the same manifests to repair):")
    for d in bad:
        who = d.clip_id if d.clip_id is not None else f"<unknown id, key {d.key}>" if d.key else "<unknown clips>"
        print(f"  {d.encoder}\t{who}\t{d.file}\t{d.reason}")
    return EXIT_PARTIAL


__all__ = ["DESCRIPTION", "add_arguments", "run_cli"]
