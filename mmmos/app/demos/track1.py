"""``mmmos demo --task track1``: Track 1 end to end on the built-in synthetic MusicEval-format corpus.

corpus (:func:`mmmos.app.demos.track1_corpus.make_track1_corpus`) -> extract (``logmel_slow`` audio frames, 6.25 Hz,
+ ``hashtext`` prompt tokens; both weight-free) -> the Track 1 recipe (``mmmos.sweep.track1``) with the demo's
small head and few epochs -> a shuffled-label control run -> ensembles (+ stack) -> report -> export the
ensemble, score (audio, prompt) pairs with it -> answer file scored back with ``mmmos score --task track1``.

Why ``logmel_slow``: the dual-branch head attends over every audio frame; at 6.25 Hz a 6-s clip is 38 frames
instead of 300 (``logmel``), so an epoch of the recipe takes about a second on 2 CPU cores. The head is the
recipe's architecture with small dimensions (:data:`SMALL_HEAD`); the full-size head is a GPU job (see
``bench/results/track1.md``). Re-running resumes: corpus, cache and finished runs are reused.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

TASK = "track1"
AUDIO_ENCODER, TEXT_ENCODER = "logmel_slow", "hashtext"
#: DualBranchHead options of the demo (the recipe's: ta_dim 768, ff 2048, MLPs 512-256 / 384-192 (CORAL
#: 512-256 / 512-256), LSTM head 512 / 384)
SMALL_HEAD = {"ta_dim": 64, "n_heads": 2, "ff_dim": 128, "mi_hidden": [64], "ta_hidden": [64], "mi_lstm": 64,
              "ta_lstm": 64}
CONTROL_RUN = "t1-gauss-s1984"
STEPS = 8
DEFAULTS = {"n_train": 240, "n_dev": 72, "n_pam": 48, "epochs": 25, "lr": 1e-3}


def _step(i: int, text: str) -> None:
    print(f"[{i}/{STEPS}] {text}", flush=True)


def demo_configs(epochs: int, lr: float, only: list[str] | None = None):
    """The recipe's runs on the demo encoders with :data:`SMALL_HEAD`, ``epochs``, ``lr`` and 30-s crops."""
    from mmmos.sweep.track1 import recipe_configs

    cfgs = recipe_configs(AUDIO_ENCODER, TEXT_ENCODER)
    if only:
        cfgs = [c for c in cfgs if c.name in only]
    for c in cfgs:
        c.head_cfg.update(SMALL_HEAD)
        c.epochs, c.lr, c.patience, c.batch_size = epochs, lr, max(3, epochs // 3), 16
    return cfgs


def shuffled_copy(src: str | Path, dst: str | Path, seed: int = 0) -> Path:
    """A MOS list with the label columns permuted across clips (the control: same clips, no signal)."""
    import numpy as np

    lines = Path(src).read_text(encoding="utf-8").splitlines()
    ids = [ln.split(",", 1)[0] for ln in lines]
    labels = [ln.split(",", 1)[1] for ln in lines]
    perm = np.random.default_rng(seed).permutation(len(labels))
    Path(dst).write_text("".join(f"{i},{labels[j]}\n" for i, j in zip(ids, perm)), encoding="utf-8")
    return Path(dst)


def _sweep(cfgs, store: str, run: Path, sets: dict[str, str], evals: list[str], jobs: int, progress: bool) -> dict:
    from mmmos.sweep.labels import load_labels
    from mmmos.sweep.track1 import run_track1_sweep

    tr, dv = (load_labels(s, sets[s], None, TASK) for s in ("train", "dev"))
    ev = [load_labels(s, sets[s], None, TASK) for s in evals]
    return run_track1_sweep(cfgs, store, run, tr, dv, ev, jobs=jobs, progress=progress)


def dev_srcc(run: Path, config: str) -> dict[str, float]:
    """Utterance-level dev SRCC per axis (and composite) that ``config`` recorded."""
    import polars as pl

    m = pl.read_parquet(run / "configs" / config / "metrics.parquet")
    m = m.filter((pl.col("set") == "dev") & (pl.col("level") == "utterance") & (pl.col("metric") == "SRCC"))
    return {a: float(v) for a, v in zip(m["axis"], m["value"])}


def best_config(run: Path, axis: str = "composite") -> str:
    """The configuration with the highest dev utterance SRCC on ``axis``."""
    from mmmos.core.rundir import RunDir

    names = RunDir(run).finished()
    return max(names, key=lambda n: (dev_srcc(run, n).get(axis, float("-inf")), n))


def _predict(out: Path, corpus: Path, model: Path) -> Path:
    """Score the first PAM-set clips with their prompts (the prompt tables) through the exported predictor."""
    from mmmos.app.predict import expand_inputs, load_predictor, write_table
    from mmmos.core.tasks import get_task

    items = expand_inputs([str(corpus / "sets" / "pam_dev_mos_list.txt")], task=get_task(TASK),
                          prompts=str(corpus))[:5]
    pred = load_predictor(model, device="cpu")
    table = pred.table(list(pred.predict_items(items)))
    write_table(table, out / "predictions.csv")
    print(table.select("clip_id", "prompt", *pred.axes, "error"))
    return out / "predictions.csv"


def run_track1_demo(a: argparse.Namespace) -> int:
    """The whole Track 1 job (see the module doc); 0 ok, 3 when a run failed."""
    import json

    from mmmos.app.demos.track1_corpus import make_track1_corpus
    from mmmos.app.predict import export_predictor
    from mmmos.app.demos.common import ensembles_and_report
    from mmmos.app.scoring import score
    from mmmos.core.metrics import format_markdown
    from mmmos.core.tasks import get_task
    from mmmos.extract.runner import ExtractConfig, format_report, run_extract, save_report

    opt = {k: (getattr(a, k, None) if getattr(a, k, None) is not None else v) for k, v in DEFAULTS.items()}
    t0, task = time.perf_counter(), get_task(TASK)
    out = Path(a.out)
    corpus, run, store = out / "corpus", out / "run", str(out / "cache.zarr")
    sets = {s: str(corpus / "sets" / f"{s}_mos_list.txt") for s in ("train", "dev", "pam_dev")}
    if not Path(sets["pam_dev"]).is_file():
        _step(1, f"writing the synthetic Track 1 corpus to {corpus}")
        make_track1_corpus(corpus, seed=a.seed, n_train=opt["n_train"], n_dev=opt["n_dev"], n_pam=opt["n_pam"])
    else:
        _step(1, f"reusing the Track 1 corpus in {corpus}")
    _step(2, f"extracting {AUDIO_ENCODER} audio frames and {TEXT_ENCODER} prompt tokens")
    rep = run_extract(ExtractConfig(manifests=list(sets.values()), store=store, encoders=[AUDIO_ENCODER, TEXT_ENCODER],
                                    task=TASK, progress=not a.no_progress))
    save_report(rep, store)
    print(format_report(rep, store), flush=True)
    _step(3, f"training the Track 1 recipe (8 runs x 3 checkpoints, small head, {opt['epochs']} epochs)")
    res = _sweep(demo_configs(opt["epochs"], opt["lr"]), store, run, sets, ["pam_dev"], a.jobs, not a.no_progress)
    if any(r and "error" in r for r in res.values()):
        print("demo: some runs failed (see above)")
        return 3
    _step(4, "control: the same run on shuffled training labels")
    sets_c = dict(sets, train=str(shuffled_copy(sets["train"], corpus / "sets" / "train_shuffled_mos_list.txt", a.seed)))
    _sweep(demo_configs(opt["epochs"], opt["lr"], [CONTROL_RUN]), store, out / "control_run", sets_c, [], 1,
           not a.no_progress)
    best = best_config(run)
    fig, ctl = dev_srcc(run, best), dev_srcc(out / "control_run", CONTROL_RUN)
    for ax in (*task.axes, "composite"):
        print(f"  dev SRCC {ax:>9}: best configuration {best} {fig.get(ax, float('nan')):.3f}   "
              f"shuffled-label control {ctl.get(ax, float('nan')):.3f}")
    _step(5, "ensembles from the saved predictions (answer file for pam_dev) and the report")
    report = ensembles_and_report(run, out / "answer.txt")
    _step(6, f"report written: {report}")
    _step(7, "answer file scored back (mmmos score --task track1)")
    result = score(out / "answer.txt", sets["pam_dev"], task=task)
    print(format_markdown(result.table, digits=3, task=task), end="")
    _step(8, "exporting the 'submitted' ensemble and scoring (audio, prompt) pairs with it")
    strat = json.loads((run / "ensembles" / "members.json").read_text())["strategies"]
    members = strat["submitted"].get("members") or strat["all"]["members"]
    model = export_predictor(run, members, out / "model")
    preds = _predict(out, corpus, model)
    print(f"Track 1 demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"  summary:     {run / 'summary.md'}")
    print(f"  control:     {out / 'control_run' / 'summary.md'}")
    print(f"  ensembles:   {run / 'ensembles' / 'table_iv.md'}")
    print(f"  answer file: {out / 'answer.txt'}   (mmmos score --task track1 --pred {out / 'answer.txt'} "
          f"--truth {sets['pam_dev']})")
    print(f"  submission:  {out / 'answer.zip'}   (answer.txt inside, as the challenge takes it)")
    print(f"  report:      {report}")
    print(f"  model:       {model}   (try: mmmos predict FILE.wav --prompt TEXT --model {model})")
    print(f"  predictions: {preds}")
    return 0


__all__ = ["AUDIO_ENCODER", "CONTROL_RUN", "SMALL_HEAD", "TEXT_ENCODER", "best_config", "demo_configs", "dev_srcc",
           "run_track1_demo", "shuffled_copy"]
