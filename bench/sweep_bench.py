"""Sweep benchmark (issue: Stage 2): the 16 configurations on a challenge-sized synthetic cache.

The cache has 3,500 train + 450 dev clips of 10 s (``--scale`` shrinks both) with the real dims
and frame rates (WavLM 768 @ 50 Hz -> 499 frames, MuQ 1024 @ 25 Hz -> 250, M2D 3840 @ 6.25 Hz -> 62)
and frames that carry the labels (a 16-d latent through a random projection, plus noise).

Two schedules, one after the other on the same cache: the default early-stopped one (the labels are
random-ish, so most configurations stop after 3 epochs) and the full schedule (10 epochs, no early stop:
the worst case, the honest cost of the recipe).  Also, interleaved in the same run, one blstm_t training
step with the packed ``nn.LSTM`` it used before vs the fused BLSTM it uses now.

Reported: wall time of the whole sweep (both schedules), time per configuration, the share of training time spent
outside forward/backward (the data path), and — in the same run — the cost of training with the
encoders in the loop (the public MMMOS way: every crop of every epoch goes through WavLM, MuQ and
M2D). That cost is *measured* on a sample of clips with full-size random-initialised encoders and
*extrapolated* to the sweep's clip passes; the report says so.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

ENCS = {"wavlm": (16000, 50.0, 768, 499), "muq": (24000, 25.0, 1024, 250), "m2d": (16000, 6.25, 3840, 62)}


def make_cache(root: Path, n_train: int, n_dev: int, seed: int = 0):
    import polars as pl

    from mmmos.cache_store import open_store
    from mmmos.core.tasks import get_task

    axes = get_task().axes
    rng = np.random.default_rng(seed)
    st = open_store(root / "cache.zarr", create=True)
    writers, W, noise = {}, {}, {}
    for name, (sr, rate, dim, t) in ENCS.items():
        ident = {"name": name, "weights": None, "sha256": "synthetic", "sample_rate": sr, "frame_rate": rate,
                 "dim": dim, "config": {"synthetic_benchmark": True}, "code_version": "1"}
        writers[name] = st.writer(ident)
        W[name] = rng.standard_normal((16, dim)).astype(np.float32)
        noise[name] = (0.5 * rng.standard_normal((t + 64, dim))).astype(np.float32)
    done = {n: set(st.group(w.info.key).clip_ids()) for n, w in writers.items()}
    sets = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = []
        for i in range(n):
            cid = f"{split}/{i:05d}.wav"
            z = rng.standard_normal(16).astype(np.float32)
            for name, (_, _, _, t) in ENCS.items():
                if cid in done[name]:
                    continue
                off = int(rng.integers(0, 64))
                writers[name].write(cid, noise[name][off : off + t] + z @ W[name], None, 10.0)
            y = np.clip(5 + 1.5 * z[:4] + 0.3 * rng.standard_normal(4), 0, 10)
            rows.append({"clip_id": cid, "system": f"sys{i % 20:02d}", **dict(zip(axes, y.tolist()))})
        pl.DataFrame(rows).write_csv(root / f"{split}.csv")
        sets[split] = root / f"{split}.csv"
    for w in writers.values():
        w.close()
    return root / "cache.zarr", sets


def encoder_seconds_per_clip(weights: dict[str, str], n: int = 2) -> dict[str, float]:
    """Forward time of each full-size encoder on one 10-s crop (fp32, this CPU)."""
    from mmmos import extract
    out = {}
    rng = np.random.default_rng(0)
    for name, (sr, *_rest) in ENCS.items():
        enc = extract.load_encoder(name, weights[name])
        wave = (0.1 * rng.standard_normal(10 * sr)).astype(np.float32)
        enc.embed(wave)  # warm-up
        t = time.perf_counter()
        for _ in range(n):
            enc.embed(wave)
        out[name] = (time.perf_counter() - t) / n
        del enc
    return out


SCHEDULES = {"early": "early-stopped (patience 2, the default)", "full": "full schedule (10 epochs, no early stop)"}


class _GpuSampler:
    """GPU utilisation sampled every 0.5 s with nvidia-smi while a sweep runs (nothing without a GPU)."""

    def __init__(self, device: str):
        import shutil
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = None
        if device.startswith("cuda") and shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import subprocess

        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass

    def __enter__(self):
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished child (the --jobs workers), MB."""
    import resource

    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def sweep_once(store, sets, run_dir: Path, jobs: int, schedule: str, device: str = "cpu",
               share: bool = True) -> tuple[float, list[dict], dict]:
    """One 16-configuration sweep into a fresh ``run_dir``; wall seconds, per-config timings, failures (and the
    cost of reading the cache once, ``share``: the frame pack; else each configuration reads the store)."""
    import shutil

    from mmmos import sweep
    from mmmos.sweep import frames

    shutil.rmtree(run_dir, ignore_errors=True)
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    cfgs = sweep.paper_configs()
    if schedule == "full":  # the worst case: every epoch runs (random-ish labels stop most configs after 3)
        for c in cfgs:
            c.patience = c.epochs
    for c in cfgs:
        c.device = device
    frames.LAST_PACK = frames.PackStats()
    t = time.perf_counter()
    with _GpuSampler(device) as gpu:
        res = sweep.run_sweep(cfgs, str(store), run_dir, tr, dv, [], jobs=jobs, progress=False, share_frames=share)
    wall = time.perf_counter() - t
    extra = {"pack_seconds": frames.LAST_PACK.seconds, "pack_bytes": frames.LAST_PACK.nbytes,
             "gpu_util_mean": gpu.mean, "peak_rss_mb": _peak_rss_mb()}
    if device.startswith("cuda"):
        import torch

        extra["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20  # this process (jobs 1)
    failed = {k: v["error"] for k, v in res.items() if v and "error" in v}
    per = []
    for name in res:
        c = json.loads((run_dir / "configs" / name / "config.json").read_text())
        per.append({"config": name, "epochs": c["epochs_run"], "t_load": c["t_load"], "t_data": c["t_data"],
                    "t_step": c["t_step"], "total": c["t_load"] + c["t_data"] + c["t_step"]})
    return wall, per, {"failed": failed, **extra}


def blstm_t_step_ratio(reps: int = 6, b: int = 16, t: int = 62, d: int = 5632) -> dict:
    """Seconds of one blstm_t training step (forward + backward, 1 thread) at the sweep's TriEnc shape,
    packed nn.LSTM (before) vs the fused BLSTM (now), interleaved; and the largest output difference."""
    import statistics

    import torch

    import mmmos.heads.blstm_t as mod

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 sweep workers
    torch.manual_seed(0)
    head = mod.BLSTMTimeHead(d)
    x, lengths = torch.randn(b, t, d), torch.full((b,), t)
    times = {"packed": [], "fused": []}
    limit = mod.FUSED_MAX_FRAMES
    try:
        for r in range(reps):
            for kind in (("packed", "fused") if r % 2 == 0 else ("fused", "packed")):
                mod.FUSED_MAX_FRAMES = limit if kind == "fused" else 0
                head.zero_grad()
                s = time.perf_counter()
                head(x, lengths).pow(2).sum().backward()
                times[kind].append(time.perf_counter() - s)
        head.eval()  # no dropout: the two paths see the same network
        with torch.no_grad():
            mod.FUSED_MAX_FRAMES = 0
            y_packed = head(x, lengths)
            mod.FUSED_MAX_FRAMES = limit
            diff = float((head(x, lengths) - y_packed).abs().max())
    finally:
        mod.FUSED_MAX_FRAMES = limit
        torch.set_num_threads(n)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"shape": [b, t, d], "reps": reps, "median_seconds": med, "ratio_packed_vs_fused": med["packed"] / med["fused"],
            "max_output_difference": diff}


