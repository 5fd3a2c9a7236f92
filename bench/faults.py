"""Fault figure: inject each cache fault class into a small store, then verify + extract, and count.

    python -m bench.faults --out DIR        # writes DIR/faults.json and DIR/faults.md

Every case builds a fresh store of ``N_CLIPS`` short clips with the built-in ``logmel`` encoder, injects one
fault and returns the clip ids it touched.  Then:

* **detected** - ``group.verify()`` names every touched clip (or the damaged file, for a stray part), or
  the next extract reports them stale (changed source audio);
* **repaired** - after ``run_extract`` over the same manifest, ``verify()`` is clean;
* **lost** - clips of the manifest absent after the repair run;
* **silently wrong** - clips that read back without an error but differ from a fresh embedding of their
  current audio, after the repair run.

Then the classes beyond the cache's files (:mod:`bench.faults_system`): a tampered model file, Ctrl-C/SIGTERM
during a sweep (``--jobs 1`` and ``2``) and an extraction, a corrupt ``encoder.json``, a damaged clip during a
sweep, and a claim whose PID was reused; each is detected by the command itself and repaired the documented way.

Goal: all detected and repaired, 0 lost, 0 silently wrong.  To add a fault class, append a case function
``(store: Path, files: dict[clip_id, Path]) -> set[clip_id]`` to ``CASES`` with the backend it needs (or a
``(work: Path) -> row`` case to ``bench.faults_system.CASES``).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

N_CLIPS = 6


# -- helpers --------------------------------------------------------------------------------------------
def _group(store: Path):
    from mmmos.cache_store import open_store

    g = open_store(store).group("logmel")
    g.index  # noqa: B018 - scan
    return g


def _chunk(store: Path, cid: str) -> Path:
    return Path(_group(store)._location(cid)) / "c" / "0" / "0"


def _meta(store: Path, cid: str) -> Path:
    return Path(_group(store)._location(cid)) / "zarr.json"


def _flip(path: Path, offset: int | None = None) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if offset is None else offset] ^= 0x04
    path.write_bytes(bytes(raw))


# -- cases: inject one fault, return the clip ids it damages ---------------------------------------------
def zarr_missing_chunk(store, files):
    _chunk(store, "clip1").unlink()
    return {"clip1"}


def zarr_truncated_chunk(store, files):
    c = _chunk(store, "clip2")
    c.write_bytes(c.read_bytes()[:16])
    return {"clip2"}


def zarr_bit_flipped_chunk(store, files):
    _flip(_chunk(store, "clip3"))
    return {"clip3"}


def zarr_edited_metadata(store, files):
    m = _meta(store, "clip0")
    d = json.loads(m.read_text())
    d["attributes"]["duration"] = float(d["attributes"]["duration"]) + 5.0
    m.write_text(json.dumps(d))
    return {"clip0"}


def zarr_corrupt_metadata(store, files):
    m = _meta(store, "clip4")
    m.write_text(m.read_text()[:30])
    return {"clip4"}


def zarr_deleted_metadata(store, files):
    _meta(store, "clip5").unlink()
    return {"clip5"}


def hdf5_bit_flipped_dataset(store, files):
    import h5py

    p, key = _group(store)._where["clip2"]
    with h5py.File(p, "r") as f:
        info = f["clips"][key].id.get_chunk_info(0)
    _flip(p, info.byte_offset + info.size // 2)
    return {"clip2"}


def hdf5_damaged_part(store, files):
    g = _group(store)
    p = g._where["clip0"][0]
    held = {c for c, (q, _) in g._where.items() if q == p}
    p.write_bytes(p.read_bytes()[:400])
    return held


def hdf5_stray_part(store, files):
    parts = next(store.glob("encoders/*/parts"))
    (parts / "part-stray-0-00000.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    return set()  # holds no known clip; detection = the file is reported


def swapped_source_file(store, files):
    a, b = files["clip1"], files["clip4"]
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    return {"clip1", "clip4"}


CASES = [("zarr", zarr_missing_chunk), ("zarr", zarr_truncated_chunk), ("zarr", zarr_bit_flipped_chunk),
         ("zarr", zarr_edited_metadata), ("zarr", zarr_corrupt_metadata), ("zarr", zarr_deleted_metadata),
         ("hdf5", hdf5_bit_flipped_dataset), ("hdf5", hdf5_damaged_part), ("hdf5", hdf5_stray_part),
         ("zarr", swapped_source_file)]


# -- the harness ---------------------------------------------------------------------------------------
def _corpus(d: Path) -> tuple[str, dict[str, Path]]:
    import polars as pl
    import soundfile as sf

    rng = np.random.default_rng(0)
    files = {}
    for i in range(N_CLIPS):
        files[f"clip{i}"] = p = d / f"clip{i}.wav"
        sf.write(p, (0.2 * rng.standard_normal(int(16000 * (1.0 + 0.3 * i)))).astype(np.float32), 16000)
    man = d / "m.csv"
    pl.DataFrame({"clip_id": list(files), "path": [str(p) for p in files.values()]}).write_csv(man)
    return str(man), files


def _extract(man: str, store: Path, backend: str, limit: int | None = None):
    from mmmos.extract.runner import ExtractConfig, run_extract

    return run_extract(ExtractConfig(manifests=[man], store=str(store), encoders=["logmel"], backend=backend,
                                     progress=False, limit=limit))


def run_case(backend: str, case, work: Path) -> dict:
    work.mkdir(parents=True)
    man, files = _corpus(work)
    store = work / "cache"
    _extract(man, store, backend, limit=N_CLIPS // 2)  # two writes: hdf5 gets two parts
    _extract(man, store, backend)
    touched = case(store, files)
    damage = _group(store).verify()
    from mmmos.cache_store import clip_key

    named = {d.clip_id for d in damage} | {d.key for d in damage}  # a clip whose id is unreadable is named by key
    rep = _extract(man, store, backend)
    stale = set(rep.stale.get("logmel", []))
    detected = all(c in named or clip_key(c) in named or c in stale for c in touched) if touched else bool(damage)
    after = _group(store).verify()
    from .faults_system import silently_wrong

    lost, wrong = silently_wrong(store, files)
    return {"case": case.__name__, "backend": backend, "touched": sorted(touched), "detected": detected,
            "reported": sorted(str(d.clip_id if d.clip_id is not None else d.key or d.file) for d in damage) + sorted(stale),
            "repaired": not after and lost == 0, "re_extracted": rep.written.get("logmel", 0),
            "lost": lost, "silently_wrong": wrong}


def summarise(rows: list[dict]) -> dict:
    return {"faults_injected": len(rows), "detected": sum(r["detected"] for r in rows),
            "repaired": sum(r["repaired"] for r in rows), "clips_lost": sum(r["lost"] for r in rows),
            "clips_silently_wrong": sum(r["silently_wrong"] for r in rows)}


def to_markdown(rows: list[dict], total: dict) -> str:
    out = ["| fault | backend | clips touched | detected | repaired | re-extracted | lost | silently wrong |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['case']} | {r['backend']} | {', '.join(r['touched']) or '-'} | {'yes' if r['detected'] else 'NO'} "
                   f"| {'yes' if r['repaired'] else 'NO'} | {r['re_extracted']} | {r['lost']} | {r['silently_wrong']} |")
    out.append("")
    out.append(f"**{total['faults_injected']} faults injected: {total['detected']} detected, {total['repaired']} "
               f"repaired, {total['clips_lost']} clips lost, {total['clips_silently_wrong']} clips silently wrong.**")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results", help="folder for faults.json / faults.md")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmmos-faults-") as tmp:
        rows = [run_case(backend, case, Path(tmp) / f"{i:02d}-{case.__name__}") for i, (backend, case) in enumerate(CASES)]
        from .faults_system import CASES as SYSTEM_CASES, run_system_case

        rows += [run_system_case(case, Path(tmp) / f"s{i:02d}-{case.__name__}") for i, case in enumerate(SYSTEM_CASES)]
    total = summarise(rows)
    (out / "faults.json").write_text(json.dumps({"summary": total, "cases": rows,
                                                 "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
    md = to_markdown(rows, total)
    (out / "faults.md").write_text(md)
    print(md)
    ok = total["detected"] == total["repaired"] == total["faults_injected"] and not total["clips_lost"] \
        and not total["clips_silently_wrong"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
