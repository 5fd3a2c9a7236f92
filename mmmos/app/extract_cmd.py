"""``mmmos extract``: run frozen encoders over the clips of manifests and cache their frames.

Exit status: 0 all clips cached, 3 some clips failed (listed in ``<store>/extract_failures.csv``);
user errors (unknown encoder, missing weights, missing device, bad store) raise ``UserError`` (exit 2).
"""
from __future__ import annotations

import argparse

from mmmos.core.argtypes import positive_int
from mmmos.core.errors import EXIT_OK, EXIT_PARTIAL, UserError

DESCRIPTION = ("Run frozen encoders over every clip of the manifests and write last-layer frames to the cache. "
               "Valid clips already cached for the same encoder identity and the same source audio are skipped; "
               "damaged clips and clips whose audio changed are re-extracted; bad files are listed in "
               "<store>/extract_failures.csv (exit status 3).")


def parse_shard(s: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in s.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N with 0 <= I < N, got {s!r}") from None
    return i, n


def add_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--manifest", action="append", required=True,
                   help="a Track 2 list, MMMOS combined list, AES JSONL, plain CSV or a folder of audio (repeatable)")
    e.add_argument("--store", required=True, help="cache folder (created if absent)")
    e.add_argument("--encoders", default="logmel", help="comma-separated encoder names: wavlm,muq,m2d,logmel; text (track1): roberta,hashtext")
    e.add_argument("--weights", action="append",
                   help="NAME=PATH local weights, e.g. wavlm=/models/wavlm-base-plus (repeatable or comma-separated)")
    e.add_argument("--backend", choices=["zarr", "hdf5"], default=None,
                   help="storage backend for a new cache (default zarr; an existing cache keeps its own)")
    e.add_argument("--data-root", help="folder that replaces the /your_path/ placeholder and roots relative paths")
    e.add_argument("--device", default="auto", help="auto (cuda -> mps -> cpu), cpu, cuda, cuda:1, mps")
    from mmmos.extract.precision import PRECISIONS

    e.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="encoder compute precision, resolved per encoder (auto: bf16 on cuda, fp16 where the GPU lacks "
                        "bf16; on CPU bf16 where native and the encoder gains, else fp32; MMMOS_CPU_BF16=0/1 forces "
                        "the CPU rule); recorded as computed, part of the cache identity")
    e.add_argument("--store-dtype", choices=["float16", "float32"], default="float16", help="dtype of stored frames")
    e.add_argument("--batch-size", type=positive_int, default=None,
                   help="equal-shape encoder inputs per forward pass (default: 32 on a GPU, halved when it runs out of "
                        "memory; 1 on CPU where batching measured slower)")
    e.add_argument("--decode-workers", type=positive_int, default=None,
                   help="threads decoding and resampling audio (default: up to 8 beside a GPU, leaving two cores; "
                        "1 on CPU, where they would compete with the encoders)")
    e.add_argument("--shard", type=parse_shard, default=(0, 1),
                   help="I/N: process only the clips whose id hashes to shard I of N (parallel workers, one store)")
    e.add_argument("--limit", type=positive_int, help="only the first N clips (for a trial run)")
    e.add_argument("--verify", action="store_true",
                   help="read every cached clip (checksums) before deciding what to reuse; without it only cheap "
                        "checks run (metadata, data present, damage recorded by earlier reads or `mmmos cache --verify`)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    # --- Track 1 (issue 9): the manifests' task and where the clips' text prompts come from ---
    add_prompt_arguments(e)
    # --- Ray (issue 11): --ray [ADDRESS], --workers, --cpus-per-worker, --gpus-per-worker, --ray-retries ---
    from mmmos.app.ray_cluster import add_ray_arguments

    add_ray_arguments(e, "worker")


def add_prompt_arguments(e: argparse.ArgumentParser) -> None:
    """``--task``, ``--prompts DIR``, ``--prompt TEXT`` (Track 1 manifests and text encoders)."""
    from mmmos.core.tasks import DEFAULT_TASK, TASKS

    e.add_argument("--task", default=DEFAULT_TASK, choices=list(TASKS),
                   help="the manifests' task (track1: MusicEval lists, clips with text prompts; text encoders "
                        "roberta/hashtext encode each distinct prompt once)")
    e.add_argument("--prompts", metavar="DIR",
                   help="track1: folder holding prompt_info.txt (and demo_prompt_info.txt); default: beside the "
                        "list, its parent folder, then --data-root (each also in sets/)")
    e.add_argument("--prompt", metavar="TEXT", help="track1: one prompt for every clip that has none (e.g. a folder)")


def _check_text_encoders(a: argparse.Namespace, encoders: list[str]) -> None:
    from mmmos.core.manifests import has_prompts
    from mmmos.core.tasks import get_task
    from mmmos.extract import modality

    text = [e for e in encoders if modality(e) == "text"]
    if text and not has_prompts(get_task(getattr(a, "task", None))):
        raise UserError(f"text encoder(s) {', '.join(text)} need clips with prompts: use --task track1")


def config_from_args(a: argparse.Namespace):
    """The :class:`ExtractConfig` for parsed arguments; unknown encoders or missing weights are user errors."""
    from mmmos.extract import ENCODERS, parse_weights
    from mmmos.extract.runner import ExtractConfig

    try:
        weights = parse_weights(a.weights)
    except ValueError as e:
        raise UserError(str(e)) from None
    encoders = [e.strip() for e in a.encoders.split(",") if e.strip()]
    if not encoders:
        raise UserError("--encoders is empty; name at least one encoder (e.g. logmel)")
    unknown = [e for e in encoders if e not in ENCODERS]
    if unknown:
        raise UserError(f"unknown encoder(s) {', '.join(unknown)}; known: {', '.join(sorted(ENCODERS))}")
    from mmmos.extract import needs_weights

    _check_text_encoders(a, encoders)
    missing = [e for e in encoders if needs_weights(e) and e not in weights]
    if missing:
        raise UserError("no weights given for " + ", ".join(missing) + " (use --weights NAME=PATH; models load only "
                        "from local files — see README 'Encoder weights')")
    return ExtractConfig(
        manifests=a.manifest, store=a.store, encoders=encoders, weights=weights, backend=a.backend,
        data_root=a.data_root, device=a.device, precision=a.precision, store_dtype=a.store_dtype,
        batch_size=a.batch_size, decode_workers=getattr(a, "decode_workers", None), shard=a.shard, limit=a.limit, progress=not a.no_progress,
        verify=getattr(a, "verify", False), task=getattr(a, "task", None), prompts=getattr(a, "prompts", None),
        prompt=getattr(a, "prompt", None))


def run_cli(a: argparse.Namespace) -> int:
    from mmmos.extract.runner import format_report, run_extract, save_report

    cfg = config_from_args(a)
    # --- Ray (issue 11): the same extraction on a Ray actor pool (mmmos.app.ray_extract) ---
    from mmmos.app.ray_cluster import options_from_args

    ray_opts = options_from_args(a, "worker")
    if ray_opts is not None:
        from mmmos.app.ray_extract import run_extract_ray

        rep = run_extract_ray(cfg, ray_opts).report
    else:  # one process over every clip: all cores (or MMMOS_THREADS), see mmmos.core.threads
        from mmmos.core.threads import apply_thread_policy

        apply_thread_policy()
        rep = run_extract(cfg)
    save_report(rep, a.store, cfg.shard)
    print(format_report(rep, a.store, cfg.shard))
    if getattr(rep, "text", None):  # Track 1: the text encoders' prompts (extract/text.py)
        from mmmos.extract.text import format_text_results

        print(format_text_results(rep.text))
    return EXIT_PARTIAL if rep.failures else EXIT_OK


__all__ = ["DESCRIPTION", "add_arguments", "add_prompt_arguments", "config_from_args", "parse_shard", "run_cli"]
