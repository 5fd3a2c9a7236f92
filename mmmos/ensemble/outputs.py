"""Writing an ensemble evaluation: Table IV (Parquet + markdown), long metrics, predictions, members.json,
and challenge answer files; :func:`run_ensembles` does load -> evaluate -> write in one call.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import polars as pl

from mmmos.core.dirswap import recover, replace_dir, staging_dir
from mmmos.core.outputs import check_creatable
from mmmos.core.manifests import submission_path, write_answer_file, write_submission
from mmmos.core.metrics import metric_of_column
from mmmos.core.rundir import RunDir, atomic_write_text

from .errors import EnsembleError, one_line
from .evaluate import EnsembleResult, evaluate_strategies, table_columns
from .stacking import StackOptions
from .strategies import DEFAULT_STRATEGIES, TIE_BREAK
from .sweep_reader import Sweep, load_sweep


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if math.isnan(v):
        return "NaN"
    return f"{v:.{digits}f}"


def _strategy_label(row: dict, set_name: str) -> str:
    """The strategy's name; a fitted (stacked) row says what it was fitted on and whether it is out-of-fold."""
    fit = row.get("fit_set")
    if not fit or row["status"] != "ok":
        return row["strategy"]
    return f"{row['strategy']} (fitted on {fit}, out-of-fold)" if set_name == fit else \
        f"{row['strategy']} (fitted on {fit})"


def _set_block(table: pl.DataFrame, s: str, digits: int) -> str:
    cols = table_columns([s])
    if all(table[c].null_count() == table.height for c in cols):
        return f"**{s}**: no labels, no metrics\n"
    best = {}
    for c in cols:
        b = metric_of_column(c).best(table[c].to_list())
        if not math.isnan(b):
            best[c] = b
    head = "| strategy | members | " + " | ".join(c.split("/", 1)[1].replace("_", " ") for c in cols) + " |"
    lines = [f"**{s}** (composite)", "", head, "| --- | ---: |" + " ---: |" * len(cols)]
    for r in table.iter_rows(named=True):
        cells = []
        for c in cols:
            txt = _fmt(r[c], digits)
            cells.append(f"**{txt}**" if r[c] is not None and c in best and r[c] == best[c] else txt)
        n = str(r["n_members"]) if r["status"] == "ok" else "—"
        lines.append(f"| {_strategy_label(r, s)} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_markdown(table: pl.DataFrame, sets: list[str], digits: int = 3) -> str:
    """Table IV as markdown, one block per set (best value per column in bold, by the metric's direction)."""
    blocks = [_set_block(table, s, digits) for s in sets]
    unavailable = [(r["strategy"], r["status"]) for r in table.iter_rows(named=True) if r["status"] != "ok"]
    if unavailable:
        blocks.append("\n".join(f"- {s}: {st}" for s, st in unavailable) + "\n")
    return "\n".join(blocks)


def default_out(run_dir: str | Path) -> Path:
    return RunDir(run_dir).ensembles_path


#: what :func:`write_outputs` writes into its folder (anything else there is the user's)
OUTPUT_NAMES = frozenset({"table_iv.parquet", "table_iv.md", "metrics.parquet", "predictions", "members.json"})


def _foreign(out: Path) -> list[str]:
    """Entries of an existing folder ``out`` that :func:`write_outputs` did not write."""
    if not out.is_dir():
        return []
    # a hidden .members.json.PID.tmp is what a killed atomic write of the marker left
    return sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES
                  and not (p.name.startswith(".members.json.") and p.name.endswith(".tmp")))


def check_out_dir(out: str | Path) -> None:
    """Refuse (:class:`EnsembleError`) an ``out`` where no output folder can be written (a file, a read-only place),
    before anything is written."""
    out = Path(out)
    try:
        check_creatable(out)
    except OSError as e:
        raise EnsembleError(f"{out}: cannot write the ensemble outputs here ({one_line(e)})") from None


def _write_files(result: EnsembleResult, sweep: Sweep, out: Path) -> None:
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
        "task": sweep.task.name,
        "criterion": result.criterion,
        "tie_break": TIE_BREAK,
        "configs": sweep.configs,
        "sets": sweep.sets,
        "truth": sweep.truth_paths,
        "rankings": {s: [[c, None if math.isnan(v) else v] for c, v in r] for s, r in result.rankings.items()},
        "strategies": result.members,
        "notes": result.notes,
    }
    # written last and atomically: its presence means the folder is complete (the report checks it)
    atomic_write_text(out / "members.json", json.dumps(doc, indent=2))


def _clear_outputs(out: Path) -> None:
    """Remove an earlier run's outputs from ``out``, the completeness marker first: from then on, until the new
    marker is written, the folder reads as incomplete and never as a mix of two runs."""
    for name in ("members.json", *sorted(OUTPUT_NAMES - {"members.json"})):
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif os.path.lexists(p):
            p.unlink()


