"""Label sets (train, dev, evaluation lists) and choosing the clips a configuration can use from the cache."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mmmos.core.errors import UserError
from mmmos.core.sources import file_sha256


class LabelSetError(UserError):
    """A label set name or file the sweep cannot use."""


class MissingClipsError(UserError):
    """Listed clips that are absent from or damaged in the cache: the configuration fails (exit 3) naming them,
    unless ``--allow-missing-clips`` accepts the loss - a sweep never trains on fewer clips than asked quietly."""


ALLOW_OPTION = "--allow-missing-clips"


def _ids(ids: list[str], n: int = 5) -> str:
    return ", ".join(map(repr, ids[:n])) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def lost_clips(set_name: str, lost: list[str], total: int, encoders: list[str], why: str = "") -> MissingClipsError:
    """The one-line error for clips of ``set_name`` the cache cannot give."""
    return MissingClipsError(
        f"{set_name}: {len(lost)} of {total} listed clips are missing from or damaged in the {'+'.join(encoders)} "
        f"cache{why}: {_ids(lost)}; `mmmos extract` over the same manifest (re-)extracts them, or pass "
        f"{ALLOW_OPTION} to train without them")


@dataclass
class LabelSet:
    name: str
    path: str
    table: "object"  # polars DataFrame from mmmos.core.manifests.load_manifest
    sha256: str = ""  # content of the label file (what the run identity records)


def content_sha256(path: str | os.PathLike) -> str:
    """sha256 of a label file's bytes; for a folder list, of its sorted file names, sizes and mtimes."""
    p = Path(path)
    if not p.is_dir():
        return file_sha256(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(p).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def check_set_name(name: str) -> str:
    """A set name becomes a file name (``predictions/<name>.parquet``): refuse one that leaves the run folder."""
    bad = (not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name
           or os.path.isabs(name) or "\0" in name)
    if bad:
        raise LabelSetError(f"set name {name!r} cannot be a file name inside the run folder "
                            f"(no '/', '\\', leading '.' or absolute path); use e.g. pam_dev=PATH")
    return name


def load_labels(name: str, path: str | os.PathLike, data_root: str | None = None,
                task: str | None = None) -> LabelSet:
    """Read the label list at ``path`` as set ``name`` of ``task`` (None: the default task), with its content hash."""
    from mmmos.core.manifests import load_manifest

    check_set_name(name)
    table = load_manifest(path, data_root=data_root, task=task)
    return LabelSet(name, str(path), table, content_sha256(path))


def check_labels(ls: LabelSet, axes: tuple[str, ...], need_labels: bool = True) -> None:
    """One line per unusable list, before anything is trained: no rows, or (for training and dev lists) an axis
    without a single label - each named, instead of all ending in "0 labelled training clips"."""
    import polars as pl

    t = ls.table
    if t.height == 0:
        raise LabelSetError(f"{ls.name}: {ls.path} lists no clips (only a header, or empty)")
    if not need_labels:
        return
    empty = [a for a in axes if a not in t.columns or t.select(pl.col(a).is_not_null() & ~pl.col(a).is_nan())
             .to_series().sum() == 0]
    if len(empty) == len(axes):
        raise LabelSetError(f"{ls.name}: {ls.path} has no labels (columns {', '.join(axes)} absent or empty); "
                            f"a {ls.name} list needs them")
    if empty:
        raise LabelSetError(f"{ls.name}: {ls.path} has no {', '.join(empty)} labels (column absent or empty)")


def select_clips(labels: LabelSet, store, encoders: list[str], axes: tuple[str, ...], need_labels: bool,
                 log: list[str], allow_missing: bool = False, dropped: dict[str, list[str]] | None = None):
    """Clip ids of a label set present (and not known damaged) in every encoder group.

    A listed clip the cache cannot give raises :class:`MissingClipsError` naming it; with ``allow_missing`` it is
    left out, logged and added to ``dropped[set name]``.  Returns ``(groups, table)``: the encoder groups in
    feature order and the usable rows (first row per id; with ``need_labels`` only rows with every axis labelled)."""
    import polars as pl

    groups = [store.group(e) for e in encoders]
    df = labels.table.unique(subset="clip_id", keep="first", maintain_order=True)
    if df.height < labels.table.height:
        log.append(f"{labels.name}: {labels.table.height - df.height} rows repeat an earlier clip id and are "
                   f"ignored (the first row of each id is used)")
    ids = df["clip_id"].to_list()
    # is_valid: listed by the scan (metadata intact), not recorded damaged, every data file present (no decoding)
    in_cache = [c for c in ids if all(g.is_valid(c) for g in groups)]
    if len(in_cache) < len(ids):
        kept = set(in_cache)
        lost = [c for c in ids if c not in kept]
        if not allow_missing:
            raise lost_clips(labels.name, lost, len(ids), encoders)
        log.append(f"{labels.name}: {len(lost)} of {len(ids)} clips are missing from or damaged in the cache for "
                   f"{'+'.join(encoders)} and are left out ({ALLOW_OPTION}): {', '.join(lost)}")
        if dropped is not None:
            dropped.setdefault(labels.name, []).extend(lost)
    df = df.filter(pl.col("clip_id").is_in(in_cache))
    if need_labels:
        missing = [a for a in axes if a not in df.columns]
        if missing:
            raise LabelSetError(f"{labels.path}: no label column for {', '.join(missing)}")
        ok = df.select(pl.all_horizontal([pl.col(a).is_not_null() & pl.col(a).is_not_nan() for a in axes])).to_series()
        n_bad = int((~ok).sum())
        if n_bad:
            log.append(f"{labels.name}: {n_bad} clips with a missing/NaN label are excluded from training")
        df = df.filter(ok)
    return groups, df
