"""Track 1 inputs from the cache for training: which clips are usable, and their bank.

The bank itself (:class:`Track1Bank`, :class:`Window`: frames and prompt tokens, padding, masks and the window
plan) lives in :mod:`mmmos.cache_store.windows`, shared with prediction; it is re-exported here under its old
names.
"""
from __future__ import annotations

from mmmos.cache_store.windows import Track1Bank, Window  # noqa: F401 - re-exported: the sweep's old names
from mmmos.core.prompts import prompt_key


def select_track1_clips(labels, audio_group, text_group, axes, need_labels: bool, notes: list[str],
                        allow_missing: bool = False, dropped: dict[str, list[str]] | None = None):
    """The rows of label set ``labels`` usable for Track 1: audio cached, a prompt whose tokens are cached,
    (with ``need_labels``) every axis labelled.

    A listed clip without its audio frames, without a prompt, or whose prompt's tokens the cache lacks (missing or
    known damaged) raises :class:`~mmmos.sweep.labels.MissingClipsError` naming it, as for Track 2; with
    ``allow_missing`` it is left out, noted and added to ``dropped[set name]``."""
    import polars as pl

    from ..labels import ALLOW_OPTION, lost_clips

    df = labels.table.unique(subset="clip_id", keep="first", maintain_order=True)
    if df.height < labels.table.height:
        notes.append(f"{labels.name}: {labels.table.height - df.height} rows repeat an earlier clip id and are "
                     f"ignored (the first row of each id is used)")
    if "prompt" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("prompt"))
    ok = [audio_group.is_valid(c) and p is not None and text_group.is_valid(prompt_key(p))
          for c, p in zip(df["clip_id"].to_list(), df["prompt"].to_list())]
    lost = [c for c, good in zip(df["clip_id"].to_list(), ok) if not good]
    if lost:
        names = [audio_group.info.name, text_group.info.name]
        if not allow_missing:
            raise lost_clips(labels.name, lost, df.height, names, " (audio frames, or a prompt and its tokens)")
        notes.append(f"{labels.name}: {len(lost)} of {df.height} clips lack cached {names[0]} frames or a prompt with "
                     f"cached {names[1]} tokens and are left out ({ALLOW_OPTION}): {', '.join(lost)}")
        if dropped is not None:
            dropped.setdefault(labels.name, []).extend(lost)
    df = df.filter(pl.Series(ok, dtype=pl.Boolean))
    if need_labels:
        good = df.select(pl.all_horizontal([pl.col(a).is_not_null() & pl.col(a).is_not_nan() for a in axes])).to_series()
        if int((~good).sum()):
            notes.append(f"{labels.name}: {int((~good).sum())} clips with a missing/NaN label are excluded from training")
        df = df.filter(good)
    return df


def load_bank(ls, store, cfg, task, need_labels: bool, notes: list[str], dropped: dict[str, list[str]] | None = None):
    """``(rows, Track1Bank)`` of label set ``ls`` for configuration ``cfg`` (its audio and text encoders).  Clips
    missing from the cache, or found damaged while their frames are read, fail the configuration naming them
    unless ``cfg.allow_missing_clips`` (then they are left out, noted and added to ``dropped``)."""
    import polars as pl

    from mmmos.cache_store import DamagedClipError

    from ..labels import ALLOW_OPTION, lost_clips

    allow = bool(getattr(cfg, "allow_missing_clips", False))
    audio, text = store.group(cfg.audio_encoder), store.group(cfg.text_encoder)
    df = select_track1_clips(ls, audio, text, task.axes, need_labels, notes, allow, dropped)
    try:
        return df, Track1Bank(audio, text, df["clip_id"].to_list(), df["prompt"].to_list(), cfg.crop_seconds)
    except DamagedClipError as e:
        first = e.damage
    bad = [c for c, p in zip(df["clip_id"].to_list(), df["prompt"].to_list())
           if not (_reads(audio, c) and _reads(text, prompt_key(p)))]
    if not bad:
        raise DamagedClipError(first)
    if not allow:
        raise lost_clips(ls.name, bad, df.height, [audio.info.name, text.info.name],
                         f" (damaged cache entry found on read, first in {first.file}: {first.reason})")
    notes.append(f"{ls.name}: {len(bad)} clips are damaged in the cache and are left out ({ALLOW_OPTION}): "
                 f"{', '.join(bad)}")
    if dropped is not None:
        dropped.setdefault(ls.name, []).extend(bad)
    df = df.filter(~pl.col("clip_id").is_in(bad))
    return df, Track1Bank(audio, text, df["clip_id"].to_list(), df["prompt"].to_list(), cfg.crop_seconds)


def _reads(group, key: str) -> bool:
    """Whether ``key``'s frames read back intact (a failed read also records the damage for `mmmos extract`)."""
    from mmmos.cache_store import DamagedClipError

    try:
        group.read(key)
        return True
    except DamagedClipError:
        return False
