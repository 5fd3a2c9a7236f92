"""bf16 vs fp32 on this CPU, per encoder, on full-size random-initialised WavLM Base+, MuQ-large and M2D
ViT-Base (built in memory by ``mmmos.testing``): throughput ratio bf16/fp32 and frame cosine to fp32.

Timing is interleaved (fp32, bf16, fp32, bf16, ...) on the same clip so that load from other processes on
a shared machine hits both precisions alike; the ratio of medians is reported, not absolute speeds.
"TriEnc" is the three encoders on one clip each (sum of their times).  Also recorded: whether the CPU
has native bf16 and what ``--precision auto`` picks per encoder here.

    python -m bench.precision_bench --out DIR [--seconds 10] [--reps 3] [--encoders wavlm,muq,m2d]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ENCODERS = ("wavlm", "muq", "m2d")
GOAL_RATIO, GOAL_COS = 1.7, 0.999


def _encoder(name: str, size: str = "full"):
    from mmmos.testing import m2d, muq, wavlm

    return {"wavlm": wavlm, "muq": muq, "m2d": m2d}[name].random_encoder(size, seed=0)


def _clip(sr: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _timed(enc, chunks: list[np.ndarray], precision: str) -> tuple[float, np.ndarray]:
    from mmmos.extract.precision import _forward

    t0 = time.perf_counter()
    outs = [_forward(enc, c[None], precision)[0] for c in chunks]
    return time.perf_counter() - t0, np.concatenate(outs)


def measure(name: str, seconds: float, reps: int, size: str = "full") -> dict:
    """One encoder: an fp32 and a bf16 copy of the same random weights, timed interleaved."""
    ref, low = _encoder(name, size), _encoder(name, size)
    chunks = ref.split(_clip(ref.sample_rate, seconds))
    _, fa = _timed(ref, chunks, "fp32")  # warm-up (and the reference frames)
    _, fb = _timed(low, chunks, "bf16")  # warm-up; casts the weights once
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(reps):
        for prec, enc in (("fp32", ref), ("bf16", low)):
            times[prec].append(_timed(enc, chunks, prec)[0])
    cos = (fa * fb).sum(-1) / (np.linalg.norm(fa, axis=-1) * np.linalg.norm(fb, axis=-1))
    med = {p: statistics.median(v) for p, v in times.items()}
    return {"encoder": name, "clip_seconds": seconds, "frames": int(fa.shape[0]), "reps": reps,
            "ratio_bf16_over_fp32": med["fp32"] / med["bf16"], "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
            "ratio_per_rep": [f / b for f, b in zip(times["fp32"], times["bf16"])], "_times": times}


def _machine() -> dict:
    import torch

    from mmmos.extract.precision import cpu_bf16_native, resolve_precision

    from bench.extract_bench import machine

    info = machine()
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_bf16_native(),
            "cpu_model": info.get("cpu_model"), "cpu_flags": info.get("cpu_flags", []),
            "load_avg": os.getloadavg()[0],
            "auto": {n: resolve_precision("auto", "cpu", n) for n in ENCODERS}}


def _markdown(res: dict) -> str:
    m = res["machine"]
    size = "full-size" if res.get("size", "full") == "full" else "TINY (smoke run, not a measurement)"
    lines = [f"# bf16 vs fp32 on CPU ({size} random-initialised encoders)", "",
             f"CPU: {m.get('cpu_model')} ({', '.join(m.get('cpu_flags', []))}); load average at the start "
             f"{m.get('load_avg', float('nan')):.1f}; "
             f"torch {m['torch']}, {m['threads']} threads, CPU capability {m['cpu_capability']}, "
             f"native bf16: {m['native_bf16']}; `--precision auto` here: "
             + ", ".join(f"{k}={v}" for k, v in m["auto"].items()), "",
             f"Goal: >= {GOAL_RATIO}x at cosine >= {GOAL_COS}. Ratios of medians of interleaved runs "
             "(the machine is shared: absolute times are not reported).", "",
             "| encoder | clip s | frames | bf16/fp32 throughput | cosine min | cosine mean | goal |",
             "|---|---|---|---|---|---|---|"]
    for r in res["encoders"]:
        ok = r["ratio_bf16_over_fp32"] >= GOAL_RATIO and r.get("cosine_min", 1.0) >= GOAL_COS
        lines.append(f"| {r['encoder']} | {r['clip_seconds']:g} | {r.get('frames', '')} | "
                     f"{r['ratio_bf16_over_fp32']:.2f}x | {r.get('cosine_min', float('nan')):.5f} | "
                     f"{r.get('cosine_mean', float('nan')):.5f} | {'met' if ok else 'not met'} |")
    return "\n".join(lines) + "\n"


def run(out: Path, seconds: float = 10.0, reps: int = 3, encoders=ENCODERS, size: str = "full") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in encoders:
        rows.append(measure(name, seconds, reps, size))
        print(f"{name}: bf16/fp32 {rows[-1]['ratio_bf16_over_fp32']:.2f}x, cosine min {rows[-1]['cosine_min']:.5f}",
              flush=True)
        partial = [{k: v for k, v in r.items() if k != "_times"} for r in rows]
        (out / "precision.json").write_text(json.dumps({"partial": True, "encoders": partial}, indent=2))
    if len(rows) > 1:  # the TriEnc: each encoder once on its clip, per rep, summed
        n = min(len(r["_times"]["fp32"]) for r in rows)
        f32 = [sum(r["_times"]["fp32"][i] for r in rows) for i in range(n)]
        b16 = [sum(r["_times"]["bf16"][i] for r in rows) for i in range(n)]
        rows.append({"encoder": "+".join(r["encoder"] for r in rows), "clip_seconds": seconds, "reps": n,
                     "ratio_bf16_over_fp32": statistics.median(f32) / statistics.median(b16),
                     "cosine_min": min(r["cosine_min"] for r in rows[:len(encoders)]),
                     "cosine_mean": float(np.mean([r["cosine_mean"] for r in rows[:len(encoders)]]))})
    # ratios only: absolute times on a shared machine say more about the neighbours than about the code
    res = {"machine": _machine(), "size": size, "encoders": [{k: v for k, v in r.items() if k != "_times"} for r in rows]}
    (out / "precision.json").write_text(json.dumps(res, indent=2))
    md = out / "precision.md"
    md.write_text(_markdown(res))
    return md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for precision.json and precision.md")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions per precision (default 3)")
    ap.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated subset of wavlm,muq,m2d")
    ap.add_argument("--size", choices=["full", "tiny"], default="full", help="tiny: a quick smoke run only")
    a = ap.parse_args(argv)
    names = [n for n in a.encoders.split(",") if n]
    bad = sorted(set(names) - set(ENCODERS))
    if bad:
        ap.error(f"unknown encoders {bad}; choose from {', '.join(ENCODERS)}")
    print(run(Path(a.out), a.seconds, a.reps, names, a.size).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
