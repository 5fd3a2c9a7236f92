"""``mmmos`` command line.  Sub-commands mirror the pipeline stages:

    mmmos demo        the whole job end to end on the built-in demo corpus
    mmmos demo-data   write the synthetic demo corpus (audio + manifests)
    mmmos extract     audio -> frozen encoders -> frame cache
    mmmos cache       show what a cache holds
    mmmos sweep       cache -> 16 head x loss configurations (models, predictions, metrics)
    mmmos ensemble    ensemble strategies from a sweep's saved predictions
    mmmos report      HTML report: Table III/IV, scatter plots, model selection, per-domain breakdown
    mmmos predict     scores for new audio with an exported ensemble
    mmmos score       challenge metrics for a prediction file against labels

Exit status: 0 done; 1 unexpected error (a bug: traceback shown); 2 a user error (one line
``mmmos <command>: error: <message>``; ``--debug`` adds the traceback); 3 finished, but some items
failed (listed in the command's report); 130 interrupted (Ctrl-C; finished work is kept).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, Sequence

from mmmos.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, UserError

PROG = "mmmos"


@dataclass(frozen=True)
class Command:
    """A sub-command: its one-line help and the modules that may implement it, preferred first.

    Each implementation is ``(module, add-arguments function, run function)``; the first whose module
    exists is used, so the CLI keeps working while a command moves to its own module.  Only the chosen
    command's module is imported (``mmmos --help`` imports none), which keeps start-up fast.
    """

    help: str
    impls: tuple[tuple[str, str, str], ...]


COMMANDS: dict[str, Command] = {
    "demo": Command("the whole job end to end on the built-in synthetic corpus (no downloads)",
                    (("mmmos.app.demo", "add_arguments", "run_cli"),)),
    "demo-data": Command("write the synthetic, labelled demo corpus",
                         (("mmmos.app.demo", "add_data_arguments", "run_data_cli"),)),
    "extract": Command("run frozen encoders over audio and cache their frames",
                       (("mmmos.app.extract_cmd", "add_arguments", "run_cli"),
                        ("mmmos.app.cli", "_legacy_extract_arguments", "_legacy_extract"))),
    "cache": Command("list the encoders and clips a cache holds",
                     (("mmmos.app.cache_cmd", "add_arguments", "run_cli"),
                      ("mmmos.app.cli", "_legacy_cache_arguments", "_legacy_cache"))),
    "sweep": Command("train head x loss configurations from a cache",
                     (("mmmos.sweep.cli", "add_arguments", "run_cli"), ("mmmos.sweep", "add_arguments", "run_cli"))),
    "ensemble": Command("evaluate ensemble strategies from a finished sweep (seconds, no training)",
                        (("mmmos.app.ensemble_cmd", "add_arguments", "run_cli"),
                         ("mmmos.ensemble", "add_arguments", "run_cli"))),
    "report": Command("self-contained HTML report of a sweep and its ensembles",
                      (("mmmos.app.report", "add_arguments", "run_cli"),)),
    "predict": Command("scores for audio files with an exported model",
                       (("mmmos.app.predict", "add_arguments", "run_cli"),
                        ("mmmos.app.predictor", "add_predict_arguments", "run_predict"))),
    "score": Command("challenge metrics of predictions against labels",
                     (("mmmos.app.scoring", "add_arguments", "run_cli"),
                      ("mmmos.app.scoring", "add_score_arguments", "run_score"))),
}


class UsageError(Exception):
    """An argparse error, raised instead of argparse's print-and-exit so :func:`main` words it like the rest."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        raise UsageError(self.prog, message)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


def _implementation(name: str) -> tuple[Callable, Callable]:
    """(add_arguments, run) of command ``name``: the first implementation whose module and functions exist."""
    for module, add, run in COMMANDS[name].impls:
        if not _module_exists(module):
            continue
        mod = importlib.import_module(module)
        if hasattr(mod, add) and hasattr(mod, run):
            return getattr(mod, add), getattr(mod, run)
    raise RuntimeError(f"no implementation of `mmmos {name}` found (looked for {COMMANDS[name].impls})")


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first token that is not an option), if it is one."""
    for tok in argv:
        if tok == "--":
            return None
        if not tok.startswith("-"):
            return tok if tok in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command`` (if given) gets its arguments, so only its module is imported."""
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of errors (also after the sub-command)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        sp = sub.add_parser(name, help=cmd.help, description=cmd.help)
        if name == command:
            add, run = _implementation(name)
            add(sp)
            sp.set_defaults(_mmmos_run=run)
    return p


