"""``mmmos`` command line.  Sub-commands mirror the pipeline stages:

    mmmos demo        the whole job end to end on the built-in demo corpus
    mmmos demo-data   write the synthetic demo corpus (audio + manifests)
    mmmos extract     audio -> frozen encoders -> frame cache
    mmmos cache       show what a cache holds
    mmmos sweep       cache -> 16 head x loss configurations (models, predictions, metrics)
    mmmos ensemble    ensemble strategies from a sweep's saved predictions (select_ensemble.py)
    mmmos report      HTML report: Table III/IV, scatter plots, model selection, per-domain breakdown
    mmmos predict     PQ/PC/CE/CU for new audio with an exported ensemble
    mmmos score       challenge metrics for a prediction file against labels
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parse_weights(items: list[str] | None) -> dict[str, str]:
    from mmmos.extract import parse_weights

    try:
        return parse_weights(items)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def _parse_shard(s: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in s.split("/"))
        assert 0 <= i < n
    except Exception:  # noqa: BLE001
        raise argparse.ArgumentTypeError(f"--shard takes I/N with 0 <= I < N, got {s!r}") from None
    return i, n


def cmd_extract(a: argparse.Namespace) -> int:
    from mmmos.extract.runner import ExtractConfig, format_report, run_extract, save_report

    cfg = ExtractConfig(
        manifests=a.manifest, store=a.store, encoders=[e for e in a.encoders.split(",") if e],
        weights=_parse_weights(a.weights), backend=a.backend, data_root=a.data_root, device=a.device,
        precision=a.precision, store_dtype=a.store_dtype, batch_size=a.batch_size, shard=a.shard, limit=a.limit,
        progress=not a.no_progress,
    )
    unknown = [e for e in cfg.encoders if e not in __import__("extract").ENCODERS]
    if unknown:
        raise SystemExit(f"unknown encoder(s) {', '.join(unknown)}; known: {', '.join(sorted(__import__('extract').ENCODERS))}")
    missing = [e for e in cfg.encoders if not e.startswith("logmel") and e not in cfg.weights]
    if missing:
        raise SystemExit("no weights given for " + ", ".join(missing) + " (use --weights NAME=PATH; models load only "
                         "from local files — see README 'Encoder weights')")
    rep = run_extract(cfg)
    save_report(rep, a.store, cfg.shard)
    print(format_report(rep, a.store, cfg.shard))
    return 3 if rep.failures else 0


def cmd_cache(a: argparse.Namespace) -> int:
    from mmmos.cache_store import open_store

    st = open_store(a.store)
    print(f"{a.store}: {st.backend} cache")
    for info in st.encoders():
        g = st.group(info.key)
        n = len(g)
        frames = sum(c.n_frames for c in g.index.values())
        dur = sum(c.duration for c in g.index.values())
        print(f"  {info.key:28s} {n:6d} clips  {dur:9.1f} s  {frames:9d} frames  dim {info.dim}  "
              f"{info.frame_rate:g} Hz  {info.dtype}  sha256 {str(info.identity.get('sha256'))[:12]}")
    return 0


def cmd_demo_data(a: argparse.Namespace) -> int:
    from mmmos.app.demo_data import make_demo_corpus

    info = make_demo_corpus(a.out, n_train=a.n_train, n_dev=a.n_dev, n_pam=a.n_pam, seed=a.seed)
    print(f"demo corpus written to {a.out}")
    for k, v in (info or {}).items():
        if isinstance(v, (str, int, float, Path)):
            print(f"  {k}: {v}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """The whole job on built-in data: corpus -> extract -> sweep (-> ensemble -> report -> predict)."""
    import json
    import time

    from mmmos import sweep
    from mmmos.extract.runner import ExtractConfig, format_report, run_extract, save_report
    from mmmos.app.demo_data import make_demo_corpus

    t0 = time.perf_counter()
    out = Path(a.out)
    corpus = out / "corpus"
    if not (corpus / "pam_dev.csv").is_file():
        print(f"[1/6] writing the synthetic demo corpus to {corpus}", flush=True)
        make_demo_corpus(corpus, n_train=a.n_train, n_dev=a.n_dev, n_pam=a.n_pam, seed=a.seed)
    else:
        print(f"[1/6] reusing the demo corpus in {corpus}", flush=True)
    manifests = [str(corpus / f"{s}.csv") for s in ("train", "dev", "pam_dev")]
    store = str(out / "cache.zarr")
    print("[2/6] extracting frames with the built-in encoders logmel (50 Hz) and logmel_slow (6.25 Hz)", flush=True)
    rep = run_extract(ExtractConfig(manifests=manifests, store=store, encoders=["logmel", "logmel_slow"],
                                    progress=not a.no_progress))
    save_report(rep, store)
    print(format_report(rep, store), flush=True)
    print("[3/6] training the 16 head x loss configurations from the cache", flush=True)
    sa = argparse.Namespace(
        store=store, run=str(out / "run"), train=manifests[0], dev=manifests[1], eval=[f"pam_dev={manifests[2]}"],
        data_root=None, sets="bienc=logmel,trienc=logmel+logmel_slow", ablation=False, only=None, heads=None,
        losses=None, epochs=a.epochs, patience=3, lr=a.lr, seed=42, crop=10.0, jobs=a.jobs, device="cpu", force=False,
        no_progress=a.no_progress)
    rc = sweep.run_cli(sa)
    if rc:
        return rc
    from mmmos import ensemble as select_ensemble
    from mmmos.app.report import write_report

    print("[4/6] ensembles from the saved predictions", flush=True)
    run = out / "run"
    select_ensemble.run_ensembles(run, answer=str(out / "answer.txt"), answer_set="pam_dev")
    print((run / "ensembles" / "table_iv.md").read_text(), flush=True)
    print("[5/6] report", flush=True)
    report = write_report(run)
    print("[6/6] exporting the 'submitted' ensemble and scoring a few files with `mmmos predict`", flush=True)
    from mmmos.app.predictor import Predictor, export_predictor, write_table

    members = json.loads((run / "ensembles" / "members.json").read_text())["strategies"]["submitted"]["members"]
    model = export_predictor(run, members, out / "model")
    files = sorted((corpus / "PAM").rglob("*.wav"))[:5]
    table = Predictor.load(model, device="cpu").predict_files(files)
    write_table(table, out / "predictions.csv")
    print(table.select("clip_id", "PQ", "PC", "CE", "CU", "error"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    print(f"  summary:     {run / 'summary.md'}")
    print(f"  ensembles:   {run / 'ensembles' / 'table_iv.md'}")
    print(f"  answer file: {out / 'answer.txt'}")
    print(f"  report:      {report}")
    print(f"  model:       {model}   (try: mmmos predict FILE --model {model})")
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from mmmos.app.scoring import run_score

    return run_score(a)


def cmd_sweep(a: argparse.Namespace) -> int:
    from mmmos import sweep

    return sweep.run_cli(a)


def cmd_predict(a: argparse.Namespace) -> int:
    from mmmos.app.predictor import run_predict

    return run_predict(a)


def cmd_ensemble(a: argparse.Namespace) -> int:
    from mmmos import ensemble as select_ensemble

    return select_ensemble.run_cli(a)


def cmd_report(a: argparse.Namespace) -> int:
    from mmmos.app import report

    return report.run_cli(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmmos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("extract", help="run frozen encoders over audio and cache their frames",
                       description="Run frozen encoders over every clip of the manifests and write last-layer frames "
                                   "to the cache. Clips already cached for the same encoder identity are skipped; "
                                   "bad files are listed in <store>/extract_failures.csv (exit status 3).")
    e.add_argument("--manifest", action="append", required=True,
                   help="a Track 2 list, MMMOS combined list, AES JSONL, plain CSV or a folder of audio (repeatable)")
    e.add_argument("--store", required=True, help="cache folder (created if absent)")
    e.add_argument("--encoders", default="logmel", help="comma-separated encoder names: wavlm,muq,m2d,logmel")
    e.add_argument("--weights", action="append",
                   help="NAME=PATH local weights, e.g. wavlm=/models/wavlm-base-plus (repeatable or comma-separated)")
    e.add_argument("--backend", choices=["zarr", "hdf5"], default="zarr", help="storage backend for a new cache")
    e.add_argument("--data-root", help="folder that replaces the /your_path/ placeholder and roots relative paths")
    e.add_argument("--device", default="auto", help="auto (cuda -> mps -> cpu), cpu, cuda, cuda:1, mps")
    e.add_argument("--precision", choices=["auto", "fp16", "fp32"], default="auto",
                   help="encoder compute precision; auto = fp16 on cuda, else fp32 (part of the cache identity)")
    e.add_argument("--store-dtype", choices=["float16", "float32"], default="float16", help="dtype of stored frames")
    e.add_argument("--batch-size", type=int, default=None,
                   help="equal-shape encoder inputs per forward pass (default: 8 on a GPU, 1 on CPU where batching "
                        "measured slower)")
    e.add_argument("--shard", type=_parse_shard, default=(0, 1),
                   help="I/N: process only the clips whose id hashes to shard I of N (parallel workers, one store)")
    e.add_argument("--limit", type=int, help="only the first N clips (for a trial run)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_extract)

    c = sub.add_parser("cache", help="list the encoders and clips a cache holds")
    c.add_argument("store")
    c.set_defaults(func=cmd_cache)

    d = sub.add_parser("demo-data", help="write the synthetic, labelled demo corpus")
    d.add_argument("--out", default="demo_out/corpus")
    d.add_argument("--n-train", type=int, default=120)
    d.add_argument("--n-dev", type=int, default=40)
    d.add_argument("--n-pam", type=int, default=40)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo_data)

    m = sub.add_parser("demo", help="the whole job end to end on the built-in synthetic corpus (no downloads)",
                       description="Generate the demo corpus, extract logmel/logmel_slow frames, train the 16 "
                                   "configurations and print the summary. Re-running resumes.")
    m.add_argument("--out", default="demo_out")
    m.add_argument("--n-train", type=int, default=240)
    m.add_argument("--n-dev", type=int, default=60)
    m.add_argument("--n-pam", type=int, default=60)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--epochs", type=int, default=20)
    m.add_argument("--lr", type=float, default=1e-3,
                   help="the demo corpus is tiny, so it uses 1e-3 and 20 epochs (the paper: 1e-4, 10)")
    m.add_argument("--jobs", type=int, default=2, help="configurations trained in parallel")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=cmd_demo)

    s = sub.add_parser("score", help="challenge metrics of predictions against labels")
    try:
        from mmmos.app.scoring import add_score_arguments

        add_score_arguments(s)
    except ImportError:  # pragma: no cover
        pass
    s.set_defaults(func=cmd_score)

    w = sub.add_parser("sweep", help="train head x loss configurations from a cache")
    try:
        from mmmos import sweep

        sweep.add_arguments(w)
    except (ImportError, AttributeError):  # pragma: no cover - stage 2 not installed
        pass
    w.set_defaults(func=cmd_sweep)

    en = sub.add_parser("ensemble", help="evaluate ensemble strategies from a finished sweep (seconds, no training)",
                        description="Rank a sweep's configurations and evaluate the paper's ensemble strategies "
                                    "(submitted, all, pam-top-K, dev-top-K, pam-top-1 or --members); writes the "
                                    "Table IV layout, ensemble predictions, members and optionally an answer file.")
    from mmmos import ensemble as select_ensemble

    select_ensemble.add_arguments(en)
    en.set_defaults(func=cmd_ensemble)

    pr = sub.add_parser("predict", help="PQ/PC/CE/CU for audio files with an exported model",
                        description="Score files, folders (recursive) or a manifest with a predictor folder written by "
                                    "`mmmos ensemble RUN --export DIR`. Long audio is scored in windows whose scores "
                                    "are averaged by their share of real audio. Bad files get an error row (exit 3).")
    from mmmos.app.predictor import add_predict_arguments

    add_predict_arguments(pr)
    pr.set_defaults(func=cmd_predict)

    r = sub.add_parser("report", help="self-contained HTML report of a sweep and its ensembles")
    from mmmos.app import report

    report.add_arguments(r)
    r.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
