"""Fault injection for what ``mmmos ensemble`` writes: the ensemble folder, the exported predictor, the answer file.

Each test here failed before its fix: an interrupted re-run left members.json of the old run beside Table IV of
the new one (the report showed the mix with exit 0); a signal between the two renames of an export deleted the
old predictor and left a hidden ``.NAME.old-PID`` for ever; ``--export DIR`` replaced any folder holding a file
named predictor.json (the user's other files deleted); bad output paths were tracebacks or left ``X.tmp``; and a
refused option (``--export-strategy``, ``--answer``) came after the old outputs had already been overwritten.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_ensemble import make_fake_sweep  # pytest puts tests/ on the path

from mmmos import ensemble as se
from mmmos.app.cli import main as mmmos_main
from mmmos.app.predict import PredictorError, export_predictor, read_predictor_spec
from mmmos.core import dirswap
from mmmos.ensemble import outputs


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _with_models(run: Path) -> Path:
    """Give every configuration of a fake sweep a trained-model record, so ``--export`` has something to export."""
    import torch

    from mmmos.cache_store import identity_key
    from mmmos.core.rundir import ModelRecord, RunDir
    from mmmos.extract import load_encoder
    from mmmos.heads import build_head

    ident = {**json.loads(json.dumps(load_encoder("logmel").identity(), default=str)), "dtype": "float16"}
    rd = RunDir(run)
    for i, name in enumerate(rd.config_names()):
        torch.manual_seed(i)
        head = build_head("mlp", ident["dim"], 4)
        rd.config(name).write_model(ModelRecord(
            head_config=head.config, state_dict=head.state_dict(), z_mean=[5.0] * 4, z_std=[3.0] * 4,
            axes=["PQ", "PC", "CE", "CU"], encoders=[ident], encoder_keys=[identity_key(ident)], crop_seconds=10.0,
            grid_rate=50.0, task="track2"))
    return run


def _one_error_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("mmmos ensemble: error: "), err
    for n in needles:
        assert n in err, err


def _interrupt_in_the_middle(monkeypatch):
    """Table IV's Parquet is written, then Ctrl-C (the markdown is next)."""
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(outputs, "table_markdown", boom)


# ---------------------------------------------------------------------------------------------
# 1. an interrupted re-run never leaves a folder that looks complete with parts of two runs
# ---------------------------------------------------------------------------------------------
def test_interrupted_rerun_keeps_the_old_outputs_entire(tmp_path, monkeypatch):
    run = make_fake_sweep(tmp_path)
    se.run_ensembles(run)  # top 12
    ens = run / "ensembles"
    before = _snapshot(ens)
    with monkeypatch.context() as m:
        _interrupt_in_the_middle(m)
        with pytest.raises(KeyboardInterrupt):
            se.run_ensembles(run, top=2)
    assert _snapshot(ens) == before  # the old run, every file of it
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no staging folder left
    se.run_ensembles(run, top=2)  # the re-run completes: the new run entire
    doc = json.loads((ens / "members.json").read_text())
    import polars as pl

    table = pl.read_parquet(ens / "table_iv.parquet")
    n = table.filter(pl.col("strategy") == "submitted")["n_members"][0]
    assert n == len(doc["strategies"]["submitted"]["members"]) == 1


