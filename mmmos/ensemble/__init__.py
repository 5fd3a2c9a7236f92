"""Stage 3: ensembles of trained configurations, chosen by their ranking on Dev and PAM dev.

Reads a sweep directory (see ``sweep.py`` for its layout); it never retrains and never opens the
frame cache. An ensemble's prediction is the mean of its members' 0-10 predictions, clip by clip.

Strategies (the paper's Table IV):

* ``submitted``   configurations in both the top-N on the dev set and the top-N on the PAM set
                  (N = ``--top``, 12 in the paper)
* ``all``         every finished configuration
* ``pam-top-K``   the K best on the PAM set (``pam-top-8``, ``pam-top-4``, ``pam-top-1`` = best single)
* ``dev-top-K``   the K best on the dev set
* ``custom``      an explicit member list (``--members a,b,c``)

Ranking uses the metrics each configuration recorded in ``metrics.parquet`` (default: utterance-level
SRCC of the composite = mean of the four axes). Higher is better, except MSE (lower is better).
Ties are broken deterministically: by the metric (best first), then by configuration name
(alphabetical); a NaN metric ranks last. A strategy that needs a set the sweep does not have (no
PAM set), or more configurations than there are, is reported as *unavailable* with the reason.

Outputs (``<run>/ensembles/`` unless ``--out``)::

    table_iv.parquet, table_iv.md   rows = strategies (with member count); per evaluation set the
                                    composite MSE/LCC/SRCC/KTAU at utterance and system level
    metrics.parquet                 every metric: strategy, set, level, axis, metric, value, n
    predictions/<strategy>/<set>.parquet   clip_id, system, domain, PQ, PC, CE, CU (0-10)
    members.json                    ranking criterion, rankings, members per strategy, truth files, notes

Labels per set come from the manifests recorded in ``<run>/run.json`` or from ``--truth NAME=PATH``.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

AXES: tuple[str, ...] = ("PQ", "PC", "CE", "CU")
TABLE_METRICS: tuple[str, ...] = ("MSE", "LCC", "SRCC", "KTAU")
LEVELS: tuple[str, ...] = ("utterance", "system")
RANK_AXES: tuple[str, ...] = AXES + ("composite",)
LOWER_IS_BETTER = frozenset({"MSE"})
DEFAULT_STRATEGIES: tuple[str, ...] = ("submitted", "all", "pam-top-8", "pam-top-4", "dev-top-8", "pam-top-1")
CUSTOM = "custom"
_TOP_RE = re.compile(r"^(dev|pam)-top-(\d+)$")
_LEVEL_SHORT = {"utterance": "utt", "system": "sys"}


class StrategyUnavailable(LookupError):
    """A strategy cannot be evaluated on this sweep (e.g. it ranks on a set the sweep does not have)."""


# ---------------------------------------------------------------------------------------------
# loading a sweep
# ---------------------------------------------------------------------------------------------
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

    def index(self, name: str) -> int:
        return self.configs.index(name)


def _read_run_json(run: Path) -> dict:
    f = run / "run.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None


def _read_prediction_file(path: Path) -> pl.DataFrame:
    """One configuration's predictions for one set, checked: ids unique, scores finite."""
    df = pl.read_parquet(path)
    missing = [c for c in ("clip_id", *AXES) if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (have {df.columns})")
    df = df.select(
        pl.col("clip_id").cast(pl.String),
        (pl.col("system").cast(pl.String) if "system" in df.columns else pl.lit(None, pl.String)).alias("system"),
        (pl.col("domain").cast(pl.String) if "domain" in df.columns else pl.lit(None, pl.String)).alias("domain"),
        *[pl.col(a).cast(pl.Float64) for a in AXES],
    )
    if df["clip_id"].null_count():
        raise ValueError(f"{path}: {df['clip_id'].null_count()} rows have no clip_id")
    dup = df["clip_id"].filter(df["clip_id"].is_duplicated())
    if dup.len():
        raise ValueError(f"{path}: clip id {dup[0]!r} occurs more than once")
    vals = df.select(AXES).to_numpy()
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} clips have a missing/non-finite score "
                         f"(first: {df['clip_id'][int(np.argmax(bad))]!r})")
    return df


