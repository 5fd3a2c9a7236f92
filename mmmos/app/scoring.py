"""The challenge scorer: read predictions and labels, compute the 32 metrics (+ composite), report.

``mmmos score --pred FILE --truth FILE [--out FILE]`` is wired by ``mmmos.cli`` through
:func:`add_score_arguments` and :func:`run_score`; :func:`main_score` runs it stand-alone.

Predictions are read from an answer file (``wavID,PQ,PC,CE,CU`` with no header, the challenge
submission format), a CSV with a header (an id column ``clip_id``/``wavID``/``sample_id`` plus
``PQ, PC, CE, CU``) or a Parquet table with the same columns. Labels (and system ids) are read with
:func:`mmmos.manifests.load_manifest`, so every manifest format the toolkit knows works as truth;
tables keyed by ``clip_id`` (Parquet, or CSV without a path column) are read as they are.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from mmmos.core.manifests import load_manifest, read_answer_file, write_answer_file
from mmmos.core.metrics import AXES, Evaluation, UndefinedMetricWarning, evaluate, format_markdown

__all__ = [
    "add_score_arguments",
    "is_answer_text",
    "main_score",
    "read_answer_file",
    "read_predictions",
    "read_truth",
    "run_score",
    "score",
    "write_answer_file",
    "write_metrics",
]

ID_COLUMNS: tuple[str, ...] = ("clip_id", "wavID", "sample_id")
"""Accepted names (case-insensitive) of the clip id column in headed prediction tables."""

AXIS_ALIASES: dict[str, tuple[str, ...]] = {
    "PQ": ("PQ", "Production_Quality"),
    "PC": ("PC", "Production_Complexity"),
    "CE": ("CE", "Content_Enjoyment"),
    "CU": ("CU", "Content_Usefulness"),
}


# ---------------------------------------------------------------------------------------------
# Answer files: ``wavID,PQ,PC,CE,CU``, no header. Reading and writing live in mmmos.manifests
# (read_answer_file / write_answer_file); here only the check that tells them from headed CSVs.
# ---------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8-sig")  # tolerate a UTF-8 BOM
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None


def _first_content_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line
    return None


def is_answer_line(line: str) -> bool:
    """True when ``line`` is data: an id followed by four numbers (so not a header)."""
    parts = line.rsplit(",", 4)  # from the right: the id may be a quoted path with commas
    if len(parts) != 5 or not parts[0].strip().strip('"'):
        return False
    try:
        [float(x) for x in parts[1:]]
    except ValueError:
        return False
    return True


def is_answer_text(text: str) -> bool:
    """True when the first non-blank line is data (id and four numbers), i.e. there is no header."""
    first = _first_content_line(text)
    return first is not None and is_answer_line(first)


# ---------------------------------------------------------------------------------------------
# Predictions and truth
# ---------------------------------------------------------------------------------------------


def _find_column(df: pl.DataFrame, names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _standardise(df: pl.DataFrame, path: Path, *, labels_may_be_null: bool, keep_system: bool) -> pl.DataFrame:
    """Select and type ``clip_id, [system,] PQ, PC, CE, CU`` from a headed table; strict checks."""
    id_col = _find_column(df, ID_COLUMNS)
    if id_col is None:
        raise ValueError(f"{path}: no clip id column (one of {list(ID_COLUMNS)}); columns are {df.columns}")
    axis_cols = {}
    for axis, aliases in AXIS_ALIASES.items():
        col = _find_column(df, aliases)
        if col is None:
            raise ValueError(f"{path}: no {axis} column (one of {list(aliases)}); columns are {df.columns}")
        axis_cols[axis] = col
    if df.height == 0:
        raise ValueError(f"{path}: no rows")
    if df[id_col].null_count():
        raise ValueError(f"{path}: {df[id_col].null_count()} rows have an empty clip id")

    out = df.select(
        pl.col(id_col).cast(pl.String).alias("clip_id"),
        *([pl.col("system").cast(pl.String)] if keep_system and "system" in df.columns else []),
        *[pl.col(c).alias(a) for a, c in axis_cols.items()],
    )
    for axis in AXES:
        raw = out[axis]
        values = raw.cast(pl.Float64, strict=False)
        unparsable = out.filter(values.is_null() & raw.is_not_null())
        if unparsable.height:
            bad = unparsable.select("clip_id", axis).row(0)
            raise ValueError(f"{path}: column {axis!r} has {unparsable.height} non-numeric values (e.g. {bad[0]!r}: {bad[1]!r})")
        out = out.with_columns(values.alias(axis))
        if not labels_may_be_null:
            bad_mask = out[axis].is_null() | ~out[axis].is_finite().fill_null(False)
            if bad_mask.any():
                first = out.filter(bad_mask)["clip_id"][0]
                raise ValueError(f"{path}: column {axis!r} has {int(bad_mask.sum())} missing or non-finite scores (first: {first!r})")
    dup = out["clip_id"].filter(out["clip_id"].is_duplicated()).unique(maintain_order=True)
    if dup.len():
        raise ValueError(f"{path}: {dup.len()} clip ids occur more than once (first: {dup[0]!r})")
    return out


def read_predictions(path: str | Path) -> pl.DataFrame:
    """Read predictions as ``clip_id, PQ, PC, CE, CU`` (Float64).

    Parquet by extension; otherwise text: an answer file when the first non-blank line is data
    (id + 4 numbers), else a CSV whose header has an id column (``clip_id``/``wavID``/``sample_id``)
    and the four axes (short names or the Track 2 long names). Extra columns are ignored.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return _standardise(pl.read_parquet(path), path, labels_may_be_null=False, keep_system=False)
    text = _read_text(path)
    if _first_content_line(text) is None:
        raise ValueError(f"{path}: empty prediction file")
    if is_answer_text(text):
        return read_answer_file(path)
    try:
        df = pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False)
    except pl.exceptions.PolarsError as e:
        raise ValueError(f"{path}: not an answer file and not a readable CSV ({e})") from None
    return _standardise(df, path, labels_may_be_null=False, keep_system=False)


