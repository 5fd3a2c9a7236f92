"""``mmmos predict``: options and the command (``add_arguments`` / ``run_cli``).

Returns 0 when every clip was scored and :data:`EXIT_PARTIAL` (3) when some rows carry an error; usage
problems (bad model folder, weights that do not match, bad output name or window) raise
:class:`PredictorError`, a ``UserError`` the CLI prints as one line (exit 2).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Sequence

from mmmos.core.argtypes import positive_float, positive_int
from mmmos.core.errors import EXIT_OK, EXIT_PARTIAL

from .errors import PredictorError


def parse_weights(items: Sequence[str] | None) -> dict[str, str]:
    """``NAME=PATH`` items (repeatable or comma-separated), as ``mmmos extract --weights``."""
    from mmmos.extract import parse_weights as parse

    try:
        return parse(items)
    except ValueError as e:
        raise PredictorError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``mmmos predict``."""
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (searched recursively) or manifests (Track 2 list, CSV with a path "
                        "column, AES JSONL)")
    p.add_argument("--model", required=True, help="predictor folder written by `mmmos ensemble ... --export DIR`")
    p.add_argument("--weights", action="append",
                   help="NAME=PATH local encoder weights, e.g. wavlm=/models/wavlm-base-plus (repeatable or "
                        "comma-separated); each file's sha256 must equal the model's record")
    p.add_argument("--cache", help="a frame cache to read instead of running encoders, for clips whose recorded "
                                   "source has the same bytes as the input file (checked by sha256)")
    p.add_argument("--out", help="output file: .csv, .jsonl or .parquet (default: CSV to stdout)")
    p.add_argument("--window", type=positive_float, default=None,
                   help="window length in seconds for long audio (default: the crop the model was trained on)")
    p.add_argument("--hop", type=positive_float, default=None,
                   help="window hop in seconds, at most --window (default: the window); the last window is the "
                        "remainder")
    p.add_argument("--per-window", action="store_true",
                   help="add one row per window (window_start, window_end, weight) after each clip's row")
    p.add_argument("--data-root", help="folder that replaces /your_path/ in Track 2 lists and roots relative paths")
    p.add_argument("--device", default="auto", help="encoder device: auto (cuda -> mps -> cpu), cpu, cuda, mps")
    p.add_argument("--batch-size", type=positive_int, default=8, help="equal-shape chunks of one clip per encoder "
                                                                      "forward")
    from mmmos.extract.precision import PRECISIONS

    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="encoder compute precision (auto: fp16 on cuda; on CPU bf16 for the encoders where it pays "
                        "and the CPU computes bf16 natively, else fp32); frames are rounded to the training "
                        "cache's dtype either way")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="math threads of this process (default: 1 when scoring several files - one short forward "
                        "at a time gains nothing from more and slows down on a busy CPU; all cores for one file; "
                        "MMMOS_THREADS=N sets it for every command)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    t1 = p.add_argument_group("Track 1 models (audio + prompt)")
    t1.add_argument("--prompt", default=None,
                    help="the text prompt of every audio file given (and of manifest rows without one)")
    t1.add_argument("--prompts", default=None,
                    help="folder of the MusicEval prompt tables (default: beside/above the lists)")
    t1.add_argument("--distribution", action="store_true",
                    help="add the predicted bin probabilities <axis>_p00.. (distribution members)")


def _log(msg: str) -> None:
    print(f"mmmos predict: {msg}", file=sys.stderr)


