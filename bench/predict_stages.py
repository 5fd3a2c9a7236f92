"""Where `mmmos predict` spends its time, per stage, for 10-s and for 60-s files (issue 21, item 1).

A TriEnc (WavLM Base+ + MuQ-large + M2D) predictor on full-size random-initialised encoders scores the same
amount of audio twice: as ``n`` files of 10 s and as ``n / 6`` files of 60 s (44.1 kHz stereo, like Track 2).
The two sets alternate in one process (10, 60, 10, 60, ...), so the machine's noise hits both alike, and each
stage's time is summed per set and divided by the audio seconds:

* ``decode`` (background prefetch thread: overlaps the rest), ``resample``,
* per encoder: ``split`` (chunking; M2D's log-mel front end) and ``forward`` (the network, chunk by chunk),
* ``heads`` (windows, members, ensemble), and ``other`` (wall minus the foreground stages).

The ratio 60 s / 10 s of each stage's cost per audio second shows which stage makes long files dearer.
Encoder chunking is part of each encoder's cache identity (WavLM and MuQ: chunks of up to 30 s; M2D: 1001 mel
frames), so predict must cut long audio exactly as extraction did: the model was trained on those frames.

    python -m bench.predict_stages --out bench/results [--files 6] [--reps 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def _write_clips(folder: Path, n: int, seconds: float, seed: int) -> list[str]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sr, paths = 44100, []
    for i in range(n):
        p = folder / f"c{i:02d}.flac"
        if not p.exists():
            t = np.arange(int(seconds * sr)) / sr
            x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(p, np.stack([x, x], 1).astype(np.float32), sr)
        paths.append(str(p))
    return paths


class StageClock:
    """Sums the wall time of wrapped callables into the current set's stages."""

    def __init__(self):
        self.set = ""
        self.t: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def wrap(self, stage: str, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[self.set][stage] += time.perf_counter() - t0

        return timed


def _instrument(pred, clock: StageClock) -> None:
    import mmmos.core.audio as audio

    audio.load_audio = clock.wrap("decode (background)", audio.load_audio)
    audio.resample = clock.wrap("resample", audio.resample)
    for key, enc in pred.encoders.loaded.items():
        name = pred.records[key]["name"]
        enc.split = clock.wrap(f"{name} split", enc.split)
        enc.forward_batch = clock.wrap(f"{name} forward", enc.forward_batch)
    pred.score_frames = clock.wrap("heads", pred.score_frames)


def run(out: Path, files: int = 6, reps: int = 2, threads: int = 2) -> Path:
    from bench.extract_bench import machine, make_weights
    from bench.predict_bench import make_predictor
    from mmmos.app.predict import Predictor
    from mmmos.core.threads import apply_thread_policy

    work = out / "predict_work"
    weights = make_weights(out / "extract_work" / "weights")
    pdir = make_predictor(work, weights) if not (work / "predictor").is_dir() else work / "predictor"
    long_n = max(1, files // 6)
    sets = {"10 s": _write_clips(work / "stages10", long_n * 6, 10.0, 1),
            "60 s": _write_clips(work / "stages60", long_n, 60.0, 2)}
    threads = apply_thread_policy(threads=threads)  # fixed, so both sets and reruns compare
    pred = Predictor.load(pdir, device="cpu")
    clock = StageClock()
    _instrument(pred, clock)
    pred.predict_files(sets["10 s"][:1])  # warm-up (first-call allocations), not counted
    clock.t.clear()
    walls: dict[str, list[float]] = defaultdict(list)
    for _ in range(reps):
        for name, paths in sets.items():
            clock.set = name
            t0 = time.perf_counter()
            table = pred.predict_files(paths)
            walls[name].append(time.perf_counter() - t0)
            assert table["error"].is_null().all(), table["error"].to_list()
    rep = _report(sets, walls, clock, reps, threads)
    rep["machine"] = machine()
    rep["precisions"] = {pred.records[k]["name"]: pred.encoders.precision(k) for k in pred.records}
    rep["command"] = f"python -m bench.predict_stages --out {out} --files {files} --reps {reps} --threads {threads}"
    (out / "predict_stages.json").write_text(json.dumps(rep, indent=2))
    md = out / "predict_stages.md"
    md.write_text(_markdown(rep))
    return md


def _report(sets, walls, clock, reps, threads) -> dict:
    audio = {name: 10.0 * len(p) * reps if name == "10 s" else 60.0 * len(p) * reps for name, p in sets.items()}
    stages = sorted({s for d in clock.t.values() for s in d})
    per_s = {name: {s: clock.t[name][s] / audio[name] for s in stages} for name in sets}
    for name in sets:
        fg = sum(v for s, v in clock.t[name].items() if not s.startswith("decode"))
        per_s[name]["other"] = (sum(walls[name]) - fg) / audio[name]
        per_s[name]["wall"] = sum(walls[name]) / audio[name]
    return {"files": {n: len(p) for n, p in sets.items()}, "reps": reps, "threads": threads,
            "audio_seconds": audio, "wall_seconds": {n: walls[n] for n in sets},
            "seconds_per_audio_second": per_s,
            "ratio_60_to_10": {s: (per_s["60 s"][s] / per_s["10 s"][s] if per_s["10 s"][s] > 0 else None)
                               for s in per_s["10 s"]}}


def _markdown(rep: dict) -> str:
    m = rep["machine"]
    per, ratio = rep["seconds_per_audio_second"], rep["ratio_60_to_10"]
    lines = ["# Predict: per-stage cost for 10-s and 60-s files", "",
             f"Command: `{rep['command']}`  ",
             f"CPU: {m.get('cpu_model')}, {m.get('cpus')} cores, flags {', '.join(m.get('cpu_flags', []))}; "
             f"torch {m.get('torch')}; {rep['threads']} math threads; precisions "
             f"{', '.join(f'{k} {v}' for k, v in rep['precisions'].items())}.  ",
             f"TriEnc predictor, full-size random-initialised encoders; {rep['files']['10 s']} × 10 s and "
             f"{rep['files']['60 s']} × 60 s files (44.1 kHz stereo), {rep['reps']} interleaved repetitions in "
             "one process.", "",
             "| stage | ms per audio-second, 10-s files | ms per audio-second, 60-s files | 60 s / 10 s |",
             "| --- | ---: | ---: | ---: |"]
    order = sorted(per["10 s"], key=lambda s: (s in ("other", "wall"), s == "wall", -per["60 s"][s]))
    for s in order:
        r = ratio[s]
        name = f"**{s}**" if s == "wall" else s
        lines.append(f"| {name} | {1000 * per['10 s'][s]:.1f} | {1000 * per['60 s'][s]:.1f} | "
                     f"{'' if r is None else f'{r:.2f}'} |")
    lines += ["", "Decode runs in the prefetch thread, beside the scoring of the previous file; it is not part of "
              "`other` (wall minus the foreground stages).", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench_out"))
    ap.add_argument("--files", type=int, default=6, help="10-s files per set (the 60-s set has files / 6)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    print(run(a.out, a.files, a.reps, a.threads).read_text())


if __name__ == "__main__":
    main()