def _csv_header(path: Path) -> list[str]:
    first = _first_content_line(_read_text(path)) or ""
    return [h.strip().strip('"').lower() for h in first.split(",")]


def read_truth(path: str | Path, data_root: str | Path | None = None) -> pl.DataFrame:
    """Read labels as ``clip_id, system, PQ, PC, CE, CU`` (labels may be null; system may be null).

    Manifests (Track 2 and combined lists, AES rating JSONL, plain CSV with a ``path`` column) go
    through :func:`mmmos.manifests.load_manifest`, which also derives the system id (the ``sys…``
    token of Track 2 ids, the PAM generator folder). Tables keyed by ``clip_id`` (Parquet, or a CSV
    with ``clip_id`` and no ``path``/``data_path`` column, as the toolkit writes them) are read as they
    are, with their ``system`` column if any. Duplicated clip ids are an error.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        df = pl.read_parquet(path)
    elif path.is_file() and path.suffix.lower() not in (".jsonl", ".ndjson", ".json") and _is_clip_table(path):
        df = pl.read_csv(io.BytesIO(_read_text(path).encode("utf-8")), infer_schema=False)
    else:
        df = load_manifest(path, data_root=data_root)
    out = _standardise(df, path, labels_may_be_null=True, keep_system=True)
    if "system" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("system"))
    return out.select("clip_id", "system", *AXES)


def _is_clip_table(path: Path) -> bool:
    """A headed CSV keyed by clip_id that is not a manifest (no path/data_path column)."""
    header = _csv_header(path)
    return "clip_id" in header and "path" not in header and "data_path" not in header


# ---------------------------------------------------------------------------------------------
# Scoring and the CLI
# ---------------------------------------------------------------------------------------------


def write_metrics(table: pl.DataFrame, path: str | Path) -> Path:
    """Write a long metrics table as CSV or Parquet, chosen by the file extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: metrics output must end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.write_csv(path)
    else:
        table.write_parquet(path)
    return path


def score(
    pred_path: str | Path,
    truth_path: str | Path,
    out: str | Path | None = None,
    *,
    set_name: str | None = None,
    data_root: str | Path | None = None,
) -> Evaluation:
    """Score a prediction file against a truth file; optionally write the long metrics table to ``out``.

    ``set_name`` defaults to the truth file's stem.
    """
    pred = read_predictions(pred_path)
    truth = read_truth(truth_path, data_root=data_root)
    result = evaluate(pred, truth, set_name=set_name or Path(truth_path).stem)
    if out is not None:
        write_metrics(result.table, out)
    return result


def add_score_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``mmmos score`` options to ``parser``."""
    parser.add_argument(
        "--pred", required=True, type=Path,
        help="predictions: answer file 'wavID,PQ,PC,CE,CU' without header, a CSV with a header "
        "(clip_id or wavID column + PQ,PC,CE,CU), or a Parquet table with those columns",
    )
    parser.add_argument(
        "--truth", required=True, type=Path,
        help="labels: a Track 2 or combined list, AES rating JSONL (labels = mean of ratings), a CSV "
        "manifest, or a Parquet table (clip_id, [system,] PQ, PC, CE, CU); system ids come from it",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="write the metrics in long form (set, level, axis, metric, value, n); .csv or .parquet")
    parser.add_argument("--set-name", default=None, help="name of the set in the output (default: truth file stem)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="local root replacing the '/your_path/' placeholder of Track 2 lists (passed to the manifest loader)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any id is on one side only (default: report and score the overlap)")
    parser.add_argument("--digits", type=int, default=3, help="decimals in the printed tables (default 3)")
    return parser


def run_score(args: argparse.Namespace) -> int:
    """Run ``mmmos score``: print counts, warnings and the metric grids; 0 ok, 1 strict mismatch, 2 error."""
    if args.out is not None and Path(args.out).suffix.lower() not in (".csv", ".parquet"):
        print(f"mmmos score: error: --out {args.out} must end in .csv or .parquet", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            # These are collected in Evaluation.notes and printed below with the counts.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            result = score(args.pred, args.truth, args.out, set_name=args.set_name, data_root=args.data_root)
    except (FileNotFoundError, ValueError) as e:
        print(f"mmmos score: error: {e}", file=sys.stderr)
        return 2
    print(f"predictions: {args.pred}\ntruth:       {args.truth}")
    print("\n".join(result.summary_lines()))
    print()
    print(format_markdown(result.table, digits=args.digits), end="")
    if args.out is not None:
        print(f"\nmetrics written to {args.out}")
    if args.strict and (result.missing_in_pred or result.missing_in_truth):
        print("mmmos score: ids differ between predictions and truth (--strict)", file=sys.stderr)
        return 1
    return 0


def main_score(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: parse ``argv`` and run :func:`run_score`."""
    parser = argparse.ArgumentParser(
        prog="mmmos score",
        description="Score predictions against labels: MSE, LCC, SRCC, KTAU per axis (PQ, PC, CE, CU) and "
        "for their mean (composite), at utterance and system level.",
    )
    add_score_arguments(parser)
    return run_score(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_score())
