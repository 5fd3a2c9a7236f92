"""``mmmos sweep --ray``: each configuration is one Ray task, with the results of a local sweep.

The driver runs the sweep's own checks and resume rules (cache, devices, run identity, ``DONE`` markers),
then submits every unfinished configuration as a task that reserves ``--cpus-per-config`` CPUs and
``--gpus-per-config`` GPUs and trains it with :func:`mmmos.sweep.train_configuration` into its own folder
(``<run>/configs/<name>/``) - nothing else in the run folder is written by a task.  The driver shows one bar
over the configurations (with each running one's epoch), prints each as it ends (failed ones with their
error while the others go on), then brings finished configurations up to date with new evaluation sets
and writes the summary.

Command: :func:`add_arguments` / :func:`run_cli` are ``mmmos sweep`` with the Ray options added (``--ray``,
``--cpus-per-config``, ``--gpus-per-config``, ``--ray-retries``); without ``--ray`` it is the sweep's own command.

Faults: a task whose worker or node dies is retried by Ray (``max_retries``); a retry starts the
configuration again in its own folder, and a finished configuration (``DONE``) is skipped by the next run.
"""
from __future__ import annotations

from pathlib import Path

from .ray_cluster import Progress, RayOptions, check_fits, dashboard_url, ray_session

POLL_SECONDS = 2.0  # how often the bar reads the running configurations' training logs


def train_task(cfg, store: str, train, dev, evals, out: str):
    """Ray task body: the configuration's recipe's training step (:mod:`mmmos.sweep.recipes`, the one the local
    pool runs) in this worker; returns ``(name, result, error text)``."""
    from mmmos.core.threads import configure_threads
    from mmmos.sweep.recipes import recipe_for

    configure_threads(cfg.threads or 1)
    return recipe_for(cfg.task).fn("train_step")((cfg, store, train, dev, evals, out, False))


def _epoch_of(out: Path) -> int:
    """Epochs a running configuration has logged (0 before its first)."""
    try:
        return sum(1 for line in (out / "train_log.jsonl").read_text().splitlines() if '"epoch"' in line)
    except OSError:
        return 0


def run_sweep_ray(configs, store: str, run, train, dev, evals, opts: RayOptions, force: bool = False,
                  progress: bool = True) -> dict:
    """Train every configuration not already DONE in ``run`` as Ray tasks; returns {name: result or error}.

    The checks and resume rules are the local sweep's own (:func:`mmmos.sweep.plan_sweep`); only the executor
    differs."""
    from mmmos.core.tasks import DEFAULT_TASK
    from mmmos.sweep.plan import check_device, plan_sweep
    from mmmos.sweep.recipes import recipe_for

    recipe = recipe_for(configs[0].task if configs else DEFAULT_TASK)

    for d in {c.device for c in configs}:
        if not (opts.gpus > 0 and d.startswith("cuda")):  # the driver may have no GPU; the workers do
            check_device(d)
    plan = plan_sweep(configs, store, run, train, dev, evals, force, check_devices=False)
    results = plan.results
    for c in plan.todo:
        c.threads = max(1, int(opts.cpus))  # runtime-only: does not change what is learned
        if opts.gpus > 0:
            c.device = "cuda"
    if plan.todo:
        with ray_session(opts.address) as ray:
            check_fits(ray, opts, "config")
            _run_tasks(ray, plan.todo, store, train, dev, evals, plan.run, opts, results, progress)
    recipe.fn("refresh")(plan, store, evals)
    recipe.fn("summarise")(Path(run), configs)
    return results


def _run_tasks(ray, todo, store, train, dev, evals, rd, opts: RayOptions, results: dict, progress: bool) -> None:
    task = ray.remote(num_cpus=opts.cpus, num_gpus=opts.gpus, max_retries=opts.retries)(train_task)
    refs = [ray.put(x) for x in (train, dev, evals)]  # shipped to the object store once, not per task
    running = {task.remote(c, store, *refs, str(rd.config(c.name).path)): c for c in todo}
    prog = Progress(len(todo), "sweep (ray)", "config", progress)
    url = dashboard_url(ray)
    if url:
        prog.note(f"sweep: {len(todo)} configurations as Ray tasks; dashboard {url}")
    try:
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                c = running.pop(ref)
                try:
                    name, res, err = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the task died past its retries: report, others go on
                    name, res, err = c.name, None, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
                results[name] = res if err is None else {"error": err}
                prog.note(f"  {name}: {'done' if err is None else 'FAILED ' + err.splitlines()[0]}")
                prog.update(1)
            if prog.bar is not None and running:
                now = ", ".join(f"{c.name} e{_epoch_of(rd.config(c.name).path)}/{c.epochs}"
                                for c in list(running.values())[:3])
                prog.bar.set_postfix_str(now + (" …" if len(running) > 3 else ""))
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    finally:
        prog.close()


__all__ = ["run_sweep_ray", "train_task"]
