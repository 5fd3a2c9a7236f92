"""Peer benchmark (issue 21, item 5): ``mmmos predict`` against Meta's audiobox-aesthetics (``audio-aes``, the
AudioMOS challenge baseline: one WavLM Base-size encoder, 10-s windows, fp32) on the same files, on this CPU.

Both tools run as a user runs them, as whole processes (start-up, model loading, decoding, resampling and
scoring all counted), interleaved on the same files: mmmos, audiobox, then audiobox, mmmos on the next
repetition, and so on.  Both are pinned to the same math-thread count (``--threads``; ``mmmos predict
--threads N`` and ``OMP_NUM_THREADS=N`` for audiobox) and to the same cores, on the CPU (``CUDA_VISIBLE_DEVICES``
empty); peak RSS of each comes from ``getrusage`` in a small wrapper process.  No weights can be downloaded,
so every model is a random-initialised one of the real architecture: mmmos predictors with a random mlp head on full-size
random WavLM Base+ (and MuQ-large, M2D for TriEnc), and an audiobox checkpoint built from its own model class
(:data:`AUDIOBOX_CKPT_SNIPPET`, run by the peer's python) in the format its loader reads.

Reported per case: median wall seconds of each tool, the ratio mmmos / audiobox (lower is better) beside the
issue's goal, and the peak RSS of each.  audiobox-aesthetics lives in its own virtualenv
(``bench/peer_setup.sh``); when ``--peer-python`` (default ``$MMMOS_PEER_PYTHON``, else ``.peer-venv/bin/python``)
cannot import it, the benchmark prints one line and writes nothing.

    python -m bench.peer_bench [--out bench_out] [--reps 3] [--threads 2] [--peer-python PY]
                               [--cases wavlm_24x10,...] [--files N --seconds S]   (the last two: smoke sizes)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name -> (mmmos model, files, seconds per file, goal for mmmos wall / audiobox wall)
CASES = {
    "wavlm_24x10": ("wavlm", 24, 10.0, 0.4),
    "trienc_24x10": ("trienc", 24, 10.0, 1.0),
    "trienc_4x60": ("trienc", 4, 60.0, 1.0),
    "wavlm_1x10": ("wavlm", 1, 10.0, 1.0),
}
MODELS = {"wavlm": ("wavlm",), "trienc": ("wavlm", "muq", "m2d")}
TOOLS = ("mmmos", "audiobox")
PEER_CHECK = "import audiobox_aesthetics.infer, torchcodec.decoders, torch; print(torch.__version__)"
# run by the peer's python: argv[1] = checkpoint path; the format AesPredictor(checkpoint_pth=...) loads
AUDIOBOX_CKPT_SNIPPET = """
import sys, torch
from audiobox_aesthetics.model.aes import AXES_NAME, AesMultiOutput
torch.manual_seed(0)
cfg = dict(proj_num_layer=1, proj_ln=False, proj_act_fn="gelu", proj_dropout=0.0, nth_layer=13,
           use_weighted_layer_sum=True, precision="32", normalize_embed=True, output_dim=1)
