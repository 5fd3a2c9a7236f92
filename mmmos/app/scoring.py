"""The challenge scorer: read predictions and labels, compute every registered metric per axis and
for the composite at utterance and system level, and report.

``mmmos score --pred FILE --truth FILE [--out FILE] [--task NAME]`` is wired by ``mmmos.app.cli`` through
:func:`add_arguments` and :func:`run_cli` (which raises :class:`~mmmos.core.errors.UserError` on bad input);
:func:`main_score` runs it stand-alone. File reading lives in :mod:`mmmos.core.truth`: predictions are an
answer file (``wavID,<axes>`` without header), a headed CSV or a Parquet table; labels are any manifest the
toolkit reads or a ``clip_id`` table. Axes come from the task (default ``track2``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmmos.core.errors import EXIT_USER, UserError
from mmmos.core.tasks import DEFAULT_TASK, TASKS, Task, get_task

if TYPE_CHECKING:
    import polars as pl

    from mmmos.core.metrics import Evaluation

__all__ = [
    "add_arguments",
    "add_score_arguments",
    "main_score",
    "read_answer_file",
    "read_predictions",
    "read_truth",
    "run_cli",
    "run_score",
    "score",
    "write_answer_file",
    "write_metrics",
]


class ScoreError(UserError, ValueError):
    """A bad ``mmmos score`` option (e.g. an --out extension)."""


def __getattr__(name: str):
    """Readers re-exported lazily (they import polars): ``read_truth``, ``read_predictions``, answer files."""
    if name in ("read_truth", "read_predictions", "is_answer_text", "ID_COLUMNS"):
        from mmmos.core import truth

        return getattr(truth, name)
    if name in ("read_answer_file", "write_answer_file"):
        from mmmos.core import manifests

        return getattr(manifests, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_metrics(table: "pl.DataFrame", path: str | Path) -> Path:
    """Write a long metrics table as CSV or Parquet, chosen by the file extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ScoreError(f"{path}: metrics output must end in .csv or .parquet")
    from mmmos.core.outputs import check_output_file, replace_whole

    check_output_file(path)
    replace_whole(path, table.write_csv if suffix == ".csv" else table.write_parquet)
    return path


def score(
    pred_path: str | Path,
    truth_path: str | Path,
    out: str | Path | None = None,
    *,
    set_name: str | None = None,
    data_root: str | Path | None = None,
    task: str | Task | None = None,
    system_truth: str | Path | None = None,
) -> "Evaluation":
    """Score a prediction file against a truth file; optionally write the long metrics table to ``out``.

    ``set_name`` defaults to the truth file's stem; ``task`` to ``track2``. ``system_truth`` (or a ``truth_path``
    that is one, recognised by its header): official per-system means that replace the clip-label means at
    system level (:mod:`mmmos.core.system_truth`).
    """
    from mmmos.core.metrics import evaluate
    from mmmos.core.truth import read_predictions, read_truth

    tk = get_task(task)
    pred = read_predictions(pred_path, task=tk)
    result = _score_official(pred, truth_path, system_truth, set_name, data_root, tk)
    if result is None:
        truth = read_truth(truth_path, data_root=data_root, task=tk)
        result = evaluate(pred, truth, set_name=set_name or Path(truth_path).stem, task=tk)
    if out is not None:
        write_metrics(result.table, out)
    return result


