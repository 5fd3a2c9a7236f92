"""`make bench`: run the benchmarks and write bench_out/*.json + *.md and bench_out/README.md.

    python -m bench.run [--out bench_out] [--only extract,sweep,ensemble,predict,predict_stages,threads,precision,faults,ray,
                        track1,peer] [--scale 0.25] [--peer-python PY]

Default set: every benchmark except ``precision`` on a CPU without native bf16 (there bf16 is emulated and
measured 0.24-0.31x of fp32, so ``auto`` stays fp32 and the figure is known); ``--only precision`` runs it.
``peer`` (``mmmos predict`` vs audiobox-aesthetics, :mod:`bench.peer_bench`) runs where the peer's own
virtualenv is installed (``bench/peer_setup.sh``) and prints one line otherwise.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

BENCHES = {  # name -> module with run(out, ...) returning (or writing) its markdown report
    "extract": "bench.extract_bench",
    "sweep": "bench.sweep_bench",
    "ensemble": "bench.ensemble_bench",
    "predict": "bench.predict_bench",
    "predict_stages": "bench.predict_stages",
    "threads": "bench.threads_bench",
    "thread_rule": "bench.thread_rule_bench",
    "precision": "bench.precision_bench",
    "precision_profile": "bench.precision_profile",
    "faults": "bench.faults",
    "ray": "bench.ray_bench",
    "track1": "bench.track1_bench",
    "peer": "bench.peer_bench",
}


def default_benches() -> list[str]:
    """Every benchmark, without ``precision`` where the CPU has no native bf16 (and no GPU)."""
    from mmmos.extract.precision import cpu_bf16_native

    names = [n for n in BENCHES if n != "precision_profile"]  # an experiment's record: --only precision_profile
    if not cpu_bf16_native():
        names.remove("precision")
    return names


def run_one(name: str, out: Path, a: argparse.Namespace) -> Path | None:
    """Run benchmark ``name``; the path of its markdown report (None: skipped, it printed why)."""
    mod = importlib.import_module(BENCHES[name])
    if name == "extract":
        mod.run(out, a.extract_clips, a.device, backend=a.backend)
        return out / "extract.md"
    if name == "predict":
        return mod.run(out, a.predict_seconds)
    if name == "sweep":
        device = a.device
        if device == "auto":  # the extraction benchmark's spelling: the GPU when there is one
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        mod.run(out, a.scale, a.jobs, schedules=tuple(a.schedules.split(",")), device=device, share=a.sweep_share)
        return out / f"sweep_scale{a.scale:g}.md"
    if name == "threads":
        return mod.run(out, a.threads_files, a.threads_reps)
    if name == "thread_rule":
        return mod.run(out)
    if name == "faults":
        mod.main(["--out", str(out)])
        return out / "faults.md"
    if name == "ray":
        mod.run(out, a.seconds)
        return out / "ray.md"
    if name == "track1":
        return mod.run(out, 16, 8, 2, False)
    if name == "peer":
        return mod.run(out, a.peer_reps, a.peer_threads, a.peer_python, command=a.command)
    if name == "precision_profile":
        mod.main(["--out", str(out)])
        return out / "precision_profile.md"
    return Path(mod.run(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    ap.add_argument("--scale", type=float, default=0.25, help="sweep benchmark size as a fraction of the challenge data")
    ap.add_argument("--schedules", default="early,full", help="sweep schedules: early (patience 2) and/or full (10 epochs)")
    ap.add_argument("--seconds", type=float, default=180.0, help="audio seconds for the Ray benchmark")
    ap.add_argument("--extract-clips", type=int, default=18, help="10-s clips for the extraction benchmark")
    ap.add_argument("--device", default="cpu", help="device of the extraction and sweep benchmarks (cpu, cuda, auto)")
    ap.add_argument("--sweep-share", choices=("on", "off", "both"), default="on",
                    help="sweep benchmark: frames read once per sweep (on), per configuration (off), or both")
    ap.add_argument("--backend", default="zarr", choices=["zarr", "hdf5"], help="store of the extraction benchmark")
    ap.add_argument("--predict-seconds", type=float, default=90.0, help="audio seconds for the predict benchmark")
    ap.add_argument("--threads-files", type=int, default=120, help="short files for the threads benchmark")
    ap.add_argument("--threads-reps", type=int, default=3, help="interleaved repetitions of the threads benchmark")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--peer-python", help="python of the audiobox-aesthetics virtualenv for the peer benchmark "
                    "(default: $MMMOS_PEER_PYTHON, else .peer-venv/bin/python)")
    ap.add_argument("--peer-reps", type=int, default=3, help="interleaved repetitions of the peer benchmark")
    ap.add_argument("--peer-threads", type=int, default=2, help="math threads of both tools in the peer benchmark")
    a = ap.parse_args(argv)
    a.command = shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    out = Path(a.out)
    names = a.only.split(",") if a.only else default_benches()
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    for name in names:
        print(f"== {name} benchmark", flush=True)
        md = run_one(name, out, a)
        if md is not None:
            print(Path(md).read_text(), flush=True)
    # the index lists every report in the folder, also those of earlier runs with other --only
    out.mkdir(parents=True, exist_ok=True)
    index = ["# Benchmarks", ""] + [f"* [{p.name}]({p.name})" for p in sorted(out.glob("*.md")) if p.name != "README.md"]
    (out / "README.md").write_text("\n".join(index) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