def _align(name: str, frames: list[pl.DataFrame | None]) -> SetPredictions:
    """Stack per-configuration predictions on the union of their clip ids (first-seen order)."""
    present_frames = [f for f in frames if f is not None]
    union = (pl.concat([f.select("clip_id", "system", "domain") for f in present_frames])
             .unique(subset="clip_id", keep="first", maintain_order=True))
    pos = union.select("clip_id").with_row_index("pos")
    n_cfg, n_clip = len(frames), union.height
    values = np.full((n_cfg, n_clip, len(AXES)), np.nan)
    present = np.zeros((n_cfg, n_clip), dtype=bool)
    for c, f in enumerate(frames):
        if f is None:
            continue
        rows = f.join(pos, on="clip_id", how="left", maintain_order="left")["pos"].to_numpy()
        values[c, rows] = f.select(AXES).to_numpy()
        present[c, rows] = True
    return SetPredictions(name, union["clip_id"].to_list(), union["system"].to_list(), union["domain"].to_list(),
                          values, present, np.array([f is not None for f in frames], dtype=bool))


def _load_truth(set_name: str, path: str) -> pl.DataFrame:
    from mmmos.app.scoring import read_truth

    if not Path(path).exists():
        raise FileNotFoundError(f"labels for set {set_name!r}: {path} does not exist "
                                f"(give the file with --truth {set_name}=PATH)")
    try:
        return read_truth(path)
    except ValueError as e:
        raise ValueError(f"labels for set {set_name!r} ({path}): {e}") from None


def load_sweep(run_dir: str | Path, truth: dict[str, str] | None = None,
               configs: list[str] | None = None) -> Sweep:
    """Read every finished configuration (``DONE``) of a sweep: config, metrics, predictions.

    Each prediction file is read once. Labels come from ``run.json`` ("labels": set -> manifest),
    overridden per set by ``truth``; a set without labels keeps its predictions but gets no metrics.
    ``configs`` restricts the sweep to those names.
    """
    run = Path(run_dir)
    cdir = run / "configs"
    if not cdir.is_dir():
        raise FileNotFoundError(f"{run}: not a sweep directory (no configs/ folder)")
    notes: list[str] = []
    all_dirs = sorted(p for p in cdir.iterdir() if p.is_dir())
    done = [p.name for p in all_dirs if (p / "DONE").is_file()]
    unfinished = [p.name for p in all_dirs if not (p / "DONE").is_file()]
    if unfinished:
        notes.append(f"left out {len(unfinished)} unfinished configurations (no DONE): {', '.join(unfinished)}")
    if configs is not None:
        bad = [c for c in configs if c not in done]
        if bad:
            raise ValueError(f"unknown or unfinished configuration(s) {', '.join(bad)}; "
                             f"finished: {', '.join(done) or 'none'}")
        done = [c for c in done if c in set(configs)]
    if not done:
        raise FileNotFoundError(f"{cdir}: no finished configurations (none has a DONE file)")

    info, metric_tables, per_set = {}, [], {}
    for c, name in enumerate(done):
        d = cdir / name
        cfg_file, met_file = d / "config.json", d / "metrics.parquet"
        for f in (cfg_file, met_file):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing although {d / 'DONE'} exists")
        info[name] = json.loads(cfg_file.read_text()).get("config", {})
        metric_tables.append(pl.read_parquet(met_file).with_columns(pl.lit(name).alias("config")))
        for p in sorted((d / "predictions").glob("*.parquet")):
            per_set.setdefault(p.stem, [None] * len(done))[c] = _read_prediction_file(p)
    metrics = pl.concat(metric_tables, how="vertical_relaxed").select(
        "config", "set", "level", "axis", "metric", "value", "n")

    run_info = _read_run_json(run)
    label_paths = dict(run_info.get("labels", {}))
    order = [s for s in label_paths if s in per_set] + sorted(s for s in per_set if s not in label_paths)
    predictions = {s: _align(s, per_set[s]) for s in order}
    for s, sp in predictions.items():
        lacking = [done[c] for c in np.flatnonzero(~sp.has_set)]
        if lacking:
            notes.append(f"set {s}: no predictions from {', '.join(lacking)}")

    truth_paths = {s: label_paths[s] for s in order if s in label_paths}
    for s, p in (truth or {}).items():
        if s not in predictions:
            raise ValueError(f"--truth {s}=...: no configuration has predictions for set {s!r}; "
                             f"sets: {', '.join(order) or 'none'}")
        truth_paths[s] = str(p)
    truth_tables = {s: _load_truth(s, p) for s, p in truth_paths.items()}
    for s in order:
        if s not in truth_tables:
            notes.append(f"set {s}: no labels (not in run.json, no --truth {s}=PATH): predictions only")
    return Sweep(run, done, info, metrics, order, predictions, truth_tables, truth_paths, notes)


