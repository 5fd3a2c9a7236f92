"""Table III: one row per finished configuration with, per set, the composite utterance-level figures of every
registered metric (:data:`mmmos.core.metrics.METRIC_REGISTRY`: MSE/LCC/SRCC/KTAU) and the system-level SRCC
(``summary.parquet`` and ``summary.md``).  A metric added to the registry becomes a column here."""
from __future__ import annotations

import math
from pathlib import Path

from mmmos.core.rundir import RunDir
from mmmos.core.tasks import COMPOSITE


#: level -> the metrics a summary shows at it (None: every registered metric), and the column prefix
LEVELS = {"utterance": "utt", "system": "sys"}
TABLE_III = {"utterance": None, "system": ("SRCC",)}


def metric_cells(ms, prefix: str, levels: dict[str, tuple[str, ...] | None]) -> dict:
    """``{prefix}{utt|sys}_{METRIC}`` -> value for the metrics table rows ``ms`` (one set and axis); the metric
    names are the registry's (an unknown one is an error, a missing value None)."""
    import polars as pl

    from mmmos.core.metrics import METRICS, get_metric

    out = {}
    for level, names in levels.items():
        for name in (METRICS if names is None else names):
            get_metric(name)
            v = ms.filter((pl.col("level") == level) & (pl.col("metric") == name))["value"]
            out[f"{prefix}{LEVELS[level]}_{name}"] = float(v[0]) if len(v) else None
    return out


def _row(cdir) -> dict:
    import polars as pl

    cfg = cdir.read_config().config
    m = cdir.read_metrics().filter(pl.col("axis") == COMPOSITE)
    row = {"config": cdir.name, "encoders": "+".join(cfg["encoders"]), "head": cfg["head"], "loss": cfg["loss"]}
    for s in m["set"].unique(maintain_order=True).to_list():
        row.update(metric_cells(m.filter(pl.col("set") == s), f"{s}/", TABLE_III))
    return row


def write_summary(run: str | Path, names: list[str] | None = None):
    """Write Table III over ``names`` (default: every finished configuration); returns it (None if empty)."""
    import polars as pl

    rd = RunDir(run)
    names = names or rd.finished()
    rows = [_row(rd.config(n)) for n in names if rd.config(n).is_done()]
    if not rows:
        return None
    df = pl.DataFrame(rows)
    rd.write_summary(df, summary_markdown(df))
    return df


def _cell(v) -> str:
    if isinstance(v, float) and not math.isnan(v):
        return f"{v:.3f}"
    return "n/a" if v is None or isinstance(v, float) else str(v)


def summary_markdown(df) -> str:
    """``df`` as a Markdown table (the four label columns left-aligned, numbers right-aligned)."""
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---" if i < 4 else "---:" for i in range(len(cols))) + "|"]
    for r in df.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in r) + " |")
    return "\n".join(lines) + "\n"
