"""Extraction benchmark: full-size random-initialised WavLM Base+, MuQ-large and M2D ViT-B (real architectures,
real compute) on Track-2-like clips, on ``--device`` (cpu or cuda).

Measured in one run on the same clips, each phase in its own subprocess (its own peak memory), phases
interleaved (encoders, pipeline, encoders, pipeline, ... for ``--repeats``):

* ``encoders`` - the three encoders alone: inputs decoded, resampled and split beforehand, batches of the
  pipeline's size, only ``forward`` timed (device synchronised) -> audio-s/s per encoder and for all three;
* ``pipeline`` - ``mmmos extract`` as a user runs it (``run_extract``: decode, resample, batches, forward, store)
  -> audio-s/s, time per stage (decode, resample, encoders incl. transfers, write), failed clips.

Pipeline efficiency = pipeline rate / encoders-alone rate.  Beside a GPU, utilisation is sampled with
``nvidia-smi`` during each phase, and peak device memory comes from ``torch.cuda.max_memory_allocated``.
The clip set is the issue's: 10-s clips, three in four 44.1 kHz stereo (as Track 2), one in four 16 kHz mono
(band-limited for MuQ's 24 kHz: the case reduced precision used to break).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ENCODERS = ("wavlm", "muq", "m2d")
ROOT = Path(__file__).resolve().parents[1]


def make_audio(out: Path, seconds: float, seed: int = 0) -> list[tuple[str, str]]:
    """Clips like the Track 2 data: mostly exactly 10 s (44.1 kHz stereo), some 4-30 s at 16/48 kHz
    (the predict and Ray benchmarks' audio)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out = out.resolve()  # manifests resolve relative paths against their own folder
    out.mkdir(parents=True, exist_ok=True)
    rows, total, i = [], 0.0, 0
    while total < seconds:
        if i % 3 == 2:
            dur, sr, ch = float(rng.uniform(4, 30)), int(rng.choice([16000, 48000])), 1
        else:
            dur, sr, ch = 10.0, 44100, 2
        t = np.arange(int(dur * sr)) / sr
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.05 * rng.standard_normal(len(t))
        x = np.tile(x[:, None], (1, ch)) if ch > 1 else x
        p = out / f"clip{i:03d}.flac"
        sf.write(p, x.astype(np.float32), sr)
        rows.append((f"clip{i:03d}", str(p)))
        total += dur
        i += 1
    return rows


def make_clips(out: Path, clips: int, seconds: float = 10.0, seed: int = 0) -> list[tuple[str, str]]:
    """The issue's mixed set: 10-s clips, three in four 44.1 kHz stereo, one in four 16 kHz mono."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(clips):
        sr, ch = (16000, 1) if i % 4 == 3 else (44100, 2)
        p = out / f"clip{i:04d}.flac"
        if not p.exists():
            t = np.arange(int(seconds * sr)) / sr
            x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(p, (np.tile(x[:, None], (1, ch)) if ch > 1 else x).astype(np.float32), sr)
        rows.append((f"clip{i:04d}", str(p)))
    return rows


def make_weights(out: Path) -> dict[str, str]:
    from mmmos.testing import m2d, muq, wavlm

    if not (out / "wavlm").exists():
        wavlm.write_random_checkpoint(out / "wavlm", "full", fmt="hf-safetensors")
    if not (out / "muq").exists():
        muq.write_random_checkpoint(out / "muq", "full")
    dirs = list(out.glob("m2d/*80x1001*"))
    m2d_dir = dirs[0] if dirs else m2d.write_random_checkpoint(out / "m2d", "full", input_frames=1001)
    return {"wavlm": str(out / "wavlm"), "muq": str(out / "muq"), "m2d": str(m2d_dir)}


def machine() -> dict:
    import torch

    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                                  if ln.startswith("Model name")), None)
        flags = next((ln.split(":", 1)[1].split() for ln in lscpu.splitlines() if ln.startswith("Flags")), [])
        info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx2", "avx512f")))
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class GpuSampler:
    """Samples GPU utilisation (%) and memory used (MiB) with nvidia-smi every ``ms`` while running."""

    def __init__(self, ms: int = 200):
        self.ms, self.util, self.mem, self.proc = ms, [], [], None

    def __enter__(self):
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                          "--format=csv,noheader,nounits", f"-lms={self.ms}", "-i", "0"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return self
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                u, m = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.util.append(u)
            self.mem.append(m)

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def summary(self) -> dict | None:
        if not self.util:
            return None
        u = np.asarray(self.util)
        return {"util_mean": float(u.mean()), "util_p90": float(np.percentile(u, 90)), "samples": len(u),
                "mem_used_max_mib": float(max(self.mem))}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def phase_encoders(manifest: str, weights: dict, device: str, precision: str, batch: int | None) -> dict:
    """Each encoder alone over inputs prepared beforehand (decode, resample, split not timed)."""
    import polars as pl

    from mmmos import extract
    from mmmos.core.audio import load_audio, resample
    from mmmos.extract.pipeline import feed_settings
    from mmmos.extract.precision import _forward, prepare_encoder, resolve_precision

    device = extract.select_device(device)
    bs = feed_settings(device, batch).batch_size
    df = pl.read_csv(manifest)
    waves = [load_audio(p) for p in df["path"]]
    audio = sum(len(w) / sr for w, sr in waves)
    out = {"audio_seconds": audio, "seconds": {}, "precision": {}, "batch_size": bs}
    with GpuSampler() as gpu:
        for name in ENCODERS:
            enc = extract.load_encoder(name, weights[name], device=device)
            prec = resolve_precision(precision, device, enc)
            prepare_encoder(enc, prec)
            by_shape: dict[tuple, list] = {}
            for w, sr in waves:
                for c in enc.split(resample(w, sr, enc.sample_rate)):
                    by_shape.setdefault(c.shape, []).append(c)
            batches = [np.stack(v[i:i + bs]) for v in by_shape.values() for i in range(0, len(v), bs)]
            _forward(enc, batches[0][:1], prec)  # warm-up (kernels, caches), not timed
            _sync(device)
            t = time.perf_counter()
            for b in batches:
                _forward(enc, b, prec)
            _sync(device)
            out["seconds"][name] = time.perf_counter() - t
            out["precision"][name] = prec
            del enc
    out["gpu"] = gpu.summary()
    return out


def phase_pipeline(manifest: str, weights: dict, store: str, device: str, precision: str, backend: str,
                   batch: int | None) -> dict:
    from mmmos.extract.runner import ExtractConfig, run_extract

    with GpuSampler() as gpu:
        rep = run_extract(ExtractConfig(manifests=[manifest], store=store, encoders=list(ENCODERS), weights=weights,
                                        device=device, precision=precision, backend=backend, batch_size=batch,
                                        progress=False))
    return {"wall": rep.wall_seconds - rep.load_seconds, "load_seconds": rep.load_seconds,
            "audio_seconds": rep.audio_seconds, "encoder_seconds": rep.encoder_seconds,
            "decode_seconds": rep.decode_seconds, "resample_seconds": rep.resample_seconds,
            "write_seconds": rep.write_seconds, "failures": len(rep.failures),
            "failure_examples": [f"{f.clip_id} [{f.encoder}/{f.stage}] {f.error}" for f in rep.failures[:5]],
            "gpu": gpu.summary()}


def _child(a) -> None:
    weights = json.loads(a.weights)
    if a.phase == "encoders":
        r = phase_encoders(a.manifest, weights, a.device, a.precision, a.batch or None)
    else:
        r = phase_pipeline(a.manifest, weights, a.store, a.device, a.precision, a.backend, a.batch or None)
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.device.startswith("cuda") or a.device == "auto":
        import torch

        if torch.cuda.is_available():
            r["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(r))


def _run_phase(phase: str, manifest: Path, weights: dict, store: Path, a) -> dict:
    subprocess.run(["rm", "-rf", str(store)], check=True)
    cmd = [sys.executable, "-m", "bench.extract_bench", "--child", phase, "--manifest", str(manifest),
           "--weights", json.dumps(weights), "--store", str(store), "--device", a.device,
           "--precision", a.precision, "--backend", a.backend, "--batch", str(a.batch)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not line:
        raise RuntimeError(f"bench phase {phase} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[0][7:])


def _median(xs):
    return float(np.median(xs))


def run(out: Path, clips: int = 18, device: str = "cpu", precision: str = "auto", backend: str = "zarr",
        batch: int = 0, repeats: int = 2) -> dict:
    import polars as pl

    a = argparse.Namespace(device=device, precision=precision, backend=backend, batch=batch)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "extract_work"
    rows = make_clips(work / "clips", clips)
    manifest = work / "manifest.csv"
    pl.DataFrame({"clip_id": [r[0] for r in rows], "path": [r[1] for r in rows]}).write_csv(manifest)
    weights = make_weights(work / "weights")
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    runs: dict[str, list] = {"encoders": [], "pipeline": []}
    for _ in range(repeats):  # interleaved: A, B, A, B
        runs["encoders"].append(_run_phase("encoders", manifest, weights, work / "store", a))
        runs["pipeline"].append(_run_phase("pipeline", manifest, weights, work / "store", a))
    audio = runs["encoders"][0]["audio_seconds"]
    enc_s = {n: _median([r["seconds"][n] for r in runs["encoders"]]) for n in ENCODERS}
    pipe_wall = _median([r["wall"] for r in runs["pipeline"]])
    alone = audio / sum(enc_s.values())
    pipe_rate = audio / pipe_wall
    last = runs["pipeline"][-1]
    report = {
        "what": "extraction, full-size random-initialised WavLM Base+, MuQ-large, M2D ViT-B (80x1001)",
        "command": f"python -m bench.extract_bench --device {device} --clips {clips} --precision {precision} "
                   f"--backend {backend} --repeats {repeats}" + (f" --batch {batch}" if batch else ""),
        "machine": machine(), "device": device, "clips": clips, "audio_seconds": audio, "repeats": repeats,
        "load_avg_start_end": [load0, os.getloadavg()[0]], "precision": runs["encoders"][0]["precision"],
        "batch_size": runs["encoders"][0]["batch_size"],
        "encoders_alone_audio_s_per_s": {n: audio / s for n, s in enc_s.items()},
        "encoders_alone_all_three": alone,
        "pipeline_audio_s_per_s": pipe_rate,
        "pipeline_efficiency": pipe_rate / alone,
        "pipeline_failed_clips": [r["failures"] for r in runs["pipeline"]],
        "pipeline_stage_seconds": {k: last[f"{k}_seconds"] for k in ("decode", "resample", "write")}
        | {"encoders (incl. transfers)": sum(last["encoder_seconds"].values()), "wall": last["wall"]},
        "gpu": {"encoders": runs["encoders"][-1].get("gpu"), "pipeline": last.get("gpu")},
        "peak_host_rss_mb": {p: max(r["peak_rss_mb"] for r in runs[p]) for p in runs},
        "peak_device_mb": {p: max((r.get("peak_device_mb") or 0) for r in runs[p]) or None for p in runs},
        "bench_seconds": time.perf_counter() - t0,
        "raw": runs,
    }
    (out / "extract.json").write_text(json.dumps(report, indent=2))
    (out / "extract.md").write_text(render(report))
    return report


def render(r: dict) -> str:
    m = r["machine"]
    where = m.get("gpu") or f"{m.get('cpu_model')} ({m['cpus']} cores; {', '.join(m.get('cpu_flags', []))})"
    md = ["# Extraction benchmark", "", f"{r['what']}; {r['clips']} clips of 10 s (3 in 4 44.1 kHz stereo, 1 in 4 "
          f"16 kHz mono), {r['audio_seconds']:.0f} s of audio; device `{r['device']}` on {where}; torch {m['torch']}; "
          f"precision {r['precision']}; batch {r['batch_size']}; medians of {r['repeats']} interleaved runs; "
          f"load average {r['load_avg_start_end'][0]:.1f} at the start, {r['load_avg_start_end'][1]:.1f} at the end.", "",
          f"Command: `{r['command']}`", "",
          "| what | audio-s per s |", "| --- | ---: |"]
    for n, v in r["encoders_alone_audio_s_per_s"].items():
        md.append(f"| {n} alone | {v:,.1f} |")
    md += [f"| all three alone | {r['encoders_alone_all_three']:,.1f} |",
           f"| **pipeline** (`mmmos extract`) | **{r['pipeline_audio_s_per_s']:,.1f}** |", "",
           f"* pipeline efficiency (pipeline / encoders alone): **{100 * r['pipeline_efficiency']:.0f} %**",
           f"* failed clips per pipeline run: {r['pipeline_failed_clips']}",
           "* time per stage in the last pipeline run (decode and resample summed over clips, across decode threads; "
           "encoders include host-device copies): " + ", ".join(f"{k} {v:.1f} s" for k, v in
                                                                r["pipeline_stage_seconds"].items())]
    for phase, g in r["gpu"].items():
        if g:
            md.append(f"* GPU utilisation, {phase}: mean {g['util_mean']:.0f} %, p90 {g['util_p90']:.0f} % "
                      f"({g['samples']} samples); memory used up to {g['mem_used_max_mib']:,.0f} MiB")
    md.append("* peak host memory (max RSS): " + ", ".join(f"{p} {v:,.0f} MB" for p, v in r["peak_host_rss_mb"].items()))
    if any(r["peak_device_mb"].values()):
        md.append("* peak device memory (allocated): " + ", ".join(f"{p} {v:,.0f} MB" for p, v in
                                                                    r["peak_device_mb"].items() if v))
    return "\n".join(md) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", dest="phase")
    ap.add_argument("--manifest")
    ap.add_argument("--weights")
    ap.add_argument("--store")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--backend", default="zarr", choices=["zarr", "hdf5"])
    ap.add_argument("--batch", type=int, default=0, help="encoder batch size (0: the pipeline's default)")
    ap.add_argument("--clips", type=int, default=18, help="10-s clips (384 for the GPU figures)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of each phase")
    ap.add_argument("--out", default="bench_out")
    a = ap.parse_args(argv)
    if a.phase:
        _child(a)
        return None
    r = run(Path(a.out), a.clips, a.device, a.precision, a.backend, a.batch, a.repeats)
    print((Path(a.out) / "extract.md").read_text())
    return r


if __name__ == "__main__":
    main()
