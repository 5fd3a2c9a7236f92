"""Fault classes beyond the cache's own files (issue 20), for ``python -m bench.faults``.

Each case builds what it needs in ``work``, injects one fault, checks that it is *detected* (the command says
so: an error naming it, exit 130/143/3), then *repairs* it the documented way and counts clips or
configurations *lost* and results *silently wrong* (used without a word).  Each returns a row of the same shape
as the cache cases in :mod:`bench.faults`.

* tampered_model_file - a flipped byte in an exported model's ``members/*.pt``; repair: re-export;
* interrupt_sweep / interrupt_extract - SIGINT to the process group (as Ctrl-C) or SIGTERM mid-run; repair:
  re-run (resumes); also checks that no worker process is left and no traceback printed;
* interrupt_extract_ray - SIGTERM to ``extract --ray`` mid-run: exit 143 and none of Ray's daemons left;
* corrupt_encoder_metadata - one encoder's ``encoder.json`` truncated; the other encoder must stay usable;
  repair: ``extract``;
* damaged_clip_in_sweep - a training clip's ``zarr.json`` deleted; the sweep must fail naming it (exit 3);
  repair: ``extract``, then the sweep trains on every clip;
* reused_pid_claim - a claim whose PID belongs to an unrelated live process; the next extract must write the
  clip anyway.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PY = [sys.executable, "-m", "mmmos"]
AXES = ["PQ", "PC", "CE", "CU"]


def _row(case: str, touched, detected: bool, repaired: bool, lost: int = 0, wrong: int = 0, redone: int = 0,
         backend: str = "zarr") -> dict:
    return {"case": case, "backend": backend, "touched": sorted(map(str, touched)), "detected": bool(detected),
            "reported": [], "repaired": bool(repaired), "re_extracted": redone, "lost": lost, "silently_wrong": wrong}


def _corpus(d: Path, n: int = 12) -> tuple[Path, Path, Path, dict[str, Path]]:
    """``n`` short clips with random labels: (all-clips manifest, train list, dev list, files)."""
    import polars as pl
    import soundfile as sf

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files, rows = {}, []
    for i in range(n):
        cid = f"clip{i:02d}"
        files[cid] = p = d / f"{cid}.wav"
        sf.write(p, (0.2 * rng.standard_normal(int(16000 * (1.0 + 0.2 * (i % 4))))).astype(np.float32), 16000)
        rows.append({"clip_id": cid, "path": str(p), "system": f"s{i % 3}", "domain": "speech",
                     **{a: float(rng.uniform(2, 8)) for a in AXES}})
    df = pl.DataFrame(rows)
    df.write_csv(d / "all.csv")
    df.head(n - 4).write_csv(d / "train.csv")
    df.tail(4).write_csv(d / "dev.csv")
    return d / "all.csv", d / "train.csv", d / "dev.csv", files


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _extract_cmd(man, store, encoders="logmel") -> list[str]:
    return [*PY, "extract", "--manifest", str(man), "--encoders", encoders, "--store", str(store), "--no-progress"]


def _sweep_cmd(store, train, dev, run, jobs=1, only="bienc-mlp-utmos") -> list[str]:
    return [*PY, "sweep", "--store", str(store), "--run", str(run), "--train", str(train), "--dev", str(dev),
            "--sets", "bienc=logmel,trienc=logmel", "--only", only, "--epochs", "3", "--jobs", str(jobs),
            "--no-progress"]


def _session_alive(sid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[3]) == sid and f[0] not in ("Z", "X"):
                out.append(int(d.name))
    return out


def _interrupt(cmd: list[str], wait_for, sig: int) -> tuple[int, str, bool]:
    """Run ``cmd`` in its own session, send ``sig`` once ``wait_for()`` holds (it is mid-work); returns (exit
    status, stderr, whether any process of the session outlived it)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        while p.poll() is None and not wait_for() and time.time() < deadline:
            time.sleep(0.05)
        if p.poll() is None:
            (os.killpg if sig == signal.SIGINT else os.kill)(p.pid, sig)
        _, err = p.communicate(timeout=60)
        for _ in range(50):
            if not _session_alive(p.pid):
                break
            time.sleep(0.1)
        return p.returncode, err.decode(errors="replace"), bool(_session_alive(p.pid))
    finally:
        if p.poll() is None or _session_alive(p.pid):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# -- cases ----------------------------------------------------------------------------------------------------