def _fail(command: str | None, message: str) -> None:
    where = f"{PROG} {command}" if command else PROG
    print(f"{where}: error: {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, command: str, debug: bool) -> int:
    """Run the parsed command and turn every outcome into an exit status (see the module doc)."""
    try:
        rc = args._mmmos_run(args)
    except UserError as e:
        if debug:
            traceback.print_exc()
        _fail(command, str(e) or type(e).__name__)
        return EXIT_USER
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"\n{PROG} {command}: interrupted; finished work is kept (re-run to resume)", file=sys.stderr,
              flush=True)
        return EXIT_INTERRUPTED
    except SystemExit as e:  # code that still exits with a message instead of raising UserError
        if isinstance(e.code, str):
            if debug:
                traceback.print_exc()
            _fail(command, e.code)
            return EXIT_USER
        return int(e.code or 0)
    except Exception:  # noqa: BLE001 - a bug: the traceback is what the report needs
        traceback.print_exc()
        _fail(command, "unexpected error (the traceback above shows where; please report it)")
        return EXIT_FAILED
    return int(rc or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the sub-command and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:cut]
    argv = [a for a in argv[:cut] if a != "--debug"] + argv[cut:]
    command = _chosen_command(argv)
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"{e.prog}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USER
    except SystemExit as e:  # --help / --version
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USER
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return _run(args, args.command, debug)


# --------------------------------------------------------------------------- extract / cache until their modules exist


def _legacy_extract_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--manifest", action="append", required=True,
                   help="a Track 2 list, MMMOS combined list, AES JSONL, plain CSV or a folder of audio (repeatable)")
    e.add_argument("--store", required=True, help="cache folder (created if absent)")
    e.add_argument("--encoders", default="logmel", help="comma-separated encoder names: wavlm,muq,m2d,logmel")
    e.add_argument("--weights", action="append", help="NAME=PATH local weights (repeatable or comma-separated)")
    e.add_argument("--backend", choices=["zarr", "hdf5"], default="zarr", help="storage backend for a new cache")
    e.add_argument("--data-root", help="folder that replaces the /your_path/ placeholder and roots relative paths")
    e.add_argument("--device", default="auto", help="auto (cuda -> mps -> cpu), cpu, cuda, cuda:1, mps")
    e.add_argument("--precision", choices=["auto", "fp16", "fp32"], default="auto", help="encoder compute precision")
    e.add_argument("--store-dtype", choices=["float16", "float32"], default="float16", help="dtype of stored frames")
    e.add_argument("--batch-size", type=int, default=None, help="encoder inputs per forward pass")
    e.add_argument("--shard", default="0/1", help="I/N: only the clips whose id hashes to shard I of N")
    e.add_argument("--limit", type=int, help="only the first N clips (for a trial run)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")


def _legacy_extract(a: argparse.Namespace) -> int:
    from mmmos.extract import ENCODERS, parse_weights
    from mmmos.extract.runner import ExtractConfig, format_report, run_extract, save_report

    try:
        weights = parse_weights(a.weights)
        i, n = (int(x) for x in a.shard.split("/"))
    except ValueError as e:
        raise UserError(str(e)) from None
    encoders = [e for e in a.encoders.split(",") if e]
    unknown = [e for e in encoders if e not in ENCODERS]
    if unknown:
        raise UserError(f"unknown encoder(s) {', '.join(unknown)}; known: {', '.join(sorted(ENCODERS))}")
    cfg = ExtractConfig(manifests=a.manifest, store=a.store, encoders=encoders, weights=weights, backend=a.backend,
                        data_root=a.data_root, device=a.device, precision=a.precision, store_dtype=a.store_dtype,
                        batch_size=a.batch_size, shard=(i, n), limit=a.limit, progress=not a.no_progress)
    rep = run_extract(cfg)
    save_report(rep, a.store, cfg.shard)
    print(format_report(rep, a.store, cfg.shard))
    return 3 if rep.failures else 0


def _legacy_cache_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("store")


def _legacy_cache(a: argparse.Namespace) -> int:
    from mmmos.cache_store import open_store

    st = open_store(a.store)
    print(f"{a.store}: {st.backend} cache")
    for info in st.encoders():
        g = st.group(info.key)
        print(f"  {info.key:28s} {len(g):6d} clips  {sum(c.duration for c in g.index.values()):9.1f} s  dim {info.dim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
