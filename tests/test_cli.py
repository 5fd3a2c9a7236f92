"""mmmos.app.cli: lazy dispatch, exit statuses and error wording, start-up imports."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import mmmos.app.cli as cli
from mmmos.core.errors import UserError

HEAVY = ("torch", "scipy", "polars")


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in cli.COMMANDS)])
def test_help_imports_no_heavy_library(argv):
    code = ("import sys, io, contextlib\nfrom mmmos.app.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()) as out: rc = main({argv!r})\n"
            "assert rc == 0 and 'usage: mmmos' in out.getvalue(), (rc, out.getvalue())\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"`mmmos {' '.join(argv)}` imported {r.stdout.strip()}"


def test_top_level_help_lists_every_command(run_cli):
    rc, out, _ = run_cli(["--help"])
    assert rc == 0
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("argv,prog", [
    ([], "mmmos"),
    (["nope"], "mmmos"),
    (["demo-data", "--n-train", "x"], "mmmos demo-data"),
    (["demo", "--jobs", "0"], "mmmos demo"),
    (["cache"], "mmmos cache"),
])
def test_argument_errors_are_one_line_exit_2(run_cli, argv, prog):
    rc, out, err = run_cli(argv)
    lines = err.strip().splitlines()
    assert rc == 2 and out == "" and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err


@pytest.fixture
def fake_run(monkeypatch):
    """Replace the demo-data runner by ``fn`` (the command module is looked up when the parser is built)."""
    import mmmos.app.demos.command as demo

    def use(fn):
        monkeypatch.setattr(demo, "run_data_cli", fn)

    return use


def raiser(exc):
    def run(args):
        raise exc

    return run


def test_outcomes_map_to_exit_statuses(fake_run, run_cli):
    fake_run(raiser(UserError("the thing is wrong")))
    rc, _, err = run_cli(["demo-data"])
    assert rc == 2 and err == "mmmos demo-data: error: the thing is wrong\n"

    fake_run(raiser(RuntimeError("bug")))
    rc, _, err = run_cli(["demo-data"])
    assert rc == 1 and "Traceback" in err and "RuntimeError: bug" in err
    assert err.rstrip().splitlines()[-1].startswith("mmmos demo-data: error: unexpected error")

    fake_run(raiser(SystemExit("old-style message")))  # code not yet raising UserError
    rc, _, err = run_cli(["demo-data"])
    assert rc == 2 and err == "mmmos demo-data: error: old-style message\n"

    fake_run(lambda args: 3)  # partial failure passes through
    assert run_cli(["demo-data"])[0] == 3
    fake_run(lambda args: None)
    assert run_cli(["demo-data"])[0] == 0


def test_an_interrupt_while_the_command_loads_prints_the_same_line(monkeypatch, run_cli):
    """A Ctrl-C or SIGTERM while the sub-command's modules are imported (building its parser) ends it with the
    same one line and status as one during its work (CI saw exit 130 with nothing printed)."""
    from mmmos.core.interrupts import Terminated

    for exc, rc_want, word in ((KeyboardInterrupt(), 130, "interrupted"), (Terminated(), 143, "terminated")):
        monkeypatch.setattr(cli, "build_parser", lambda command, exc=exc: (_ for _ in ()).throw(exc))
        rc, _, err = run_cli(["extract", "--store", "x"])
        assert rc == rc_want and err.strip() == f"mmmos extract: {word}; finished work is kept (re-run to resume)"


def test_debug_flag_is_taken_anywhere_and_not_passed_on(fake_run, run_cli):
    seen = []
    fake_run(lambda args: seen.append(vars(args)) or 0)
    assert run_cli(["--debug", "demo-data", "--out", "o"])[0] == 0
    assert run_cli(["demo-data", "--debug", "--out", "o"])[0] == 0
    assert all(s["out"] == "o" for s in seen)
    fake_run(raiser(UserError("x")))
    rc, _, err = run_cli(["demo-data", "--debug"])
    assert rc == 2 and "Traceback" in err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_resolves_to_its_module(name):
    add, run = cli._implementation(name)
    cmd = cli.COMMANDS[name]
    assert add.__module__.startswith(cmd.module) and run.__module__.startswith(cmd.module)
    assert callable(add) and callable(run)


def test_demo_data_through_the_cli(tmp_path, run_cli):
    rc, out, _ = run_cli(["demo-data", "--out", tmp_path / "c", "--n-train", "2", "--n-dev", "1", "--n-pam", "1"])
    assert rc == 0 and "demo corpus written" in out
    assert sorted(p.name for p in (tmp_path / "c").glob("*.csv")) == ["dev.csv", "factors.csv", "pam_dev.csv",
                                                                      "train.csv"]


def test_module_entry_point_runs_main():
    r = subprocess.run([sys.executable, "-m", "mmmos", "cache", "/definitely/not/here"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("mmmos cache: error: ") and "Traceback" not in r.stderr


def _sigterm_seen_as(error: Exception, chained: bool):
    """A command body in which compiled code (matplotlib's renderer, pybind11) meets the SIGTERM handler's
    exception and raises ``error`` in its place: with the interrupt as its context, or with no trace of it."""
    def run(args):
        caught = False
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2)
        except KeyboardInterrupt:
            if chained:
                raise error
            caught = True
        if caught:
            raise error
    return run


@pytest.mark.parametrize("chained", [True, False])
def test_an_interrupt_turned_into_another_error_by_compiled_code_is_still_the_interrupt(fake_run, run_cli, chained):
    """`mmmos report` hit by SIGTERM while matplotlib drew gave exit 1, a ValueError traceback and 'unexpected
    error ... please report it'; it is the signal: exit 143 and the one line, no traceback."""
    fake_run(_sigterm_seen_as(ValueError("Invalid bounding box"), chained))
    rc, _, err = run_cli(["demo-data"])
    assert rc == 143 and "Traceback" not in err
    assert err.strip() == "mmmos demo-data: terminated; run it again to finish"


def test_a_bug_long_after_an_interrupt_is_still_a_bug(fake_run, run_cli, monkeypatch):
    """The window is short: an error with no interrupt in its chain, seconds after a signal that was handled, is
    reported as the bug it is (exit 1, traceback)."""
    from mmmos.core import interrupts

    monkeypatch.setattr(interrupts, "MANGLED_WITHIN_S", 0.05)

    def run(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass  # handled, e.g. a prompt that was cancelled
        time.sleep(0.2)
        raise ValueError("a real bug")

    fake_run(run)
    rc, _, err = run_cli(["demo-data"])
    assert rc == 1 and "Traceback" in err and "a real bug" in err


def test_the_interrupt_line_says_whether_work_is_kept(monkeypatch, run_cli):
    """Only commands that keep finished work say so; predict, score, cache, report, ensemble, import-public and
    demo-data start over when run again."""
    resumable = {n for n, c in cli.COMMANDS.items() if c.resumes}
    assert resumable == {"demo", "extract", "sweep"}
    monkeypatch.setattr(cli, "build_parser", lambda command: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert run_cli(["score"])[2].strip() == "mmmos score: interrupted; run it again to finish"
    assert run_cli(["sweep"])[2].strip() == "mmmos sweep: interrupted; finished work is kept (re-run to resume)"