# ---------------------------------------------------------------------------------------------
# ranking and selection
# ---------------------------------------------------------------------------------------------
def _check_criterion(metric: str, level: str, axis: str) -> None:
    if metric not in TABLE_METRICS:
        raise ValueError(f"unknown ranking metric {metric!r}; valid: {', '.join(TABLE_METRICS)}")
    if level not in LEVELS:
        raise ValueError(f"unknown ranking level {level!r}; valid: {', '.join(LEVELS)}")
    if axis not in RANK_AXES:
        raise ValueError(f"unknown ranking axis {axis!r}; valid: {', '.join(RANK_AXES)}")


def rank(sweep: Sweep, set_name: str, metric: str = "SRCC", level: str = "utterance",
         axis: str = "composite") -> list[tuple[str, float]]:
    """Configurations best first by the recorded ``metric`` on ``set_name``.

    Best = highest (lowest for MSE); ties by configuration name; NaN last. Raises
    :class:`StrategyUnavailable` when the set is absent, or absent for some configurations.
    """
    _check_criterion(metric, level, axis)
    m = sweep.metrics.filter((pl.col("set") == set_name) & (pl.col("level") == level) & (pl.col("axis") == axis)
                             & (pl.col("metric") == metric))
    have = dict(zip(m["config"].to_list(), m["value"].to_list()))
    if not have:
        sets = sweep.metrics["set"].unique(maintain_order=True).to_list()
        raise StrategyUnavailable(f"no metrics for set {set_name!r} in the sweep (sets with metrics: "
                                  f"{', '.join(sets) or 'none'})")
    lacking = [c for c in sweep.configs if c not in have]
    if lacking:
        raise StrategyUnavailable(f"set {set_name!r}: no recorded {metric} for {', '.join(lacking)} "
                                  "(trained before the set was added? retrain them with --force)")
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(item: tuple[str, float]):
        name, v = item
        bad = v is None or math.isnan(v)
        return (bad, 0.0 if bad else sign * v, name)

    return sorted(((c, float("nan") if have[c] is None else float(have[c])) for c in sweep.configs), key=key)


def parse_strategy(strategy: str) -> tuple[str, int | None]:
    """``"pam-top-4"`` -> ``("pam", 4)``; ``"submitted"``/``"all"``/``"custom"`` -> (name, None)."""
    if strategy in ("submitted", "all", CUSTOM):
        return strategy, None
    m = _TOP_RE.match(strategy)
    if m and int(m.group(2)) >= 1:
        return m.group(1), int(m.group(2))
    raise ValueError(f"unknown strategy {strategy!r}; valid: submitted, all, pam-top-K, dev-top-K "
                     f"(K >= 1, e.g. pam-top-4, pam-top-1), custom (with an explicit member list)")


