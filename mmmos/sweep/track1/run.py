"""The Track 1 sweep: the shared checks and resume plan (:func:`mmmos.sweep.run.plan_sweep`), the runs trained
in this process or in ``jobs`` worker processes that die with the sweep, new evaluation sets predicted with
finished checkpoints, and the summary table over every checkpoint."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from mmmos.core.rundir import RunDir

from ..frames import shared_frames
from ..identity import stale_eval_sets
from ..plan import plan_sweep
from ..workers import ParentGoneError, check_parent, error_text, run_pool
from .checkpoints import add_eval_sets_track1
from .recipe import Track1Config, checkpoint_names
from .summary import write_track1_summary
from .trainer import train_track1


def train_one_track1(args):
    """Train one run; returns ``(name, result, error text)`` - errors are reported, not raised."""
    cfg, store, train, dev, evals, out, progress = args
    try:
        return cfg.name, train_track1(cfg, store, train, dev, evals, out, progress, before_done=check_parent), None
    except ParentGoneError:
        os._exit(1)  # nobody is listening for the result
    except Exception as e:  # noqa: BLE001 - reported in the summary, the other runs go on
        return cfg.name, None, error_text(e)


def _pool(todo: list, jobs: int, args_of, report) -> None:
    # each worker applies the thread policy for ``jobs`` workers (torch, BLAS pools and env vars alike), so
    # J workers never run more math threads than there are cores
    run_pool(todo, jobs, args_of, report, fn=train_one_track1, thread_jobs=jobs)


def run_track1_sweep(configs: list[Track1Config], store: str, run: str | Path, train, dev, evals: list,
                     jobs: int = 1, force: bool = False, progress: bool = True,
                     share_frames: bool | None = None) -> dict:
    """Train every run not already DONE in ``run``; returns {run name: result, ``{"skipped": True}`` or error}.
    The frames are read once for the sweep (:mod:`mmmos.sweep.frames`)."""
    plan = plan_sweep(configs, store, run, train, dev, evals, force)
    reading = plan.todo + ([c for c, _ in plan.refresh] if evals else [])
    with shared_frames(run, store, reading, [train, dev, *evals], share_frames) as source:
        _train_all(plan, source, train, dev, evals, jobs, progress)
        _refresh(plan, source, evals)
    write_track1_summary(run, [n for c in configs for n in checkpoint_names(c.name)])
    return plan.results


def _train_all(plan, source, train, dev, evals: list, jobs: int, progress: bool) -> None:
    results = plan.results

    def args_of(c, prog=False):
        return c, source, train, dev, evals, plan.run.config(c.name).path, prog

    def report(name, res, err):
        results[name] = res if err is None else {"error": err}
        print(f"  {name}: {'done' if err is None else 'FAILED ' + err.splitlines()[0]}", file=sys.stderr)

    if jobs > 1 and len(plan.todo) > 1:
        threads = max(1, (os.cpu_count() or 2) // jobs)
        for c in plan.todo:
            c.threads = c.threads or threads
        _pool(plan.todo, jobs, args_of, report)
    else:
        for c in plan.todo:
            report(*train_one_track1(args_of(c, progress)))


def _refresh(plan, store, evals: list) -> None:
    """Predict new or changed evaluation sets with every checkpoint of the finished runs."""
    rd = RunDir(plan.run.path)
    for c, _ in plan.refresh:
        done, predicted = [], set()
        for name in checkpoint_names(c.name):
            cdir = rd.config(name)
            stale = stale_eval_sets(cdir, evals, plan.changed_evals)
            if not stale:
                continue
            try:
                add_eval_sets_track1(cdir, store, stale, device=c.device)
            except Exception as e:  # noqa: BLE001 - reported like a failed run, the others go on
                plan.results[c.name] = {"error": f"adding {', '.join(s.name for s in stale)} to {name}: "
                                                 f"{type(e).__name__}: {e}"}
                print(f"  {name}: FAILED {plan.results[c.name]['error']}", file=sys.stderr)
                break
            done.append(name)
            predicted |= {s.name for s in stale}
        else:
            if done:
                plan.results[c.name] = {"skipped": True, "predicted": sorted(predicted)}
                print(f"  {c.name}: predicted {', '.join(sorted(predicted))} with {', '.join(done)}", file=sys.stderr)
