"""Fault injection into the frame cache: every damaged clip is detected, named, kept local and repaired."""
import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest
import soundfile as sf

from mmmos import extract
from mmmos.cache_store import CacheError, DamagedClipError, open_store
from mmmos.core.audio import load_audio
from mmmos.core.errors import UserError
from mmmos.extract.runner import ExtractConfig, format_report, run_extract

IDS = ["a", "b", "c", "d"]


def _corpus(d: Path, ids=IDS, seconds=(1.0, 1.5, 2.0, 2.5)) -> str:
    rng = np.random.default_rng(0)
    rows = []
    for cid, s in zip(ids, seconds):
        p = d / f"{cid.replace(chr(0), '_')}.wav"
        sf.write(p, (0.2 * rng.standard_normal(int(16000 * s))).astype(np.float32), 16000)
        rows.append((cid, str(p)))
    man = d / "m.csv"
    pl.DataFrame({"clip_id": [r[0] for r in rows], "path": [r[1] for r in rows]}).write_csv(man)
    return str(man)


def _extract(man, store, backend="zarr", **kw):
    return run_extract(ExtractConfig(manifests=[man], store=str(store), encoders=["logmel"], backend=backend,
                                     progress=False, **kw))


def _want(path) -> np.ndarray:
    w, _ = load_audio(path)
    return extract.load_encoder("logmel").embed(w).astype(np.float16)


def _clip_dir(store, cid):
    g = open_store(store).group("logmel")
    return Path(g._location(cid))


@pytest.fixture
def zstore(tmp_path):
    man = _corpus(tmp_path)
    _extract(man, tmp_path / "c")
    return man, tmp_path / "c"


def _assert_repaired(man, store, cid, backend="zarr"):
    rep = _extract(man, store, backend)
    assert rep.written["logmel"] == 1 and cid in rep.repaired["logmel"]  # exactly the damaged clip
    g = open_store(store).group("logmel")
    assert g.verify() == []
    np.testing.assert_array_equal(g.read(cid), _want(Path(man).parent / f"{cid}.wav"))


def _assert_detected(store, cid, file_part):
    g = open_store(store).group("logmel")
    with pytest.raises(DamagedClipError) as ei:
        g.read(cid)
    msg = str(ei.value)
    assert repr(cid) in msg and "logmel" in msg and file_part in msg
    for other in set(IDS) - {cid}:  # the neighbours still read
        g.read(other)
    fresh = open_store(store).group("logmel")
    assert [d.clip_id for d in fresh.verify()] == [cid]


def test_missing_zarr_chunk_is_detected_not_zeros(zstore):
    man, store = zstore
    chunk = _clip_dir(store, "c") / "c" / "0" / "0"
    chunk.unlink()
    _assert_detected(store, "c", "c/0/0")
    _assert_repaired(man, store, "c")


def test_bit_flipped_zarr_chunk_is_detected(zstore):
    man, store = zstore
    chunk = _clip_dir(store, "b") / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    chunk.write_bytes(bytes(raw))
    _assert_detected(store, "b", str(_clip_dir(store, "b")))
    _assert_repaired(man, store, "b")


def test_truncated_zarr_chunk_names_the_clip(zstore):
    man, store = zstore
    chunk = _clip_dir(store, "d") / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    _assert_detected(store, "d", str(_clip_dir(store, "d")))
    _assert_repaired(man, store, "d")


def test_chunk_swapped_between_clips_fails_the_frame_checksum(tmp_path):
    man = _corpus(tmp_path, seconds=(2.0, 2.0, 2.0, 2.0))  # same shapes: each chunk alone looks valid
    _extract(man, tmp_path / "c")
    a, b = _clip_dir(tmp_path / "c", "a"), _clip_dir(tmp_path / "c", "b")
    (b / "c" / "0" / "0").write_bytes((a / "c" / "0" / "0").read_bytes())
    _assert_detected(tmp_path / "c", "b", str(b))