def encoder_cost(out: Path, per: list[dict], n_train: int, n_dev: int, t_step: float, wall: float, weights) -> dict:
    """Encoders in the loop: measured per clip, extrapolated to the sweep's clip passes."""
    from mmmos import sweep

    if weights is None:
        from bench.extract_bench import make_weights

        weights = make_weights(out / "extract_work" / "weights")  # shared with the extraction benchmark
    enc = encoder_seconds_per_clip(weights)
    passes = {}
    for row in per:
        cfg = next(c for c in sweep.paper_configs() if c.name == row["config"])
        # each epoch: every train crop and every dev clip (dev loss); then the final dev predictions
        passes[row["config"]] = (row["epochs"] * (n_train + n_dev) + n_dev, sum(enc[e] for e in cfg.encoders))
    in_loop = sum(p * s for p, s in passes.values()) + t_step
    extraction_once = (n_train + n_dev) * sum(enc.values())
    return {"encoder_seconds_per_10s_clip": enc, "encoders_in_loop_seconds_extrapolated": in_loop,
            "ratio_in_loop_vs_cached_sweep": in_loop / wall,
            "ratio_in_loop_vs_cached_sweep_plus_one_extraction": in_loop / (wall + extraction_once)}


def _table(per: list[dict]) -> list[str]:
    md = ["| configuration | epochs | cache read s | data s | fwd/bwd+eval s | total s |",
          "| --- | ---: | ---: | ---: | ---: | ---: |"]
    return md + [f"| {r['config']} | {r['epochs']} | {r['t_load']:.1f} | {r['t_data']:.1f} | {r['t_step']:.1f} | "
                 f"{r['total']:.1f} |" for r in per]


