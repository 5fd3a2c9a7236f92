"""Threads benchmark (issue 12, item 2): ``mmmos predict`` over many short files, default vs ``OMP_NUM_THREADS=1``.

Interleaved A/B runs of the real command (a fresh process per run) on a demo-style predictor (logmel +
logmel_slow encoders; an mlp and a blstm_t member with random weights - only the cost matters) over short
demo-corpus files, on a quiet machine and with a busy-loop process occupying one core.  Variants:

* ``default``  - what ``mmmos predict`` does now (the thread policy of :mod:`mmmos.core.threads`)
* ``omp1``     - ``OMP_NUM_THREADS=1`` in the environment (the measured fast case of issue 12)
* ``all_cores`` - ``MMMOS_THREADS=<cores>``: torch's own default before the policy (one intra-op thread per core)

Reported: median wall time of each variant (whole process and the scoring loop alone, as the command logs
it), the ratios default/omp1 and all_cores/omp1, and the largest score difference between variants.
The goal: default no more than 10 % slower than ``OMP_NUM_THREADS=1``, quiet and busy.

    python -m bench.threads_bench [--out bench_out] [--files 120] [--reps 3] [--model DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mmmos.core.threads import OVERRIDE_ENV, THREAD_ENV_VARS, available_cores

VARIANTS = ("default", "omp1", "all_cores")
MEMBERS = (("demo-mlp", "mlp"), ("demo-blstm_t", "blstm_t"))


def make_files(work: Path, n: int) -> Path:
    """``n`` short demo-corpus clips (2-6 s, 16 kHz) in ``work/corpus`` (reused when present)."""
    from mmmos.app.demos.track2_corpus import make_demo_corpus

    corpus = work / "corpus"
    if not (corpus / "pam_dev.csv").is_file() or len(list(corpus.rglob("*.wav"))) != n:
        make_demo_corpus(corpus, n_train=0, n_dev=0, n_pam=n, durations=(2.0, 6.0))
    return corpus / "PAM"


def make_predictor(work: Path) -> Path:
    """A demo-style predictor: random mlp and blstm_t heads on logmel + logmel_slow frames."""
    import torch

    from mmmos import extract
    from mmmos.app.predict import export_predictor
    from mmmos.cache_store import identity_key
    from mmmos.core.rundir import ModelRecord, RunDir
    from mmmos.core.tasks import get_task
    from mmmos.extract.precision import _encoder_identity
    from mmmos.heads import build_head

    idents, keys, dim = [], [], 0
    for name in ("logmel", "logmel_slow"):
        enc = extract.load_encoder(name, None, device="cpu")
        ident = json.loads(json.dumps({**_encoder_identity(enc, "fp32"), "dtype": "float16"}, default=str))
        idents.append(ident)
        keys.append(identity_key(ident))
        dim += enc.dim
    task = get_task()
    run = RunDir(work / "run")
    for i, (name, head_name) in enumerate(MEMBERS):
        torch.manual_seed(i)
        head = build_head(head_name, dim)
        run.config(name).write_model(ModelRecord(
            head_config=head.config, state_dict=head.state_dict(), z_mean=[5.0] * task.n_axes,
            z_std=[2.0] * task.n_axes, axes=list(task.axes), encoders=idents, encoder_keys=keys, crop_seconds=10.0,
            grid_rate=6.25, task=task.name))
    return Path(export_predictor(work / "run", [m for m, _ in MEMBERS], work / "predictor"))


def variant_env(variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS and k != OVERRIDE_ENV}
    if variant == "omp1":
        env["OMP_NUM_THREADS"] = "1"
    elif variant == "all_cores":
        env[OVERRIDE_ENV] = str(available_cores())
    return env


def predict_once(model: Path, files: Path, out_csv: Path, variant: str) -> dict:
    """One ``mmmos predict`` process; wall seconds, the scoring loop's seconds (from its log), the scores."""
    cmd = [sys.executable, "-m", "mmmos.app.cli", "predict", str(files), "--model", str(model), "--out",
           str(out_csv), "--no-progress"]
    t = time.perf_counter()
    p = subprocess.run(cmd, env=variant_env(variant), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"mmmos predict ({variant}) exited {p.returncode}: {p.stderr[-2000:]}")
    m = re.search(r"scored in ([0-9.]+) s", p.stderr)
    return {"wall": wall, "scoring": float(m.group(1)) if m else None, "scores": out_csv.read_text()}


