"""Fixed cost of a one-file ``mmmos predict`` run (issue 21, item 2): where the seconds go before and
around the first score.

Each repetition is a fresh process that stamps ``time.perf_counter()`` around: interpreter start to the
first line (python start-up), ``import mmmos.app.predict`` (imports on the scoring path), ``Predictor.load``
(model build and weight checks), the first ``predict_files`` on one file (first forward, with its one-off
set-up) and a second one on the same file (the steady cost).  ``python -X importtime`` of the same import
names the ten slowest modules.  Runs are interleaved with ``--compare-python OTHER`` (another checkout's venv
python) for side-by-side before/after ratios.

    python -m bench.fixed_cost --model PREDICTOR_DIR --audio FILE.wav [--reps 3] [--out bench/results]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r'''
import json, sys, time
t0 = time.perf_counter()
from mmmos.app.predict import Predictor
t1 = time.perf_counter()
pred = Predictor.load(sys.argv[1], device="cpu")
t2 = time.perf_counter()
pred.predict_files([sys.argv[2]])
t3 = time.perf_counter()
pred.predict_files([sys.argv[2]])
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_predict": t3 - t2, "second_predict": t4 - t3,
                  "n_modules": len(sys.modules)}))
'''


def one(python: str, model: str, audio: str) -> dict:
    t = time.perf_counter()
    p = subprocess.run([python, "-c", CHILD, model, audio], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["process_wall"] = wall
    r["startup_and_exit"] = wall - r["import"] - r["load"] - r["first_predict"] - r["second_predict"]
    return r


def importtime(python: str, top: int = 10) -> list[tuple[str, float]]:
    p = subprocess.run([python, "-X", "importtime", "-c", "import mmmos.app.predict"], capture_output=True, text=True)
    rows = []
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self" not in line:
            self_us, _cum, name = [x.strip() for x in line.split(":", 1)[1].split("|")]
            rows.append((name, int(self_us) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compare-python", default=None, help="another venv's python, run interleaved (before/after)")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args(argv)
    pythons = {"this": sys.executable}
    if a.compare_python:
        pythons["other"] = a.compare_python
    runs = {k: [] for k in pythons}
    for rep in range(a.reps):
        for k, py in (pythons.items() if rep % 2 == 0 else reversed(list(pythons.items()))):
            runs[k].append(one(py, a.model, a.audio))
            print(k, rep, json.dumps(runs[k][-1]), flush=True)
    stages = ("startup_and_exit", "import", "load", "first_predict", "second_predict", "process_wall")
    med = {k: {s: statistics.median(r[s] for r in v) for s in stages} for k, v in runs.items()}
    rep = {"command": "python -m bench.fixed_cost " + " ".join(argv if argv is not None else sys.argv[1:]),
           "median_seconds": med, "slowest_imports_self_seconds": importtime(sys.executable)}
    if "other" in med:
        rep["ratio_this_vs_other"] = {s: med["this"][s] / med["other"][s] for s in stages if med["other"][s] > 0}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fixed_cost.json").write_text(json.dumps(rep, indent=2))
    lines = ["# Fixed cost of a one-file `mmmos predict` run", "", f"Command: `{rep['command']}`", "",
             "| stage | " + " | ".join(med) + " |", "| --- |" + " ---: |" * len(med)]
    for s in stages:
        lines.append(f"| {s} | " + " | ".join(f"{med[k][s]:.2f}" for k in med) + " |")
    lines += ["", "Slowest imports (self time, s): " + ", ".join(f"{n} {t:.3f}" for n, t in rep["slowest_imports_self_seconds"])]
    (out / "fixed_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
