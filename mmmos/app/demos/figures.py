"""The README's demo figures, written from a demo's own output folder (never copied by hand).

    python -m mmmos.app.demos.figures --task track1 --out demo_out/track1 [--readme README.md]

reads the finished demo (``run/`` configurations' dev metrics, the shuffled-label ``control_run/``, the ensembles'
``pam_dev`` metrics), prints the Markdown table and, with ``--readme``, replaces the block between
``<!-- demo-figures:<task> -->`` and ``<!-- /demo-figures:<task> -->`` with it (nothing else in the file changes).
A task's figures come from its entry in :data:`FIGURES`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from mmmos.core.errors import UserError


class FiguresError(UserError):
    """A demo folder without the figures, or a README without the markers."""


def _metric(path: Path, **where) -> dict[str, float]:
    """axis -> value of the rows of a long metrics table matching ``where``."""
    import polars as pl

    if not path.is_file():
        raise FiguresError(f"{path}: not found; run the demo first")
    m = pl.read_parquet(path)
    for k, v in where.items():
        m = m.filter(pl.col(k) == v)
    return {a: float(v) for a, v in zip(m["axis"], m["value"])}


def track1_table(out: Path) -> str:
    """The Track 1 demo table: best configuration vs the shuffled-label control on dev, the submitted ensemble on
    pam_dev (utterance SRCC)."""
    from mmmos.core.tasks import get_task

    from .track1 import CONTROL_RUN, best_config, dev_srcc

    run = out / "run"
    if not (run / "configs").is_dir():
        raise FiguresError(f"{out}: no Track 1 demo output (run/configs missing); run `mmmos demo --task track1`")
    best = best_config(run)
    fig, ctl = dev_srcc(run, best), dev_srcc(out / "control_run", CONTROL_RUN)
    pam = _metric(run / "ensembles" / "metrics.parquet", strategy="submitted", set="pam_dev", level="utterance",
                  metric="SRCC")
    cols = [*get_task("track1").axes, "composite"]
    rows = [(f"dev, best configuration `{best}`", fig), (f"dev, shuffled-label control `{CONTROL_RUN}`", ctl),
            ("pam_dev (systems unseen in training), `submitted` ensemble", pam)]
    lines = ["| utterance SRCC | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(f"{vals.get(c, float('nan')):.3f}" for c in cols) + " |"
              for name, vals in rows]
    return "\n".join(lines) + "\n"


#: task -> the function that writes its demo table from the demo's output folder
FIGURES: dict[str, Callable[[Path], str]] = {"track1": track1_table}


def markers(task: str) -> tuple[str, str]:
    return f"<!-- demo-figures:{task} -->", f"<!-- /demo-figures:{task} -->"


def replace_block(text: str, task: str, block: str) -> str:
    """``text`` with the lines between the task's markers replaced by ``block`` (markers kept)."""
    start, end = markers(task)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i or text.count(start) != 1 or text.count(end) != 1:
        raise FiguresError(f"the README needs exactly one '{start}' line followed by one '{end}' line")
    head = text[: i + len(start)]
    return head + "\n" + block + text[j:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmmos.app.demos.figures", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="track1", choices=sorted(FIGURES))
    p.add_argument("--out", required=True, type=Path, help="the demo's --out folder")
    p.add_argument("--readme", type=Path, help="rewrite this README's figures block")
    a = p.parse_args(argv)
    try:
        table = FIGURES[a.task](a.out)
        print(table, end="")
        if a.readme:
            a.readme.write_text(replace_block(a.readme.read_text(), a.task, table))
            print(f"written to {a.readme}")
    except UserError as e:
        print(f"mmmos.app.demos.figures: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