def check_members(sweep: Sweep, members: list[str]) -> list[str]:
    """The member list, validated: non-empty, known names, no repeats."""
    members = [m.strip() for m in members if m.strip()]
    if not members:
        raise ValueError("empty member list")
    bad = [m for m in members if m not in sweep.configs]
    if bad:
        raise ValueError(f"unknown member(s) {', '.join(bad)}; valid: {', '.join(sweep.configs)}")
    dup = sorted({m for m in members if members.count(m) > 1})
    if dup:
        raise ValueError(f"member(s) listed more than once: {', '.join(dup)}")
    return members


def select(strategy: str, sweep: Sweep, *, members: list[str] | None = None, dev_set: str = "dev",
           pam_set: str = "pam_dev", metric: str = "SRCC", level: str = "utterance", axis: str = "composite",
           top: int = 12) -> list[str]:
    """Members of ``strategy`` (ranked strategies: best first; ``all``: alphabetical).

    Raises ``ValueError`` for an unknown strategy or member, :class:`StrategyUnavailable` when the
    sweep cannot support the strategy (missing set, too few configurations, empty intersection).
    """
    kind, k = parse_strategy(strategy)
    _check_criterion(metric, level, axis)
    if kind == CUSTOM:
        if members is None:
            raise ValueError("strategy 'custom' needs an explicit member list (--members a,b,c)")
        return check_members(sweep, members)
    if members is not None:
        raise ValueError(f"a member list goes with strategy 'custom', not {strategy!r}")
    if kind == "all":
        return list(sweep.configs)
    if kind == "submitted":
        if top < 1:
            raise ValueError(f"--top must be >= 1, got {top}")
        dev = [c for c, _ in rank(sweep, dev_set, metric, level, axis)[:top]]
        pam = {c for c, _ in rank(sweep, pam_set, metric, level, axis)[:top]}
        chosen = [c for c in dev if c in pam]
        if not chosen:
            raise StrategyUnavailable(f"no configuration is in both the top-{top} on {dev_set} and on {pam_set}")
        return chosen
    ranked = rank(sweep, dev_set if kind == "dev" else pam_set, metric, level, axis)  # a missing set first
    if k > len(ranked):
        raise StrategyUnavailable(f"needs {k} configurations, the sweep has {len(ranked)}")
    return [c for c, _ in ranked[:k]]


# ---------------------------------------------------------------------------------------------
# ensemble predictions and their metrics
# ---------------------------------------------------------------------------------------------
def ensemble_predictions(sweep: Sweep, members: list[str], set_name: str) -> pl.DataFrame:
    """Mean of the members' 0-10 predictions per clip: ``clip_id, system, domain, PQ, PC, CE, CU``.

    The clips are those any member predicted; a clip missing from one member is an error naming
    the member and the clip (an average over fewer members would be a different model).
    """
    members = check_members(sweep, members)
    if set_name not in sweep.predictions:
        raise ValueError(f"no predictions for set {set_name!r}; sets: {', '.join(sweep.sets) or 'none'}")
    sp = sweep.predictions[set_name]
    idx = np.array([sweep.index(m) for m in members])
    no_file = [m for m, i in zip(members, idx) if not sp.has_set[i]]
    if no_file:
        raise ValueError(f"set {set_name!r}: member(s) {', '.join(no_file)} have no predictions file "
                         f"({sweep.run_dir / 'configs' / no_file[0] / 'predictions' / (set_name + '.parquet')})")
    pres = sp.present[idx]
    used = pres.any(axis=0)
    for row, m in zip(pres, members):
        gap = np.flatnonzero(used & ~row)
        if gap.size:
            first = ", ".join(repr(sp.clip_ids[i]) for i in gap[:3])
            raise ValueError(f"set {set_name!r}: member {m} has no prediction for {gap.size} clip(s) the other "
                             f"members predicted (first: {first}); ensemble only configurations with the same clips")
    cols = np.flatnonzero(used)
    mean = sp.values[idx][:, cols, :].mean(axis=0)
    return pl.DataFrame({
        "clip_id": [sp.clip_ids[i] for i in cols],
        "system": pl.Series([sp.system[i] for i in cols], dtype=pl.String),
        "domain": pl.Series([sp.domain[i] for i in cols], dtype=pl.String),
        **{a: mean[:, k] for k, a in enumerate(AXES)},
    })


def _evaluate(pred: pl.DataFrame, truth: pl.DataFrame, set_name: str):
    from mmmos.core.metrics import UndefinedMetricWarning, evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # kept in Evaluation.notes
        return evaluate(pred, truth, set_name=set_name)


def table_columns(sets: list[str]) -> list[str]:
    """The Table IV metric columns: ``{set}/{utt|sys}_{MSE|LCC|SRCC|KTAU}``."""
    return [f"{s}/{_LEVEL_SHORT[lv]}_{m}" for s in sets for lv in LEVELS for m in TABLE_METRICS]


def _wide_row(long: pl.DataFrame, set_name: str) -> dict[str, float | None]:
    m = long.filter((pl.col("axis") == "composite") & (pl.col("set") == set_name))
    look = {(lv, mt): (v, n) for lv, mt, v, n in m.select("level", "metric", "value", "n").iter_rows()}
    out = {}
    for lv in LEVELS:
        for mt in TABLE_METRICS:
            v, n = look.get((lv, mt), (None, 0))
            out[f"{set_name}/{_LEVEL_SHORT[lv]}_{mt}"] = None if not n else float(v)
    return out


@dataclass
class EnsembleResult:
    """Everything :func:`evaluate_strategies` computed; :func:`write_outputs` saves it."""

    table: pl.DataFrame  # Table IV layout (wide)
    metrics: pl.DataFrame  # long: strategy + set, level, axis, metric, value, n
    predictions: dict[str, dict[str, pl.DataFrame]]  # strategy -> set -> predictions
    members: dict[str, dict]  # strategy -> {"members": [...]} or {"unavailable": reason}
    rankings: dict[str, list[tuple[str, float]]]
    criterion: dict
    notes: list[str]