tt = {a: {"mean": 5.0, "std": 2.0} for a in AXES_NAME}
model = AesMultiOutput(**cfg, target_transform=tt)
sd = {"model." + k: v for k, v in model.state_dict().items()}
torch.save({"state_dict": sd, "model_cfg": cfg, "target_transform": tt}, sys.argv[1])
"""
# Peak RSS of a child forked from this (large) process would count the pages it shares with us at fork:
# each tool is started by this small wrapper instead, on the given cores; argv: rss file, cores, command
RSS_WRAPPER = """
import os, resource, subprocess, sys
os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(",")})
rc = subprocess.call(sys.argv[3:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""


def default_peer_python() -> str:
    return os.environ.get("MMMOS_PEER_PYTHON") or str(ROOT / ".peer-venv" / "bin" / "python")


def peer_available(python: str) -> tuple[bool, str]:
    """(True, the peer's torch version) when ``python`` imports audiobox_aesthetics and torchcodec, else (False, why)."""
    try:
        p = subprocess.run([python, "-c", PEER_CHECK], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        return False, lines[-1] if lines else f"exit {p.returncode}"
    return True, p.stdout.strip()


def make_models(work: Path, weights_dir: Path, peer_python: str, kinds: set[str]) -> dict[str, Path]:
    """The mmmos predictors of ``kinds`` and the random audiobox checkpoint (built once)."""
    from bench.extract_bench import make_weights
    from bench.predict_bench import make_predictor

    weights = make_weights(weights_dir)
    models = {k: Path(make_predictor(work / k, weights, MODELS[k], f"{k}-mlp-utmos")) for k in sorted(kinds)}
    ckpt = work / "audiobox_random.pt"
    if not ckpt.is_file():
        subprocess.run([peer_python, "-c", AUDIOBOX_CKPT_SNIPPET, str(ckpt)], check=True, capture_output=True)
    models["audiobox"] = ckpt
    return models


def make_case_audio(work: Path, files: int, seconds: float) -> tuple[Path, Path]:
    """``files`` clips of ``seconds`` (3 in 4 44.1 kHz stereo, 1 in 4 16 kHz mono) in their own folder, and
    the JSONL list audiobox reads."""
    from bench.extract_bench import make_clips

    folder = work / "audio" / f"{files}x{seconds:g}s"
    rows = make_clips(folder, files, seconds=seconds, seed=files)
    jsonl = folder.with_suffix(".jsonl")
    jsonl.write_text("".join(json.dumps({"path": p}) + "\n" for _, p in rows))
    return folder, jsonl


def tool_env(threads: int) -> dict[str, str]:
    from mmmos.core.threads import OVERRIDE_ENV, THREAD_ENV_VARS

    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS and k != OVERRIDE_ENV}
    env.update({k: str(threads) for k in THREAD_ENV_VARS}, CUDA_VISIBLE_DEVICES="")
    return env


def commands(tool: str, model: Path, folder: Path, jsonl: Path, out: Path, opts: dict) -> list:
    """The command line of ``tool`` (``mmmos predict`` or ``audio-aes``, as their module) on one case."""
    if tool == "mmmos":
        return [sys.executable, "-m", "mmmos.app.cli", "predict", str(folder), "--model", str(model), "--out",
                str(out), "--no-progress", "--device", "cpu", "--threads", str(opts["threads"]),
                "--precision", opts["precision"]]
    return [opts["peer_python"], "-m", "audiobox_aesthetics.cli", str(jsonl), "--ckpt", str(model)]


def run_process(cmd: list, env: dict, stdout: Path, cores: set[int]) -> dict:
    """One whole process, started by a small wrapper (:data:`RSS_WRAPPER`): wall seconds, peak RSS in MiB,
    its stderr."""
    rss_file = stdout.with_suffix(".rss")
    wrapped = [sys.executable, "-S", "-c", RSS_WRAPPER, str(rss_file), ",".join(map(str, sorted(cores))), *cmd]
    with open(stdout, "w") as so:
        t = time.perf_counter()
        p = subprocess.run(wrapped, env=env, stdout=so, stderr=subprocess.PIPE, text=True, cwd=stdout.parent)
        wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {p.returncode}: {p.stderr[-2000:]}")
    return {"wall": wall, "rss_mib": int(rss_file.read_text()) / 1024, "stderr": p.stderr}


def check_output(tool: str, path: Path, files: int) -> None:
    """Every file scored: mmmos's table has ``files`` rows without an error, audiobox printed ``files`` lines."""
    if tool == "mmmos":
        import polars as pl

        t = pl.read_csv(path)
        ok = t.height == files and int(t["error"].is_not_null().sum()) == 0
    else:
        ok = sum(1 for ln in path.read_text().splitlines() if ln.startswith("{")) == files
    if not ok:
        raise RuntimeError(f"{tool} did not score all {files} files: see {path}")


def measure(cases: dict, models: dict, work: Path, reps: int, opts: dict) -> dict:
    """Interleaved whole-process runs; per case and tool: wall seconds, peak RSS (and mmmos's scoring loop)."""
    threads = opts["threads"]
    env, cores = tool_env(threads), set(sorted(os.sched_getaffinity(0))[:threads])
    runs = {c: {t: [] for t in TOOLS} for c in cases}
    notes = {}
    for rep in range(reps):
        for case, (kind, files, seconds, _goal) in cases.items():
            folder, jsonl = make_case_audio(work, files, seconds)
            for tool in (TOOLS if rep % 2 == 0 else TOOLS[::-1]):
                out = work / f"{case}_{tool}.{'csv' if tool == 'mmmos' else 'jsonl'}"
                model = models[kind] if tool == "mmmos" else models["audiobox"]
                r = run_process(commands(tool, model, folder, jsonl, out, opts), env,
                                out if tool == "audiobox" else work / f"{case}_{tool}.stdout", cores)
                check_output(tool, out, files)
                row = {"wall": r["wall"], "rss_mib": r["rss_mib"]}
                if tool == "mmmos":
                    notes[case] = mmmos_log_facts(r["stderr"])
                    row["scoring"] = notes[case]["scoring_seconds"]
                runs[case][tool].append(row)
                print(f"  rep {rep} {case:13s} {tool:8s} wall {r['wall']:6.1f} s, peak RSS {r['rss_mib']:.0f} MiB",
                      flush=True)
    return {"runs": runs, "mmmos_log": notes}


def mmmos_log_facts(stderr: str) -> dict:
    """The precision line and the scoring-loop seconds of one ``mmmos predict`` log."""
    prec = re.search(r"precision (.+)", stderr)
    scored = re.search(r"scored in ([0-9.]+) s", stderr)
    return {"precision": prec.group(1).strip() if prec else None,
            "scoring_seconds": float(scored.group(1)) if scored else None}


def summarize(runs: dict, goals: dict) -> dict:
    """Per case: median wall and max peak RSS of each tool, ratio mmmos / audiobox, its goal and whether met."""
    out = {}
    for case, by_tool in runs.items():
        med = {t: statistics.median(r["wall"] for r in by_tool[t]) for t in TOOLS}
        rss = {t: max(r["rss_mib"] for r in by_tool[t]) for t in TOOLS}
        scoring = [r["scoring"] for r in by_tool["mmmos"] if r.get("scoring") is not None]
        ratio = med["mmmos"] / med["audiobox"]
        out[case] = {"median_wall_seconds": med, "peak_rss_mib": rss, "ratio": ratio, "goal": goals[case],
                     "met": ratio <= goals[case],
                     "mmmos_scoring_seconds": statistics.median(scoring) if scoring else None}
    return out


def cpu_line(info: dict) -> str:
    flags = [f for f in info.get("cpu_flags", []) if f.startswith(("avx512_bf16", "amx"))]
    return (f"{info.get('cpu_model') or 'unknown CPU'}, {info.get('cpus')} cores, "
            f"{', '.join(flags) if flags else 'no avx512_bf16/AMX'}")


def report_md(rep: dict) -> str:
    """The markdown report of :func:`run`'s record."""
    lines = [f"# Peer benchmark: `mmmos predict` vs audiobox-aesthetics (`audio-aes`), {rep['reps']} interleaved "
             f"repetitions", "",
             f"CPU: {cpu_line(rep['machine'])}. Both tools: whole processes on the same files, "
             f"{rep['threads']} math thread(s) on the same {rep['threads']} core(s), CPU only. torch: mmmos "
             f"{rep['machine'].get('torch')}, audiobox {rep['peer_torch']}. Random-initialised weights of the "
             f"real architectures (only the cost matters). mmmos precision: {rep['mmmos_precision']}; "
             f"audiobox: fp32 (its checkpoint's `precision: 32`).", "",
             f"Command: `{rep['command']}`", "",
             "| case | files | mmmos wall s | audiobox wall s | mmmos / audiobox | goal | mmmos peak RSS MiB | "
             "audiobox peak RSS MiB | mmmos scoring s |", "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for case, s in rep["summary"].items():
        _kind, files, seconds, _goal = rep["cases"][case]
        med, rss = s["median_wall_seconds"], s["peak_rss_mib"]
        lines.append(f"| {case} | {files} × {seconds:g} s | {med['mmmos']:.1f} | {med['audiobox']:.1f} | "
                     f"**{s['ratio']:.2f}×** | ≤ {s['goal']:g}× {'met' if s['met'] else 'missed'} | "
                     f"{rss['mmmos']:.0f} | {rss['audiobox']:.0f} | {_num(s.get('mmmos_scoring_seconds'))} |")
    lines += ["", "Wall = median over the repetitions; peak RSS = the largest of the repetitions; mmmos scoring = "
              "the scoring loop alone as `mmmos predict` logs it (the rest of its wall: start-up, model loading, "
              "output). Per file, "
              "audiobox downmixes, resamples to 16 kHz and scores 10-s windows (hop 10 s, the last one zero-padded "
              "to 10 s) in batches of 100 windows; mmmos scores its model's 10-s windows with each encoder at its "
              "own rate (resampled per encoder) and averages them."]
    return "\n".join(lines) + "\n"


def _num(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def select_cases(names: str | None, files: int | None, seconds: float | None) -> dict:
    chosen = {n: CASES[n] for n in (names.split(",") if names else CASES)}
    return {n: (k, files or f, seconds or s, g) for n, (k, f, s, g) in chosen.items()}


def run(out: Path, reps: int = 3, threads: int = 2, peer_python: str | None = None, case_names: str | None = None,
        files: int | None = None, seconds: float | None = None, command: str | None = None,
        precision: str = "auto") -> Path | None:
    """Measure and write ``out/peer.json`` + ``out/peer.md``; None (one line printed) when the peer is missing."""
    peer_python = peer_python or default_peer_python()
    ok, peer_torch = peer_available(peer_python)
    if not ok:
        print(f"peer benchmark skipped: {peer_python} cannot import audiobox_aesthetics ({peer_torch}); "
              f"bench/peer_setup.sh installs it", flush=True)
        return None
    from bench.extract_bench import machine

    cases = select_cases(case_names, files, seconds)
    out.mkdir(parents=True, exist_ok=True)
    work = (out / "peer_work").resolve()  # the tools run in it: every path they get is absolute
    models = make_models(work, out / "extract_work" / "weights", peer_python, {k for k, *_ in cases.values()})
    got = measure(cases, models, work, reps, {"threads": threads, "peer_python": peer_python, "precision": precision})
    used = sorted({e for n in got["mmmos_log"].values() for e in (n["precision"] or "?").split(", ")})
    rep = {"reps": reps, "threads": threads, "cases": cases, "machine": machine(), "peer_torch": peer_torch,
           "peer_python": peer_python, "command": command or f"python -m bench.peer_bench --out {out}",
           "mmmos_precision": f"{', '.join(used)} (`--precision {precision}`)", "mmmos_log": got["mmmos_log"],
           "summary": summarize(got["runs"], {c: v[3] for c, v in cases.items()}), "runs": got["runs"]}
    (out / "peer.json").write_text(json.dumps(rep, indent=2))
    md = out / "peer.md"
    md.write_text(report_md(rep))
    return md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each tool per case")
    ap.add_argument("--threads", type=int, default=2, help="math threads (and cores) of both tools")
    ap.add_argument("--peer-python", help="python of the audiobox-aesthetics virtualenv "
                    "(default: $MMMOS_PEER_PYTHON, else .peer-venv/bin/python)")
    ap.add_argument("--cases", help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--files", type=int, help="files per case instead of the issue's (smoke runs)")
    ap.add_argument("--seconds", type=float, help="seconds per file instead of the issue's (smoke runs)")
    ap.add_argument("--mmmos-precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="`mmmos predict --precision` (auto: what a user gets; bf16 where the CPU has it natively)")
    a = ap.parse_args(argv)
    md = run(Path(a.out), a.reps, a.threads, a.peer_python, a.cases, a.files, a.seconds,
             command=shlex.join(["python", "-m", "bench.peer_bench", *(argv if argv is not None else sys.argv[1:])]),
             precision=a.mmmos_precision)
    if md is not None:
        print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
