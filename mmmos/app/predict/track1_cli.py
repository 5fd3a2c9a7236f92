"""``mmmos predict`` for a Track 1 model: (audio, prompt) pairs in, the task's scores out (see :mod:`.track1`)."""
from __future__ import annotations

import sys
import time
import warnings

from mmmos.core.errors import EXIT_OK, EXIT_PARTIAL

from .cache import DamagedCacheWarning, summarize
from .errors import PredictorError

_AUDIO_ONLY = ("window", "hop", "per_window")


def run_prompted(args, weights: dict[str, str]) -> int:
    """Score the inputs with their prompts; 0 when every pair was scored, 3 when some rows carry an error."""
    from mmmos.core.threads import apply_thread_policy
    from mmmos.core.tasks import get_task

    from .spec import read_predictor_spec
    from .tables import write_table
    from .track1 import Track1Predictor, expand_prompted_inputs, prompted_table

    given = [o for o in _AUDIO_ONLY if getattr(args, o, None)]
    if given:
        raise PredictorError(f"--{given[0].replace('_', '-')} does not apply to a Track 1 model (its clips are "
                             f"scored in the windows the sweep used: whole, or crop-long windows averaged)")
    task = get_task(read_predictor_spec(args.model).get("task"))
    items = expand_prompted_inputs(args.inputs, task, prompt=args.prompt, prompts=args.prompts,
                                   data_root=args.data_root)
    threads = apply_thread_policy(items=len(items), threads=getattr(args, "threads", None))
    pred = Track1Predictor.load(args.model, weights, None if args.device == "auto" else args.device,
                                batch_size=args.batch_size, precision=getattr(args, "precision", "auto"),
                                cache=getattr(args, "cache", None))
    for note in pred.cache_notes:
        print(f"mmmos predict: {note}", file=sys.stderr)
    print(f"mmmos predict: Track 1 model of {len(pred.members)} members; {len(items)} (audio, prompt) pairs; "
          f"{threads} math thread{'s' if threads != 1 else ''}", file=sys.stderr)
    t0 = time.perf_counter()
    n_notes = len(pred.cache_notes)
    with warnings.catch_warnings():  # damaged cached clips are worded in the log below, not as raw warnings
        warnings.simplefilter("ignore", DamagedCacheWarning)
        results = list(pred.predict_items(items, progress=not args.no_progress))
    write_table(prompted_table(results, pred.axes, args.distribution), args.out)
    bad = [r for r in results if r.error is not None]
    from_cache = sum(r.source == "cache" for r in results)
    print(f"mmmos predict: {len(results) - len(bad)} of {len(results)} pairs scored in "
          f"{time.perf_counter() - t0:.1f} s" + (f" ({from_cache} from the cache)" if pred.cache else "")
          + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    if pred.cache is not None:
        print(f"mmmos predict: {summarize([r.cache for r in results if r.cache is not None])}", file=sys.stderr)
        for note in pred.cache_notes[n_notes:]:
            print(f"mmmos predict: {note}", file=sys.stderr)
    for r in bad[:10]:
        print(f"  {r.clip_id}: {r.error}", file=sys.stderr)
    return EXIT_PARTIAL if bad else EXIT_OK


__all__ = ["run_prompted"]
