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

    noun = pred.item_noun
    bad = [r for r in results if r.error is not None]
    from_cache = sum(r.source == "cache" for r in results)
    _log(f"{len(results) - len(bad)} of {len(results)} {noun} scored in {seconds:.1f} s"
         + (f" ({from_cache} from the cache)" if pred.cache is not None else "") + (f" -> {out}" if out else ""))
    if pred.cache is not None:
        _log(summarize([r.cache for r in results if r.cache is not None]))
        stale = [r for r in results if r.cache is not None and STALE in r.cache.status.values()]
        for r in stale[:10]:
            _log(f"  {r.clip_id}: {r.cache.detail}; computed from the file")
    if bad:
        _log(f"{len(bad)} {noun} failed (error column):")
        for r in bad[:10]:
            print(f"  {r.clip_id}: {r.error}", file=sys.stderr)
        if len(bad) > 10:
            print(f"  … and {len(bad) - 10} more", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def run_cli(args: argparse.Namespace) -> int:
    """``mmmos predict``: 0 when every clip was scored, 3 when some rows carry an error; raises
    :class:`PredictorError` for a usage problem.  One path for every task: the task's predictor class
    (:func:`.loader.predictor_class`, from its declared inputs) says which options it refuses, what the items
    need (:func:`.inputs.expand_inputs`), its log line and its table's columns."""
    from mmmos.core.tasks import get_task
    from mmmos.core.threads import apply_thread_policy

    from .inputs import expand_inputs
    from .loader import load_predictor, predictor_class
    from .spec import load_spec
    from mmmos.core.outputs import check_output_file

    from .tables import output_format, write_table

    output_format(args.out)
    if args.out is not None:
        check_output_file(args.out)  # before the clips are scored, not after
    weights = parse_weights(args.weights)
    spec = load_spec(args.model)  # the folder is read (and its pins checked) once, here
    task = get_task(spec.task)
    cls = predictor_class(task)
    unused = [o for o in cls.unused_options if getattr(args, o, None)]
    if unused:
        raise PredictorError(cls.unused_option_error(unused[0], args.model))
    items = expand_inputs(args.inputs, args.data_root, task=task, prompt=getattr(args, "prompt", None),
                          prompts=getattr(args, "prompts", None))
    threads = apply_thread_policy(items=len(items), threads=getattr(args, "threads", None),
                                  load_aware=True)
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
    _log(pred.run_header(len(items), threads))
    t0 = time.perf_counter()
    results, notes = _score(pred, items, not args.no_progress)
    write_table(pred.table(results, getattr(args, "per_window", False), getattr(args, "distribution", False)),
                args.out)
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


__all__ = ["add_arguments", "parse_weights", "run_cli"]
