"""Challenge answer files (``id,<axis>,...`` per line, no header), laid out as the task's :class:`AnswerLayout`."""
from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl

from mmmos.core.manifests.fields import csv_rows, parse_label
from mmmos.core.manifests.table import ManifestError
from mmmos.core.outputs import replace_whole
from mmmos.core.tasks import Task, get_task


def _layout_text(t: Task) -> str:
    return ",".join((t.answer.header_id, *t.axes))


def read_answer_file(path: str | os.PathLike, task: str | Task | None = None) -> pl.DataFrame:
    """Read an answer file into ``clip_id`` + the task's axes.

    A header line (``wavID,PQ,PC,CE,CU`` for track2) on line 1 is tolerated.  Wrong field counts,
    non-numbers, non-finite values and repeated ids raise :class:`ManifestError`.
    """
    t = get_task(task)
    p = Path(path)
    if not p.is_file():
        raise ManifestError(p, "answer file not found")
    ids: list[str] = []
    values: dict[str, list[float]] = {a: [] for a in t.axes}
    seen: dict[str, int] = {}
    header = [a.lower() for a in t.axes]
    for line, fields in csv_rows(p):
        fields = [f.strip() for f in fields]
        if line == 1 and [f.lower() for f in fields[1:]] == header:
            continue
        if len(fields) != 1 + t.n_axes:
            raise ManifestError(p, f"expected {1 + t.n_axes} fields ({_layout_text(t)}), got {len(fields)}", line)
        cid = fields[0]
        if not cid:
            raise ManifestError(p, f"empty {t.answer.header_id}", line)
        if cid in seen:
            raise ManifestError(p, f"{t.answer.header_id} {cid!r} repeats line {seen[cid]}", line)
        seen[cid] = line
        ids.append(cid)
        for axis, text in zip(t.axes, fields[1:]):
            v = parse_label(text, p, line, axis)
            if v is None:
                raise ManifestError(p, f"{axis} value is missing", line)
            values[axis].append(v)
    return pl.DataFrame({"clip_id": ids, **values}, schema={"clip_id": pl.String, **{a: pl.Float64 for a in t.axes}})


def _number(v: float, decimals: int | None) -> str:
    return repr(float(v)) if decimals is None else f"{v:.{decimals}f}"


def write_answer_file(df: pl.DataFrame, path: str | os.PathLike, task: str | Task | None = None) -> None:
    """Write ``clip_id`` + the task's axes as an answer file (no header; track2: shortest exact floats).

    Refuses (ValueError) missing columns, null/non-finite scores, and ids containing a comma, quote or
    line break (the format cannot quote them).  Written atomically.
    """
    t = get_task(task)
    lay = t.answer
    missing = [c for c in ("clip_id", *t.axes) if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write answer file {path}: missing columns {missing}")
    ids = df.get_column("clip_id").to_list()
    vals = [df.get_column(a).cast(pl.Float64).to_list() for a in t.axes]
    records: list[tuple[str, list[float]]] = []
    for i, cid in enumerate(ids):
        if cid is None or cid == "" or any(ch in str(cid) for ch in ',"\r\n'):
            raise ValueError(f"cannot write answer file {path}: bad clip_id {cid!r} in row {i}")
        row = [vals[k][i] for k in range(t.n_axes)]
        if any(v is None or not math.isfinite(v) for v in row):
            raise ValueError(f"cannot write answer file {path}: missing/non-finite score for {cid!r}")
        name = str(cid)
        if lay.strip_suffix and name.endswith(lay.strip_suffix):
            name = name[: -len(lay.strip_suffix)]
        records.append((name, row))
    if lay.sort_ids:
        records.sort(key=lambda r: r[0])
    text = "".join(",".join([name, *(_number(v, lay.decimals) for v in row)]) + "\n" for name, row in records)
    replace_whole(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")))


#: a fixed time stamp for the archive entry: the same answer file always gives the same zip bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def submission_path(answer_path: str | os.PathLike) -> Path:
    """Where the submission archive of ``answer_path`` goes: beside it, ``.zip`` instead of its suffix."""
    p = Path(answer_path)
    return p.with_suffix(".zip") if p.suffix.lower() != ".zip" else p.with_name(p.stem + ".submission.zip")


def write_submission(answer_path: str | os.PathLike, task: str | Task | None = None,
                     out: str | os.PathLike | None = None) -> Path | None:
    """Zip the answer file as the task's challenge takes it (its bytes unchanged, stored under the task's
    ``archive_member`` name); None when the task takes no archive. Written atomically; returns the zip's path."""
    import zipfile

    member = get_task(task).answer.archive_member
    if member is None:
        return None
    data = Path(answer_path).read_bytes()
    z = Path(out) if out is not None else submission_path(answer_path)
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo(member, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

    replace_whole(z, write)
    return z
