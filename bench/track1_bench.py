"""Track 1 training cost on this CPU: the dual-branch head from cached frames vs MuQ + RoBERTa in the loop.

Shapes are Track 1's: 30-s clips of MuQ-large frames (1024-d at 25 Hz = 750 frames), prompts of ~40 RoBERTa
tokens (768-d), the full-size head (d 1024, FF 2048, TA 768). A synthetic cache of ``--sample`` clips with
those shapes is written and read back through the trainer's own bank (:mod:`mmmos.sweep.track1.bank`); the
time of a training step does not depend on how many clips the cache holds, so seconds per clip are measured
on the sample and an epoch is extrapolated to the challenge's 2,500 training + 250 dev clips (training
steps on random 30-s crops + dev prediction, per architecture of the recipe). The 8-run recipe is then
4 x Gaussian-KL + one-hot KL + CORAL (the same network; CORAL's outputs differ) + decoupled + decoupled-LSTM.

"Public way": the public code runs frozen MuQ-large and RoBERTa-base on every clip of every step. Their cost
per clip is measured on full-size random-initialised encoders (``mmmos.testing.muq``; ``RobertaModel`` from
``RobertaConfig()``) on one 30-s clip and a batch of 40-token prompts, and added to the head's cost per clip
for the ratio (cached / in the loop). Timings are medians of ``--reps`` repetitions on a shared machine.

    python -m bench.track1_bench --out DIR [--sample 16] [--timing-batch 8] [--reps 2] [--small] [--device cuda]
                                 [--no-encoder-cost]

``--small`` shrinks everything (tiny shapes, no full-size encoders) for a smoke run.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

N_TRAIN, N_DEV = 2500, 250
FULL = {"rate": 25.0, "audio_dim": 1024, "text_dim": 768, "tokens": 40, "seconds": 30.0}
SMALL = {"rate": 5.0, "audio_dim": 32, "text_dim": 16, "tokens": 10, "seconds": 6.0}
ARCHS = {"gaussian": ("kl_gaussian", {"output": "distribution"}),
         "coral": ("coral", {"output": "coral"}),
         "decoupled": ("kl_gaussian", {"output": "distribution", "decoupled": True}),
         "decoupled-lstm": ("kl_gaussian", {"output": "distribution", "decoupled": True, "lstm_head": True})}
RECIPE_COUNT = {"gaussian": 5, "coral": 1, "decoupled": 1, "decoupled-lstm": 1}  # one-hot costs what Gaussian does


def _ident(name, rate, dim):
    return {"name": name, "weights": None, "sha256": None, "sample_rate": 24000, "frame_rate": rate, "dim": dim,
            "config": {"synthetic": True, "bench": "track1"}, "code_version": "1"}


def write_cache(root: Path, n: int, shape: dict):
    """A cache of ``n`` clips (``shape`` frames) and their prompts; returns (store path, LabelSet)."""
    import polars as pl

    from mmmos.cache_store import open_store
    from mmmos.core.prompts import prompt_key
    from mmmos.core.tasks import get_task
    from mmmos.sweep.labels import LabelSet

    task = get_task("track1")
    rng = np.random.default_rng(0)
    store = open_store(root / "cache.zarr", create=True)
    t = int(shape["seconds"] * shape["rate"])
    rows = []
    with store.writer(_ident("text", 0.0, shape["text_dim"])) as wt, \
            store.writer(_ident("audio", shape["rate"], shape["audio_dim"])) as wa:
        for i in range(n):
            cid, prompt = f"audiomos2025-track1-S{i % 8:03d}_P{i:03d}", f"bench prompt {i}"
            wa.write(cid, rng.standard_normal((t, shape["audio_dim"])).astype(np.float32), None, shape["seconds"])
            wt.write(prompt_key(prompt), rng.standard_normal((shape["tokens"], shape["text_dim"])).astype(np.float32),
                     None, 0.0)
            rows.append({"clip_id": cid, "path": None, "system": f"S{i % 8:03d}", "domain": "music",
                         "prompt": prompt, **{a: float(rng.uniform(task.lo, task.hi)) for a in task.axes}})
    return root / "cache.zarr", LabelSet("bench", "bench.csv", pl.DataFrame(rows), "bench")


def time_head(arch: str, bank, y, batch: int, reps: int, small: bool, device: str = "cpu") -> dict:
    """Seconds per clip of a training step (random crops, forward + backward + AdamW) and of dev prediction."""
    import torch

    from mmmos.heads import build_head
    from mmmos.losses import get_loss
    from mmmos.sweep.track1.predict import predict_logits

    loss_name, head_cfg = ARCHS[arch]
    extra = {"ta_dim": 32, "ff_dim": 64, "mi_hidden": [32, 16], "ta_hidden": [32, 16]} if small else {}
    torch.manual_seed(0)
    head = build_head("dual_branch", bank.audio_dim, n_axes=2, text_dim=bank.text_dim, **head_cfg, **extra).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=5e-5)
    loss_fn, rng = get_loss(loss_name), np.random.default_rng(0)
    yt = torch.from_numpy(y.astype(np.float32)).to(device)

    def sync():  # CUDA runs asynchronously: a step's time is only known once it has finished
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
    idx = np.arange(min(batch, len(bank)))

    def step():
        head.train()
        loss = loss_fn(head(*bank.batch(bank.random_windows(idx, rng), torch, device)), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    sync()
    train = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        sync()
        train.append((time.perf_counter() - t) / len(idx))
    t = time.perf_counter()
    predict_logits(head, bank, 16, torch, device)
    sync()
    dev = (time.perf_counter() - t) / len(bank)
    return {"arch": arch, "train_s_per_clip": statistics.median(train), "dev_s_per_clip": dev,
            "params": int(sum(p.numel() for p in head.parameters()))}


def time_encoders(shape: dict, reps: int) -> dict:
    """Seconds per clip of frozen MuQ-large on a 30-s clip and RoBERTa-base on 40-token prompts (fp32)."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    from mmmos.extract.precision import _forward
    from mmmos.testing import muq

    enc = muq.random_encoder("full", seed=0)
    wave = (0.1 * np.random.default_rng(0).standard_normal(int(enc.sample_rate * shape["seconds"]))).astype(np.float32)
    chunks = enc.split(wave)
    times = []
    for _ in range(reps + 1):  # the first is a warm-up
        t = time.perf_counter()
        for c in chunks:
            _forward(enc, c[None], "fp32")
        times.append(time.perf_counter() - t)
    muq_s = statistics.median(times[1:])
    del enc
    rob = RobertaModel(RobertaConfig(), add_pooling_layer=False).eval()
    ids = torch.randint(3, 50000, (8, shape["tokens"]))
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for _ in range(reps + 1):
            t = time.perf_counter()
            rob(input_ids=ids, attention_mask=mask)
            times.append((time.perf_counter() - t) / len(ids))
    return {"muq_s_per_clip": muq_s, "roberta_s_per_prompt": statistics.median(times[1:])}


