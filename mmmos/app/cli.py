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
    mmmos import-public   a public ASTAR-NTU Track 1 checkpoint -> a run configuration / predictor folder

Exit status: 0 done; 1 unexpected error (a bug: traceback shown); 2 a user error (one line
``mmmos <command>: error: <message>``; ``--debug`` adds the traceback); 3 finished, but some items
failed (listed in the command's report); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): every worker
process is stopped first; extract, sweep and demo keep finished work and a re-run resumes (``Command.resumes``);
an error raised within 2 s of the signal, or with it in its chain, is the interrupt (see mmmos.core.interrupts).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Callable, Sequence

from mmmos.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, UserError
from mmmos.core.exiting import end_process, native_teardown_skipped
from mmmos.core.interrupts import exit_status, install_handlers, mangled_interrupt, restore_handlers

PROG = "mmmos"


@dataclass(frozen=True)
class Command:
    """A sub-command: its one-line help and the module (plus its two functions) that implements it.

    Only the chosen command's module is imported (``mmmos --help`` imports none), which keeps start-up fast.
    """

    help: str
    module: str
    add: str = "add_arguments"
    run: str = "run_cli"
    resumes: bool = True  # its finished work survives an interrupt and a re-run goes on from it


COMMANDS: dict[str, Command] = {
    "demo": Command("the whole job end to end on the built-in synthetic corpus (no downloads)", "mmmos.app.demos.command"),
    "demo-data": Command("write the synthetic, labelled demo corpus", "mmmos.app.demos.command",
                         "add_data_arguments", "run_data_cli", resumes=False),
    "extract": Command("run frozen encoders over audio and cache their frames", "mmmos.app.extract_cmd"),
    "cache": Command("list (and --verify) the encoders and clips a cache holds", "mmmos.app.cache_cmd", resumes=False),
    "sweep": Command("train head x loss configurations from a cache", "mmmos.app.sweep_cmd"),
    "ensemble": Command("evaluate ensemble strategies from a finished sweep (seconds, no training)",
                        "mmmos.app.ensemble_cmd", resumes=False),
    "report": Command("self-contained HTML report of a sweep and its ensembles", "mmmos.app.report", resumes=False),
    "predict": Command("scores for audio files with an exported model", "mmmos.app.predict", resumes=False),
    "score": Command("challenge metrics of predictions against labels", "mmmos.app.scoring", resumes=False),
    "import-public": Command("a public ASTAR-NTU Track 1 checkpoint -> a run configuration (and a predictor)",
                             "mmmos.app.import_public", resumes=False),
}


class UsageError(Exception):
    """An argparse error, raised instead of argparse's print-and-exit so :func:`main` words it like the rest."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        raise UsageError(self.prog, message)


def _implementation(name: str) -> tuple[Callable, Callable]:
    """(add_arguments, run) of command ``name``."""
    cmd = COMMANDS[name]
    mod = importlib.import_module(cmd.module)
    return getattr(mod, cmd.add), getattr(mod, cmd.run)


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


def _interrupted(command: str | None, e: KeyboardInterrupt) -> int:
    """The one line an interrupted command prints, and its exit status (130 Ctrl-C, 143 SIGTERM)."""
    how = "terminated" if exit_status(e) != EXIT_INTERRUPTED else "interrupted"
    where = f"{PROG} {command}" if command else PROG
    cmd = COMMANDS.get(command or "")
    what = "finished work is kept (re-run to resume)" if cmd is None or cmd.resumes else "run it again to finish"
    print(f"\n{where}: {how}; {what}", file=sys.stderr, flush=True)
    return exit_status(e)


def _run(args: argparse.Namespace, command: str, debug: bool) -> int:
    """Run the parsed command and turn every outcome into an exit status (see the module doc)."""
    try:
        rc = args._mmmos_run(args)
    except UserError as e:
        if debug:
            traceback.print_exc()
        _fail(command, str(e) or type(e).__name__)
        return EXIT_USER
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (mmmos.core.interrupts.Terminated)
        if debug:
            traceback.print_exc()
        return _interrupted(command, e)
    except SystemExit as e:  # code that still exits with a message instead of raising UserError
        if isinstance(e.code, str):
            if debug:
                traceback.print_exc()
            _fail(command, e.code)
            return EXIT_USER
        return int(e.code or 0)
    except Exception as e:  # noqa: BLE001 - a bug: the traceback is what the report needs
        interrupt = mangled_interrupt(e)
        if interrupt is not None:  # the signal's exception, turned into another error by compiled code
            if debug:
                traceback.print_exc()
            return _interrupted(command, interrupt)
        traceback.print_exc()
        _fail(command, "unexpected error (the traceback above shows where; please report it)")
        return EXIT_FAILED
    return int(rc or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the sub-command and return the exit status."""
    previous = install_handlers()  # SIGTERM ends a command like Ctrl-C (cleanup runs), exit 143
    try:
        status = _main(list(sys.argv[1:] if argv is None else argv))
    except BaseException:
        restore_handlers(previous)
        raise
    restore_handlers(previous)
    if argv is None and threading.current_thread() is threading.main_thread():
        # the command is done and the process only exits now: a signal during the interpreter's shutdown (atexit
        # hooks, ~0.1-0.3 s) would print a traceback from there (Ctrl-C) or end the process by the signal (a
        # finished command read as killed); it ends the process at once with the command's own status instead
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, functools.partial(_exit_finished, status))
    if argv is None and native_teardown_skipped():
        end_process(status)  # Ray's C++ exit hook can crash a finished command (mmmos.core.exiting)
    return status


def _exit_finished(status: int, signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _main(argv: list[str]) -> int:
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
    except KeyboardInterrupt as e:  # while the sub-command's modules were imported: the same one line
        return _interrupted(command, e)
    return _run(args, args.command, debug)


if __name__ == "__main__":
    sys.exit(main())