def work_shares(per: list[dict], pack_seconds: float) -> dict:
    """The sweep's work (summed over configurations, plus the one pack read) split into cache reading (the
    pack, or each configuration's own reads), feature banks built from the read frames, data path, steps.
    With the pack, a configuration's t_load only builds its banks from mapped frames: it is not a cache read."""
    load, data, step = (sum(r[k] for r in per) for k in ("t_load", "t_data", "t_step"))
    total = pack_seconds + load + data + step
    read = pack_seconds if pack_seconds else load
    banks = load if pack_seconds else 0.0
    return {"work_seconds": total, "cache_read_seconds": read, "bank_build_seconds": banks,
            "cache_read_share": read / total, "bank_build_share": banks / total, "data_path_share_of_work": data / total,
            "step_share_of_work": step / total}


@contextlib.contextmanager
def _device_bank_env(flag: str | None):
    """MMMOS_DEVICE_BANK for one sweep (workers inherit it): "1" frames on the device, "0" on the host, None the
    default choice (device when it is not cpu)."""
    old = os.environ.get("MMMOS_DEVICE_BANK")
    if flag is not None:
        os.environ["MMMOS_DEVICE_BANK"] = flag
    try:
        yield
    finally:
        os.environ.pop("MMMOS_DEVICE_BANK", None)
        if old is not None:
            os.environ["MMMOS_DEVICE_BANK"] = old