def extrapolate(heads: list[dict], enc: dict | None) -> dict:
    """Seconds per epoch per architecture at 2,500 + 250 clips, the 8-run recipe per epoch, and the ratio."""
    steps = math.ceil(N_TRAIN / 32)
    out = {"n_train": N_TRAIN, "n_dev": N_DEV, "steps_per_epoch": steps, "archs": {}}
    recipe_epoch = recipe_public = 0.0
    for h in heads:
        cached = h["train_s_per_clip"] * N_TRAIN + h["dev_s_per_clip"] * N_DEV
        row = {"cached_s_per_epoch": cached}
        if enc:
            per_clip = enc["muq_s_per_clip"] + enc["roberta_s_per_prompt"]
            row["public_s_per_epoch"] = cached + per_clip * (N_TRAIN + N_DEV)
            row["public_over_cached"] = row["public_s_per_epoch"] / cached
            recipe_public += RECIPE_COUNT[h["arch"]] * row["public_s_per_epoch"]
        recipe_epoch += RECIPE_COUNT[h["arch"]] * cached
        out["archs"][h["arch"]] = row
    out["recipe_cached_s_per_epoch"] = recipe_epoch
    out["recipe_cached_h_100_epochs"] = recipe_epoch * 100 / 3600
    if enc:
        out["recipe_public_s_per_epoch"] = recipe_public
        out["recipe_public_h_100_epochs"] = recipe_public * 100 / 3600
        out["recipe_public_over_cached"] = recipe_public / recipe_epoch
    return out


