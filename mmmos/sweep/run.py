"""The sweep: check the inputs and the run folder, skip finished configurations, train the rest
(in parallel with ``jobs``), bring finished ones up to date with new evaluation sets, write Table III."""
from __future__ import annotations

import sys
from pathlib import Path

from mmmos.core.tasks import DEFAULT_TASK, get_task

from .evaluate import add_eval_sets
from .frames import shared_frames
from .identity import stale_eval_sets
from .labels import LabelSet, check_labels
from .plan import MissingEncoderError, SweepInputError, SweepPlan, check_device, open_cache, plan_sweep
from .summary import write_summary
from .recipes import recipe_for
from .workers import run_pool

__all__ = ["MissingEncoderError", "SweepInputError", "SweepPlan", "check_device", "open_cache", "plan_sweep",
           "refresh_evals", "run_sweep", "summarise"]

# heaviest first (frame heads, then BLSTMs) so no worker is left with a long tail
_COST = {"blstm_t": 0, "blstm_h": 1}


def run_sweep(configs: list, store: str, run: str | Path, train: LabelSet, dev: LabelSet,
              evals: list[LabelSet], jobs: int = 1, force: bool = False, progress: bool = True,
              share_frames: bool | None = None) -> dict:
    """Train every configuration not already DONE in ``run`` with its task's recipe
    (:mod:`mmmos.sweep.recipes`); returns {name: result or error}.

    The frames are read from the cache once for the whole sweep and shared by every configuration and worker
    (:mod:`mmmos.sweep.frames`; ``share_frames=False`` or ``MMMOS_SHARED_FRAMES=0``: each reads the store)."""
    task = configs[0].task if configs else DEFAULT_TASK
    recipe = recipe_for(task)
    if recipe.check_lists:
        axes = get_task(task).axes
        for ls, need in ((train, True), (dev, True), *((e, False) for e in evals)):
            check_labels(ls, axes, need)  # one line per unusable list, before anything is written
    plan = plan_sweep(configs, store, run, train, dev, evals, force)
    reading = plan.todo + [c for c, cdir in plan.refresh if stale_eval_sets(cdir, evals, plan.changed_evals)]
    with shared_frames(run, store, reading, [train, dev, *evals], share_frames) as source:
        _train_all(plan, source, train, dev, evals, jobs, progress, recipe.fn("train_step"))
        recipe.fn("refresh")(plan, source, evals)
    recipe.fn("summarise")(run, configs)
    return plan.results


def _train_all(plan: SweepPlan, source, train, dev, evals, jobs: int, progress: bool, step) -> None:
    """Train ``plan.todo`` with the recipe's ``step`` from ``source`` (the store path or the sweep's frame pack),
    here or in ``jobs`` worker processes; results into ``plan.results``."""
    results, todo = plan.results, plan.todo

    def args_of(c, prog=False):
        return c, source, train, dev, evals, plan.run.config(c.name).path, prog

    def report(name, res, err):
        results[name] = res if err is None else {"error": err}
        print(f"  {name}: {'done' if err is None else 'FAILED ' + err.splitlines()[0]}", file=sys.stderr)

    if jobs > 1 and len(todo) > 1:
        # each worker applies the thread policy itself (cores // jobs threads, or MMMOS_THREADS);
        # the frames come from the sweep's pack (mapped, not copied, by every worker)
        run_pool(sorted(todo, key=lambda c: _COST.get(c.head, 2)), jobs, args_of, report, fn=step)
    else:
        from mmmos.core.threads import apply_thread_policy

        if todo:
            apply_thread_policy()  # one process: every core (or MMMOS_THREADS)
        for c in todo:
            name, res, err = step(args_of(c, progress))
            results[name] = res if err is None else {"error": err}
            if err:
                print(f"  {name}: FAILED {err}", file=sys.stderr)


def summarise(run, configs: list) -> object:
    """Table III over ``configs`` (the Track 2 recipe's summary)."""
    return write_summary(run, [c.name for c in configs])


def refresh_evals(plan: SweepPlan, store, evals: list[LabelSet]) -> None:
    """Predict new or changed evaluation sets with the plan's finished configurations (no retraining)."""
    _refresh_evals(plan.refresh, store, evals, plan.changed_evals, plan.results)


def _refresh_evals(refresh, store, evals: list[LabelSet], changed: set[str], results: dict) -> None:
    """Predict new or changed evaluation sets with finished configurations (no retraining)."""
    for c, cdir in refresh:
        stale = stale_eval_sets(cdir, evals, changed)
        if not stale:
            continue
        try:
            add_eval_sets(cdir, store, stale, device=c.device)
        except Exception as e:  # noqa: BLE001 - reported like a failed configuration, the others go on
            results[c.name] = {"error": f"adding {', '.join(s.name for s in stale)}: {type(e).__name__}: {e}"}
            print(f"  {c.name}: FAILED {results[c.name]['error']}", file=sys.stderr)
            continue
        results[c.name] = {"skipped": True, "predicted": [s.name for s in stale]}
        print(f"  {c.name}: predicted {', '.join(s.name for s in stale)} with the trained head", file=sys.stderr)