def _score_official(pred, truth_path, system_truth, set_name, data_root, tk: Task) -> "Evaluation | None":
    """The evaluation against an official system table (None: there is none - score as usual)."""
    from mmmos.core.system_truth import evaluate_with_system_truth, is_system_table, read_system_truth
    from mmmos.core.truth import read_truth

    if system_truth is None and is_system_table(truth_path, tk):
        system_truth, truth = truth_path, None  # --truth is the system table itself: no utterance level
    elif system_truth is not None:
        if not is_system_table(system_truth, tk):
            raise ScoreError(f"--system-truth {system_truth}: not a system table (header: SYS plus "
                             f"{', '.join(tk.axes)} or their list names)")
        truth = read_truth(truth_path, data_root=data_root, task=tk)
    else:
        return None
    return evaluate_with_system_truth(pred, truth, read_system_truth(system_truth, tk),
                                      set_name=set_name or Path(truth_path).stem, task=tk, source=str(system_truth))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``mmmos score`` options to ``parser``."""
    parser.add_argument(
        "--pred", required=True, type=Path,
        help="predictions: an answer file 'wavID,<axes>' without header, a CSV with a header "
        "(clip_id or wavID column + the task's axes), or a Parquet table with those columns",
    )
    parser.add_argument(
        "--truth", required=True, type=Path,
        help="labels: a Track 2 or combined list, AES rating JSONL (labels = mean of ratings), a CSV "
        "manifest, or a Parquet table (clip_id, [system,] <axes>); system ids come from it",
    )
    parser.add_argument("--system-truth", type=Path, default=None,
                        help="official per-system means (e.g. MusicEval system_mos_phase1.csv: SYS,overall,textual) "
                        "scored at system level instead of the clip-label means; --truth may be this file itself")
    parser.add_argument("--task", default=DEFAULT_TASK, choices=sorted(TASKS),
                        help="what the files score (axes, composite); default %(default)s")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the metrics in long form (set, level, axis, metric, value, n); .csv or .parquet")
    parser.add_argument("--set-name", default=None, help="name of the set in the output (default: truth file stem)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="local root replacing the '/your_path/' placeholder of Track 2 lists (passed to the manifest loader)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any id is on one side only (default: report and score the "
                             "overlap), and refuse predictions outside the task's score range (default: a warning)")
    parser.add_argument("--digits", type=int, default=3, help="decimals in the printed tables (default 3)")
    return parser


add_score_arguments = add_arguments


def run_cli(args: argparse.Namespace) -> int:
    """``mmmos score``: print counts, warnings and the metric grids; 0 ok, 1 strict mismatch.

    Bad options and unreadable or malformed files raise :class:`UserError` (the CLI prints one line, exit 2).
    """
    from mmmos.core.metrics import UndefinedMetricWarning, format_markdown

    if args.out is not None and Path(args.out).suffix.lower() not in (".csv", ".parquet"):
        raise ScoreError(f"--out {args.out} must end in .csv or .parquet")
    if args.out is not None:
        from mmmos.core.outputs import check_output_file

        check_output_file(args.out)
    task = get_task(getattr(args, "task", None))
    with warnings.catch_warnings():
        # These are collected in Evaluation.notes and printed below with the counts.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        try:
            result = score(args.pred, args.truth, args.out, set_name=args.set_name, data_root=args.data_root,
                           task=task, system_truth=getattr(args, "system_truth", None))
        except UserError:
            raise
        except ValueError as e:  # evaluate(): e.g. no shared clip ids - about these files, so the user's
            raise ScoreError(f"{args.pred} vs {args.truth}: {e}") from None
    _check_range(args.pred, task, strict=args.strict)
    print(f"predictions: {args.pred}\ntruth:       {args.truth}")
    print("\n".join(result.summary_lines()))
    print()
    print(format_markdown(result.table, digits=args.digits, task=task), end="")
    if args.out is not None:
        print(f"\nmetrics written to {args.out}")
    if args.strict and (result.missing_in_pred or result.missing_in_truth):
        print("mmmos score: ids differ between predictions and truth (--strict)", file=sys.stderr)
        return 1
    return 0


def _check_range(pred_path, task: Task, strict: bool) -> None:
    """Predictions outside the task's score range (e.g. 50 on a 0-10 task, a scale mix-up): a warning naming the
    first one, or under ``--strict`` an error."""
    import polars as pl

    from mmmos.core.truth import read_predictions

    pred = read_predictions(pred_path, task=task)
    lo, hi = task.score_range
    out = pred.filter(pl.any_horizontal([(pl.col(a) < lo) | (pl.col(a) > hi) for a in task.axes]))
    if not out.height:
        return
    row = out.row(0, named=True)
    ex = next(f"{a}={row[a]:g}" for a in task.axes if not lo <= row[a] <= hi)
    msg = (f"{pred_path}: {out.height} of {pred.height} clips have predictions outside the {task.name} score range "
           f"{lo:g}-{hi:g} (first: {row['clip_id']!r} {ex})")
    if strict:
        raise ScoreError(msg + " (--strict)")
    print(f"mmmos score: warning: {msg}; scored as given", file=sys.stderr)


def run_score(args: argparse.Namespace) -> int:
    """:func:`run_cli` for callers that expect a status: a UserError prints one line and gives 2."""
    try:
        return run_cli(args)
    except UserError as e:
        print(f"mmmos score: error: {e}", file=sys.stderr)
        return EXIT_USER


def main_score(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: parse ``argv`` and run :func:`run_score`."""
    parser = argparse.ArgumentParser(
        prog="mmmos score",
        description="Score predictions against labels: every registered metric (MSE, LCC, SRCC, KTAU) per axis "
        "and for the composite, at utterance and system level.",
    )
    add_arguments(parser)
    return run_score(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_score())
