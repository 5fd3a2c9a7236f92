"""mmmos report on damaged inputs, bad output paths and interruptions: one line and exit 2 for what the user
can fix, and never a half-written or mixed report under the final names."""
from __future__ import annotations

import json
import os
import shutil

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