def tampered_model_file(work: Path) -> dict:
    import torch

    from mmmos.app.predict import Predictor, TamperedModelError, export_predictor
    from mmmos.cache_store import identity_key
    from mmmos.core.rundir import ModelRecord, RunDir
    from mmmos.extract import load_encoder
    from mmmos.heads import build_head

    _, _, _, files = _corpus(work / "audio", 2)
    ident = {**json.loads(json.dumps(load_encoder("logmel").identity(), default=str)), "dtype": "float16"}
    run = RunDir(work / "run")
    torch.manual_seed(0)
    head = build_head("mlp", ident["dim"], 4)
    run.config("m0").write_model(ModelRecord(
        head_config=head.config, state_dict=head.state_dict(), z_mean=[5.0] * 4, z_std=[3.0] * 4, axes=AXES,
        encoders=[ident], encoder_keys=[identity_key(ident)], crop_seconds=10.0, grid_rate=50.0, task="track2"))
    model = export_predictor(run.path, ["m0"], work / "model")
    clip = [files["clip00"]]
    want = Predictor.load(model).predict_files(clip).select(AXES).to_numpy()
    f = model / "members" / "m0.pt"
    raw = bytearray(f.read_bytes())
    raw[-200] ^= 0x01
    f.write_bytes(bytes(raw))
    detected = wrong = 0
    try:
        got = Predictor.load(model).predict_files(clip).select(AXES).to_numpy()
        wrong = int(not np.array_equal(got, want))
    except TamperedModelError as e:
        detected = str(f) in str(e)
    export_predictor(run.path, ["m0"], model)  # the repair: re-export
    again = Predictor.load(model).predict_files(clip).select(AXES).to_numpy()
    return _row("tampered_model_file", ["members/m0.pt"], detected, np.array_equal(again, want), wrong=wrong,
                backend="-")


def _sweep_finished(run: Path, names: list[str], dev_n: int) -> tuple[int, int]:
    """(configurations lost, configurations silently wrong) of a run that reported success."""
    import polars as pl

    lost = wrong = 0
    for n in names:
        c = run / "configs" / n
        if not (c / "DONE").is_file():
            lost += 1
            continue
        pred = pl.read_parquet(c / "predictions" / "dev.parquet")
        wrong += int(pred.height != dev_n or pred["clip_id"].n_unique() != dev_n)
    return lost, wrong


def _interrupt_sweep(work: Path, jobs: int, sig: int) -> dict:
    man, train, dev, _ = _corpus(work / "audio")
    store, run = work / "cache.zarr", work / "run"
    _run(_extract_cmd(man, store))
    names = ["bienc-mlp-utmos", "bienc-mlp-ccc"]
    cmd = _sweep_cmd(store, train, dev, run, jobs, ",".join(names))
    rc, err, left = _interrupt(cmd, lambda: any(run.glob("configs/*/train_log.jsonl")), sig)
    want = 130 if sig == signal.SIGINT else 143
    detected = rc == want and "Traceback" not in err and not left
    r = _run(cmd)
    lost, wrong = _sweep_finished(run, names, 4)
    what = "SIGINT to the group" if sig == signal.SIGINT else "SIGTERM"
    return _row(f"interrupt_sweep_jobs{jobs} ({what})", names, detected, r.returncode == 0 and not lost, lost, wrong)


def interrupt_sweep_jobs1(work: Path) -> dict:
    return _interrupt_sweep(work, 1, signal.SIGTERM)


def interrupt_sweep_jobs2(work: Path) -> dict:
    return _interrupt_sweep(work, 2, signal.SIGINT)


def silently_wrong(store: Path, files: dict[str, Path], encoder: str = "logmel") -> tuple[int, int]:
    """(clips missing, clips that read without error but differ from their current audio's frames)."""
    from mmmos import extract
    from mmmos.cache_store import DamagedClipError, open_store
    from mmmos.core.audio import load_audio

    enc = extract.load_encoder(encoder)
    g = open_store(store).group(encoder)
    lost = wrong = 0
    for cid, path in files.items():
        if cid not in g:
            lost += 1
            continue
        try:
            x = g.read(cid)
        except DamagedClipError:
            continue
        wrong += not np.array_equal(x, enc.embed(load_audio(path)[0]).astype(np.float16))
    return lost, wrong


def interrupt_extract(work: Path) -> dict:
    man, _, _, files = _corpus(work / "audio", 40)
    store = work / "cache.zarr"
    rc, err, left = _interrupt(_extract_cmd(man, store),
                               lambda: len(list(store.glob("encoders/*/clips/*"))) >= 5, signal.SIGINT)
    detected = rc == 130 and "Traceback" not in err and not left
    r = _run(_extract_cmd(man, store))
    lost, wrong = silently_wrong(store, files)
    from mmmos.cache_store import open_store

    clean = not any(open_store(store).verify().values())
    return _row("interrupt_extract (SIGINT to the group)", [f"{len(files)} clips"], detected,
                r.returncode == 0 and clean and not lost, lost, wrong)


