"""Stage 2: train head x loss configurations from the frame cache (never re-running an encoder).

The 16 configurations of the paper = {BiEnc+mlp, TriEnc+mlp, TriEnc+blstm_t, TriEnc+blstm_h}
x {utmos, contrastive, dcq, ccc}; ``--ablation`` trains the 7 encoder subsets with mlp+utmos.

Run directory layout::

    <run>/run.json                      the cache (path + encoder identities) and label sets
    <run>/configs/<name>/config.json    the configuration (TrainConfig) and data counts
    <run>/configs/<name>/model.pt       head weights + z-score statistics + encoder identities
    <run>/configs/<name>/train_log.jsonl  one line per epoch (train/dev loss, timings)
    <run>/configs/<name>/predictions/<set>.parquet  clip_id, system, domain, PQ, PC, CE, CU (0-10)
    <run>/configs/<name>/metrics.parquet  set, level, axis, metric, value, n
    <run>/configs/<name>/DONE           written last: a configuration with it is skipped on resume
    <run>/summary.parquet, summary.md   the paper's Table III layout over all configurations

Each configuration is runnable alone (``train_configuration``), e.g. as one task of a
cluster scheduler, as long as it gets the same cache and label files.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

AXES = ("PQ", "PC", "CE", "CU")
PAPER_SETS = {"bienc": ("wavlm", "m2d"), "trienc": ("wavlm", "muq", "m2d")}
PAPER_HEADS = (("bienc", "mlp"), ("trienc", "mlp"), ("trienc", "blstm_t"), ("trienc", "blstm_h"))
PAPER_LOSSES = ("utmos", "contrastive", "dcq", "ccc")


@dataclass
class TrainConfig:
    name: str
    encoders: list[str]
    head: str
    loss: str
    head_cfg: dict = field(default_factory=dict)
    lr: float = 1e-4
    batch_size: int | None = None  # None: 32 for pooled heads, 16 for frame heads (the paper's)
    epochs: int = 10
    patience: int = 2  # epochs without dev-loss improvement before stopping
    crop_seconds: float = 10.0
    grid_rate: float | None = None  # common time grid for frame heads; None = slowest encoder
    seed: int = 42
    device: str = "cpu"
    threads: int | None = None
    clip_predictions: bool = True  # clamp reported scores to the 0-10 scale


def paper_configs(sets: dict[str, tuple[str, ...]] | None = None) -> list[TrainConfig]:
    sets = sets or PAPER_SETS
    return [TrainConfig(name=f"{s}-{h}-{lo}", encoders=list(sets[s]), head=h, loss=lo)
            for s, h in PAPER_HEADS for lo in PAPER_LOSSES]


def ablation_configs(encoders: tuple[str, ...] = ("wavlm", "muq", "m2d")) -> list[TrainConfig]:
    from itertools import combinations

    out = []
    for k in range(1, len(encoders) + 1):
        for sub in combinations(encoders, k):
            out.append(TrainConfig(name=f"abl-{'+'.join(sub)}-mlp-utmos", encoders=list(sub), head="mlp", loss="utmos"))
    return out


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class LabelSet:
    name: str
    path: str
    table: "object"  # polars DataFrame from mmmos.core.manifests.load_manifest


def load_labels(name: str, path: str, data_root: str | None = None) -> LabelSet:
    from mmmos.core.manifests import load_manifest

    return LabelSet(name, str(path), load_manifest(path, data_root=data_root))


def _select(labels: LabelSet, store, encoders: list[str], need_labels: bool, log: list[str]):
    """Clip ids of a label set present in every encoder group; counts what is left out."""
    import polars as pl

    groups = [store.group(e) for e in encoders]
    df = labels.table.unique(subset="clip_id", keep="first", maintain_order=True)
    if df.height < labels.table.height:
        log.append(f"{labels.name}: {labels.table.height - df.height} rows repeat an earlier clip id and are "
                   f"ignored (the first row of each id is used)")
    ids = df["clip_id"].to_list()
    in_cache = [c for c in ids if all(c in g for g in groups)]
    if len(in_cache) < len(ids):
        log.append(f"{labels.name}: {len(ids) - len(in_cache)} of {len(ids)} clips are not in the cache for "
                   f"{'+'.join(encoders)} (failed or not extracted) and are left out")
    df = df.filter(pl.col("clip_id").is_in(in_cache))
    if need_labels:
        ok = df.select(pl.all_horizontal([pl.col(a).is_not_null() & pl.col(a).is_not_nan() for a in AXES])).to_series()
        n_bad = int((~ok).sum())
        if n_bad:
            log.append(f"{labels.name}: {n_bad} clips with a missing/NaN label are excluded from training")
        df = df.filter(ok)
    return groups, df


# ---------------------------------------------------------------------------------------------
# training one configuration
# ---------------------------------------------------------------------------------------------
def _zstats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = y.mean(axis=0)
    sd = y.std(axis=0)
    return mu, np.where(sd > 1e-8, sd, 1.0)


def _batches(n: int, bs: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, bs):
        yield order[s : s + bs]


def _inputs(bank, head, idx, starts, torch):
    if head.needs_frames:
        x, lengths = bank.frame_batch(idx, starts)
        return torch.from_numpy(x), torch.from_numpy(lengths)
    return torch.from_numpy(bank.pooled(idx, starts)), None


def _predict(head, bank, bs, torch) -> np.ndarray:
    head.eval()
    out = []
    with torch.inference_mode():
        for idx in _batches(len(bank), bs, None):
            x, lengths = _inputs(bank, head, idx, None, torch)
            out.append(head(x, lengths).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 4), np.float32)


_BANKS: dict[tuple, object] = {}
_BANKS_MAX = 10  # pooled banks are small; frame banks exist for one encoder set only (~3 GB at challenge size)


def _bank(groups, clip_ids: list[str], crop: float, frames: bool, grid_rate: float | None):
    """FeatureBank memoised per process: configurations that share encoders and clips
    (e.g. the four losses of one head) read the cache once."""
    from mmmos.cache_store.features import FeatureBank

    key = (tuple(g.root for g in groups), tuple(clip_ids), crop, frames, grid_rate)
    bank = _BANKS.pop(key, None)
    if bank is None:
        bank = FeatureBank(groups, clip_ids, crop, frames, grid_rate)
    _BANKS[key] = bank  # most recent last
    while len(_BANKS) > _BANKS_MAX:
        _BANKS.pop(next(iter(_BANKS)))
    return bank


def train_configuration(cfg: TrainConfig, store_path: str, train: LabelSet, dev: LabelSet,
                        evals: list[LabelSet], out_dir: str | Path, progress: bool = True) -> dict:
    """Train one configuration and write its model, log, predictions and metrics into ``out_dir``."""
    import polars as pl
    import torch

    from mmmos.cache_store import open_store
    from mmmos.heads import build_head, head_class
    from mmmos.losses import get_loss
    from mmmos.core.metrics import evaluate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    loss_fn = get_loss(cfg.loss)
    hcls = head_class(cfg.head)
    store = open_store(store_path)
    notes: list[str] = []
    t_load = time.perf_counter()
    groups, tr = _select(train, store, cfg.encoders, True, notes)
    _, dv = _select(dev, store, cfg.encoders, True, notes)
    if tr.height < 2:
        raise RuntimeError(f"{cfg.name}: {tr.height} labelled training clips in the cache; need at least 2")
    if dv.height < 1:
        raise RuntimeError(f"{cfg.name}: no labelled dev clips in the cache")
    frames = hcls.needs_frames
    bank_tr = _bank(groups, tr["clip_id"].to_list(), cfg.crop_seconds, frames, cfg.grid_rate)
    bank_dv = _bank(groups, dv["clip_id"].to_list(), cfg.crop_seconds, frames, cfg.grid_rate)
    t_load = time.perf_counter() - t_load

    y_tr = tr.select(AXES).to_numpy().astype(np.float64)
    y_dv = dv.select(AXES).to_numpy().astype(np.float64)
    mu, sd = _zstats(y_tr)  # training-set statistics for every set
    z_tr = torch.from_numpy(((y_tr - mu) / sd).astype(np.float32))
    z_dv = torch.from_numpy(((y_dv - mu) / sd).astype(np.float32))

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    head = build_head(cfg.head, bank_tr.dim, **cfg.head_cfg)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    bs = cfg.batch_size or (16 if frames else 32)

    log_path = out_dir / "train_log.jsonl"
    log_f = open(log_path, "w")
    for n in notes:
        log_f.write(json.dumps({"note": n}) + "\n")
    best, best_state, bad_epochs = math.inf, None, 0
    t_data = t_step = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc=cfg.name, unit="epoch", file=sys.stderr, leave=False, dynamic_ncols=True)
    epochs_run = 0
    for epoch in range(cfg.epochs):
        head.train()
        losses = []
        for idx in _batches(len(bank_tr), bs, rng):
            t = time.perf_counter()
            starts = bank_tr.random_starts(idx, rng)  # one random crop per clip per epoch
            x, lengths = _inputs(bank_tr, head, idx, starts, torch)
            target = z_tr[idx]
            t_data += time.perf_counter() - t
            t = time.perf_counter()
            loss = loss_fn(head(x, lengths), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t_step += time.perf_counter() - t
            losses.append(loss.item())
        # dev loss: deterministic batches over whole clips
        t = time.perf_counter()
        p_dv = torch.from_numpy(_predict(head, bank_dv, bs, torch))
        dev_losses = [float(loss_fn(p_dv[i], z_dv[i])) for i in _batches(len(bank_dv), bs, None)]
        dev_loss = float(np.mean(dev_losses))
        t_step += time.perf_counter() - t
        epochs_run = epoch + 1
        improved = dev_loss < best - 1e-6
        if improved:
            best, bad_epochs = dev_loss, 0
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            bad_epochs += 1
        log_f.write(json.dumps({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "dev_loss": dev_loss,
                                "best": improved, "t_data": t_data, "t_step": t_step}) + "\n")
        log_f.flush()
        if bar is not None:
            bar.set_postfix_str(f"dev {dev_loss:.4f}")
            bar.update(1)
        if bad_epochs >= cfg.patience:
            break
    if bar is not None:
        bar.close()
    head.load_state_dict(best_state)

    # predictions and metrics for every evaluation set (dev first), on 0-10
    pred_dir = out_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    tables = []
    for ls in [dev, *evals]:
        _, df = _select(ls, store, cfg.encoders, False, notes)
        bank = _bank(groups, df["clip_id"].to_list(), cfg.crop_seconds, frames, cfg.grid_rate)
        z = _predict(head, bank, bs, torch).astype(np.float64)
        y = z * sd + mu
        if cfg.clip_predictions:
            y = np.clip(y, 0.0, 10.0)
        pred = pl.DataFrame({"clip_id": bank.clip_ids, "system": df["system"], "domain": df["domain"],
                             **{a: y[:, k] for k, a in enumerate(AXES)}})
        pred.write_parquet(pred_dir / f"{ls.name}.parquet")
        ev = evaluate(pred, df, set_name=ls.name)
        for line in ev.summary_lines():
            log_f.write(json.dumps({"note": line}) + "\n")
        tables.append(ev.table)
    log_f.close()
    metrics = pl.concat(tables)
    metrics.write_parquet(out_dir / "metrics.parquet")
    torch.save({"head_config": head.config, "state_dict": head.state_dict(), "z_mean": mu.tolist(),
                "z_std": sd.tolist(), "axes": list(AXES), "encoders": [g.info.identity for g in groups],
                "encoder_keys": [g.info.key for g in groups], "crop_seconds": cfg.crop_seconds,
                "grid_rate": bank_tr.grid_rate, "features": "per-encoder mean -> L2 -> concat"},
               out_dir / "model.pt")
    result = {"config": asdict(cfg), "n_train": tr.height, "n_dev": dv.height, "epochs_run": epochs_run,
              "best_dev_loss": best, "t_load": t_load, "t_data": t_data, "t_step": t_step, "notes": notes,
              "head_params": head.n_params()}
    (out_dir / "config.json").write_text(json.dumps(result, indent=2, default=str))
    (out_dir / "DONE").write_text("ok\n")
    return result


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
def _run_identity(store_path: str, encoders: set[str], labels: list[LabelSet]) -> dict:
    from mmmos.cache_store import open_store

    st = open_store(store_path)
    return {"store": str(Path(store_path).resolve()),
            "encoders": {e: st.find(e).key for e in sorted(encoders)},
            "labels": {ls.name: str(Path(ls.path).resolve()) for ls in labels}}


def check_run_dir(run: Path, ident: dict, force: bool = False) -> None:
    f = run / "run.json"
    if f.is_file() and not force:
        old = json.loads(f.read_text())
        if old.get("encoders") != ident["encoders"] or old.get("store") != ident["store"]:
            raise SystemExit(f"{run} was trained from a different cache ({old.get('store')}: {old.get('encoders')}; "
                             f"now {ident['store']}: {ident['encoders']}); use a new --run folder "
                             f"(or --force to retrain everything there)")
    run.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(ident, indent=2))


_RUNTIME_ONLY = ("threads", "device")  # do not change what is learned


def _same_config(d: Path, c: TrainConfig) -> bool:
    try:
        old = json.loads((d / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return False
    new = json.loads(json.dumps(asdict(c), default=str))
    return {k: v for k, v in old.items() if k not in _RUNTIME_ONLY} == \
        {k: v for k, v in new.items() if k not in _RUNTIME_ONLY}


def _worker(args):
    cfg, store, train, dev, evals, out, progress = args
    try:
        return cfg.name, train_configuration(cfg, store, train, dev, evals, out, progress), None
    except Exception as e:  # noqa: BLE001 - reported in the summary, other configs go on
        import traceback

        return cfg.name, None, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


def run_sweep(configs: list[TrainConfig], store: str, run: str | Path, train: LabelSet, dev: LabelSet,
              evals: list[LabelSet], jobs: int = 1, force: bool = False, progress: bool = True) -> dict:
    """Train every configuration not already DONE in ``run``; returns {name: result or error}."""
    from mmmos.cache_store import open_store

    run = Path(run)
    st = open_store(store)
    needed = {e for c in configs for e in c.encoders}
    have = {i.name for i in st.encoders()}
    missing = sorted(needed - have)
    if missing:
        from mmmos.cache_store import CacheError

        users = sorted(c.name for c in configs if set(c.encoders) & set(missing))
        raise CacheError(f"{store} has no frames of {', '.join(missing)} (it holds: {', '.join(sorted(have)) or 'none'}),"
                         f" needed by {', '.join(users[:4])}{' …' if len(users) > 4 else ''}. Extract them first: "
                         f"`mmmos extract --encoders {','.join(missing)} --weights NAME=PATH --store {store} "
                         f"--manifest …` (or pick other encoders with --sets)")
    for e in sorted(needed):
        st.find(e)  # several identities of one name: raises
    ident = _run_identity(store, needed, [train, dev, *evals])
    check_run_dir(run, ident, force)
    names = {}
    for c in configs:
        if c.name in names:
            raise SystemExit(f"duplicate configuration name {c.name}")
        names[c.name] = c
    todo, results = [], {}
    for c in configs:
        d = run / "configs" / c.name
        if (d / "DONE").is_file() and not force:
            if _same_config(d, c):
                results[c.name] = {"skipped": True}
                continue
            print(f"  {c.name}: settings changed since it was trained; training it again", file=sys.stderr)
            (d / "DONE").unlink()
        todo.append(c)
    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 2) // jobs)
        for c in todo:
            c.threads = c.threads or threads
        ctx = mp.get_context("spawn")
        with ctx.Pool(jobs) as pool:
            # heaviest first (frame heads, then BLSTMs) so no worker is left with a long tail; each worker
            # memoises the features it has read, so configurations sharing encoders read the cache once per worker
            cost = {"blstm_t": 0, "blstm_h": 1}
            todo = sorted(todo, key=lambda c: cost.get(c.head, 2))
            it = pool.imap_unordered(_worker, [(c, store, train, dev, evals, run / "configs" / c.name, False)
                                               for c in todo])
            for name, res, err in it:
                results[name] = res if err is None else {"error": err}
                print(f"  {name}: {'done' if err is None else 'FAILED ' + err.splitlines()[0]}", file=sys.stderr)
    else:
        for c in todo:
            name, res, err = _worker((c, store, train, dev, evals, run / "configs" / c.name, progress))
            results[name] = res if err is None else {"error": err}
            if err:
                print(f"  {name}: FAILED {err}", file=sys.stderr)
    write_summary(run, [c.name for c in configs])
    return results


def write_summary(run: Path, names: list[str] | None = None):
    """Table III layout: one row per configuration; per set the composite utterance-level
    MSE/LCC/SRCC/KTAU and the system-level SRCC."""
    import polars as pl

    rows = []
    cdir = run / "configs"
    names = names or sorted(p.name for p in cdir.iterdir() if (p / "DONE").is_file())
    for n in names:
        d = cdir / n
        if not (d / "DONE").is_file():
            continue
        cfg = json.loads((d / "config.json").read_text())["config"]
        m = pl.read_parquet(d / "metrics.parquet").filter(pl.col("axis") == "composite")
        row = {"config": n, "encoders": "+".join(cfg["encoders"]), "head": cfg["head"], "loss": cfg["loss"]}
        for s in m["set"].unique(maintain_order=True).to_list():
            ms = m.filter(pl.col("set") == s)
            for metric in ("MSE", "LCC", "SRCC", "KTAU"):
                v = ms.filter((pl.col("level") == "utterance") & (pl.col("metric") == metric))["value"]
                row[f"{s}/utt_{metric}"] = float(v[0]) if len(v) else None
            v = ms.filter((pl.col("level") == "system") & (pl.col("metric") == "SRCC"))["value"]
            row[f"{s}/sys_SRCC"] = float(v[0]) if len(v) else None
        rows.append(row)
    if not rows:
        return None
    df = pl.DataFrame(rows)
    df.write_parquet(run / "summary.parquet")
    (run / "summary.md").write_text(summary_markdown(df))
    return df


def summary_markdown(df) -> str:
    cols = df.columns
    head = "| " + " | ".join(cols) + " |"
    sep = "|" + "|".join("---" if i < 4 else "---:" for i in range(len(cols))) + "|"
    lines = [head, sep]
    for r in df.iter_rows():
        lines.append("| " + " | ".join(
            (f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else ("n/a" if v is None or isinstance(v, float) else str(v)))
            for v in r) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _parse_sets(s: str | None) -> dict[str, tuple[str, ...]]:
    if not s:
        return dict(PAPER_SETS)
    out = {}
    for part in s.split(","):
        k, v = part.split("=")
        out[k.strip()] = tuple(x for x in v.split("+") if x)
    missing = {"bienc", "trienc"} - set(out)
    if missing:
        raise SystemExit(f"--sets must define bienc and trienc (missing {', '.join(sorted(missing))})")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="the frame cache written by `mmmos extract`")
    p.add_argument("--run", required=True, help="output folder (resumable: finished configurations are skipped)")
    p.add_argument("--train", required=True, help="training manifest (labels)")
    p.add_argument("--dev", required=True, help="dev manifest: early stopping and the first evaluation set")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=PATH",
                   help="further evaluation sets, e.g. pam_dev=combined_pam_dev.csv (repeatable)")
    p.add_argument("--data-root", help="replaces /your_path/ in Track 2 lists")
    p.add_argument("--sets", help="encoder sets as bienc=a+b,trienc=a+b+c (default bienc=wavlm+m2d,"
                                  "trienc=wavlm+muq+m2d)")
    p.add_argument("--ablation", action="store_true", help="train the 7 encoder subsets with mlp+utmos instead")
    p.add_argument("--only", help="comma-separated configuration names to train (e.g. trienc-mlp-utmos)")
    p.add_argument("--heads", help="comma-separated subset of heads (mlp,blstm_h,blstm_t)")
    p.add_argument("--losses", help="comma-separated subset of losses (utmos,contrastive,dcq,ccc)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--patience", type=int, default=2, help="epochs without dev-loss improvement before stopping")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--crop", type=float, default=10.0, help="training crop length in seconds")
    p.add_argument("--jobs", type=int, default=1, help="configurations trained in parallel processes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (heads are small; cpu is the default)")
    p.add_argument("--force", action="store_true", help="retrain finished configurations")
    p.add_argument("--no-progress", action="store_true")


def configs_from_args(a) -> list[TrainConfig]:
    from mmmos.heads import HEADS
    from mmmos.losses import LOSSES

    if a.ablation:
        sets = _parse_sets(a.sets)
        cfgs = ablation_configs(tuple(sets["trienc"]))
    else:
        cfgs = paper_configs(_parse_sets(a.sets))
    for attr, given, valid in (("head", a.heads, HEADS), ("loss", a.losses, LOSSES)):
        if given:
            wanted = given.split(",")
            bad = [w for w in wanted if w not in valid]
            if bad:
                raise SystemExit(f"unknown {attr}(s) {', '.join(bad)}; valid: {', '.join(valid)}")
            cfgs = [c for c in cfgs if getattr(c, attr) in wanted]
    if a.only:
        want = a.only.split(",")
        names = {c.name for c in cfgs}
        bad = [w for w in want if w not in names]
        if bad:
            raise SystemExit(f"unknown configuration(s) {', '.join(bad)}; valid: {', '.join(sorted(names))}")
        cfgs = [c for c in cfgs if c.name in want]
    for c in cfgs:
        c.epochs, c.patience, c.lr, c.seed, c.crop_seconds, c.device = a.epochs, a.patience, a.lr, a.seed, a.crop, a.device
    return cfgs


def run_cli(a) -> int:
    cfgs = configs_from_args(a)
    train = load_labels("train", a.train, a.data_root)
    dev = load_labels("dev", a.dev, a.data_root)
    evals = []
    for item in a.eval:
        if "=" not in item:
            raise SystemExit(f"--eval expects NAME=PATH, got {item!r}")
        k, v = item.split("=", 1)
        evals.append(load_labels(k, v, a.data_root))
    t = time.perf_counter()
    res = run_sweep(cfgs, a.store, a.run, train, dev, evals, jobs=a.jobs, force=a.force, progress=not a.no_progress)
    failed = [n for n, r in res.items() if r and "error" in r]
    skipped = [n for n, r in res.items() if r and r.get("skipped")]
    print(f"sweep: {len(res) - len(failed) - len(skipped)} trained, {len(skipped)} already done, {len(failed)} failed "
          f"in {time.perf_counter() - t:.1f} s -> {a.run}")
    summ = Path(a.run) / "summary.md"
    if summ.is_file():
        print(summ.read_text())
    return 1 if failed else 0