def busy_loop() -> subprocess.Popen:
    """A CPU-bound process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(model: Path, files: Path, work: Path, reps: int) -> dict:
    """Interleaved runs: for each repetition, quiet then busy, the variants in rotating order."""
    times = {(c, v): [] for c in ("quiet", "busy") for v in VARIANTS}
    scores: dict[str, str] = {}
    load = {"quiet": [], "busy": []}
    for rep in range(reps):
        for cond in ("quiet", "busy"):
            hog = busy_loop() if cond == "busy" else None
            try:
                order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[: rep % len(VARIANTS)]
                for v in order:
                    r = predict_once(model, files, work / f"scores_{v}.csv", v)
                    times[(cond, v)].append((r["wall"], r["scoring"]))
                    scores.setdefault(v, r["scores"])
                    load[cond].append(os.getloadavg()[0])
                    print(f"  rep {rep} {cond:5s} {v:9s} wall {r['wall']:.1f} s, scoring {r['scoring']} s", flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    return {"times": times, "max_score_difference": max_difference(scores), "load": load}


def max_difference(tables: dict[str, str]) -> float:
    """Largest absolute difference of any score between the variants' CSV outputs."""
    import io

    import polars as pl

    dfs = [pl.read_csv(io.StringIO(t)) for t in tables.values()]
    cols = [c for c in dfs[0].columns if dfs[0][c].dtype.is_float() and c != "duration"]
    return max((float((d[c] - dfs[0][c]).abs().max() or 0.0) for d in dfs[1:] for c in cols), default=0.0)


def summarize(times: dict) -> dict:
    out = {}
    for cond in ("quiet", "busy"):
        med = {v: {"wall": statistics.median(w for w, _ in times[(cond, v)]),
                   "scoring": statistics.median(s for _, s in times[(cond, v)])} for v in VARIANTS}
        out[cond] = {"median_seconds": med,
                     "ratio_default_vs_omp1_wall": med["default"]["wall"] / med["omp1"]["wall"],
                     "ratio_default_vs_omp1_scoring": med["default"]["scoring"] / med["omp1"]["scoring"],
                     "ratio_all_cores_vs_omp1_scoring": med["all_cores"]["scoring"] / med["omp1"]["scoring"]}
    return out


def run(out: Path, files: int = 120, reps: int = 3, model: str | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "threads_work"
    folder = make_files(work, files)
    pdir = Path(model) if model else make_predictor(work)
    got = measure(pdir, folder, work, reps)
    summ = summarize(got["times"])
    rep = {"files": files, "reps": reps, "cores": available_cores(), "model": str(pdir),
           "max_score_difference": got["max_score_difference"], "summary": summ,
           "load_average_1min": {k: statistics.mean(v) for k, v in got["load"].items()},
           "runs": {f"{c}/{v}": t for (c, v), t in got["times"].items()}}
    (out / "threads.json").write_text(json.dumps(rep, indent=2))
    md = [f"# Threads benchmark: `mmmos predict` on {files} short files (2-6 s), {reps} interleaved repetitions",
          "", f"{available_cores()} cores; demo-style predictor (logmel + logmel_slow, mlp + blstm_t members). "
          f"Mean 1-min load average during the runs: quiet {rep['load_average_1min']['quiet']:.1f}, busy "
          f"{rep['load_average_1min']['busy']:.1f} (the machine is shared: 'quiet' means no busy loop of ours). "
          f"Largest score difference between variants: **{got['max_score_difference']:.1e}**.", "",
          "| machine | variant | wall s (median) | scoring s (median) |", "| --- | --- | ---: | ---: |"]
    for cond in ("quiet", "busy"):
        for v in VARIANTS:
            m = summ[cond]["median_seconds"][v]
            md.append(f"| {cond} | {v} | {m['wall']:.1f} | {m['scoring']:.1f} |")
    md.append("")
    for cond in ("quiet", "busy"):
        s = summ[cond]
        md.append(f"* {cond}: default / OMP_NUM_THREADS=1 = **{s['ratio_default_vs_omp1_scoring']:.2f}×** scoring "
                  f"({s['ratio_default_vs_omp1_wall']:.2f}× whole process; goal ≤ 1.10); all cores (before the "
                  f"policy) / OMP_NUM_THREADS=1 = {s['ratio_all_cores_vs_omp1_scoring']:.2f}×")
    path = out / "threads.md"
    path.write_text("\n".join(md) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", help="a predictor folder to use instead of the generated demo-style one")
    a = ap.parse_args(argv)
    print(run(Path(a.out), a.files, a.reps, a.model).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
