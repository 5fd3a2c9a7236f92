"""Shared pieces of the sweep command (every task's CLI uses them; no task package is imported here)."""
from __future__ import annotations

import sys
from pathlib import Path

from mmmos.core.errors import EXIT_OK, EXIT_PARTIAL, UserError

from .labels import LabelSetError, check_set_name


class SweepOptionError(UserError):
    """An option value the sweep cannot use."""


def parse_evals(items: list[str]) -> list[tuple[str, str]]:
    """``--eval NAME=PATH`` items as (name, path); a name that would leave the run folder is refused."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise LabelSetError(f"--eval expects NAME=PATH, got {item!r}")
        k, v = item.split("=", 1)
        pairs.append((check_set_name(k), v))
    return pairs


def report_results(res: dict, run, seconds: float, what: str = "sweep", unit: str = "") -> int:
    """Print a sweep's outcome (counts, the summary table, the failed configurations); return the exit status:
    3 when some configuration failed, else 0."""
    failed = [n for n, r in res.items() if r and "error" in r]
    skipped = [n for n, r in res.items() if r and r.get("skipped")]
    print(f"{what}: {len(res) - len(failed) - len(skipped)} {unit}trained, {len(skipped)} already done, "
          f"{len(failed)} failed in {seconds:.1f} s -> {run}")
    summ = Path(run) / "summary.md"
    if summ.is_file():
        print(summ.read_text())
    if failed:
        for n in failed:
            print(f"sweep: {n} failed: {res[n]['error'].splitlines()[0]}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK
