"""Weights hashes are remembered across runs on (path, size, mtime, ctime, inode), and never for other bytes."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from mmmos.extract import base


@pytest.fixture
def memo(tmp_path, monkeypatch):
    f = tmp_path / "memo.json"
    monkeypatch.setenv(base.HASH_MEMO_ENV, str(f))
    monkeypatch.setattr(base, "_hashes", {})
    return f


def _big(path, byte=b"\0"):
    path.write_bytes(byte * (17 << 20))
    return path


def test_a_remembered_hash_is_read_not_recomputed(tmp_path, memo, monkeypatch):
    w = _big(tmp_path / "w.bin")
    want = hashlib.sha256(w.read_bytes()).hexdigest()
    assert base.sha256_file(w) == want
    assert list(json.loads(memo.read_text()).values()) == [want]
    monkeypatch.setattr(base, "_hashes", {})  # a new process: only the file remembers

    def no_hashing(*a, **k):
        raise AssertionError("hashed again")

    monkeypatch.setattr(base.hashlib, "sha256", no_hashing)
    assert base.sha256_file(w) == want


def test_other_bytes_with_the_old_size_and_mtime_are_hashed_again(tmp_path, memo, monkeypatch):
    w = _big(tmp_path / "w.bin")
    old = base.sha256_file(w)
    st = os.stat(w)
    with open(w, "r+b") as f:  # same size, then the mtime put back: only ctime (and the bytes) tell
        f.seek(123)
        f.write(b"\1")
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(base, "_hashes", {})
    new = base.sha256_file(w)
    assert new != old and new == hashlib.sha256(w.read_bytes()).hexdigest()


def test_off_and_small_files_remember_nothing_on_disk(tmp_path, memo, monkeypatch):
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    assert base.sha256_file(small) == hashlib.sha256(b"x" * 1000).hexdigest()
    assert not memo.exists()
    monkeypatch.setenv(base.HASH_MEMO_ENV, "off")
    assert base.sha256_file(_big(tmp_path / "w.bin")) == hashlib.sha256(b"\0" * (17 << 20)).hexdigest()
    assert not memo.exists()


def test_a_damaged_memo_is_ignored(tmp_path, memo):
    memo.write_text("{not json")
    w = _big(tmp_path / "w.bin", b"\2")
    assert base.sha256_file(w) == hashlib.sha256(w.read_bytes()).hexdigest()
    assert json.loads(memo.read_text())  # rewritten whole
