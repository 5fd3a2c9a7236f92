"""Reading a finished sweep through :mod:`mmmos.core.rundir`: configurations, metrics, predictions, labels.

Only configurations with a ``DONE`` marker are read; each prediction file once. Labels per set come from the
run record (``run.json`` "labels": set -> manifest) or from ``truth`` overrides; the axes from the run's task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from mmmos.core.errors import UserError
from mmmos.core.rundir import ConfigDir, RunDir, RunRecord
from mmmos.core.tasks import Task, get_task
from mmmos.core.truth import read_truth

from .errors import EnsembleError, EnsembleFileMissing, one_line
from .stack_features import N_BINS, bin_columns, distribution_axes

METRIC_COLUMNS: tuple[str, ...] = ("set", "level", "axis", "metric", "value", "n")


@dataclass
class SetPredictions:
    """All configurations' predictions for one set, aligned on the union of their clips.

    ``values[c, i, k]`` is configuration c's score for clip i on axis k (NaN where the configuration
    has no prediction for the clip, ``present[c, i]`` False); ``has_set[c]`` says whether
    configuration c wrote a prediction file for this set at all.
    """

    name: str
    clip_ids: list[str]
    system: list[str | None]
    domain: list[str | None]
    values: np.ndarray
    present: np.ndarray
    has_set: np.ndarray
    #: ``dists[c, i, k, b]``: configuration c's saved probability of bin b on axis k (``<axis>_p00..p19``
    #: columns), None when no configuration saved distributions; ``has_dist[c]`` says which did
    dists: np.ndarray | None = None
    has_dist: np.ndarray | None = None


@dataclass
class Sweep:
    """A finished sweep: configurations, their recorded metrics and predictions, and labels per set."""

    run_dir: Path
    configs: list[str]
    info: dict[str, dict]
    metrics: pl.DataFrame  # config, set, level, axis, metric, value, n
    sets: list[str]
    predictions: dict[str, SetPredictions]
    truth: dict[str, pl.DataFrame] = field(default_factory=dict)
    truth_paths: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    task: Task = field(default_factory=get_task)

    def index(self, name: str) -> int:
        return self.configs.index(name)


def _user_error(e: UserError) -> EnsembleError:
    return EnsembleError(one_line(e))


def read_run_record(rd: RunDir) -> RunRecord | None:
    """The run's record, or None without ``run.json``; a damaged or foreign one is an error naming it."""
    try:
        return rd.read_run()
    except UserError as e:
        raise _user_error(e) from None
    except TypeError:  # fields missing: not written by `mmmos sweep`
        raise EnsembleError(f"{rd.run_file}: not a run record (fields missing)") from None


def read_prediction_file(cd: ConfigDir, set_name: str, task: Task) -> pl.DataFrame:
    """One configuration's predictions for one set, checked: columns, ids unique, scores finite."""
    path = cd.predictions_path(set_name)
    try:
        df = cd.read_predictions(set_name)
    except UserError as e:
        raise _user_error(e) from None
    axes = task.axes
    missing = [c for c in ("clip_id", *axes) if c not in df.columns]
    if missing:
        raise EnsembleError(f"{path}: missing columns {missing} (have {df.columns})")
    dist_cols = _distribution_columns(df.columns, path, task)
    df = df.select(
        pl.col("clip_id").cast(pl.String),
        (pl.col("system").cast(pl.String) if "system" in df.columns else pl.lit(None, pl.String)).alias("system"),
        (pl.col("domain").cast(pl.String) if "domain" in df.columns else pl.lit(None, pl.String)).alias("domain"),
        *[pl.col(a).cast(pl.Float64) for a in axes],
        *[pl.col(c).cast(pl.Float64) for c in dist_cols],
    )
    if df["clip_id"].null_count():
        raise EnsembleError(f"{path}: {df['clip_id'].null_count()} rows have no clip_id")
    dup = df["clip_id"].filter(df["clip_id"].is_duplicated())
    if dup.len():
        raise EnsembleError(f"{path}: clip id {dup[0]!r} occurs more than once")
    vals = df.select(axes).to_numpy()
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any():
        raise EnsembleError(f"{path}: {int(bad.sum())} clips have a missing/non-finite score "
                            f"(first: {df['clip_id'][int(np.argmax(bad))]!r})")
    if dist_cols:
        _check_distributions(df, dist_cols, path)
    return df