def test_interrupted_rerun_in_a_folder_with_user_files_is_incomplete_not_mixed(tmp_path, monkeypatch):
    run = make_fake_sweep(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious\n")
    se.run_ensembles(run, out=out)
    with monkeypatch.context() as m:
        _interrupt_in_the_middle(m)
        with pytest.raises(KeyboardInterrupt):
            se.run_ensembles(run, out=out, top=2)
    assert not (out / "members.json").exists()  # reads as incomplete: the report refuses it
    assert not (out / "metrics.parquet").exists()  # nothing of the old run left beside the new
    assert (out / "notes.txt").read_text() == "precious\n"
    se.run_ensembles(run, out=out, top=2)
    assert (out / "members.json").is_file() and (out / "notes.txt").read_text() == "precious\n"


def test_a_rerun_with_fewer_strategies_drops_the_old_ones(tmp_path):
    run = make_fake_sweep(tmp_path)
    se.run_ensembles(run)
    se.run_ensembles(run, ["all"])
    assert sorted(p.name for p in (run / "ensembles" / "predictions").iterdir()) == ["all"]


# ---------------------------------------------------------------------------------------------
# 2. the export's swap: a signal cannot fall between its two renames; a killed run's leftovers are cleaned
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def two_exports(tmp_path):
    from test_model_pins import _predictor

    model = _predictor(tmp_path)  # members m0, m1 in tmp_path/run
    return tmp_path / "run", model


def test_a_signal_between_the_renames_of_an_export_is_held_back(two_exports, monkeypatch):
    run, model = two_exports
    real = os.replace

    def replace(src, dst):
        real(src, dst)
        if Path(src) == model:  # the old predictor just moved aside
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        export_predictor(run, ["m0"], model)
    monkeypatch.undo()
    spec = read_predictor_spec(model)  # the new predictor, complete
    assert [m["name"] for m in spec["members"]] == ["m0"]
    assert not [p.name for p in model.parent.iterdir() if p.name.startswith(".")]


def test_an_exception_in_the_second_rename_puts_the_old_predictor_back(two_exports, monkeypatch):
    run, model = two_exports
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == 2 and Path(dst) == model:  # staging -> model: raised by code, not by a signal handler
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        export_predictor(run, ["m0"], model)
    monkeypatch.undo()
    assert [m["name"] for m in read_predictor_spec(model)["members"]] == ["m0", "m1"]  # the old one, entire
    assert not [p.name for p in model.parent.iterdir() if p.name.startswith(".")]


def test_leftovers_of_a_killed_export_are_cleaned_up_or_put_back(two_exports):
    run, model = two_exports
    pid = _dead_pid()
    old, half = model.with_name(f".model.old-{pid}"), model.with_name(f".model.tmp-{pid}-abc")
    busy = model.with_name(f".model.tmp-{os.getppid()}-abc")  # a folder of a live process (our parent)
    for d in (old / "members", half / "members", busy):
        d.mkdir(parents=True)
    export_predictor(run, ["m1"], model)
    assert [m["name"] for m in read_predictor_spec(model)["members"]] == ["m1"]
    assert not old.exists() and not half.exists() and busy.is_dir()
    # killed between the two renames: only the hidden old folder is left, and it is put back
    os.replace(model, old)
    half.mkdir()
    dirswap.recover(model)
    assert [m["name"] for m in read_predictor_spec(model)["members"]] == ["m1"]
    assert not old.exists() and not half.exists()


# ---------------------------------------------------------------------------------------------
# 3. --export replaces only a folder that holds an exported predictor and nothing else
# ---------------------------------------------------------------------------------------------
def test_export_refuses_a_folder_with_a_fake_predictor_json(tmp_path, capsys):
    run = _with_models(make_fake_sweep(tmp_path))
    mydir = tmp_path / "mydir"
    mydir.mkdir()
    (mydir / "predictor.json").write_text("{}")
    (mydir / "notes.txt").write_text("precious\n")
    ens_before = _listing(tmp_path)
    assert mmmos_main(["ensemble", str(run), "--export", str(mydir)]) == 2
    _one_error_line(capsys.readouterr().err, str(mydir), "notes.txt")
    assert (mydir / "notes.txt").read_text() == "precious\n" and _listing(tmp_path) == ens_before


@pytest.mark.parametrize("extra", ["notes.txt", "members/evil.pt", "sub/x"])
def test_export_replaces_a_predictor_folder_only_when_it_holds_nothing_else(two_exports, extra):
    run, model = two_exports
    f = model / extra
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("precious\n")
    with pytest.raises(PredictorError, match=rf"{model}.*{extra.split('/')[0]}"):
        export_predictor(run, ["m0"], model)
    assert f.read_text() == "precious\n"
    f.unlink()
    if f.parent != model and f.parent.name != "members":
        f.parent.rmdir()
    export_predictor(run, ["m1"], model)  # a pinned export alone: replaced
    spec_f = model / "predictor.json"
    spec = json.loads(spec_f.read_text())
    del spec["files"]  # written before pins existed: its loader asks for exactly this re-export
    spec_f.write_text(json.dumps(spec))
    export_predictor(run, ["m0"], model)
    assert [m["name"] for m in read_predictor_spec(model)["members"]] == ["m0"]


# ---------------------------------------------------------------------------------------------
# 4, 5. bad output paths and refused options: one line, exit 2, nothing written, the old outputs kept
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def finished(tmp_path):
    run = _with_models(make_fake_sweep(tmp_path))
    se.run_ensembles(run)
    (tmp_path / "afile").write_text("x\n")
    (tmp_path / "adir").mkdir()
    return run


@pytest.mark.parametrize("argv,needle", [
    (["--export", "{t}/afile"], "afile"),
    (["--export", "{t}/afile/sub"], "afile"),
    (["--export", "/proc/mmmos-x"], "/proc"),
    (["--out", "{t}/afile"], "afile"),
    (["--out", "/proc/mmmos-ens"], "/proc"),
    (["--answer", "{t}/adir"], "adir"),
    (["--answer", "/proc/mmmos-a.txt"], "/proc"),
    (["--answer", "{t}/a.txt", "--answer-strategy", "pam-top-999"], "pam-top-999"),
    (["--export", "{t}/m", "--export-strategy", "pam-top-999"], "pam-top-999"),
])
def test_refused_outputs_are_one_line_and_touch_nothing(finished, tmp_path, capsys, argv, needle):
    if "/proc" in " ".join(argv) and not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc")
    run = finished
    before, listing = _snapshot(run / "ensembles"), _listing(tmp_path)
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    assert mmmos_main(["ensemble", str(run), "--top", "2", *argv]) == 2
    _one_error_line(capsys.readouterr().err, needle)
    assert _snapshot(run / "ensembles") == before  # the old run's outputs, untouched
    assert _listing(tmp_path) == listing  # no X.tmp, no hidden folder, no half export
    assert mmmos_main(["report", str(run)]) == 0


def test_write_answer_to_a_folder_leaves_no_tmp(tmp_path):
    run = make_fake_sweep(tmp_path)
    sweep = se.load_sweep(run)
    result = se.evaluate_strategies(sweep, ["all"])
    (tmp_path / "adir").mkdir()
    with pytest.raises(se.EnsembleError, match="adir"):
        se.write_answer(result, "all", "pam_dev", tmp_path / "adir", sweep)
    assert not (tmp_path / "adir.tmp").exists()


def test_export_of_untrained_members_is_refused_before_writing(tmp_path, capsys):
    run = make_fake_sweep(tmp_path)  # predictions and metrics, no model.pt
    se.run_ensembles(run)
    before = _snapshot(run / "ensembles")
    assert mmmos_main(["ensemble", str(run), "--top", "2", "--export", str(tmp_path / "m")]) == 2
    _one_error_line(capsys.readouterr().err, "no trained model")
    assert _snapshot(run / "ensembles") == before and not (tmp_path / "m").exists()
