"""Every file of an exported model is pinned by sha256 (issue 20, item 1): a flipped byte in ``members/*.pt``
used to change the scores with exit 0; now loading names the file and both hashes, and a folder written before
pins existed says how to re-export it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from mmmos.app.predict import Predictor, PredictorError, TamperedModelError, export_predictor, read_predictor_spec
from mmmos.core.errors import UserError
from mmmos.core.rundir import ModelRecord, RunDir
from mmmos.extract import load_encoder
from mmmos.heads import build_head

SR = 16000


def _predictor(tmp, n=2):
    from mmmos.cache_store import identity_key

    ident = {**json.loads(json.dumps(load_encoder("logmel").identity(), default=str)), "dtype": "float16"}
    run = RunDir(tmp / "run")
    for i in range(n):
        torch.manual_seed(i)
        head = build_head("mlp", ident["dim"], 4)
        run.config(f"m{i}").write_model(ModelRecord(
            head_config=head.config, state_dict=head.state_dict(), z_mean=[5.0] * 4, z_std=[3.0] * 4,
            axes=["PQ", "PC", "CE", "CU"], encoders=[ident], encoder_keys=[identity_key(ident)], crop_seconds=10.0,
            grid_rate=50.0, task="track2"))
    return export_predictor(run.path, [f"m{i}" for i in range(n)], tmp / "model")


@pytest.fixture
def model(tmp_path):
    return _predictor(tmp_path)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    f = tmp_path_factory.mktemp("pins") / "a.wav"
    sf.write(f, (0.1 * np.random.default_rng(0).standard_normal(SR * 2)).astype(np.float32), SR)
    return f


def test_export_pins_every_file(model):
    import hashlib

    spec = json.loads((model / "predictor.json").read_text())
    on_disk = sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file()
                     and p.name != "predictor.json")
    assert sorted(spec["files"]) == on_disk == ["members/m0.pt", "members/m1.pt"]
    for rel, sha in spec["files"].items():
        assert hashlib.sha256((model / rel).read_bytes()).hexdigest() == sha


def test_a_flipped_byte_in_a_member_file_is_refused_naming_file_and_hashes(model, wav, run_cli):
    before = Predictor.load(model).predict_files([wav])  # loads and scores while intact
    f = model / "members" / "m1.pt"
    want = json.loads((model / "predictor.json").read_text())["files"]["members/m1.pt"]
    raw = bytearray(f.read_bytes())
    raw[-200] ^= 0x01  # inside the tensor data: torch would still load it, with other values
    f.write_bytes(bytes(raw))
    import hashlib

    got = hashlib.sha256(bytes(raw)).hexdigest()
    with pytest.raises(TamperedModelError) as e:
        Predictor.load(model)
    msg = str(e.value)
    assert str(f) in msg and want in msg and got in msg and "re-export" in msg and "\n" not in msg
    assert isinstance(e.value, UserError)
    rc, out, err = run_cli(["predict", wav, "--model", model, "--no-progress"])
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err and got in err and out == ""
    assert len(before) == 1


@pytest.mark.parametrize("fault", ["deleted", "stray", "unpinned", "escape"])
def test_missing_added_or_unpinned_member_files_are_refused(model, fault):
    spec_f = model / "predictor.json"
    spec = json.loads(spec_f.read_text())
    if fault == "deleted":
        (model / "members" / "m0.pt").unlink()
    elif fault == "stray":
        (model / "members" / "evil.pt").write_bytes(b"x")
    elif fault == "unpinned":
        del spec["files"]["members/m0.pt"]
        spec_f.write_text(json.dumps(spec))
    else:
        spec["files"]["../outside.pt"] = "0" * 64
        spec_f.write_text(json.dumps(spec))
    with pytest.raises(PredictorError, match=r"m0\.pt|evil\.pt|outside"):
        read_predictor_spec(model)


def test_a_folder_from_an_older_version_says_how_to_re_export(model, wav, run_cli):
    spec_f = model / "predictor.json"
    spec = json.loads(spec_f.read_text())
    del spec["files"]
    spec_f.write_text(json.dumps(spec))
    with pytest.raises(PredictorError, match=r"older mmmos.*`mmmos ensemble RUN --export .*model`"):
        Predictor.load(model)
    rc, _, err = run_cli(["predict", wav, "--model", model, "--no-progress"])
    assert rc == 2 and "re-export" in err and "Traceback" not in err