def run(out: Path, scale: float = 1.0, jobs: int = 2, weights: dict | None = None,
        schedules: tuple[str, ...] = ("early", "full"), encoders: bool = True, device: str = "cpu",
        share: str = "on", device_bank: str = "auto") -> dict:
    import polars as pl

    from mmmos.core.threads import threads_per_worker

    out.mkdir(parents=True, exist_ok=True)
    work = out / f"sweep_work_{scale:g}"
    n_train, n_dev = max(8, int(round(3500 * scale))), max(4, int(round(450 * scale)))
    t = time.perf_counter()
    store, sets = make_cache(work, n_train, n_dev)
    t_cache = time.perf_counter() - t
    step_ratio = blstm_t_step_ratio()
    runs = {}
    variants = {"on": (True,), "off": (False,), "both": (False, True)}[share]
    banks = {"auto": (None,), "on": ("1",), "off": ("0",), "both": ("0", "1")}[device_bank]
    for sched, shared, bank in [(s, v, b) for s in schedules for v in variants for b in banks]:
        with _device_bank_env(bank):
            wall, per, extra = sweep_once(store, sets, work / f"run_{sched}", jobs, sched, device, shared)
        failed = extra.pop("failed")
        df = pl.DataFrame(per)
        key = sched + ("" if len(variants) == 1 else f"_{'shared' if shared else 'unshared'}") \
            + ("" if len(banks) == 1 else f"_bank{'on' if bank == '1' else 'off'}")
        runs[key] = {"shared_frames": shared, "device": device, "device_bank": bank or "auto", **extra,
                     **work_shares(per, extra["pack_seconds"]),
            "sweep_wall_seconds": wall, "sweep_wall_seconds_extrapolated_to_full_scale": wall / scale,
            "per_config": per, "failed": failed, "epochs_total": int(df["epochs"].sum()),
            "data_path_share": df["t_data"].sum() / (df["t_data"].sum() + df["t_step"].sum()),
            "data_path_share_including_cache_reads": (df["t_data"].sum() + df["t_load"].sum()) / df["total"].sum(),
            "blstm_t_share_of_training": df.filter(pl.col("config").str.contains("blstm_t"))["total"].sum()
            / df["total"].sum()}
    schedules = tuple(runs)
    main = runs[schedules[0]]
    report = {
        "what": "16-configuration sweep from a synthetic challenge-shaped cache (10-s clips, real dims and rates)",
        "device": device, "scale": scale, "n_train": n_train, "n_dev": n_dev, "jobs": jobs, "cpus": os.cpu_count(),
        "threads_per_worker": threads_per_worker(jobs), "load_average_1min_at_end": os.getloadavg()[0],
        "cache_build_seconds": t_cache, "schedules": runs, "blstm_t_step": step_ratio,
        # the early-stopped run's figures under their old keys
        **{k: main[k] for k in ("sweep_wall_seconds", "sweep_wall_seconds_extrapolated_to_full_scale", "per_config",
                                "failed", "data_path_share", "data_path_share_including_cache_reads")},
    }
    if encoders:
        report.update(encoder_cost(out, main["per_config"], n_train, n_dev,
                                   sum(r["t_step"] for r in main["per_config"]), main["sweep_wall_seconds"], weights))
    (out / f"sweep_scale{scale:g}.json").write_text(json.dumps(report, indent=2))
    report["schedule_keys"] = list(schedules)
    (out / f"sweep_scale{scale:g}.md").write_text(markdown(report, schedules) + "\n")
    return report