def test_corrupt_clip_metadata_stays_local_and_is_repaired(zstore):
    man, store = zstore
    meta = _clip_dir(store, "a") / "zarr.json"
    meta.write_text(meta.read_text()[:40])
    g = open_store(store).group("logmel")
    assert g.clip_ids() == ["b", "c", "d"]  # the others still list and read
    for cid in g.clip_ids():
        g.read(cid)
    assert [d.key for d in g.verify()] == [meta.parent.name]
    _assert_repaired(man, store, "a")


def test_edited_clip_attribute_is_detected(zstore):
    man, store = zstore
    meta = _clip_dir(store, "a") / "zarr.json"
    m = json.loads(meta.read_text())
    m["attributes"]["duration"] = 99.0
    meta.write_text(json.dumps(m))
    damage = open_store(store).group("logmel").verify()
    assert [d.clip_id for d in damage] == ["a"] and "meta_crc32" in damage[0].reason
    _assert_repaired(man, store, "a")


def test_deleted_clip_metadata_is_rewritten_not_reported_written(zstore):
    man, store = zstore
    (_clip_dir(store, "b") / "zarr.json").unlink()
    assert "b" not in open_store(store).group("logmel")
    _assert_repaired(man, store, "b")


def _hdf5_two_parts(tmp_path):
    """Store with clips a, b in one part and c, d in another."""
    man = _corpus(tmp_path)
    _extract(man, tmp_path / "c", "hdf5", limit=2)
    _extract(man, tmp_path / "c", "hdf5")
    parts = sorted((p for p in (tmp_path / "c").glob("encoders/*/parts/*.h5")), key=os.path.getmtime)
    assert len(parts) == 2
    return man, tmp_path / "c", parts


