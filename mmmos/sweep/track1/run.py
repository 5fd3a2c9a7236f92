"""The Track 1 sweep: the engine's :func:`mmmos.sweep.run.run_sweep` with the Track 1 recipe (plan, frame pack,
worker pool and thread policy shared with Track 2); this module holds the recipe's training step, refresh of
new evaluation sets with every checkpoint, and summary."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from mmmos.core.rundir import RunDir

from ..identity import stale_eval_sets
from ..workers import ParentGoneError, check_parent, error_text
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


def run_track1_sweep(configs: list[Track1Config], store: str, run: str | Path, train, dev, evals: list,
                     jobs: int = 1, force: bool = False, progress: bool = True,
                     share_frames: bool | None = None) -> dict:
    """Train every run not already DONE in ``run``; returns {run name: result, ``{"skipped": True}`` or error}."""
    from ..run import run_sweep

    return run_sweep(configs, store, run, train, dev, evals, jobs=jobs, force=force, progress=progress,
                     share_frames=share_frames)


def summarise(run, configs: list):
    """The Track 1 table over every checkpoint of ``configs``."""
    return write_track1_summary(run, [n for c in configs for n in checkpoint_names(c.name)])


def refresh_checkpoints(plan, store, evals: list) -> None:
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