def markdown(res: dict) -> str:
    ex = res["extrapolated"]
    lines = [f"# Track 1 training cost ({'small smoke shapes' if res['small'] else 'Track 1 shapes'})", "",
             f"Measured on {res['sample']} cached clips (timing batch {res['timing_batch']}, {res['reps']} reps, "
             f"{res['threads']} torch threads, heads on {res.get('device', 'cpu')}); epochs extrapolated to {ex['n_train']} train + {ex['n_dev']} dev clips.",
             "", "| architecture | params | train s/clip | dev s/clip | cached s/epoch | public s/epoch | public/cached |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for h in res["heads"]:
        row = ex["archs"][h["arch"]]
        lines.append(f"| {h['arch']} | {h['params']:,} | {h['train_s_per_clip']:.3f} | {h['dev_s_per_clip']:.3f} | "
                     f"{row['cached_s_per_epoch']:.0f} | {row.get('public_s_per_epoch', float('nan')):.0f} | "
                     f"{row.get('public_over_cached', float('nan')):.2f} |")
    lines += ["", f"8-run recipe, cached frames: {ex['recipe_cached_s_per_epoch']:.0f} s per epoch of all 8 runs, "
                  f"{ex['recipe_cached_h_100_epochs']:.1f} h for 100 epochs (early stopping usually ends sooner)."]
    if res.get("encoders"):
        e = res["encoders"]
        lines += [f"Public way (MuQ-large {e['muq_s_per_clip']:.2f} s per 30-s clip + RoBERTa-base "
                  f"{e['roberta_s_per_prompt']:.3f} s per prompt, every clip of every epoch): "
                  f"{ex['recipe_public_s_per_epoch']:.0f} s per recipe epoch, {ex['recipe_public_h_100_epochs']:.1f} h "
                  f"for 100 epochs = {ex['recipe_public_over_cached']:.2f}x the cached cost."]
    return "\n".join(lines) + "\n"


def run(out: Path, sample: int, batch: int, reps: int, small: bool, device: str = "cpu", encoders: bool = True) -> Path:
    import torch

    from mmmos.core.tasks import get_task
    from mmmos.sweep.track1.bank import load_bank
    from mmmos.sweep.track1.recipe import Track1Config

    shape = SMALL if small else FULL
    with tempfile.TemporaryDirectory() as tmp:
        store_path, ls = write_cache(Path(tmp), sample, shape)
        from mmmos.cache_store import open_store

        cfg = Track1Config("bench", ["audio", "text"], crop_seconds=30.0)
        df, bank = load_bank(ls, open_store(store_path), cfg, get_task("track1"), True, [])
        y = df.select(get_task("track1").axes).to_numpy()
        heads = [time_head(a, bank, y, batch, reps, small, device) for a in ARCHS]
    enc = None if small or not encoders else time_encoders(shape, reps)
    res = {"small": small, "sample": sample, "timing_batch": batch, "reps": reps, "threads": torch.get_num_threads(),
           "device": device,
           "shape": shape, "heads": heads, "encoders": enc}
    res["extrapolated"] = extrapolate(heads, enc)
    out.mkdir(parents=True, exist_ok=True)
    (out / "track1.json").write_text(json.dumps(res, indent=2))
    (out / "track1.md").write_text(markdown(res))
    return out / "track1.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for track1.json and track1.md")
    ap.add_argument("--sample", type=int, default=16, help="clips in the synthetic cache (default 16)")
    ap.add_argument("--timing-batch", type=int, default=8, help="clips per timed training step (default 8)")
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions (default 2)")
    ap.add_argument("--small", action="store_true", help="tiny shapes, no encoders: a quick smoke run only")
    ap.add_argument("--device", default="cpu", help="where the heads train and predict (cpu, cuda)")
    ap.add_argument("--no-encoder-cost", action="store_true",
                    help="skip timing MuQ + RoBERTa in the loop (the public way's ratio)")
    a = ap.parse_args(argv)
    if a.sample < 1 or a.timing_batch < 1 or a.reps < 1:
        ap.error("--sample, --timing-batch and --reps must be >= 1")
    print(run(Path(a.out), a.sample, a.timing_batch, a.reps, a.small, a.device, not a.no_encoder_cost).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
