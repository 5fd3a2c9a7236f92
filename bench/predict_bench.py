"""`mmmos predict` benchmark: throughput (audio-seconds per second) of scoring new files with a
TriEnc (WavLM + MuQ + M2D) mlp predictor built on full-size random-initialised encoders, on this CPU,
and the share of wall time spent outside the encoder forward passes (decode, resample, log-mel for M2D,
windowing, heads, output).  The heads are random: only the cost matters here.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


def make_predictor(out: Path, weights: dict[str, str], encoders: tuple[str, ...] = ("wavlm", "muq", "m2d"),
                   name: str = "trienc-mlp-utmos") -> Path:
    """A predictor folder ``out/predictor``: one random mlp member ``name`` on ``encoders`` (full-size, ``weights``)."""
    import torch

    from mmmos import extract
    from mmmos.cache_store import identity_key
    from mmmos.core.rundir import ModelRecord, RunDir
    from mmmos.core.tasks import get_task
    from mmmos.extract.runner import _encoder_identity
    from mmmos.heads import build_head
    from mmmos.app.predict import export_predictor

    idents, keys, dim = [], [], 0
    for enc_name in encoders:
        enc = extract.load_encoder(enc_name, weights[enc_name], device="cpu")
        ident = json.loads(json.dumps({**_encoder_identity(enc, "fp32"), "dtype": "float16"}, default=str))
        idents.append(ident)
        keys.append(identity_key(ident))
        dim += enc.dim
        del enc
    torch.manual_seed(0)
    head = build_head("mlp", dim)
    task = get_task()
    RunDir(out / "run").config(name).write_model(ModelRecord(
        head_config=head.config, state_dict=head.state_dict(), z_mean=[5.0] * task.n_axes, z_std=[2.0] * task.n_axes,
        axes=list(task.axes), encoders=idents, encoder_keys=keys, crop_seconds=10.0, grid_rate=6.25, task=task.name))
    used = {k: weights[k] for k in encoders}
    return export_predictor(out / "run", [name], out / "predictor", weights=used)


def run(out: Path, seconds: float = 90.0) -> Path:
    from bench.extract_bench import make_audio, make_weights
    from mmmos.app.predict import Predictor

    work = out / "predict_work"
    weights = make_weights(out / "extract_work" / "weights")
    pdir = make_predictor(work, weights)
    rows = make_audio(work / "audio", seconds, seed=1)
    from mmmos.core.threads import apply_thread_policy

    threads = apply_thread_policy(items=len(rows), load_aware=True)  # as `mmmos predict` over these files does
    pred = Predictor.load(pdir, device="cpu")
    enc_time = {"t": 0.0}
    for enc in pred.encoders.loaded.values():  # time the forward passes only
        fwd = enc.forward_batch

        def timed(x, fwd=fwd):
            t = time.perf_counter()
            try:
                return fwd(x)
            finally:
                enc_time["t"] += time.perf_counter() - t

        enc.forward_batch = timed
    t = time.perf_counter()
    table = pred.predict_files([p for _, p in rows])
    wall = time.perf_counter() - t
    audio = float(table["duration"].sum())
    errors = int(table["error"].is_not_null().sum())
    rep = {"clips": len(rows), "audio_seconds": audio, "wall_seconds": wall, "audio_seconds_per_second": audio / wall,
           "encoder_forward_seconds": enc_time["t"], "share_outside_encoders": 1 - enc_time["t"] / wall,
           "errors": errors, "threads": threads}
    (out / "predict.json").write_text(json.dumps(rep, indent=2))
    md = out / "predict.md"
    md.write_text(f"# Predict benchmark\n\n`Predictor.predict_files` (what `mmmos predict` runs) with a TriEnc mlp "
                  f"predictor on full-size random-initialised WavLM Base+, MuQ-large and M2D, CPU, {len(rows)} files, "
                  f"{audio:.0f} s of audio (10-s stereo 44.1 kHz files and 4–30 s mono files), {threads} math "
                  f"thread(s) (the thread policy of `mmmos predict` for {len(rows)} files):\n\n"
                  f"* throughput **{audio / wall:.2f} audio-seconds per second** ({wall:.1f} s wall)\n"
                  f"* share of wall time outside the encoder forward passes (decode, resample, M2D log-mel, "
                  f"windows, heads, output): **{100 * rep['share_outside_encoders']:.1f} %**\n"
                  f"* error rows: {errors}\n")
    return md


if __name__ == "__main__":
    print(run(Path("bench_out")).read_text())
