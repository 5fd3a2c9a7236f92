"""Ensemble benchmark (issues: ensembles, stacking): every strategy, stacking included, over a synthetic
16-configuration sweep of challenge size (dev 450 + PAM dev 450 + test 3,100 clips = 4,000), timed end to end
as a user runs it (``run_ensembles``: read predictions, rank, ensemble, fit the stack with out-of-fold figures
on dev, score, write).  Goal: < 5 s.  The stack's own share is timed separately (``fit_stack``).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl

SIZES = {"dev": 450, "pam_dev": 450, "test": 3100}


def make_sweep(root: Path, seed: int = 0) -> Path:
    from mmmos import sweep
    from mmmos.core.metrics import evaluate
    from mmmos.core.tasks import get_task

    axes = get_task().axes

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    truths = {}
    for s, n in SIZES.items():
        y = np.clip(5 + 1.8 * rng.standard_normal((n, len(axes))), 0, 10)
        truths[s] = pl.DataFrame({"clip_id": [f"{s}/{i:05d}" for i in range(n)],
                                  "system": [f"sys{i % 25:02d}" for i in range(n)],
                                  "domain": [("speech", "music", "sound")[i % 3] for i in range(n)],
                                  **{a: y[:, k] for k, a in enumerate(axes)}})
        truths[s].write_csv(root / f"{s}.csv")
    run = root / "run"
    for i, cfg in enumerate(sweep.paper_configs()):
        d = run / "configs" / cfg.name
        (d / "predictions").mkdir(parents=True)
        tabs = []
        for s, t in truths.items():
            y = t.select(axes).to_numpy()
            p = np.clip(y + (0.4 + 0.05 * i) * rng.standard_normal(y.shape), 0, 10)
            pred = t.select("clip_id", "system", "domain").with_columns(
                *[pl.Series(a, p[:, k]) for k, a in enumerate(axes)])
            pred.write_parquet(d / "predictions" / f"{s}.parquet")
            tabs.append(evaluate(pred, t, s).table)
        pl.concat(tabs).write_parquet(d / "metrics.parquet")
        (d / "config.json").write_text(json.dumps({"config": {"name": cfg.name, "encoders": cfg.encoders,
                                                              "head": cfg.head, "loss": cfg.loss}}))
        (d / "DONE").write_text("ok\n")
    (run / "run.json").write_text(json.dumps({"store": str(root / "cache.zarr"), "encoders": {},
                                              "labels": {s: str(root / f"{s}.csv") for s in SIZES}}))
    return run


def run(out: Path) -> Path:
    from mmmos import ensemble as select_ensemble

    run_dir = make_sweep(out / "ensemble_work")
    strategies = [*select_ensemble.DEFAULT_STRATEGIES, select_ensemble.STACK]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        select_ensemble.run_ensembles(run_dir, strategies, answer=str(out / "ensemble_work" / "answer.txt"))
        times.append(time.perf_counter() - t)
    sweep = select_ensemble.load_sweep(run_dir)
    t = time.perf_counter()
    select_ensemble.fit_stack(sweep, sweep.configs)
    stack_s = time.perf_counter() - t
    rep = {"clips": sum(SIZES.values()), "sets": SIZES, "configurations": 16, "strategies": strategies,
           "stack": "ridge, all 16 members, fitted on dev: 5 grouped folds (alpha by inner 5-fold CV) + full fit",
           "seconds": times, "best_seconds": min(times), "stack_fit_seconds": stack_s}
    (out / "ensemble.json").write_text(json.dumps(rep, indent=2))
    md = out / "ensemble.md"
    md.write_text(f"# Ensemble benchmark\n\nThe {len(rep['strategies']) - 1} default strategies and stack "
                  f"({', '.join(rep['strategies'])}) over 16 configurations and {rep['clips']:,} clips in 3 sets, "
                  f"including reading predictions, scoring every set and writing tables, predictions and an answer "
                  f"file: **{min(times):.2f} s** (best of 3; runs: {', '.join(f'{t:.2f}' for t in times)} s; goal < 5 s).\n\n"
                  f"Stacking ({rep['stack']}) alone: {stack_s:.2f} s.\n")
    return md


if __name__ == "__main__":
    print(run(Path("bench_out")).read_text())