def evaluate_strategies(sweep: Sweep, strategies: list[str] | tuple[str, ...] = DEFAULT_STRATEGIES, *,
                        members: list[str] | None = None, dev_set: str = "dev", pam_set: str = "pam_dev",
                        metric: str = "SRCC", level: str = "utterance", axis: str = "composite",
                        top: int = 12) -> EnsembleResult:
    """Select the members of every strategy and score each ensemble on every labelled set."""
    strategies = list(strategies)
    if members is not None and CUSTOM not in strategies:
        strategies.append(CUSTOM)
    for s in strategies:
        parse_strategy(s)  # unknown names fail before any work
    dup = sorted({s for s in strategies if strategies.count(s) > 1})
    if dup:
        raise ValueError(f"strategy listed more than once: {', '.join(dup)}")
    crit = dict(metric=metric, level=level, axis=axis, dev_set=dev_set, pam_set=pam_set, top=top)
    notes = list(sweep.notes)
    chosen: dict[str, dict] = {}
    for s in strategies:
        try:
            mem = select(s, sweep, members=members if s == CUSTOM else None, dev_set=dev_set, pam_set=pam_set,
                         metric=metric, level=level, axis=axis, top=top)
            chosen[s] = {"members": mem}
        except StrategyUnavailable as e:
            chosen[s] = {"unavailable": str(e)}
            notes.append(f"{s}: unavailable - {e}")
    rankings = {}
    for s in dict.fromkeys([dev_set, pam_set]):
        try:
            rankings[s] = rank(sweep, s, metric, level, axis)
        except StrategyUnavailable:
            pass

    cache: dict[tuple[tuple[str, ...], str], tuple[pl.DataFrame, pl.DataFrame | None]] = {}
    preds: dict[str, dict[str, pl.DataFrame]] = {}
    longs, rows = [], []
    for s in strategies:
        row: dict[str, object] = {"strategy": s}
        if "unavailable" in chosen[s]:
            row.update(n_members=0, members="", status=f"unavailable: {chosen[s]['unavailable']}")
            row.update({c: None for c in table_columns(sweep.sets)})
            rows.append(row)
            continue
        mem = chosen[s]["members"]
        row.update(n_members=len(mem), members=",".join(mem), status="ok")
        preds[s] = {}
        for set_name in sweep.sets:
            key = (tuple(sorted(mem)), set_name)
            if key not in cache:
                sp = sweep.predictions[set_name]
                lacking = [m for m in mem if not sp.has_set[sweep.index(m)]]
                if lacking:
                    cache[key] = (None, None)
                    notes.append(f"{s} on {set_name}: n/a, no predictions from {', '.join(lacking)}")
                else:
                    pred = ensemble_predictions(sweep, mem, set_name)
                    long = None
                    if set_name in sweep.truth:
                        ev = _evaluate(pred, sweep.truth[set_name], set_name)
                        long = ev.table
                        notes.extend(f"{s}: {line}" for line in ev.summary_lines()
                                     if "no prediction" in line or "not in the truth" in line or "warning" in line)
                    cache[key] = (pred, long)
            pred, long = cache[key]
            if pred is not None:
                preds[s][set_name] = pred
            if long is not None:
                longs.append(long.with_columns(pl.lit(s).alias("strategy")))
                row.update(_wide_row(long, set_name))
            else:
                row.update({c: None for c in table_columns([set_name])})
        rows.append(row)
    schema = {"strategy": pl.String, "n_members": pl.Int64, "members": pl.String, "status": pl.String,
              **{c: pl.Float64 for c in table_columns(sweep.sets)}}
    table = pl.DataFrame(rows, schema=schema)
    long_all = (pl.concat(longs).select("strategy", "set", "level", "axis", "metric", "value", "n") if longs else
                pl.DataFrame(schema={"strategy": pl.String, "set": pl.String, "level": pl.String, "axis": pl.String,
                                     "metric": pl.String, "value": pl.Float64, "n": pl.Int64}))
    return EnsembleResult(table, long_all, preds, chosen, rankings, crit, notes)


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if math.isnan(v):
        return "NaN"
    return f"{v:.{digits}f}"


