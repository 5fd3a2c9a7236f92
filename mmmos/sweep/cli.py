"""``mmmos sweep``: its options and the command (no torch/polars/scipy at import: ``--help`` stays fast)."""
from __future__ import annotations

import argparse
import time

from mmmos.core.argtypes import non_negative_int, positive_float, positive_int
from mmmos.core.tasks import DEFAULT_TASK, TASKS

from .configs import PAPER_SETS, TrainConfig, ablation_configs, paper_configs
from .labels import load_labels
from .options import SweepOptionError, parse_evals, report_results


def parse_sets(s: str | None) -> dict[str, tuple[str, ...]]:
    """``bienc=a+b,trienc=a+b+c`` -> {"bienc": ("a", "b"), "trienc": ("a", "b", "c")}."""
    if not s:
        return dict(PAPER_SETS)
    out = {}
    for part in s.split(","):
        if part.count("=") != 1:
            raise SweepOptionError(f"--sets expects NAME=enc+enc,..., got {part!r}")
        k, v = part.split("=")
        out[k.strip()] = tuple(x for x in v.split("+") if x)
    missing = {"bienc", "trienc"} - set(out)
    if missing:
        raise SweepOptionError(f"--sets must define bienc and trienc (missing {', '.join(sorted(missing))})")
    return out



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="the frame cache written by `mmmos extract`")
    p.add_argument("--run", required=True, help="output folder (resumable: finished configurations are skipped)")
    p.add_argument("--train", required=True, help="training manifest (labels)")
    p.add_argument("--dev", required=True, help="dev manifest: early stopping and the first evaluation set")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=PATH",
                   help="further evaluation sets, e.g. pam_dev=combined_pam_dev.csv (repeatable; one added to a "
                        "finished run is predicted with the trained heads, without retraining)")
    p.add_argument("--data-root", help="replaces /your_path/ in Track 2 lists")
    p.add_argument("--task", default=DEFAULT_TASK, choices=list(TASKS),
                   help=f"what is predicted (axes and score range; default {DEFAULT_TASK})")
    p.add_argument("--sets", help="encoder sets as bienc=a+b,trienc=a+b+c (default bienc=wavlm+m2d,"
                                  "trienc=wavlm+muq+m2d)")
    p.add_argument("--ablation", action="store_true", help="train the 7 encoder subsets with mlp+utmos instead")
    p.add_argument("--only", help="comma-separated configuration names to train (e.g. trienc-mlp-utmos)")
    p.add_argument("--heads", help="comma-separated subset of heads (mlp,blstm_h,blstm_t)")
    p.add_argument("--losses", help="comma-separated subset of losses (utmos,contrastive,dcq,ccc)")
    p.add_argument("--epochs", type=positive_int, default=None, help="default 10 (track1: 100)")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="epochs without dev-loss improvement before stopping (default 2; track1: 15)")
    p.add_argument("--lr", type=positive_float, default=None, help="default 1e-4 (Adam); track1: 5e-5 (AdamW)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="training batch size (default 32 for pooled heads, 16 for frame heads; track1: 32)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="default 42 (track1: the recipe's seeds)")
    p.add_argument("--crop", type=positive_float, default=None,
                   help="training crop length in seconds (default 10; track1: 30)")
    p.add_argument("--audio-encoder", default=None, help="track1: the audio encoder (default muq)")
    p.add_argument("--text-encoder", default=None, help="track1: the prompt text encoder (default roberta)")
    p.add_argument("--jobs", type=positive_int, default=1, help="configurations trained in parallel processes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (heads are small; cpu is the default)")
    p.add_argument("--force", action="store_true", help="retrain finished configurations (also after changed labels)")
    p.add_argument("--allow-missing-clips", action="store_true",
                   help="train and evaluate without listed clips that are missing from or damaged in the cache "
                        "(counted on screen, ids recorded in each config.json); by default they fail the "
                        "configuration (exit 3) naming them")
    p.add_argument("--no-progress", action="store_true")


