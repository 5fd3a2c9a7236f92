"""Thread-rule benchmark (issue 21, item 3): ``mmmos predict`` with the free-core rule vs 1 and 2 threads.

Interleaved whole-process runs (A, B, C, A, B, C, ...) of the real command on the demo-style predictor of
:mod:`bench.threads_bench` (logmel + logmel_slow, mlp + blstm_t heads, random weights) over a few 10-s
files, on a quiet machine and with a second CPU-bound process (``python -c 'while 1: pass'``) running.
Variants: ``rule`` (no option: ``free_cores()``), ``t1`` (``MMMOS_THREADS=1``), ``t2`` (``MMMOS_THREADS=2``).
Reported: median wall and scoring-loop seconds per variant and condition, the ratios rule/t1 and rule/t2
(lower is better), the threads the rule chose (from the log), the largest score difference, the CPU.

    python -m bench.thread_rule_bench [--out bench/results] [--files 8] [--seconds 10] [--reps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.threads_bench import busy_loop, make_predictor, max_difference
from mmmos.core.threads import OVERRIDE_ENV, THREAD_ENV_VARS, running_now

VARIANTS = ("rule", "t1", "t2")


def cpu_info() -> dict:
    name, flags = platform.processor(), ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = line
    except OSError:
        pass
    return {"model": name, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx": "amx_" in flags}


def make_files(work: Path, n: int, seconds: float) -> Path:
    from mmmos.app.demos.track2_corpus import make_demo_corpus

    corpus = work / "corpus"
    if not (corpus / "pam_dev.csv").is_file() or len(list(corpus.rglob("*.wav"))) != n:
        make_demo_corpus(corpus, n_train=0, n_dev=0, n_pam=n, durations=(seconds, seconds))
    return corpus / "PAM"


def predict_once(model: Path, files: Path, out_csv: Path, variant: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS and k != OVERRIDE_ENV}
    if variant != "rule":
        env[OVERRIDE_ENV] = variant[1:]
    cmd = [sys.executable, "-m", "mmmos.app.cli", "predict", str(files), "--model", str(model), "--out",
           str(out_csv), "--no-progress"]
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"mmmos predict ({variant}) exited {p.returncode}: {p.stderr[-2000:]}")
    m = re.search(r"scored in ([0-9.]+) s", p.stderr)
    th = re.search(r"; (\d+) math thread", p.stderr)
    return {"wall": wall, "scoring": float(m.group(1)) if m else None, "threads": int(th.group(1)) if th else None,
            "scores": out_csv.read_text()}


def run(out: Path, files: int = 8, seconds: float = 10.0, reps: int = 2) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("MMMOS_BENCH_WORK", "/tmp/mmmos_thread_rule_bench"))
    work.mkdir(parents=True, exist_ok=True)
    folder = make_files(work, files, seconds)
    model = work / "predictor" if (work / "predictor").is_dir() else make_predictor(work)
    rows = {(c, v): [] for c in ("quiet", "busy") for v in VARIANTS}
    scores: dict[str, str] = {}
    for rep in range(reps):
        for cond in ("quiet", "busy"):
            hog = busy_loop() if cond == "busy" else None
            try:
                if hog is not None:
                    time.sleep(1.0)
                order = VARIANTS[rep % 3:] + VARIANTS[: rep % 3]
                for v in order:
                    others = running_now()  # what the rule sees (other runnable threads) just before the run
                    r = predict_once(model, folder, work / f"scores_{v}.csv", v)
                    r["others_running"] = others
                    rows[(cond, v)].append(r)
                    scores.setdefault(v, r["scores"])
                    print(f"  rep {rep} {cond:5s} {v:4s} wall {r['wall']:.2f} s scoring {r['scoring']} s "
                          f"threads {r['threads']} others running {others}", flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    summary = {}
    for cond in ("quiet", "busy"):
        med = {v: {"wall": statistics.median(r["wall"] for r in rows[(cond, v)]),
                   "scoring": statistics.median(r["scoring"] for r in rows[(cond, v)]),
                   "rule_threads": sorted({r["threads"] for r in rows[(cond, v)]}),
                   "others_running": [r["others_running"] for r in rows[(cond, v)]]} for v in VARIANTS}
        summary[cond] = {"median_seconds": med,
                         "ratio_rule_vs_t1_scoring": med["rule"]["scoring"] / med["t1"]["scoring"],
                         "ratio_rule_vs_t2_scoring": med["rule"]["scoring"] / med["t2"]["scoring"],
                         "ratio_rule_vs_t1_wall": med["rule"]["wall"] / med["t1"]["wall"],
                         "ratio_rule_vs_t2_wall": med["rule"]["wall"] / med["t2"]["wall"]}
    command = f"python -m bench.thread_rule_bench --out {out} --files {files} --seconds {seconds:g} --reps {reps}"
    rep = {"command": command, "cpu": cpu_info(), "files": files, "seconds_per_file": seconds, "reps": reps,
           "summary": summary, "max_score_difference": max_difference(scores)}
    (out / "thread_rule.json").write_text(json.dumps(rep, indent=2))
    md = [f"# Thread rule: `mmmos predict` on {files} x {seconds:g}-s files, {reps} interleaved repetitions", "",
          f"Command: `{command}`  ", f"CPU: {rep['cpu']['model']}, {rep['cpu']['cores']} cores, "
          f"avx512_bf16 {rep['cpu']['avx512_bf16']}, amx {rep['cpu']['amx']}; a shared machine (other jobs ran).", "",
          "| condition | variant | threads used | other runnable threads before each run | wall s (median) | scoring s (median) |",
          "| --- | --- | ---: | --- | ---: | ---: |"]
    for cond in ("quiet", "busy"):
        for v in VARIANTS:
            m = summary[cond]["median_seconds"][v]
            md.append(f"| {cond} | {v} | {','.join(map(str, m['rule_threads']))} | "
                      f"{', '.join(f'{x:g}' for x in m['others_running'])} | {m['wall']:.2f} | {m['scoring']:.2f} |")
    md += ["", "| condition | rule / t1 (scoring) | rule / t2 (scoring) | rule / t1 (wall) | rule / t2 (wall) |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for cond in ("quiet", "busy"):
        s = summary[cond]
        md.append(f"| {cond} | {s['ratio_rule_vs_t1_scoring']:.2f} | {s['ratio_rule_vs_t2_scoring']:.2f} | "
                  f"{s['ratio_rule_vs_t1_wall']:.2f} | {s['ratio_rule_vs_t2_wall']:.2f} |")
    md += ["", f"Largest score difference between variants: {rep['max_score_difference']:.2e}"]
    (out / "thread_rule.md").write_text("\n".join(md) + "\n")
    return out / "thread_rule.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args(argv)
    print(run(Path(a.out), a.files, a.seconds, a.reps).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