def _report(results: list, seconds: float, out: str | None, pred) -> int:
    from .cache import STALE, summarize

    bad = [r for r in results if r.error is not None]
    from_cache = sum(r.source == "cache" for r in results)
    _log(f"{len(results) - len(bad)} of {len(results)} clips scored in {seconds:.1f} s ({from_cache} from the cache)"
         + (f" -> {out}" if out else ""))
    if pred.cache is not None:
        _log(summarize([r.cache for r in results if r.cache is not None]))
        stale = [r for r in results if r.cache is not None and STALE in r.cache.status.values()]
        for r in stale[:10]:
            _log(f"  {r.clip_id}: {r.cache.detail}; computed from the file")
    if bad:
        _log(f"{len(bad)} clips failed (error column):")
        for r in bad[:10]:
            print(f"  {r.clip_id}: {r.error}", file=sys.stderr)
        if len(bad) > 10:
            print(f"  … and {len(bad) - 10} more", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def run_cli(args: argparse.Namespace) -> int:
    """``mmmos predict``: 0 when every clip was scored, 3 when some rows carry an error; raises
    :class:`PredictorError` for a usage problem."""
    from mmmos.core.threads import apply_thread_policy

    from mmmos.core.tasks import get_task

    from .inputs import expand_inputs
    from .loader import load_predictor
    from .spec import load_spec
    from .tables import output_format, results_table, write_table

    output_format(args.out)
    weights = parse_weights(args.weights)
    spec = load_spec(args.model)  # the folder is read (and its pins checked) once, here
    task = get_task(spec.task)
    if "prompt" in task.inputs:
        return _run_prompted(args, weights, spec, task)
    if getattr(args, "prompt", None) or getattr(args, "prompts", None) or getattr(args, "distribution", False):
        raise PredictorError("--prompt, --prompts and --distribution apply to Track 1 models (audio + prompt); "
                             f"{args.model} scores audio alone")
    items = expand_inputs(args.inputs, args.data_root)
    threads = apply_thread_policy(items=len(items), threads=getattr(args, "threads", None), load_aware=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = load_predictor(args.model, weights, None if args.device == "auto" else args.device, spec=spec,
                              cache=args.cache, window=args.window, hop=args.hop, batch_size=args.batch_size,
                              precision=getattr(args, "precision", "auto"))
    for w in caught:
        _log(f"warning: {w.message}")
    for note in pred.cache_notes:
        _log(note)
    if pred.stack is not None:
        _log(f"stacked ensemble of {len(pred.members)} members: ridge meta-model fitted on {pred.stack.fit_set or '?'}, "
             f"scores clamped to {pred.stack.clamp[0]:g}-{pred.stack.clamp[1]:g}")
    _log(f"windows of {pred.window:g} s, hop {pred.hop:g} s"
         + (" (the model's training crop)" if args.window is None else "")
         + f"; {threads} math thread{'s' if threads != 1 else ''}; precision "
         + ", ".join(f"{pred.records[k]['name']} {p}" for k, p in pred.encoders.precisions.items()))
    t0 = time.perf_counter()
    results, notes = _score(pred, items, not args.no_progress)
    write_table(results_table(results, args.per_window, pred.axes), args.out)
    for note in notes:
        _log(note)
    return _report(results, time.perf_counter() - t0, args.out, pred)


def _score(pred, items, progress: bool) -> tuple[list, list[str]]:
    """Every item scored, and the cache notes the scoring added; damaged cached clips are worded in the
    command's log by the caller, not as raw warnings."""
    from .cache import DamagedCacheWarning

    n_notes = len(pred.cache_notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedCacheWarning)
        results = list(pred.predict_items(items, progress=progress))
    return results, pred.cache_notes[n_notes:]


_AUDIO_ONLY = ("window", "hop", "per_window")


def _run_prompted(args, weights: dict[str, str], spec, task) -> int:
    """``run_cli`` for a task whose clips come with prompts: score the inputs with their prompts; 0 when every
    pair was scored, 3 when some rows carry an error."""
    from mmmos.core.threads import apply_thread_policy

    from .cache import summarize
    from .loader import load_predictor
    from .tables import write_table
    from .track1 import expand_prompted_inputs, prompted_table

    given = [o for o in _AUDIO_ONLY if getattr(args, o, None)]
    if given:
        raise PredictorError(f"--{given[0].replace('_', '-')} does not apply to a Track 1 model (its clips are "
                             f"scored in the windows the sweep used: whole, or crop-long windows averaged)")
    items = expand_prompted_inputs(args.inputs, task, prompt=args.prompt, prompts=args.prompts,
                                   data_root=args.data_root)
    threads = apply_thread_policy(items=len(items), threads=getattr(args, "threads", None), load_aware=True)
    pred = load_predictor(args.model, weights, None if args.device == "auto" else args.device, spec=spec,
                          batch_size=args.batch_size, precision=getattr(args, "precision", "auto"),
                          cache=getattr(args, "cache", None))
    for note in pred.cache_notes:
        print(f"mmmos predict: {note}", file=sys.stderr)
    print(f"mmmos predict: Track 1 model of {len(pred.members)} members; {len(items)} (audio, prompt) pairs; "
          f"{threads} math thread{'s' if threads != 1 else ''}", file=sys.stderr)
    t0 = time.perf_counter()
    results, notes = _score(pred, items, not args.no_progress)
    write_table(prompted_table(results, pred.axes, args.distribution), args.out)
    bad = [r for r in results if r.error is not None]
    from_cache = sum(r.source == "cache" for r in results)
    print(f"mmmos predict: {len(results) - len(bad)} of {len(results)} pairs scored in "
          f"{time.perf_counter() - t0:.1f} s" + (f" ({from_cache} from the cache)" if pred.cache else "")
          + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    if pred.cache is not None:
        print(f"mmmos predict: {summarize([r.cache for r in results if r.cache is not None])}", file=sys.stderr)
        for note in notes:
            print(f"mmmos predict: {note}", file=sys.stderr)
    for r in bad[:10]:
        print(f"  {r.clip_id}: {r.error}", file=sys.stderr)
    return EXIT_PARTIAL if bad else EXIT_OK


__all__ = ["add_arguments", "parse_weights", "run_cli"]