def interrupt_extract_ray(work: Path) -> dict:
    """SIGTERM to ``extract --ray`` mid-run: exit 143, no traceback, none of Ray's daemons left; a re-run (also on
    Ray) completes the store.  Skipped (a row saying so) where Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return _row("interrupt_extract_ray (skipped: ray not installed)", [], True, True)
    man, _, _, files = _corpus(work / "audio", 40)
    store = work / "cache.zarr"
    cmd = [*_extract_cmd(man, store), "--ray"]
    # claims are taken as a worker starts a group of clips: the signal lands mid-work (Ray's workers commit whole
    # groups, so counting written clips could wait until the run was ending)
    rc, err, left = _interrupt(cmd, lambda: any(store.glob("encoders/*/claims/*")), signal.SIGTERM)
    detected = rc == 143 and "Traceback" not in err and not left
    r = _run(cmd)
    lost, wrong = silently_wrong(store, files)
    from mmmos.cache_store import open_store

    clean = not any(open_store(store).verify().values())
    return _row("interrupt_extract_ray (SIGTERM)", [f"{len(files)} clips"], detected,
                r.returncode == 0 and clean and not lost, lost, wrong)


def corrupt_encoder_metadata(work: Path) -> dict:
    from mmmos.cache_store import CacheError, open_store

    man, _, _, files = _corpus(work / "audio", 4)
    store = work / "cache.zarr"
    _run(_extract_cmd(man, store, "logmel,logmel_slow"))
    rec = next(store.glob("encoders/logmel_slow-*/encoder.json"))
    rec.write_text(rec.read_text()[:30])
    st = open_store(store)
    damage = st.verify()
    named = any(d.file == str(rec) for ds in damage.values() for d in ds)
    other_ok = not damage[next(store.glob("encoders/logmel-*")).name]
    try:
        st.group("logmel_slow")
        refused = False
    except CacheError as e:
        refused = str(rec) in str(e)
    r = _run(_extract_cmd(man, store, "logmel,logmel_slow"))
    after = open_store(store).verify()
    lost, wrong = silently_wrong(store, files, "logmel_slow")
    return _row("corrupt_encoder_metadata", ["logmel_slow encoder.json"], named and other_ok and refused,
                r.returncode == 0 and not any(after.values()) and not lost, lost, wrong)


def damaged_clip_in_sweep(work: Path) -> dict:
    from mmmos.cache_store import clip_key

    man, train, dev, files = _corpus(work / "audio")
    store, run = work / "cache.zarr", work / "run"
    _run(_extract_cmd(man, store))
    victim = "clip03"
    (next(store.glob("encoders/logmel-*")) / "clips" / clip_key(victim) / "zarr.json").unlink()
    r = _run(_sweep_cmd(store, train, dev, run))
    detected = r.returncode == 3 and repr(victim) in r.stderr and "Traceback" not in r.stderr
    wrong = int(r.returncode == 0)  # trained without the clip and said nothing
    rx = _run(_extract_cmd(man, store))
    r2 = _run(_sweep_cmd(store, train, dev, run))
    n_train = json.loads((run / "configs" / "bienc-mlp-utmos" / "config.json").read_text())["n_train"] \
        if r2.returncode == 0 else 0
    lost, _ = silently_wrong(store, files)
    return _row("damaged_clip_in_sweep (zarr.json deleted)", [victim], detected,
                rx.returncode == 0 and r2.returncode == 0 and n_train == 8 and not lost, lost, wrong, redone=1)


def reused_pid_claim(work: Path) -> dict:
    from mmmos.cache_store import clip_key
    from mmmos.cache_store.locking import boot_id, process_start

    man, _, _, files = _corpus(work / "audio", 4)
    store = work / "cache.zarr"
    import polars as pl

    pl.read_csv(man).head(1).write_csv(work / "one.csv")
    _run(_extract_cmd(work / "one.csv", store))
    pid = os.getppid() if process_start(os.getppid()) is not None else 1  # a live process that is no extract
    claim = next(store.glob("encoders/logmel-*")) / "claims" / clip_key("clip02")
    claim.write_text(f"{socket.gethostname()} {pid} deadbeef0000.{(process_start(pid) or 0) + 777}.{boot_id()}")
    r = _run(_extract_cmd(man, store))
    lost, wrong = silently_wrong(store, files)
    return _row("reused_pid_claim", ["clip02"], r.returncode == 0 and "clip02" not in r.stdout,
                r.returncode == 0 and not lost, lost, wrong)


CASES = [tampered_model_file, interrupt_sweep_jobs1, interrupt_sweep_jobs2, interrupt_extract, interrupt_extract_ray,
         corrupt_encoder_metadata, damaged_clip_in_sweep, reused_pid_claim]


def run_system_case(case, work: Path) -> dict:
    work.mkdir(parents=True)
    return case(work)


__all__ = ["CASES", "run_system_case"]
