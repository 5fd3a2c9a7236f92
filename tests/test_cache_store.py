import json
import math

import numpy as np
import pytest

from mmmos.cache_store import CacheError, frame_range, open_store


def _ident(name="enc", dim=8, rate=50.0, sha="abc"):
    return {"name": name, "weights": "/w", "sha256": sha, "sample_rate": 16000, "frame_rate": rate, "dim": dim,
            "config": {}, "code_version": "1"}


CLIPS = {"speech/a b, c.wav": 17, "PAM/human_eval/music/sysX/1.wav": 1, "x": 600}


def _fill(root, backend, rng):
    st = open_store(root, backend=backend, create=True)
    data = {c: rng.standard_normal((n, 8)).astype(np.float32) for c, n in CLIPS.items()}
    with st.writer(_ident()) as w:
        for c, x in data.items():
            w.write(c, x, f"/audio/{c}", len(x) / 50)
    return data


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_round_trip_and_metadata(tmp_path, backend):
    data = _fill(tmp_path / "c", backend, np.random.default_rng(0))
    g = open_store(tmp_path / "c").group("enc")
    assert sorted(g.clip_ids()) == sorted(CLIPS)
    for c, x in data.items():
        got = g.read(c)
        assert got.dtype == np.float16 and got.shape == x.shape
        np.testing.assert_array_equal(got, x.astype(np.float16))
        info = g.clip(c)
        assert info.n_frames == len(x) and info.path == f"/audio/{c}" and math.isclose(info.duration, len(x) / 50)
        np.testing.assert_allclose(g.pooled(c), x.astype(np.float16).astype(np.float32).mean(0), rtol=1e-5, atol=1e-6)


def test_backends_return_identical_data(tmp_path):
    z = _fill(tmp_path / "z", "zarr", np.random.default_rng(1))
    _fill(tmp_path / "h", "hdf5", np.random.default_rng(1))
    gz, gh = open_store(tmp_path / "z").group("enc"), open_store(tmp_path / "h").group("enc")
    for c in z:
        np.testing.assert_array_equal(gz.read(c), gh.read(c))
        np.testing.assert_array_equal(gz.read_crop(c, 1.3, 10.0), gh.read_crop(c, 1.3, 10.0))


def test_frame_range_formula_and_cross_rate_alignment():
    # [floor(t0 r), ceil((t0+d) r)) clipped to the clip
    assert frame_range(0.0, 10.0, 50.0, 499) == (0, 499)
    assert frame_range(0.0, 10.0, 25.0, 250) == (0, 250)
    assert frame_range(0.0, 10.0, 6.25, 63) == (0, 63)
    assert frame_range(2.5, 10.0, 50.0, 3000) == (125, 625)
    assert frame_range(2.5, 10.0, 6.25, 400) == (math.floor(2.5 * 6.25), math.ceil(12.5 * 6.25))
    assert frame_range(3.0, 10.0, 50.0, 40) == (39, 40)  # past the end: the last frame, never empty
    # the frames chosen for each rate cover the same span of seconds (within one frame of each rate)
    rng = np.random.default_rng(0)
    for _ in range(200):
        t0 = rng.uniform(0, 50)
        for r in (50.0, 25.0, 6.25):
            a, b = frame_range(t0, 10.0, r, 10_000)
            assert a / r <= t0 < (a + 1) / r + 1e-9
            assert (b - 1) / r < t0 + 10.0 <= b / r + 1e-9


def test_read_crop_values(tmp_path):
    data = _fill(tmp_path / "c", "zarr", np.random.default_rng(2))
    g = open_store(tmp_path / "c").group("enc")
    got = g.read_crop("x", 2.0, 3.0)
    np.testing.assert_array_equal(got, data["x"][100:250].astype(np.float16))


def test_identity_change_is_a_new_group_never_mixed(tmp_path):
    st = open_store(tmp_path / "c", create=True)
    with st.writer(_ident(sha="one")) as w:
        w.write("a", np.ones((3, 8)), None, 0.06)
    with st.writer(_ident(sha="two")) as w:
        w.write("b", np.ones((3, 8)), None, 0.06)
    keys = [i.key for i in st.encoders()]
    assert len(keys) == 2
    with pytest.raises(CacheError, match="several"):
        st.group("enc")
    assert open_store(tmp_path / "c").group(keys[0]).clip_ids() in (["a"], ["b"])
    # the same identity with the file moved elsewhere is the same cache
    with st.writer({**_ident(sha="one"), "weights": "/elsewhere"}) as w:
        w.write("c", np.ones((3, 8)), None, 0.06)
    assert len(st.encoders()) == 2


def test_missing_encoder_error_says_how_to_extract(tmp_path):
    _fill(tmp_path / "c", "zarr", np.random.default_rng(0))
    with pytest.raises(CacheError, match=r"mmmos extract --encoders wavlm"):
        open_store(tmp_path / "c").group("wavlm")
    with pytest.raises(CacheError, match="mmmos_store.json"):
        open_store(tmp_path / "nothing")


