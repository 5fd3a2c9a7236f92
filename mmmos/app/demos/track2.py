"""The Track 2 demo driver: the synthetic corpus -> logmel/logmel_slow frames -> the 16 configurations ->
ensembles (with stack) -> report -> ``mmmos predict`` with the exported ensemble.

It drives each stage through its public API, building the sweep's options with the sweep's own parser (so new
sweep options get their defaults here too).  Re-running resumes: the corpus, the cache and finished
configurations are reused.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

STEPS = 6
#: the Track 2 demo's sizes (options left unset take these)
TRACK2_DEFAULTS = {"n_train": 240, "n_dev": 60, "n_pam": 60, "epochs": 20, "lr": 1e-3}


def _step(i: int, text: str) -> None:
    print(f"[{i}/{STEPS}] {text}", flush=True)


def _corpus(a: argparse.Namespace, corpus: Path) -> list[str]:
    from mmmos.app.demos.track2_corpus import make_demo_corpus

    if not (corpus / "pam_dev.csv").is_file():
        _step(1, f"writing the synthetic demo corpus to {corpus}")
        make_demo_corpus(corpus, n_train=a.n_train, n_dev=a.n_dev, n_pam=a.n_pam, seed=a.seed)
    else:
        _step(1, f"reusing the demo corpus in {corpus}")
    return [str(corpus / f"{s}.csv") for s in ("train", "dev", "pam_dev")]


def _extract(a: argparse.Namespace, manifests: list[str], store: str) -> None:
    from mmmos.extract.runner import ExtractConfig, format_report, run_extract, save_report

    _step(2, "extracting frames with the built-in encoders logmel (50 Hz) and logmel_slow (6.25 Hz)")
    rep = run_extract(ExtractConfig(manifests=manifests, store=store, encoders=["logmel", "logmel_slow"],
                                    progress=not a.no_progress))
    save_report(rep, store)
    print(format_report(rep, store), flush=True)


def _sweep(a: argparse.Namespace, manifests: list[str], store: str, run: Path) -> int:
    from mmmos.sweep import cli as sweep
    _step(3, "training the 16 head x loss configurations from the cache")
    p = argparse.ArgumentParser(prog="mmmos demo (sweep)")
    sweep.add_arguments(p)
    argv = ["--store", store, "--run", str(run), "--train", manifests[0], "--dev", manifests[1],
            "--eval", f"pam_dev={manifests[2]}", "--sets", "bienc=logmel,trienc=logmel+logmel_slow",
            "--epochs", str(a.epochs), "--patience", "3", "--lr", str(a.lr), "--seed", "42", "--crop", "10",
            "--jobs", str(a.jobs), "--device", "cpu"]
    if a.no_progress:
        argv.append("--no-progress")
    return int(sweep.run_cli(p.parse_args(argv)) or 0)


def run_track2_demo(a: argparse.Namespace) -> int:
    """The whole job on built-in data: corpus -> extract -> sweep -> ensembles -> report -> predict."""
    import json

    from mmmos.core.tasks import get_task

    for k, v in TRACK2_DEFAULTS.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    t0 = time.perf_counter()
    out = Path(a.out)
    corpus, run, store = out / "corpus", out / "run", str(out / "cache.zarr")
    manifests = _corpus(a, corpus)
    _extract(a, manifests, store)
    rc = _sweep(a, manifests, store, run)
    if rc:
        return rc
    from mmmos.app.demos.common import ensembles_and_report

    _step(4, "ensembles from the saved predictions (the paper's strategies + stack) and the report")
    report = ensembles_and_report(run, out / "answer.txt")
    _step(5, f"report written: {report}")
    _step(6, "exporting the 'submitted' ensemble and scoring a few files with `mmmos predict`")
    from mmmos.app.predict import Predictor, export_predictor, write_table
    members = json.loads((run / "ensembles" / "members.json").read_text())["strategies"]["submitted"]["members"]
    model = export_predictor(run, members, out / "model")
    files = sorted((corpus / "PAM").rglob("*.wav"))[:5]
    table = Predictor.load(model, device="cpu").predict_files(files)
    write_table(table, out / "predictions.csv")
    print(table.select("clip_id", *get_task().axes, "error"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"  summary:     {run / 'summary.md'}")
    print(f"  ensembles:   {run / 'ensembles' / 'table_iv.md'}")
    print(f"  answer file: {out / 'answer.txt'}")
    print(f"  report:      {report}")
    print(f"  model:       {model}   (try: mmmos predict FILE --model {model})")
    return 0


__all__ = ["TRACK2_DEFAULTS", "run_track2_demo"]
