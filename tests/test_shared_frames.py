"""Issue 17: the sweep reads each encoder's frames once and shares them (a memory-mapped pack per encoder).

The pack must change nothing that is learned: predictions are bit-identical to each configuration reading the
store itself, for Track 2 (pooled and frame heads, one process and worker processes) and Track 1; and each
listed clip of each encoder is read from the store once per sweep.
"""
from __future__ import annotations

import collections

import polars as pl
import pytest

from mmmos import sweep
from mmmos.cache_store import EncoderGroup, open_store
from mmmos.cache_store.group import update_damage
from mmmos.cache_store.packed import FramePack, open_frames, pack_frames
from synthetic_cache import make_synthetic

SETS = {"bienc": ("encA",), "trienc": ("encA", "encB")}
NAMES = ["bienc-mlp-utmos", "trienc-mlp-dcq", "trienc-blstm_t-utmos", "trienc-blstm_h-ccc"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("shared")
    store, sets = make_synthetic(d, n_train=40, n_dev=16, n_pam=12)
    labels = (sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"]),
              [sweep.load_labels("pam_dev", sets["pam_dev"])])
    return str(store), labels


def _cfgs(names=NAMES, epochs=2):
    cfgs = [c for c in sweep.paper_configs(SETS) if c.name in names]
    for c in cfgs:
        c.lr, c.epochs = 3e-3, epochs
    return cfgs


@pytest.fixture
def reads(monkeypatch):
    """Counts of store reads per (encoder, clip id) in this process."""
    counts: collections.Counter = collections.Counter()
    orig = EncoderGroup.read

    def counted(self, clip_id):
        counts[(self.info.name, clip_id)] += 1
        return orig(self, clip_id)

    monkeypatch.setattr(EncoderGroup, "read", counted)
    return counts


def _predictions(run, names, sets=("dev", "pam_dev")) -> dict:
    return {(n, s): pl.read_parquet(run / "configs" / n / "predictions" / f"{s}.parquet") for n in names for s in sets}


def test_track2_pack_is_bit_identical_and_reads_each_clip_once(synth, tmp_path, reads):
    store, (tr, dv, ev) = synth
    sweep.run_sweep(_cfgs(), store, tmp_path / "old", tr, dv, ev, progress=False, share_frames=False)
    old_reads = collections.Counter(reads)
    reads.clear()
    sweep.run_sweep(_cfgs(), store, tmp_path / "new", tr, dv, ev, progress=False, share_frames=True)
    a, b = _predictions(tmp_path / "old", NAMES), _predictions(tmp_path / "new", NAMES)
    for k in a:
        assert a[k].equals(b[k]), k  # bit-identical floats, same rows
    n_clips = tr.table.height + dv.table.height + ev[0].table.height
    assert max(old_reads.values()) > 1  # the old path re-reads (the count can tell the difference)
    assert set(reads.values()) == {1}
    assert len(reads) == 2 * n_clips  # encA and encB, every listed clip
    assert not list((tmp_path / "new").glob(".frames-*"))  # the pack is removed with the sweep


def test_track2_workers_share_the_pack_with_identical_predictions(synth, tmp_path):
    store, (tr, dv, ev) = synth
    names = ["trienc-mlp-dcq", "trienc-blstm_t-utmos"]
    for run, share in (("old", False), ("new", True)):
        sweep.run_sweep(_cfgs(names, 1), store, tmp_path / run, tr, dv, ev, jobs=2, progress=False,
                        share_frames=share)
    a, b = _predictions(tmp_path / "old", names), _predictions(tmp_path / "new", names)
    for k in a:
        assert a[k].equals(b[k]), k
    assert not list((tmp_path / "new").glob(".frames-*"))


def test_pack_reads_are_views_of_the_same_bytes(synth, tmp_path):
    store, (tr, dv, ev) = synth
    ids = tr.table["clip_id"].to_list()[:5] + ["not/in/the/cache.wav"]
    pack = pack_frames(store, {"encA": ids}, tmp_path / "pack")
    assert isinstance(pack, FramePack) and pack.nbytes > 0
    st, plain = open_frames(pack), open_frames(store)
    g, h = st.group("encA"), plain.group("encA")
    for cid in ids[:5]:
        x, y = g.read(cid), h.read(cid)
        assert x.dtype == y.dtype and x.shape == y.shape and (x == y).all()
        assert not x.flags.owndata  # a view of the map, not a copy
    assert st.group("encB") is not None and not hasattr(st.group("encB"), "_packed")  # not packed: the store's
    pack.release()
    assert not (tmp_path / "pack").exists()


def test_a_damaged_clip_fails_as_before_with_the_pack(tmp_path):
    """Damage found while packing is reported by the configuration that reads the clip, with the same message."""
    from test_faults_sweep_clips import _flipped_chunk

    store, sets = make_synthetic(tmp_path, n_train=24, n_dev=8, n_pam=4)
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    bad = tr.table["clip_id"][3]
    _flipped_chunk(str(store), bad)
    errors = {}
    for run, share in (("old", False), ("new", True)):
        g = open_store(store).group("encA")
        update_damage(g.root, clear=list(g.damaged_keys()))  # each run finds the damage on its own read
        res = sweep.run_sweep(_cfgs(["trienc-mlp-utmos"], 1), str(store), tmp_path / run, tr, dv, [],
                              progress=False, share_frames=share)
        errors[run] = res["trienc-mlp-utmos"]["error"]
    assert bad in errors["old"] and errors["old"] == errors["new"]


def test_track1_pack_is_bit_identical_and_reads_each_id_once(tmp_path, reads):
    from test_track1_train import _cfg, make_track1_cache

    from mmmos.sweep.track1 import checkpoint_names
    from mmmos.sweep.track1.run import run_track1_sweep

    store, sets = make_track1_cache(tmp_path, n_train=32, n_dev=16, n_prompts=6)
    for run, share in (("old", False), ("new", True)):
        reads.clear()
        run_track1_sweep([_cfg(epochs=2, patience=2)], str(store), tmp_path / run, sets["train"], sets["dev"], [],
                         progress=False, share_frames=share)
    assert set(reads.values()) == {1}
    assert sum(1 for e, _ in reads if e == "txt") == len(set(sets["train"].table["prompt"]) |
                                                          set(sets["dev"].table["prompt"]))
    for name in checkpoint_names("t1-test"):
        a = pl.read_parquet(tmp_path / "old" / "configs" / name / "predictions" / "dev.parquet")
        b = pl.read_parquet(tmp_path / "new" / "configs" / name / "predictions" / "dev.parquet")
        assert a.equals(b), name


def test_track1_losses_take_the_task_score_range():
    import dataclasses

    import torch

    from mmmos.core.tasks import get_task
    from mmmos.losses import get_loss
    from mmmos.sweep.track1.trainer import task_loss

    t1 = get_task("track1")
    wide = dataclasses.replace(t1, score_range=(0.0, 10.0))
    logits, y = torch.randn(4, 2, 20, generator=torch.Generator().manual_seed(0)), torch.full((4, 2), 7.5)
    for name in ("kl_gaussian", "kl_onehot", "coral"):
        raw = get_loss(name)
        lg = logits[..., :4] if name == "coral" else logits
        assert torch.equal(task_loss(name, t1)(lg, y.clamp(1, 5)), raw(lg, y.clamp(1, 5)))  # 1-5: as before
        assert torch.equal(task_loss(name, wide)(lg, y), raw(lg, y, lo=0.0, **({} if name == "coral" else {"hi": 10.0})))


def test_a_killed_sweeps_pack_is_removed_by_the_next(tmp_path):
    import os
    import subprocess

    from mmmos.sweep.frames import remove_dead_packs

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".frames-{dead.pid}").mkdir()
    (tmp_path / f".frames-{dead.pid}" / "0.bin").write_bytes(b"x")
    (tmp_path / f".frames-{os.getppid()}").mkdir()  # a running sweep's pack stays
    assert remove_dead_packs(tmp_path) == [tmp_path / f".frames-{dead.pid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".frames-{os.getppid()}"]
