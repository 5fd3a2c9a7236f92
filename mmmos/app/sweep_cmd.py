"""``mmmos sweep``: the sweep stage's options plus the Ray options (``--ray`` runs each configuration as a Ray
task through :mod:`mmmos.app.ray_sweep`; without it the local sweep of :mod:`mmmos.sweep` runs)."""
from __future__ import annotations

import time


def add_arguments(p) -> None:
    """``mmmos sweep``'s options plus the Ray options."""
    from mmmos.sweep import add_arguments as sweep_arguments

    from mmmos.app.ray_cluster import add_ray_arguments

    sweep_arguments(p)
    add_ray_arguments(p, "config")


def run_cli(a) -> int:
    """``mmmos sweep [--ray ...]``: the local sweep without ``--ray``, else :func:`run_sweep_ray`; exit 3 when a
    configuration failed."""
    from mmmos.sweep import run_cli as sweep_run_cli
    from mmmos.sweep.cli import prepare
    from mmmos.sweep.options import report_results

    from mmmos.app.ray_cluster import options_from_args

    opts = options_from_args(a, "config")
    if opts is None:
        return sweep_run_cli(a)
    recipe, cfgs, train, dev, evals = prepare(a)  # Track 1 runs on Ray as Track 2 does: each run one task
    t = time.perf_counter()
    from mmmos.app.ray_sweep import run_sweep_ray

    res = run_sweep_ray(cfgs, a.store, a.run, train, dev, evals, opts, force=a.force, progress=not a.no_progress)
    return report_results(res, a.run, time.perf_counter() - t, recipe.report_what.replace("sweep", "sweep (ray)", 1),
                          recipe.report_unit)


__all__ = ["add_arguments", "run_cli"]