def test_bad_frames_are_refused_not_stored(tmp_path):
    st = open_store(tmp_path / "c", create=True)
    with st.writer(_ident()) as w:
        for bad in (np.full((4, 8), np.nan), np.zeros((0, 8)), np.zeros((4, 7)), np.full((4, 8), 1e6)):
            with pytest.raises(CacheError):
                w.write("bad", bad, None, 1.0)
    assert "bad" not in st.group("enc")  # nothing readable was left behind


def test_half_written_zarr_clip_is_invisible(tmp_path):
    st = open_store(tmp_path / "c", create=True)
    with st.writer(_ident()) as w:
        w.write("ok", np.ones((3, 8)), None, 0.06)
    # simulate a kill in the middle of a write: a staging folder of a dead process
    g_root = tmp_path / "c" / "encoders" / st.encoders()[0].key
    import socket

    stale = g_root / "_staging" / f"half-abc~{socket.gethostname()}~999999.x"
    (stale / "c").mkdir(parents=True)
    (stale / "zarr.json").write_text(json.dumps({"attributes": {"clip_id": "half"}}))
    g = open_store(tmp_path / "c").group("enc")
    assert g.clip_ids() == ["ok"]
    st.writer(_ident()).close()  # a new writer cleans a dead writer's leftovers
    assert not stale.exists()


def test_hdf5_uncommitted_part_is_invisible(tmp_path):
    st = open_store(tmp_path / "c", backend="hdf5", create=True)
    w = st.writer(_ident())
    w.write("a", np.ones((3, 8)), None, 0.06)
    assert open_store(tmp_path / "c").group("enc").clip_ids() == []  # not committed yet
    w.commit()
    assert open_store(tmp_path / "c").group("enc").clip_ids() == ["a"]
    w.close()


def _sidecar_clips(root) -> list[str]:
    return sorted(c for f in root.glob("encoders/*/parts/*.h5.index.json")
                  for c in json.loads(f.read_text())["clips"].values())


def test_hdf5_interrupt_after_a_dataset_still_lists_it_in_the_sidecar(tmp_path):
    """CI saw it: a Ctrl-C between a clip's dataset and the writer's bookkeeping committed the clip in the part but
    not in the part's sidecar (the list that names the clips of a part that no longer opens)."""
    class Cut(list):
        def append(self, x):
            raise KeyboardInterrupt

    st = open_store(tmp_path / "c", backend="hdf5", create=True)
    w = st.writer(_ident())
    w.write("a", np.ones((3, 8)), None, 0.06)
    w._pending = Cut(w._pending)
    with pytest.raises(KeyboardInterrupt):
        w.write("b", np.full((3, 8), 2.0), None, 0.06)
    w.close()  # what the command's cleanup does
    g = open_store(tmp_path / "c").group("enc")
    assert g.clip_ids() == ["a", "b"] and np.array_equal(g.read("b"), np.full((3, 8), 2.0, np.float16))
    assert _sidecar_clips(tmp_path / "c") == ["a", "b"]


def test_hdf5_dataset_without_metadata_is_not_committed(tmp_path):
    st = open_store(tmp_path / "c", backend="hdf5", create=True)
    w = st.writer(_ident())
    w.write("a", np.ones((3, 8)), None, 0.06)
    w._f["clips"].create_dataset("half", data=np.ones((3, 8), np.float16))  # cut before its attributes
    w.close()
    g = open_store(tmp_path / "c").group("enc")
    assert g.clip_ids() == ["a"] and not g.verify() and _sidecar_clips(tmp_path / "c") == ["a"]


def test_hdf5_sidecar_of_a_part_that_never_landed_is_removed(tmp_path):
    """A sidecar is written just before its part's rename; one whose part is gone (the run died between the two)
    must not keep naming clips as committed, or a concurrent writer would skip them as done elsewhere."""
    st = open_store(tmp_path / "c", backend="hdf5", create=True)
    with st.writer(_ident()) as w:
        w.write("a", np.ones((3, 8)), None, 0.06)
    parts = next((tmp_path / "c" / "encoders").glob("*/parts"))
    orphan = parts / "part-elsewhere-1-00000.h5.index.json"
    orphan.write_text(json.dumps({"committed_ns": 1, "clips": {"b": "b"}}))
    live = parts / "part-elsewhere-2-00000.h5.index.json"  # its part is still being renamed: kept
    live.write_text(json.dumps({"committed_ns": 1, "clips": {"c": "c"}}))
    (parts / "part-elsewhere-2-00000.h5.tmp").write_bytes(b"")
    st.writer(_ident()).close()
    assert not orphan.exists() and live.exists() and _sidecar_clips(tmp_path / "c") == ["a", "c"]


def test_backend_mismatch_refused(tmp_path):
    open_store(tmp_path / "c", backend="hdf5", create=True)
    with pytest.raises(CacheError, match="hdf5"):
        open_store(tmp_path / "c", backend="zarr")
