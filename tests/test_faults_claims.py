"""Claims identify their writer beyond a PID (issue 20, item 5): a claim whose PID now belongs to an unrelated
live process used to leave its clip uncached on every re-run with exit 0, the clip not named; claims of dead
writers on other hosts held for 6 h.  Now a reused PID or a dead writer never blocks a clip, and a run that leaves
a listed clip unwritten names it and exits 3."""
from __future__ import annotations

import os
import socket
import time

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from mmmos.cache_store import clip_key, open_store
from mmmos.cache_store.locking import STALE_SECONDS, boot_id, process_start

HOST = socket.gethostname()


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        f = tmp_path / f"c{i}.wav"
        sf.write(f, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        rows.append({"clip_id": f"c{i}", "path": str(f)})
    pl.DataFrame(rows).write_csv(tmp_path / "m.csv")
    return tmp_path / "m.csv"


def _plant(store, cid: str, text: str, mtime: float | None = None):
    """A claim on ``cid`` in the logmel folder (which the first extract created)."""
    claims = next(store.glob("encoders/logmel-*")) / "claims"
    f = claims / clip_key(cid)
    f.write_text(text)
    if mtime is not None:
        os.utime(f, (mtime, mtime))
    return f


def _extract(run_cli, man, store, limit=None):
    return run_cli(["extract", "--manifest", man, "--encoders", "logmel", "--store", store, "--no-progress",
                    *(["--limit", str(limit)] if limit else [])])


def _unrelated_live_pid() -> int:
    pid = os.getppid()  # alive for the whole test, and not an extract
    assert process_start(pid) is not None
    return pid


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads process start times from /proc")
@pytest.mark.parametrize("claim", ["reused_pid", "reused_pid_old_format", "before_reboot", "other_host_dead"])
def test_a_claim_whose_writer_is_gone_never_blocks_a_clip(corpus, tmp_path, run_cli, claim):
    store = tmp_path / "s.zarr"
    assert _extract(run_cli, corpus, store, limit=1)[0] == 0  # creates the folder, caches c0
    pid = _unrelated_live_pid()
    if claim == "reused_pid":  # this host, a live PID, but not the process that wrote the claim
        _plant(store, "c1", f"{HOST} {pid} deadbeef0000.{process_start(pid) + 12345}.{boot_id()}")
    elif claim == "reused_pid_old_format":  # an older claim; the PID's process started after it was written
        _plant(store, "c1", f"{HOST} {pid} deadbeef0000", mtime=1_000_000.0)
    elif claim == "before_reboot":
        _plant(store, "c1", f"{HOST} {pid} deadbeef0000.{process_start(pid)}.0000other000")
    else:  # another host's writer that stopped refreshing its claim
        _plant(store, "c1", "elsewhere.example 4242 deadbeef0000.1.abc", mtime=time.time() - STALE_SECONDS - 60)
    rc, out, err = _extract(run_cli, corpus, store)
    assert rc == 0, err
    g = open_store(store).group("logmel")
    assert sorted(g.clip_ids()) == ["c0", "c1", "c2"]
    assert not list(g.root.glob("claims/[!.]*"))


def test_a_clip_left_to_a_live_writer_is_named_and_exits_3(corpus, tmp_path, run_cli):
    store = tmp_path / "s.zarr"
    assert _extract(run_cli, corpus, store, limit=1)[0] == 0
    me = os.getpid()  # a live writer: this very process, its real start time, another token
    _plant(store, "c2", f"{HOST} {me} feedface0000.{process_start(me)}.{boot_id()}")
    _plant(store, "c1", "elsewhere.example 4242 deadbeef0000.1.abc")  # another host, fresh: still writing
    rc, out, err = _extract(run_cli, corpus, store)
    assert rc == 3
    failures = pl.read_csv(store / "extract_failures.csv")
    named = dict(zip(failures["clip_id"], failures["error"]))
    assert set(named) == {"c1", "c2"}
    assert f"claimed by another extract still running ({HOST} {me})" in named["c2"]
    assert "elsewhere.example 4242" in named["c1"]
    assert "c0" in open_store(store).group("logmel")
