"""One encoder's damaged ``encoder.json`` is that encoder's problem (issue 20, item 3): it used to crash
``mmmos extract`` with a traceback (exit 1), and stop ``mmmos sweep`` and ``mmmos cache --verify`` for the store's
*other* encoders.  Now it is reported by name, the other encoders stay usable and ``extract`` rebuilds it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from mmmos.cache_store import CacheError, open_store
from synthetic_cache import make_synthetic


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("encrec")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        f = d / f"c{i}.wav"
        sf.write(f, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        rows.append({"clip_id": f"c{i}", "path": str(f)})
    pl.DataFrame(rows).write_csv(d / "m.csv")
    return d / "m.csv"


def _damage(record, how: str) -> None:
    if how == "truncated":
        record.write_text(record.read_text()[:30])
    elif how == "not_an_object":
        record.write_text("[1, 2]")
    elif how == "edited":
        d = json.loads(record.read_text())
        d["dim"] = int(d["dim"]) + 1  # valid JSON, but no longer the identity its folder is named after
        record.write_text(json.dumps(d))
    else:
        record.unlink()


@pytest.mark.parametrize("how", ["truncated", "not_an_object", "edited", "deleted"])
def test_extract_reports_and_rebuilds_a_damaged_encoder_record(corpus, tmp_path, run_cli, how):
    store = tmp_path / "c.zarr"
    rc, _, err = run_cli(["extract", "--manifest", corpus, "--encoders", "logmel,logmel_slow", "--store", store,
                          "--no-progress"])
    assert rc == 0, err
    record = next(store.glob("encoders/logmel_slow-*/encoder.json"))
    good = record.read_text()
    _damage(record, how)
    st = open_store(store)
    assert [i.name for i in st.encoders()] == ["logmel"]  # the other encoder stays usable
    assert st.group("logmel").read("c0").shape[0] > 0
    with pytest.raises(CacheError, match=r"'logmel_slow' frames cannot be used: .*encoder\.json.*mmmos extract"):
        st.group("logmel_slow")
    # cache --verify names it, checks the other one, exit 3
    rc, out, _ = run_cli(["cache", store, "--verify"])
    assert rc == 3 and "logmel_slow-" in out and "DAMAGED" in out and "encoder.json" in out
    assert "logmel-" in out and " 4 clips" in out  # the sound encoder is listed and checked
    # extract rebuilds the record and keeps the clips (their own checksums still hold)
    rc, out, err = run_cli(["extract", "--manifest", corpus, "--encoders", "logmel,logmel_slow", "--store", store,
                            "--no-progress"])
    assert rc == 0 and "Traceback" not in err, err
    assert json.loads(record.read_text()) == json.loads(good)
    assert open_store(store).verify()[record.parent.name] == []
    rc, _, _ = run_cli(["cache", store, "--verify"])
    assert rc == 0


def test_sweep_over_a_store_with_another_encoders_damaged_record(tmp_path, run_cli):
    store, sets = make_synthetic(tmp_path, n_train=24, n_dev=8, n_pam=4)
    record = next(store.glob("encoders/encB-*/encoder.json"))
    record.write_text("{ not json")
    common = ["sweep", "--store", store, "--train", sets["train"], "--dev", sets["dev"], "--sets",
              "bienc=encA,trienc=encA+encB", "--epochs", "1", "--no-progress"]
    rc, _, err = run_cli([*common, "--run", tmp_path / "r1", "--only", "bienc-mlp-utmos"])
    assert rc == 0, err  # encA alone: unaffected
    rc, _, err = run_cli([*common, "--run", tmp_path / "r2", "--only", "trienc-mlp-utmos"])
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "'encB' frames cannot be used" in err and str(record) in err and "mmmos extract --encoders encB" in err


def test_a_store_copied_elsewhere_still_reads_and_damage_names_the_new_path(tmp_path):
    """Damage messages name the store where it is now, not where the damage was first found (item 6)."""
    store, _ = make_synthetic(tmp_path / "a", n_train=4, n_dev=2, n_pam=2)
    g = open_store(store).group("encA")
    cid = g.clip_ids()[0]
    chunk = next((g.root / "clips").glob("*/c/0/0"))
    owner = chunk.parent.parent.parent
    cid = json.loads((owner / "zarr.json").read_text())["attributes"]["clip_id"]
    chunk.write_bytes(chunk.read_bytes()[:8])
    with pytest.raises(CacheError):
        g.read(cid)  # recorded in damaged.json with this path
    moved = tmp_path / "b" / "moved.zarr"
    shutil.copytree(store, moved)
    shutil.rmtree(tmp_path / "a")
    g2 = open_store(moved).group("encA")
    with pytest.raises(CacheError) as e:
        g2.read(cid)
    assert str(moved) in str(e.value) and str(tmp_path / "a") not in str(e.value)
    assert all(str(moved) in d.file for d in g2.damaged())
