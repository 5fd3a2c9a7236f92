"""The Track 1 summary table: one row per checkpoint with, per set and axis, the utterance-level
MSE/LCC/SRCC/KTAU and the system-level SRCC (``summary.parquet`` and ``summary.md``)."""
from __future__ import annotations

from pathlib import Path

from mmmos.core.rundir import RunDir
from mmmos.core.tasks import get_task

from ..summary import metric_cells, summary_markdown

#: the registered metrics shown per set and axis (Table III's utterance metrics are too many for 2 axes)
TRACK1_LEVELS = {"utterance": ("MSE", "SRCC"), "system": ("SRCC",)}


def _row(cdir, axes) -> dict:
    import polars as pl

    rec = cdir.read_config()
    cfg = rec.config
    m = cdir.read_metrics()
    row = {"config": cdir.name, "encoders": "+".join(cfg["encoders"]), "head": cfg["head"], "loss": cfg["loss"],
           "epoch": rec.extra.get("epoch")}
    for s in m["set"].unique(maintain_order=True).to_list():
        for a in axes:
            row.update(metric_cells(m.filter((pl.col("set") == s) & (pl.col("axis") == a)), f"{s}/{a}_",
                                    TRACK1_LEVELS))
    return row


def write_track1_summary(run: str | Path, names: list[str] | None = None):
    """Write the table over ``names`` (default: every finished configuration); returns it (None if empty)."""
    import polars as pl

    rd = RunDir(run)
    axes = get_task(rd.task()).axes
    names = names or rd.finished()
    rows = [_row(rd.config(n), axes) for n in names if rd.config(n).is_done()]
    if not rows:
        return None
    df = pl.DataFrame(rows)
    rd.write_summary(df, summary_markdown(df))
    return df
