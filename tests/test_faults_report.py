"""mmmos report on damaged inputs, bad output paths and interruptions: one line and exit 2 for what the user
can fix, and never a half-written or mixed report under the final names."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from test_ensemble import make_fake_sweep  # pytest puts tests/ on the path (rootdir conftest-less)

from mmmos.app import report
from mmmos.app.cli import main as mmmos_main
from mmmos.ensemble import run_ensembles


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished sweep with its ensembles (never changed: each test works on a copy)."""
    root = tmp_path_factory.mktemp("src")
    run = make_fake_sweep(root)
    run_ensembles(run)
    return run


@pytest.fixture
def run(source, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(source, dst)  # label files stay at their absolute paths next to the source
    return dst


def _one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert mmmos_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("mmmos report: error: ")
    return err


# --- members.json of the wrong shape ---------------------------------------------------------
@pytest.mark.parametrize("doc, says", [
    ([], "a JSON list, not an object"),
    ({}, "no 'strategies'"),
    ("drop:strategies", "no 'strategies'"),
    ("drop:criterion", "no 'criterion'"),
    ("drop:sets", "no 'sets'"),
    ("strategies:[]", "'strategies' is not a mapping"),
    ("strategy:{}", "neither a 'members' list nor an 'unavailable' reason"),
    ("criterion:{}", "'criterion' needs metric"),
    ("rankings:bad", "'rankings' is not a mapping"),
])
def test_members_of_the_wrong_shape_is_one_line_naming_file_and_repair(run, capsys, doc, says):
    path = run / "ensembles" / "members.json"
    good = json.loads(path.read_text())
    if isinstance(doc, str):
        what, _, arg = doc.partition(":")
        doc = dict(good)
        if what == "drop":
            del doc[arg]
        elif what == "strategies":
            doc["strategies"] = []
        elif what == "strategy":
            doc["strategies"] = {**good["strategies"], "submitted": {}}
        elif what == "criterion":
            doc["criterion"] = {}
        elif what == "rankings":
            doc["rankings"] = {"dev": [["a"]]}
    path.write_text(json.dumps(doc))
    err = _one_line_error(capsys, ["report", str(run)])
    assert f"{path}: not an ensemble members file" in err and says in err
    assert f"re-run `mmmos ensemble {run}` to rewrite it" in err
    assert not (run / "report" / "report.html").exists()


# --- the chosen strategy's predictions are missing -------------------------------------------
def test_missing_predictions_of_the_chosen_strategy_are_an_error_not_no_labelled_set(run, capsys):
    shutil.rmtree(run / "ensembles" / "predictions" / "submitted")
    err = _one_line_error(capsys, ["report", str(run)])
    missing = run / "ensembles" / "predictions" / "submitted" / "dev.parquet"
    assert f"{missing}: no such file" in err and "labelled set 'dev'" in err
    assert f"re-run `mmmos ensemble {run}` to rewrite the ensemble outputs" in err
    assert not (run / "report" / "report.html").exists()  # no page that says "No labelled set."


def test_one_missing_set_of_another_strategy_names_that_file(run, capsys):
    (run / "ensembles" / "predictions" / "all" / "pam_dev.parquet").unlink()
    ens = run / "ensembles"
    err = _one_line_error(capsys, ["report", str(run), "--strategy", "all", "--ensembles", str(ens)])
    assert f"{ens / 'predictions' / 'all' / 'pam_dev.parquet'}: no such file" in err
    assert f"`mmmos ensemble {run} --out {ens}`" in err


# --- output paths the report cannot be written to --------------------------------------------
def test_report_folder_being_a_file_is_refused_before_any_work(tmp_path, capsys):
    run = make_fake_sweep(tmp_path)  # no summary, no ensembles: the report would compute both first
    (run / "report").write_text("not a folder")
    err = _one_line_error(capsys, ["report", str(run)])
    assert f"{run / 'report'}: exists and is not a folder" in err
    assert not (run / "ensembles").exists() and not (run / "summary.parquet").exists()
    assert (run / "report").read_text() == "not a folder"


def test_out_naming_a_folder_is_refused(run, tmp_path, capsys):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    err = _one_line_error(capsys, ["report", str(run), "--out", str(folder)])
    assert f"{folder}: is a folder; the report is an HTML file" in err
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_out_in_a_folder_that_takes_no_files_is_refused(run, capsys):
    err = _one_line_error(capsys, ["report", str(run), "--out", "/proc/r.html"])
    assert "/proc: the report cannot be written there" in err



# --- interrupted or repeated runs: the files under the final names -------------------------------
def _folder(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}  # hidden staging folders included


def _interrupt_second_savefig(monkeypatch) -> None:
    """The second figure is half-written to wherever it is saved, then Ctrl-C arrives."""
    from matplotlib.figure import Figure

    real, calls = Figure.savefig, []

    def savefig(self, fname, *a, **k):
        calls.append(fname)
        if len(calls) != 2:
            return real(self, fname, *a, **k)
        buf = io.BytesIO()
        real(self, buf, *a, **k)
        Path(fname).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", savefig)


def test_interrupted_report_leaves_the_previous_one_untouched(run, monkeypatch, capsys):
    assert mmmos_main(["report", str(run), "--strategy", "all"]) == 0
    before = _folder(run / "report")
    _interrupt_second_savefig(monkeypatch)
    assert mmmos_main(["report", str(run)]) == 130
    assert _folder(run / "report") == before  # no truncated PNG, no new/old mix, no staging folder left


def test_interrupted_first_report_leaves_nothing(run, tmp_path, monkeypatch, capsys):
    _interrupt_second_savefig(monkeypatch)
    assert mmmos_main(["report", str(run), "--out", str(tmp_path / "new" / "r.html")]) == 130
    assert not (tmp_path / "new").exists()


def test_signal_during_the_final_moves_is_held_until_they_are_done(run, monkeypatch, capsys):
    assert mmmos_main(["report", str(run), "--strategy", "all"]) == 0
    real, calls = os.replace, []

    def replace(a, b):
        calls.append(b)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # lands between two renames
        return real(a, b)

    monkeypatch.setattr(report.os, "replace", replace)
    assert mmmos_main(["report", str(run)]) == 143
    html = (run / "report" / "report.html").read_text()
    assert "Ensemble 'submitted'" in html  # the new page, with exactly its own figures beside it
    embedded = sorted(base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html))
    assert sorted(v for k, v in _folder(run / "report").items() if k != "report.html") == embedded


def test_figures_of_an_earlier_report_that_this_one_does_not_draw_are_removed(run, capsys):
    folder = run / "report"
    assert mmmos_main(["report", str(run)]) == 0
    assert (folder / "report_scatter_pam_dev.png").is_file()
    (folder / "mine.png").write_bytes(b"kept")  # not a name the report writes
    members = run / "ensembles" / "members.json"
    doc = json.loads(members.read_text())
    del doc["truth"]["pam_dev"]  # pam_dev is no longer labelled: no scatter for it
    members.write_text(json.dumps(doc))
    assert mmmos_main(["report", str(run)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "mine.png", "report.html", "report_domains.png", "report_scatter_dev.png", "report_selection.png"]
    html = (folder / "report.html").read_text()
    assert len(re.findall(r"data:image/png;base64,", html)) == 3