def table_markdown(table: pl.DataFrame, sets: list[str], digits: int = 3) -> str:
    """Table IV as markdown, one block per set (best value per column in bold)."""
    blocks = []
    for s in sets:
        cols = table_columns([s])
        if all(table[c].null_count() == table.height for c in cols):
            blocks.append(f"**{s}**: no labels, no metrics\n")
            continue
        best = {}
        for c in cols:
            vals = [v for v in table[c].to_list() if v is not None and not math.isnan(v)]
            if vals:
                best[c] = min(vals) if c.endswith("_MSE") else max(vals)
        head = "| strategy | members | " + " | ".join(c.split("/", 1)[1].replace("_", " ") for c in cols) + " |"
        lines = [f"**{s}** (composite)", "", head, "| --- | ---: |" + " ---: |" * len(cols)]
        for r in table.iter_rows(named=True):
            cells = []
            for c in cols:
                txt = _fmt(r[c], digits)
                cells.append(f"**{txt}**" if r[c] is not None and c in best and r[c] == best[c] else txt)
            n = str(r["n_members"]) if r["status"] == "ok" else "—"
            lines.append(f"| {r['strategy']} | {n} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines) + "\n")
    unavailable = [(r["strategy"], r["status"]) for r in table.iter_rows(named=True) if r["status"] != "ok"]
    if unavailable:
        blocks.append("\n".join(f"- {s}: {st}" for s, st in unavailable) + "\n")
    return "\n".join(blocks)


def default_out(run_dir: str | Path) -> Path:
    return Path(run_dir) / "ensembles"


def write_outputs(result: EnsembleResult, sweep: Sweep, out: str | Path) -> Path:
    """Write Table IV (Parquet + markdown), long metrics, predictions and members.json into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.table.write_parquet(out / "table_iv.parquet")
    (out / "table_iv.md").write_text(table_markdown(result.table, sweep.sets))
    result.metrics.write_parquet(out / "metrics.parquet")
    for s, per_set in result.predictions.items():
        d = out / "predictions" / s
        d.mkdir(parents=True, exist_ok=True)
        for set_name, df in per_set.items():
            df.write_parquet(d / f"{set_name}.parquet")
    doc = {
        "run": str(sweep.run_dir.resolve()),
        "criterion": result.criterion,
        "tie_break": "metric (best first), then configuration name (alphabetical); NaN last",
        "configs": sweep.configs,
        "sets": sweep.sets,
        "truth": sweep.truth_paths,
        "rankings": {s: [[c, None if math.isnan(v) else v] for c, v in r] for s, r in result.rankings.items()},
        "strategies": result.members,
        "notes": result.notes,
    }
    (out / "members.json").write_text(json.dumps(doc, indent=2))
    return out


def default_answer_set(sweep: Sweep, dev_set: str = "dev") -> str:
    others = [s for s in sweep.sets if s != dev_set]
    if not others:
        raise ValueError(f"no evaluation set other than {dev_set!r} (sets: {', '.join(sweep.sets)}); "
                         "name one with --answer-set")
    return others[0]


def write_answer(result: EnsembleResult, strategy: str, set_name: str, path: str | Path) -> Path:
    """Write one strategy's ensemble predictions for one set as a challenge answer file."""
    from mmmos.core.manifests import write_answer_file

    if strategy not in result.members:
        raise ValueError(f"--answer-strategy {strategy!r} was not evaluated; evaluated: {', '.join(result.members)}")
    if "unavailable" in result.members[strategy]:
        raise ValueError(f"--answer-strategy {strategy} is unavailable: {result.members[strategy]['unavailable']}")
    per_set = result.predictions.get(strategy, {})
    if set_name not in per_set:
        raise ValueError(f"no ensemble predictions of {strategy} for set {set_name!r}; "
                         f"sets: {', '.join(per_set) or 'none'}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_answer_file(per_set[set_name].select("clip_id", *AXES), path)
    return path


def run_ensembles(run_dir: str | Path, strategies: list[str] | tuple[str, ...] = DEFAULT_STRATEGIES, *,
                  members: list[str] | None = None, out: str | Path | None = None,
                  truth: dict[str, str] | None = None, dev_set: str = "dev", pam_set: str = "pam_dev",
                  metric: str = "SRCC", level: str = "utterance", axis: str = "composite", top: int = 12,
                  answer: str | Path | None = None, answer_strategy: str = "submitted",
                  answer_set: str | None = None) -> pl.DataFrame:
    """Load the sweep, evaluate the strategies, write the outputs (and the answer file); return Table IV."""
    sweep = load_sweep(run_dir, truth)
    result = evaluate_strategies(sweep, strategies, members=members, dev_set=dev_set, pam_set=pam_set,
                                 metric=metric, level=level, axis=axis, top=top)
    write_outputs(result, sweep, out or default_out(run_dir))
    if answer is not None:
        write_answer(result, answer_strategy, answer_set or default_answer_set(sweep, dev_set), answer)
    return result.table


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _parse_truth(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--truth expects NAME=PATH (e.g. pam_dev=combined_dev.csv), got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a sweep directory written by `mmmos sweep` (configs/<name>/...)")
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                   help="comma-separated: submitted, all, pam-top-K, dev-top-K (default: %(default)s)")
    p.add_argument("--members", help="an explicit ensemble a,b,c of configuration names (adds strategy 'custom')")
    p.add_argument("--out", help="output folder (default: RUN_DIR/ensembles)")
    p.add_argument("--truth", action="append", metavar="NAME=PATH",
                   help="labels for set NAME (manifest or clip_id table); default: the manifests in RUN_DIR/run.json")
    p.add_argument("--rank-metric", default="SRCC", choices=TABLE_METRICS,
                   help="ranking metric (MSE: lower is better; others: higher); default SRCC")
    p.add_argument("--rank-level", default="utterance", choices=LEVELS, help="ranking level (default utterance)")
    p.add_argument("--rank-axis", default="composite", choices=RANK_AXES,
                   help="ranking axis (default composite = mean of the four axes)")
    p.add_argument("--dev-set", default="dev", help="set ranked by dev-top-K and submitted (default dev)")
    p.add_argument("--pam-set", default="pam_dev", help="set ranked by pam-top-K and submitted (default pam_dev)")
    p.add_argument("--top", type=int, default=12, help="N of submitted = top-N(dev) ∩ top-N(pam) (default 12)")
    p.add_argument("--answer", help="also write a challenge answer file (wavID,PQ,PC,CE,CU, no header)")
    p.add_argument("--answer-strategy", default="submitted", help="strategy for --answer (default submitted)")
    p.add_argument("--answer-set", help="set for --answer (default: the first evaluation set other than --dev-set)")
    p.add_argument("--export", metavar="DIR",
                   help="save an ensemble as a self-contained predictor folder for `mmmos predict --model DIR`")
    p.add_argument("--export-strategy", default="submitted", help="strategy for --export (default submitted)")


def run_cli(a: argparse.Namespace) -> int:
    """``mmmos ensemble``: print Table IV and the members; 0 ok, 2 on bad input."""
    t0 = time.perf_counter()
    try:
        strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
        members = [m for m in a.members.split(",")] if a.members else None
        sweep = load_sweep(a.run_dir, _parse_truth(a.truth))
        result = evaluate_strategies(sweep, strategies, members=members, dev_set=a.dev_set, pam_set=a.pam_set,
                                     metric=a.rank_metric, level=a.rank_level, axis=a.rank_axis, top=a.top)
        out = write_outputs(result, sweep, a.out or default_out(a.run_dir))
        answer = None
        if a.answer:
            answer = write_answer(result, a.answer_strategy, a.answer_set or default_answer_set(sweep, a.dev_set),
                                  a.answer)
        exported = None
        if getattr(a, "export", None):
            from mmmos.app.predictor import PredictorError, export_predictor

            chosen = result.members.get(a.export_strategy, {})
            if "members" not in chosen:
                raise ValueError(f"--export-strategy {a.export_strategy}: "
                                 f"{chosen.get('unavailable', 'not among the evaluated strategies')}")
            try:
                exported = export_predictor(a.run_dir, chosen["members"], a.export)
            except PredictorError as e:
                raise ValueError(str(e)) from None
    except (ValueError, FileNotFoundError) as e:
        print(f"mmmos ensemble: error: {e}", file=sys.stderr)
        return 2
    print(f"ranking: {a.rank_level}-level {a.rank_metric} of {a.rank_axis} on {a.dev_set} / {a.pam_set}; "
          f"{len(sweep.configs)} configurations, sets {', '.join(sweep.sets)}\n")
    print(table_markdown(result.table, sweep.sets))
    for s, m in result.members.items():
        print(f"{s}: " + (", ".join(m["members"]) if "members" in m else f"unavailable ({m['unavailable']})"))
    for n in result.notes:
        print(f"note: {n}")
    print(f"\nwritten to {out} in {time.perf_counter() - t0:.1f} s" + (f"; answer file {answer}" if answer else "")
          + (f"; predictor ({a.export_strategy}) exported to {exported}" if exported else ""))
    return 0