def test_bit_flipped_hdf5_dataset_is_detected_by_fletcher32(tmp_path):
    man, store, parts = _hdf5_two_parts(tmp_path)
    g = open_store(store).group("logmel")
    assert "c" in g  # scans the parts
    p, key = g._where["c"]
    with h5py.File(p, "r") as f:
        info = f["clips"][key].id.get_chunk_info(0)
    raw = bytearray(p.read_bytes())
    raw[info.byte_offset + info.size // 2] ^= 0x01
    p.write_bytes(bytes(raw))
    _assert_detected(store, "c", str(p))
    _assert_repaired(man, store, "c", "hdf5")


def test_damaged_hdf5_part_loses_only_its_own_clips(tmp_path):
    man, store, parts = _hdf5_two_parts(tmp_path)
    parts[1].write_bytes(parts[1].read_bytes()[:500])  # c, d
    g = open_store(store).group("logmel")
    assert g.clip_ids() == ["a", "b"]
    assert sorted(d.clip_id for d in g.verify()) == ["c", "d"]  # named from the part's sidecar index
    rep = _extract(man, store, "hdf5")
    assert rep.written["logmel"] == 2
    g = open_store(store).group("logmel")
    assert g.clip_ids() == IDS and g.verify() == []
    assert not parts[1].exists() and parts[1].with_name(parts[1].name + ".damaged").exists()  # set aside


def test_stray_hdf5_part_does_not_hide_the_others(tmp_path):
    man, store, parts = _hdf5_two_parts(tmp_path)
    stray = parts[0].with_name("part-stray.h5")
    stray.write_bytes(b"not an hdf5 file" * 10)
    g = open_store(store).group("logmel")
    assert g.clip_ids() == IDS
    assert [d.file for d in g.verify()] == [str(stray)]
    _extract(man, store, "hdf5")
    assert open_store(store).group("logmel").verify() == []


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_clip_id_with_nul_byte_is_stored_and_others_read(tmp_path, backend):
    ids = ["a", "b\x00x", "c"]
    man = _corpus(tmp_path, ids=ids, seconds=(1.0, 1.0, 1.0))
    rep = _extract(man, tmp_path / "c", backend)
    assert rep.written["logmel"] == 3, rep.failures
    g = open_store(tmp_path / "c").group("logmel")
    assert g.clip_ids() == sorted(ids)
    for cid in ids:
        g.read(cid)


def test_changed_source_is_re_extracted(zstore):
    man, store = zstore
    d = Path(man).parent
    sf.write(d / "c.wav", (0.1 * np.random.default_rng(7).standard_normal(16000)).astype(np.float32), 16000)
    rep = _extract(man, store)
    assert rep.stale["logmel"] == ["c"] and rep.written["logmel"] == 1
    assert "audio changed" in format_report(rep, str(store))
    g = open_store(store).group("logmel")
    np.testing.assert_array_equal(g.read("c"), _want(d / "c.wav"))
    assert g.clip("c").source.size == (d / "c.wav").stat().st_size


def test_clips_of_older_versions_are_reused_and_counted_unverified(tmp_path):
    man = _corpus(tmp_path)
    st = open_store(tmp_path / "c", create=True)
    enc = extract.load_encoder("logmel")
    from mmmos.extract.runner import _encoder_identity

    with st.writer(_encoder_identity(enc, "fp32")) as w:  # no source recorded, like a version-1 writer
        w.write("a", _want(tmp_path / "a.wav"), str(tmp_path / "a.wav"), 1.0)
    rep = _extract(man, tmp_path / "c")
    assert rep.unverified["logmel"] == 1 and rep.skipped["logmel"] == 1 and rep.written["logmel"] == 3


def test_concurrent_hdf5_writers_store_each_clip_once(tmp_path):
    ids = [f"k{i:02d}" for i in range(24)]
    man = _corpus(tmp_path, ids=ids, seconds=[3.0] * len(ids))
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import time, pathlib
        from mmmos.extract.runner import ExtractConfig, run_extract
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        run_extract(ExtractConfig(manifests=[{man!r}], store={str(tmp_path / 'c')!r}, encoders=["logmel"],
                                  backend="hdf5", progress=False, group_seconds=3.0))
    """)
    open_store(tmp_path / "c", backend="hdf5", create=True)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    go.write_text("")
    assert all(p.wait(timeout=300) == 0 for p in procs)
    stored = []
    for p in (tmp_path / "c").glob("encoders/*/parts/*.h5"):
        with h5py.File(p, "r") as f:
            stored += list(f["clips"])
    assert len(stored) == len(ids) == len(set(stored))
    assert open_store(tmp_path / "c").group("logmel").clip_ids() == ids


def test_failed_commit_counts_nothing_written(tmp_path, monkeypatch):
    from mmmos.cache_store import hdf5_backend

    man = _corpus(tmp_path)

    def broken(self, *a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(hdf5_backend.Writer, "commit", broken)
    rep = _extract(man, tmp_path / "c", "hdf5")
    assert rep.written["logmel"] == 0
    assert [f.stage for f in rep.failures] == ["commit"]
    assert "0 clip frames written" in format_report(rep, str(tmp_path / "c"))


def test_cuda_without_cuda_is_a_user_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="no CUDA device"):
        _extract(_corpus(tmp_path), tmp_path / "c", device="cuda")
    assert not (tmp_path / "c" / "encoders").exists()  # nothing written under a wrong identity


def test_argument_and_store_errors(tmp_path):
    from mmmos.app import extract_cmd

    p = argparse.ArgumentParser()
    extract_cmd.add_arguments(p)
    for bad in (["--batch-size", "0"], ["--batch-size", "-2"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as ei:
            p.parse_args(["--manifest", "m.csv", "--store", "s", *bad])
        assert ei.value.code == 2
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CacheError, match="is a file"):
        open_store(f, create=True)
    open_store(tmp_path / "h", backend="hdf5", create=True)
    with pytest.raises(UserError, match="hdf5 cache"):
        open_store(tmp_path / "h", backend="zarr", create=True)
    assert issubclass(DamagedClipError, UserError) and issubclass(extract.EncoderLoadError, UserError)


def test_cache_verify_command_lists_damage_and_exits_3(zstore, capsys):
    from mmmos.app import cache_cmd

    _, store = zstore
    assert cache_cmd.run_cli(argparse.Namespace(store=str(store), verify=True)) == 0
    (_clip_dir(store, "c") / "c" / "0" / "0").unlink()
    assert cache_cmd.run_cli(argparse.Namespace(store=str(store), verify=True)) == 3
    out = capsys.readouterr().out
    assert "\tc\t" in out and "missing" in out