def _distribution_columns(columns: list[str], path: Path, task: Task) -> list[str]:
    """The ``<axis>_p00..p19`` columns of a member that saved distributions (all axes, all bins) or []."""
    found = {a: b for a, b in distribution_axes(columns).items() if a in task.axes}
    if not found:
        return []
    want = list(range(N_BINS))
    bad = [a for a in task.axes if found.get(a) != want]
    if bad:
        raise EnsembleError(f"{path}: distribution columns must be {bin_columns(bad[0])[0]}..{bin_columns(bad[0])[-1]} "
                            f"for every axis; axis {bad[0]} has bins {found.get(bad[0], [])}")
    return [c for a in task.axes for c in bin_columns(a)]


def _check_distributions(df: pl.DataFrame, cols: list[str], path: Path) -> None:
    p = df.select(cols).to_numpy().reshape(df.height, -1, N_BINS)
    if not np.isfinite(p).all() or (p < 0).any():
        raise EnsembleError(f"{path}: distribution columns hold negative or non-finite probabilities")
    if not np.allclose(p.sum(axis=2), 1.0, atol=1e-3):
        raise EnsembleError(f"{path}: distribution columns do not sum to 1 per axis")


def read_metrics_file(cd: ConfigDir) -> pl.DataFrame:
    """One configuration's ``metrics.parquet`` with a ``config`` column; damaged/foreign files are errors."""
    try:
        df = cd.read_metrics()
    except UserError as e:
        raise _user_error(e) from None
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise EnsembleError(f"{cd.metrics_path}: missing columns {missing} (have {df.columns})")
    return df.with_columns(pl.lit(cd.name).alias("config"))


def align(name: str, frames: list[pl.DataFrame | None], axes: tuple[str, ...]) -> SetPredictions:
    """Stack per-configuration predictions on the union of their clip ids (first-seen order)."""
    present_frames = [f for f in frames if f is not None]
    union = (pl.concat([f.select("clip_id", "system", "domain") for f in present_frames])
             .unique(subset="clip_id", keep="first", maintain_order=True))
    pos = union.select("clip_id").with_row_index("pos")
    n_cfg, n_clip = len(frames), union.height
    values = np.full((n_cfg, n_clip, len(axes)), np.nan)
    present = np.zeros((n_cfg, n_clip), dtype=bool)
    rows_of: dict[int, np.ndarray] = {}
    for c, f in enumerate(frames):
        if f is None:
            continue
        rows = rows_of[c] = f.join(pos, on="clip_id", how="left", maintain_order="left")["pos"].to_numpy()
        values[c, rows] = f.select(axes).to_numpy()
        present[c, rows] = True
    dists, has_dist = _align_distributions(frames, rows_of, n_clip, axes)
    return SetPredictions(name, union["clip_id"].to_list(), union["system"].to_list(), union["domain"].to_list(),
                          values, present, np.array([f is not None for f in frames], dtype=bool), dists, has_dist)


