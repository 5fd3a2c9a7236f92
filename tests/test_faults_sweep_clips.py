"""A sweep never trains on fewer clips than asked for without saying so (issue 20, item 4).

A clip whose ``zarr.json`` was deleted or whose HDF5 part was damaged used to be left out quietly (exit 0, a note
in ``train_log.jsonl`` only).  Now damaged or missing clips fail the configuration with exit 3 naming them, in one
line without a traceback; ``--allow-missing-clips`` accepts the loss, prints the count and records the ids.
"""
from __future__ import annotations

import json
import shutil

import pytest

from mmmos.cache_store import open_store
from synthetic_cache import make_synthetic

CFG = "trienc-mlp-utmos"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep_clips")
    store, sets = make_synthetic(d, n_train=24, n_dev=8, n_pam=4)
    return store, sets


def _hdf5_copy(src, dst):
    """The same clips in an HDF5 store (4 clips per part, so damage to one part touches a few clips)."""
    a, b = open_store(src), open_store(dst, backend="hdf5", create=True)
    for info in a.encoders():
        g = a.group(info.key)
        ident = {k: v for k, v in info.identity.items() if k != "dtype"}
        w = b.writer(ident, dtype=info.dtype)
        for i, cid in enumerate(g.clip_ids()):
            c = g.clip(cid)
            w.write(cid, g.read(cid), c.path, c.duration)
            if i % 4 == 3:
                w.commit()
        w.close()
    return dst


def _clip_folder(store, enc, cid):
    g = open_store(store).group(enc)
    return g.root / "clips" / __import__("mmmos.cache_store", fromlist=["clip_key"]).clip_key(cid)


def _sweep(run_cli, store, sets, run, *extra):
    return run_cli(["sweep", "--store", store, "--run", run, "--train", sets["train"], "--dev", sets["dev"],
                    "--sets", "bienc=encA,trienc=encA+encB", "--only", CFG, "--epochs", "1", "--no-progress", *extra])


def _deleted_meta(store, cid):
    (_clip_folder(store, "encB", cid) / "zarr.json").unlink()


def _flipped_chunk(store, cid):
    c = _clip_folder(store, "encA", cid) / "c" / "0" / "0"
    raw = bytearray(c.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    c.write_bytes(bytes(raw))


def _missing_chunk(store, cid):
    (_clip_folder(store, "encA", cid) / "c" / "0" / "0").unlink()


@pytest.mark.parametrize("fault", [_deleted_meta, _flipped_chunk, _missing_chunk])
def test_a_damaged_training_clip_fails_the_configuration_naming_it(synth, tmp_path, run_cli, fault):
    src, sets = synth
    store = tmp_path / "cache.zarr"
    shutil.copytree(src, store)
    cid = "train/clip0003.wav"
    fault(store, cid)
    rc, out, err = _sweep(run_cli, store, sets, tmp_path / "run")
    assert rc == 3, err
    assert "Traceback" not in err and "Traceback" not in out
    fail = [line for line in err.splitlines() if line.startswith(f"sweep: {CFG} failed")]
    assert len(fail) == 1 and cid in fail[0] and "mmmos extract" in fail[0]
    assert not (tmp_path / "run" / "configs" / CFG / "DONE").exists()
    # accepted explicitly: trained without it, said on screen, recorded
    rc, out, err = _sweep(run_cli, store, sets, tmp_path / "run", "--allow-missing-clips")
    assert rc == 0, err
    assert f"{CFG}: trained without 1 missing or damaged clips (train 1" in err
    rec = json.loads((tmp_path / "run" / "configs" / CFG / "config.json").read_text())
    assert rec["dropped_clips"] == {"train": [cid]} and rec["n_train"] == 23


def test_a_damaged_hdf5_part_fails_the_configuration_naming_its_clips(synth, tmp_path, run_cli):
    src, sets = synth
    store = _hdf5_copy(src, tmp_path / "cache.h5store")
    g = open_store(store).group("encA")
    g.index  # noqa: B018 - scan
    part = g._where["train/clip0005.wav"][0]
    held = sorted(c for c, (p, _) in g._where.items() if p == part)
    part.write_bytes(part.read_bytes()[:300])
    rc, _, err = _sweep(run_cli, store, sets, tmp_path / "run")
    assert rc == 3 and "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith(f"sweep: {CFG} failed"))
    named = [c for c in held if c.startswith(("train/", "dev/"))]
    assert named and all(repr(c) in line for c in named[:5]), line
    rc, _, err = _sweep(run_cli, store, sets, tmp_path / "run", "--allow-missing-clips")
    assert rc == 0 and f"trained without {len(named)} missing or damaged clips" in err


def test_clips_listed_but_never_extracted_are_named_too(synth, tmp_path, run_cli):
    import polars as pl

    src, sets = synth
    train = tmp_path / "train.csv"
    df = pl.read_csv(sets["train"])
    extra = df.head(2).with_columns(pl.Series("clip_id", ["never/a.wav", "never/b.wav"]))
    pl.concat([df, extra]).write_csv(train)
    rc, _, err = _sweep(run_cli, src, {**sets, "train": train}, tmp_path / "run")
    assert rc == 3 and "'never/a.wav', 'never/b.wav'" in err and "2 of 26 listed clips" in err