def markdown(report: dict, schedules: tuple[str, ...]) -> str:
    scale, jobs = report["scale"], report["jobs"]
    md = [f"# Sweep benchmark (scale {scale:g}: {report['n_train']} train + {report['n_dev']} dev clips of 10 s, "
          f"{jobs} jobs x {report['threads_per_worker']} thread(s), {report['cpus']} CPU cores)", ""]
    if report["load_average_1min_at_end"] > report["cpus"]:
        md += [f"The machine was shared while this ran (1-min load average {report['load_average_1min_at_end']:.1f} "
               f"on {report['cpus']} cores at the end): wall times are upper bounds.", ""]
    for sched in schedules:
        r = report["schedules"][sched]
        full = r["sweep_wall_seconds_extrapolated_to_full_scale"]
        frames = "frames read once (pack)" if r.get("shared_frames", True) else "each configuration reads the cache"
        frames += {"1": ", crops and pooling on the device", "0": ", crops and pooling on the host"}.get(
            r.get("device_bank"), "")
        gpu = f", GPU utilisation {r['gpu_util_mean']:.0f} % mean" if r.get("gpu_util_mean") is not None else ""
        md.append(f"* {SCHEDULES[sched.split('_')[0]]}, {r.get('device', 'cpu')}, "
                  f"{frames}: work {r['work_seconds']:.1f} s = cache reading {100 * r['cache_read_share']:.1f} % "
                  f"+ feature banks {100 * r['bank_build_share']:.1f} % + data path "
                  f"{100 * r['data_path_share_of_work']:.1f} % + steps {100 * r['step_share_of_work']:.1f} %; "
                  f"peak memory {r['peak_rss_mb']:.0f} MB (largest process){gpu}")
        md.append(f"* {SCHEDULES[sched.split('_')[0]]}: **{r['sweep_wall_seconds'] / 60:.1f} min** wall, {r['epochs_total']} epochs "
                  f"in all" + (f"; ×{1 / scale:g} clips → about **{full / 60:.0f} min** at full challenge size "
                               f"(scaling linearly in clips)" if scale != 1 else "")
                  + f"; blstm_t {100 * r['blstm_t_share_of_training']:.0f} % of training time; data path "
                  f"{100 * r['data_path_share']:.1f} % ({100 * r['data_path_share_including_cache_reads']:.1f} % "
                  f"with cache reads)")
    s = report["blstm_t_step"]
    md.append(f"* blstm_t training step (B {s['shape'][0]}, T {s['shape'][1]}, D {s['shape'][2]}, 1 thread, "
              f"{s['reps']} interleaved repetitions): packed nn.LSTM {s['median_seconds']['packed']:.2f} s, fused BLSTM "
              f"{s['median_seconds']['fused']:.2f} s → **{s['ratio_packed_vs_fused']:.2f}×** faster, largest output "
              f"difference {s['max_output_difference']:.1e}")
    if "encoder_seconds_per_10s_clip" in report:
        enc = report["encoder_seconds_per_10s_clip"]
        md.append(f"* encoders in the loop (every crop of every epoch through the encoders, the public MMMOS way): "
                  f"measured {', '.join(f'{k} {v:.2f} s' for k, v in enc.items())} per 10-s clip with full-size "
                  f"random-initialised encoders on this CPU, extrapolated to the early-stopped sweep's clip passes: "
                  f"{report['encoders_in_loop_seconds_extrapolated'] / 3600:.1f} h → the cached sweep is "
                  f"**{report['ratio_in_loop_vs_cached_sweep']:.0f}×** faster "
                  f"({report['ratio_in_loop_vs_cached_sweep_plus_one_extraction']:.1f}× counting one extraction pass)")
    for sched in schedules:
        r = report["schedules"][sched]
        md += ["", f"## {sched}: {SCHEDULES[sched.split('_')[0]]}", ""]
        md += _table(r["per_config"])
        if r["failed"]:
            md += ["", "Failed: " + ", ".join(r["failed"])]
    return "\n".join(md)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 3,500 + 450 clips")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--schedules", default="early,full",
                    help="comma-separated: early (patience 2, the default) and/or full (every epoch, no early stop)")
    ap.add_argument("--no-encoder-cost", action="store_true",
                    help="skip measuring the full-size encoders (the encoders-in-the-loop comparison)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the heads train (and the frames' crops run)")
    ap.add_argument("--share", choices=("on", "off", "both"), default="on",
                    help="frames read once per sweep (on), per configuration as before (off), or both in one run")
    ap.add_argument("--device-bank", choices=("auto", "on", "off", "both"), default="auto",
                    help="crops and pooling on the device (on: MMMOS_DEVICE_BANK=1), on the host (off), both in one "
                         "run, or the default choice (auto: on the device unless it is cpu)")
    a = ap.parse_args(argv)
    run(Path(a.out), a.scale, a.jobs, schedules=tuple(a.schedules.split(",")), encoders=not a.no_encoder_cost,
        device=a.device, share=a.share, device_bank=a.device_bank)
    print((Path(a.out) / f"sweep_scale{a.scale:g}.md").read_text())


if __name__ == "__main__":
    main()
