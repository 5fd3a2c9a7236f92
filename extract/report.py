"""What an extraction run did: the report object, its printed summary and the files it leaves in the store.

``<store>/extract_failures[-shardIofN].csv`` has the header ``FAILURE_COLUMNS``
(clip_id, path, encoder, stage, error); stage is one of manifest, load, decode, encode, write, commit.
``<store>/extract_report[-shardIofN].json`` is :meth:`ExtractReport.to_json`.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAILURE_COLUMNS = ("clip_id", "path", "encoder", "stage", "error")


@dataclass
class Failure:
    clip_id: str
    path: str | None
    encoder: str
    stage: str
    error: str


@dataclass
class ExtractReport:
    clips_total: int = 0  # clips of the manifests this run (shard) is responsible for
    written: dict[str, int] = field(default_factory=dict)  # clips committed to the store, per encoder
    skipped: dict[str, int] = field(default_factory=dict)  # valid clips reused from the cache
    repaired: dict[str, list[str]] = field(default_factory=dict)  # damaged clips planned for re-extraction
    stale: dict[str, list[str]] = field(default_factory=dict)  # cached clips whose audio changed since
    unverified: dict[str, int] = field(default_factory=dict)  # reused clips without a recorded source
    busy: dict[str, int] = field(default_factory=dict)  # clips left to a concurrent writer
    failures: list[Failure] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    encoder_seconds: dict[str, float] = field(default_factory=dict)
    decode_seconds: float = 0.0  # reading and decoding files, summed over clips (over decode threads)
    resample_seconds: float = 0.0  # resampling to the encoders' rates, summed over clips
    write_seconds: float = 0.0  # writing frames to the store (in the writer thread beside a GPU)
    load_seconds: float = 0.0  # loading encoders, hashing weights, scanning the cache, checking sources

    def fail(self, clip_id, path, encoder: str, stage: str, err) -> None:
        self.failures.append(Failure(str(clip_id), None if path is None else str(path), encoder, stage,
                                     str(err) or type(err).__name__))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["failures"] = len(self.failures)
        return d


def shard_suffix(shard: tuple[int, int]) -> str:
    """Per-shard report names, so parallel workers on one store do not overwrite each other's."""
    return "" if shard[1] <= 1 else f"-shard{shard[0]}of{shard[1]}"


def failures_path(store: str | Path, shard: tuple[int, int] = (0, 1)) -> Path:
    return Path(store) / f"extract_failures{shard_suffix(shard)}.csv"


def write_failures(path: Path, failures: list[Failure]) -> None:
    """This run's failures (the file is replaced each run; fixed clips drop out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not failures:
        path.unlink(missing_ok=True)
        return
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FAILURE_COLUMNS)
        for x in failures:
            w.writerow([x.clip_id, x.path or "", x.encoder, x.stage, x.error])


def _ids(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f" … (+{len(ids) - n})" if len(ids) > n else "")


def format_report(rep: ExtractReport, store: str, shard: tuple[int, int] = (0, 1)) -> str:
    written = sum(rep.written.values())
    lines = [f"extract: {rep.clips_total} clips listed, {written} clip frames written "
             f"({rep.audio_seconds:.1f} s of audio decoded) in {rep.wall_seconds:.1f} s into {store}"]
    for name in rep.written:
        lines.append(f"  {name:8s} written {rep.written[name]:6d}  already cached {rep.skipped.get(name, 0):6d}  "
                     f"encoder time {rep.encoder_seconds.get(name, 0.0):.1f} s")
        if rep.stale.get(name):
            lines.append(f"    re-extracted {len(rep.stale[name])} clips whose audio changed since they were cached: "
                         f"{_ids(rep.stale[name])}")
        if rep.repaired.get(name):
            lines.append(f"    repaired {len(rep.repaired[name])} damaged clips: {_ids(rep.repaired[name])}")
        if rep.unverified.get(name):
            lines.append(f"    {rep.unverified[name]} cached clips have no recorded source (written by an older "
                         f"version): reused unverified")
        if rep.busy.get(name):
            lines.append(f"    {rep.busy[name]} clips were being written by another extract: left to it")
    if rep.audio_seconds:
        lines.append(f"  time by stage: decode {rep.decode_seconds:.1f} s, resample {rep.resample_seconds:.1f} s "
                     f"(summed over clips), encoders {sum(rep.encoder_seconds.values()):.1f} s, "
                     f"write {rep.write_seconds:.1f} s")
    if rep.failures:
        lines.append(f"  {len(rep.failures)} failures (see {failures_path(store, shard)}):")
        for x in rep.failures[:10]:
            lines.append(f"    {x.clip_id} [{x.encoder}/{x.stage}] {x.error}")
        if len(rep.failures) > 10:
            lines.append(f"    … and {len(rep.failures) - 10} more")
    return "\n".join(lines)


def save_report(rep: ExtractReport, store: str, shard: tuple[int, int] = (0, 1)) -> None:
    p = Path(store) / f"extract_report{shard_suffix(shard)}.json"
    p.write_text(json.dumps(rep.to_json(), indent=2))