def _filter(cfgs: list[TrainConfig], a) -> list[TrainConfig]:
    # Track 2 configurations: audio-only heads and z-space losses (Track 1's are chosen by --task track1)
    from mmmos.heads import AUDIO_HEADS as HEADS
    from mmmos.losses import Z_LOSSES as LOSSES

    for attr, given, valid in (("head", a.heads, HEADS), ("loss", a.losses, LOSSES)):
        if given:
            wanted = given.split(",")
            bad = [w for w in wanted if w not in valid]
            if bad:
                raise SweepOptionError(f"unknown {attr}(s) {', '.join(bad)}; valid: {', '.join(valid)}")
            cfgs = [c for c in cfgs if getattr(c, attr) in wanted]
    if a.only:
        want = a.only.split(",")
        names = {c.name for c in cfgs}
        bad = [w for w in want if w not in names]
        if bad:
            raise SweepOptionError(f"unknown configuration(s) {', '.join(bad)}; valid: {', '.join(sorted(names))}")
        cfgs = [c for c in cfgs if c.name in want]
    return cfgs


def _given(value, default):
    """An option's value, or the Track 2 default when it was not given (Track 1 has its own defaults)."""
    return default if value is None else value


def configs_from_args(a) -> list[TrainConfig]:
    """The Track 2 configurations the options select, with the training options applied."""
    from .recipes import recipe_for

    task = getattr(a, "task", None) or DEFAULT_TASK
    if recipe_for(task).configs_from_args != f"{__name__}:configs_from_args":  # a task with a recipe of its own
        raise SweepOptionError(f"--task {task}: these are the generic head x loss configurations; {task}'s come "
                               f"from its recipe (mmmos.sweep.recipes.recipe_for({task!r}))")
    sets = parse_sets(a.sets)
    cfgs = ablation_configs(tuple(sets["trienc"])) if a.ablation else paper_configs(sets)
    cfgs = _filter(cfgs, a)
    for c in cfgs:
        c.epochs, c.patience, c.lr = _given(a.epochs, 10), _given(a.patience, 2), _given(a.lr, 1e-4)
        c.seed, c.crop_seconds, c.device = _given(a.seed, 42), _given(a.crop, 10.0), a.device
        c.batch_size = getattr(a, "batch_size", None)
        c.task = getattr(a, "task", None) or DEFAULT_TASK
        c.allow_missing_clips = bool(getattr(a, "allow_missing_clips", False))
    return cfgs


def prepare(a):
    """``(recipe, configurations, train, dev, evals)`` of parsed ``mmmos sweep`` options: the task's recipe
    builds the configurations, every list is read with the task's rules.  The local sweep and Ray share it."""
    from .recipes import recipe_for

    task = getattr(a, "task", None) or DEFAULT_TASK
    recipe = recipe_for(task)
    cfgs = recipe.fn("configs_from_args")(a)
    pairs = parse_evals(a.eval)  # before reading any list
    train = load_labels("train", a.train, a.data_root, task)
    dev = load_labels("dev", a.dev, a.data_root, task)
    evals = [load_labels(k, v, a.data_root, task) for k, v in pairs]
    return recipe, cfgs, train, dev, evals


def run_cli(a) -> int:
    """The local sweep of the task's recipe; 0 ok, 3 when some configuration failed."""
    from .run import run_sweep

    recipe, cfgs, train, dev, evals = prepare(a)
    t = time.perf_counter()
    res = run_sweep(cfgs, a.store, a.run, train, dev, evals, jobs=getattr(a, "jobs", 1) or 1, force=a.force,
                    progress=not a.no_progress)
    return report_results(res, a.run, time.perf_counter() - t, recipe.report_what, recipe.report_unit)


__all__ = ["SweepOptionError", "add_arguments", "configs_from_args", "parse_evals", "parse_sets", "prepare", "report_results",
           "run_cli"]