def write_outputs(result: EnsembleResult, sweep: Sweep, out: str | Path) -> Path:
    """Write Table IV (Parquet + markdown), long metrics, predictions and members.json into ``out``.

    An interrupted (re-)run never leaves a folder that looks complete with parts of two runs: the outputs are
    written into a hidden sibling and swapped in whole (:mod:`mmmos.core.dirswap`), so ``out`` keeps the old run
    entire until the new one is complete.  A folder that also holds the user's files is not swapped (they would go
    with it): the old outputs there are removed, marker first, and the new ones written in place, marker last."""
    out = Path(out)
    check_out_dir(out)
    try:
        recover(out)  # what a killed earlier run left beside it
        if _foreign(out):
            _clear_outputs(out)
            _write_files(result, sweep, out)
            return out
        tmp = staging_dir(out)
        try:
            _write_files(result, sweep, tmp)
            replace_dir(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        raise EnsembleError(f"{out}: cannot write the ensemble outputs ({one_line(e)})") from None
    return out


def default_answer_set(sweep: Sweep, dev_set: str = "dev") -> str:
    others = [s for s in sweep.sets if s != dev_set]
    if not others:
        raise EnsembleError(f"no evaluation set other than {dev_set!r} (sets: {', '.join(sweep.sets)}); "
                            "name one with --answer-set")
    return others[0]


def _answer_frame(result: EnsembleResult, strategy: str, set_name: str):
    if strategy not in result.members:
        raise EnsembleError(f"--answer-strategy {strategy!r} was not evaluated; "
                            f"evaluated: {', '.join(result.members)}")
    if "unavailable" in result.members[strategy]:
        raise EnsembleError(f"--answer-strategy {strategy} is unavailable: {result.members[strategy]['unavailable']}")
    per_set = result.predictions.get(strategy, {})
    if set_name not in per_set:
        raise EnsembleError(f"no ensemble predictions of {strategy} for set {set_name!r}; "
                            f"sets: {', '.join(per_set) or 'none'}")
    return per_set[set_name]


def check_answer(result: EnsembleResult, strategy: str, set_name: str, path: str | Path,
                 sweep: Sweep | None = None) -> None:
    """Refuse (:class:`EnsembleError`) what :func:`write_answer` would refuse, before anything is written: an
    unevaluated or unavailable strategy, a set without its predictions, a path where no file can be written."""
    _answer_frame(result, strategy, set_name)
    path = Path(path)
    targets = [path]
    if sweep is not None and sweep.task.answer.archive_member is not None:
        targets.append(submission_path(path))
    for t in targets:
        try:
            check_creatable(t, folder=False)
        except OSError as e:
            raise EnsembleError(f"{path}: cannot write the answer file ({one_line(e)})") from None


def write_answer(result: EnsembleResult, strategy: str, set_name: str, path: str | Path,
                 sweep: Sweep | None = None) -> Path:
    """Write one strategy's ensemble predictions for one set as a challenge answer file, and beside it the
    submission zip when the task's challenge takes one (Track 1: ``answer.zip`` holding ``answer.txt``)."""
    df = _answer_frame(result, strategy, set_name)
    axes = sweep.task.axes if sweep is not None else [c for c in df.columns if c not in ("clip_id", "system", "domain")]
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_answer_file(df.select("clip_id", *axes), path, task=sweep.task if sweep is not None else None)
        write_submission(path, task=sweep.task if sweep is not None else None)  # the zip, where the task takes one
    except (OSError, ValueError) as e:
        raise EnsembleError(f"{path}: cannot write the answer file ({one_line(e)})") from None
    return path


def run_ensembles(run_dir: str | Path, strategies: list[str] | tuple[str, ...] = DEFAULT_STRATEGIES, *,
                  members: list[str] | None = None, out: str | Path | None = None,
                  truth: dict[str, str] | None = None, dev_set: str = "dev", pam_set: str = "pam_dev",
                  metric: str = "SRCC", level: str = "utterance", axis: str = "composite", top: int = 12,
                  answer: str | Path | None = None, answer_strategy: str = "submitted",
                  answer_set: str | None = None, stack: StackOptions | None = None) -> pl.DataFrame:
    """Load the sweep, evaluate the strategies, write the outputs (and the answer file); return Table IV."""
    sweep = load_sweep(run_dir, truth)
    result = evaluate_strategies(sweep, strategies, members=members, dev_set=dev_set, pam_set=pam_set,
                                 metric=metric, level=level, axis=axis, top=top, stack=stack)
    if answer is not None:  # a refused answer file must not cost the old outputs: checked before writing them
        answer_set = answer_set or default_answer_set(sweep, dev_set)
        check_answer(result, answer_strategy, answer_set, answer, sweep)
    write_outputs(result, sweep, out or default_out(run_dir))
    if answer is not None:
        write_answer(result, answer_strategy, answer_set, answer, sweep)
    return result.table


__all__ = ["OUTPUT_NAMES", "check_answer", "check_out_dir", "default_answer_set", "default_out", "run_ensembles", "table_markdown", "write_answer", "write_outputs"]
