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
