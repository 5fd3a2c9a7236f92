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


def sweep_once(store, sets, run_dir: Path, jobs: int, schedule: str) -> tuple[float, list[dict], dict]:
    """One 16-configuration sweep into a fresh ``run_dir``; wall seconds, per-config timings, failures."""
    import shutil

    from mmmos import sweep

    shutil.rmtree(run_dir, ignore_errors=True)
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    cfgs = sweep.paper_configs()
    if schedule == "full":  # the worst case: every epoch runs (random-ish labels stop most configs after 3)
        for c in cfgs:
            c.patience = c.epochs
    t = time.perf_counter()
    res = sweep.run_sweep(cfgs, str(store), run_dir, tr, dv, [], jobs=jobs, progress=False)
    wall = time.perf_counter() - t
    failed = {k: v["error"] for k, v in res.items() if v and "error" in v}
    per = []
    for name in res:
        c = json.loads((run_dir / "configs" / name / "config.json").read_text())
        per.append({"config": name, "epochs": c["epochs_run"], "t_load": c["t_load"], "t_data": c["t_data"],
                    "t_step": c["t_step"], "total": c["t_load"] + c["t_data"] + c["t_step"]})
    return wall, per, failed


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


def run(out: Path, scale: float = 1.0, jobs: int = 2, weights: dict | None = None,
        schedules: tuple[str, ...] = ("early", "full"), encoders: bool = True) -> dict:
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
    for sched in schedules:
        wall, per, failed = sweep_once(store, sets, work / f"run_{sched}", jobs, sched)
        df = pl.DataFrame(per)
        runs[sched] = {
            "sweep_wall_seconds": wall, "sweep_wall_seconds_extrapolated_to_full_scale": wall / scale,
            "per_config": per, "failed": failed, "epochs_total": int(df["epochs"].sum()),
            "data_path_share": df["t_data"].sum() / (df["t_data"].sum() + df["t_step"].sum()),
            "data_path_share_including_cache_reads": (df["t_data"].sum() + df["t_load"].sum()) / df["total"].sum(),
            "blstm_t_share_of_training": df.filter(pl.col("config").str.contains("blstm_t"))["total"].sum()
            / df["total"].sum()}
    main = runs[schedules[0]]
    report = {
        "what": "16-configuration sweep from a synthetic challenge-shaped cache (10-s clips, real dims and rates)",
        "scale": scale, "n_train": n_train, "n_dev": n_dev, "jobs": jobs, "cpus": os.cpu_count(),
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
        md.append(f"* {SCHEDULES[sched]}: **{r['sweep_wall_seconds'] / 60:.1f} min** wall, {r['epochs_total']} epochs "
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
        md += ["", f"## {SCHEDULES[sched]}", ""] + _table(r["per_config"])
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
    a = ap.parse_args(argv)
    run(Path(a.out), a.scale, a.jobs, schedules=tuple(a.schedules.split(",")), encoders=not a.no_encoder_cost)
    print((Path(a.out) / f"sweep_scale{a.scale:g}.md").read_text())


if __name__ == "__main__":
    main()
