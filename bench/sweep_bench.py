"""Sweep benchmark (issue: Stage 2): the 16 configurations on a challenge-sized synthetic cache.

The cache has 3,500 train + 450 dev clips of 10 s (``--scale`` shrinks both) with the real dims
and frame rates (WavLM 768 @ 50 Hz -> 499 frames, MuQ 1024 @ 25 Hz -> 250, M2D 3840 @ 6.25 Hz -> 62)
and frames that carry the labels (a 16-d latent through a random projection, plus noise).

Reported: wall time of the whole sweep, time per configuration, the share of training time spent
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


def run(out: Path, scale: float = 1.0, jobs: int = 2, weights: dict | None = None) -> dict:
    import polars as pl

    from mmmos import sweep

    out.mkdir(parents=True, exist_ok=True)
    work = out / f"sweep_work_{scale:g}"
    n_train, n_dev = max(8, int(round(3500 * scale))), max(4, int(round(450 * scale)))
    t = time.perf_counter()
    store, sets = make_cache(work, n_train, n_dev)
    t_cache = time.perf_counter() - t
    run_dir = work / "run"
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    t = time.perf_counter()
    res = sweep.run_sweep(sweep.paper_configs(), str(store), run_dir, tr, dv, [], jobs=jobs, progress=False)
    wall = time.perf_counter() - t
    failed = {k: v["error"] for k, v in res.items() if v and "error" in v}
    per = []
    for name in res:
        c = json.loads((run_dir / "configs" / name / "config.json").read_text())
        per.append({"config": name, "epochs": c["epochs_run"], "t_load": c["t_load"], "t_data": c["t_data"],
                    "t_step": c["t_step"], "total": c["t_load"] + c["t_data"] + c["t_step"]})
    df = pl.DataFrame(per)
    data_share = df["t_data"].sum() / (df["t_data"].sum() + df["t_step"].sum())
    data_share_load = (df["t_data"].sum() + df["t_load"].sum()) / df["total"].sum()
    # encoders in the loop: measured per clip, extrapolated to the sweep's clip passes
    if weights is None:
        from bench.extract_bench import make_weights

        weights = make_weights(out / "extract_work" / "weights")  # shared with the extraction benchmark
    enc = encoder_seconds_per_clip(weights)
    passes = {}
    for row in per:
        cfg = next(c for c in sweep.paper_configs() if c.name == row["config"])
        per_clip = sum(enc[e] for e in cfg.encoders)
        # each epoch: every train crop and every dev clip (dev loss); then the final dev predictions
        passes[row["config"]] = (row["epochs"] * (n_train + n_dev) + n_dev, per_clip)
    in_loop = sum(p * s for p, s in passes.values()) + df["t_step"].sum()
    extraction_once = (n_train + n_dev) * sum(enc.values())
    report = {
        "what": "16-configuration sweep from a synthetic challenge-shaped cache (10-s clips, real dims and rates)",
        "scale": scale, "n_train": n_train, "n_dev": n_dev, "jobs": jobs, "cpus": os.cpu_count(),
        "cache_build_seconds": t_cache, "sweep_wall_seconds": wall,
        "sweep_wall_seconds_extrapolated_to_full_scale": wall / scale if scale else None,
        "per_config": per, "failed": failed,
        "data_path_share": data_share, "data_path_share_including_cache_reads": data_share_load,
        "encoder_seconds_per_10s_clip": enc,
        "encoders_in_loop_seconds_extrapolated": in_loop,
        "ratio_in_loop_vs_cached_sweep": in_loop / wall,
        "ratio_in_loop_vs_cached_sweep_plus_one_extraction": in_loop / (wall + extraction_once),
    }
    (out / f"sweep_scale{scale:g}.json").write_text(json.dumps(report, indent=2))
    md = [f"# Sweep benchmark (scale {scale:g}: {n_train} train + {n_dev} dev clips of 10 s, {jobs} jobs, "
          f"{os.cpu_count()} CPU cores)", "",
          f"* whole 16-configuration sweep: **{wall / 60:.1f} min** wall"
          + (f" (×{1 / scale:g} clips → about {wall / scale / 60:.0f} min at full challenge size, scaling linearly "
             f"in clips; goal < 60 min)" if scale != 1 else " (goal < 60 min)"),
          f"* data path (batch assembly from cached features) share of training time: **{100 * data_share:.1f} %**; "
          f"including reading the cache: {100 * data_share_load:.1f} % (goal < 20 %)",
          f"* encoders in the loop (every crop of every epoch through the encoders, the public MMMOS way): "
          f"measured {', '.join(f'{k} {v:.2f} s' for k, v in enc.items())} per 10-s clip with full-size "
          f"random-initialised encoders on this CPU, extrapolated to the sweep's clip passes: "
          f"{in_loop / 3600:.1f} h → the cached sweep is **{report['ratio_in_loop_vs_cached_sweep']:.0f}×** faster "
          f"({report['ratio_in_loop_vs_cached_sweep_plus_one_extraction']:.1f}× counting one extraction pass)", "",
          "| configuration | epochs | cache read s | data s | fwd/bwd+eval s | total s |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in per:
        md.append(f"| {r['config']} | {r['epochs']} | {r['t_load']:.1f} | {r['t_data']:.1f} | {r['t_step']:.1f} | {r['total']:.1f} |")
    if failed:
        md += ["", "Failed: " + ", ".join(failed)]
    (out / f"sweep_scale{scale:g}.md").write_text("\n".join(md) + "\n")
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 3,500 + 450 clips")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    run(Path(a.out), a.scale, a.jobs)
    print((Path(a.out) / f"sweep_scale{a.scale:g}.md").read_text())


if __name__ == "__main__":
    main()