def _align_distributions(frames: list[pl.DataFrame | None], rows_of: dict[int, np.ndarray], n_clip: int,
                         axes: tuple[str, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
    cols = [c for a in axes for c in bin_columns(a)]
    has = np.array([f is not None and cols[0] in f.columns for f in frames], dtype=bool)
    if not has.any():
        return None, None
    dists = np.full((len(frames), n_clip, len(axes), N_BINS), np.nan)
    for c in np.flatnonzero(has):
        f = frames[c]
        dists[c, rows_of[c]] = f.select(cols).to_numpy().reshape(f.height, len(axes), N_BINS)
    return dists, has


def member_columns(sweep: "Sweep", members: list[str], set_name: str) -> np.ndarray:
    """Positions (in ``sweep.predictions[set_name]``) of the clips the members predicted, checked.

    Every member must have a prediction file for the set and a prediction for every clip any member
    predicted (combining over fewer members would be a different model); errors name the member and clip.
    """
    if set_name not in sweep.predictions:
        raise EnsembleError(f"no predictions for set {set_name!r}; sets: {', '.join(sweep.sets) or 'none'}")
    sp = sweep.predictions[set_name]
    idx = np.array([sweep.index(m) for m in members])
    no_file = [m for m, i in zip(members, idx) if not sp.has_set[i]]
    if no_file:
        raise EnsembleError(f"set {set_name!r}: member(s) {', '.join(no_file)} have no predictions file "
                            f"({sweep.run_dir / 'configs' / no_file[0] / 'predictions' / (set_name + '.parquet')})")
    pres = sp.present[idx]
    used = pres.any(axis=0)
    for row, m in zip(pres, members):
        gap = np.flatnonzero(used & ~row)
        if gap.size:
            first = ", ".join(repr(sp.clip_ids[i]) for i in gap[:3])
            raise EnsembleError(f"set {set_name!r}: member {m} has no prediction for {gap.size} clip(s) the other "
                                f"members predicted (first: {first}); ensemble only configurations with the same "
                                "clips")
    return np.flatnonzero(used)


def load_truth(set_name: str, path: str, task: Task) -> pl.DataFrame:
    """Labels of one set; a missing or malformed file is an error naming the set and the file."""
    if not Path(path).exists():
        raise EnsembleFileMissing(f"labels for set {set_name!r}: {path} does not exist "
                                  f"(give the file with --truth {set_name}=PATH)")
    try:
        return read_truth(path, task=task)
    except (UserError, ValueError) as e:
        raise EnsembleError(f"labels for set {set_name!r} ({path}): {one_line(e)}") from None


def _finished(rd: RunDir, configs: list[str] | None, notes: list[str]) -> list[str]:
    if not rd.configs_path.is_dir():
        raise EnsembleFileMissing(f"{rd.path}: not a sweep directory (no configs/ folder)")
    done, unfinished = rd.finished(), rd.unfinished()
    if unfinished:
        notes.append(f"left out {len(unfinished)} unfinished configurations (no DONE): {', '.join(unfinished)}")
    if configs is not None:
        bad = [c for c in configs if c not in done]
        if bad:
            raise EnsembleError(f"unknown or unfinished configuration(s) {', '.join(bad)}; "
                                f"finished: {', '.join(done) or 'none'}")
        done = [c for c in done if c in set(configs)]
    if not done:
        raise EnsembleFileMissing(f"{rd.configs_path}: no finished configurations (none has a DONE file)")
    return done


def _read_configs(rd: RunDir, done: list[str], task: Task):
    info, metric_tables, per_set = {}, [], {}
    for c, name in enumerate(done):
        cd = rd.config(name)
        for f in (cd.config_path, cd.metrics_path):
            if not f.is_file():
                raise EnsembleFileMissing(f"{f}: missing although {cd.path / 'DONE'} exists")
        try:
            info[name] = cd.read_config().config
        except UserError as e:
            raise _user_error(e) from None
        metric_tables.append(read_metrics_file(cd))
        for s in cd.prediction_sets():
            per_set.setdefault(s, [None] * len(done))[c] = read_prediction_file(cd, s, task)
    metrics = pl.concat(metric_tables, how="vertical_relaxed").select("config", *METRIC_COLUMNS)
    return info, metrics, per_set


def load_sweep(run_dir: str | Path, truth: dict[str, str] | None = None,
               configs: list[str] | None = None) -> Sweep:
    """Read every finished configuration (``DONE``) of a sweep: config, metrics, predictions.

    Labels come from ``run.json`` ("labels": set -> manifest), overridden per set by ``truth``; a set
    without labels keeps its predictions but gets no metrics. ``configs`` restricts the sweep to those names.
    """
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise EnsembleFileMissing(f"{rd.path}: no such run folder")
    notes: list[str] = []
    done = _finished(rd, configs, notes)
    record = read_run_record(rd)
    task = get_task(record.task if record else None)
    info, metrics, per_set = _read_configs(rd, done, task)

    label_paths = dict(record.labels if record else {})
    order = [s for s in label_paths if s in per_set] + sorted(s for s in per_set if s not in label_paths)
    predictions = {s: align(s, per_set[s], task.axes) for s in order}
    for s, sp in predictions.items():
        lacking = [done[c] for c in np.flatnonzero(~sp.has_set)]
        if lacking:
            notes.append(f"set {s}: no predictions from {', '.join(lacking)}")

    truth_paths = {s: label_paths[s] for s in order if s in label_paths}
    for s, p in (truth or {}).items():
        if s not in predictions:
            raise EnsembleError(f"--truth {s}=...: no configuration has predictions for set {s!r}; "
                                f"sets: {', '.join(order) or 'none'}")
        truth_paths[s] = str(p)
    truth_tables = {s: load_truth(s, p, task) for s, p in truth_paths.items()}
    for s in order:
        if s not in truth_tables:
            notes.append(f"set {s}: no labels (not in run.json, no --truth {s}=PATH): predictions only")
    return Sweep(rd.path, done, info, metrics, order, predictions, truth_tables, truth_paths, notes, task)


__all__ = ["SetPredictions", "Sweep", "align", "load_sweep", "load_truth", "member_columns", "read_metrics_file",
           "read_prediction_file", "read_run_record"]
