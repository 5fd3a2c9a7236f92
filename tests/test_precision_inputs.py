"""Reduced precision never turns valid audio into non-finite or degraded frames.

Band-limited, near-silent, silent, DC, clipped and full-band clips go through every encoder (tiny real
architectures, random weights) in every precision it has; frames must be finite and close to fp32.  The
front ends (spectrogram, normalisation, the convs that read them) must compute in fp32 inside the reduced
region.  The contrast case reproduces the bug the cast-once design removes: autocast over the whole MuQ
forward turns a 16-kHz clip resampled to 24 kHz into non-finite frames.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmmos.core.audio import resample
from mmmos.extract import precision as P

COS_MIN = 0.999  # frame cosine to fp32, worst frame


def _encoders():
    from mmmos.testing import m2d, muq, wavlm

    return {"wavlm": lambda: wavlm.random_encoder("tiny", seed=3),
            "muq": lambda: muq.random_encoder("tiny", seed=3),
            "m2d": lambda: m2d.random_encoder("tiny", seed=3, input_frames=608)}


def _clip(kind: str, sr: int, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(11)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    if kind == "full_band":
        return (0.3 * rng.standard_normal(n)).astype(np.float32)
    if kind == "band_limited":  # recorded at a third of the rate (16 kHz speech for MuQ's 24 kHz): empty top bands
        lo = sr // 3
        m = int(lo * seconds)
        tl = np.arange(m) / lo
        x = 0.3 * np.sin(2 * np.pi * 300 * tl) + 0.05 * rng.standard_normal(m)
        return resample(x.astype(np.float32), lo, sr)[:n]
    if kind == "near_silent":
        return (1e-5 * rng.standard_normal(n)).astype(np.float32)
    if kind == "silent":
        return np.zeros(n, np.float32)
    if kind == "dc":
        return np.full(n, 0.25, np.float32)
    if kind == "clipped":
        return np.clip(4.0 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(n), -1, 1).astype(np.float32)
    raise ValueError(kind)


KINDS = ("full_band", "band_limited", "near_silent", "silent", "dc", "clipped")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(na * nb, 1e-30)


@pytest.fixture(scope="module")
def models():
    """Per encoder: one fp32 model and one prepared in each reduced precision (weights cast once)."""
    out = {}
    for name, make in _encoders().items():
        ref = make()
        out[name] = {"fp32": ref}
        for p in ref.reduced_precisions:
            enc = make()
            P.prepare_encoder(enc, p)
            out[name][p] = enc
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["wavlm", "muq", "m2d"])
def test_every_precision_gives_finite_frames_close_to_fp32(models, name, kind):
    encs = models[name]
    ref = encs["fp32"]
    assert set(encs) == {"fp32", "bf16", "fp16"}  # every encoder has both reduced paths
    wave = _clip(kind, ref.sample_rate)
    want = ref.embed(wave)
    assert np.isfinite(want).all()
    for precision, enc in encs.items():
        got = np.concatenate([P._forward(enc, c[None], precision)[0] for c in enc.split(wave)])
        assert got.shape == want.shape
        assert np.isfinite(got).all(), (name, kind, precision)
        c = _cos(got, want)
        assert c.min() >= COS_MIN, (name, kind, precision, float(c.min()))


def _front_ends(name: str, enc, precision: str) -> tuple[list, torch.nn.Module]:
    """(modules that must compute in fp32, the first module of the reduced region).  The spectrogram,
    normalisation and the layers reading raw samples or the normalised mel stay fp32 in every precision; in
    fp16 (narrow range) the whole conv front end stays fp32 too."""
    if name == "wavlm":
        m = enc.model
        if precision == "bf16":
            return [m.feature_extractor.conv_layers[0]], m.feature_extractor.conv_layers[1]
        return [m.feature_extractor, m.feature_projection], m.encoder.layers[0]
    if name == "muq":
        mm = enc.model.model
        b0 = mm.conv.conv[0]
        if precision == "bf16":
            return [b0.conv1, b0.bn1, b0.conv3, b0.bn3], b0.conv2
        return [mm.conv], mm.conformer.layers[0]
    return [enc.model.patch_embed.proj], enc.model.blocks[0]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", ["wavlm", "muq", "m2d"])
def test_front_ends_stay_fp32_inside_the_reduced_region(name, precision):
    enc = _encoders()[name]()
    fronts, first = _front_ends(name, enc, precision)
    seen: dict[str, list] = {"front_in": [], "front_out": [], "front_params": [], "block_in": []}

    def front_pre(mod, args):
        seen["front_in"] += [a.dtype for a in args if isinstance(a, torch.Tensor)]
        seen["front_params"] += [p.dtype for p in mod.parameters()]

    def front_post(mod, args, out):  # registered before the cast at the boundary: sees the module's own output
        outs = out if isinstance(out, tuple) else (out,)
        seen["front_out"] += [o.dtype for o in outs if isinstance(o, torch.Tensor)]

    for f in fronts:
        f.register_forward_pre_hook(front_pre)
        f.register_forward_hook(front_post)
    first.register_forward_pre_hook(lambda mod, args: seen["block_in"].append(
        next(a for a in args if isinstance(a, torch.Tensor)).dtype))
    wave = _clip("band_limited", enc.sample_rate)
    P._forward(enc, enc.split(wave)[0][None], precision)
    fp32 = {torch.float32}
    assert set(seen["front_in"]) == fp32 and set(seen["front_out"]) == fp32
    assert set(seen["front_params"]) == fp32
    assert seen["block_in"] == [P.torch_dtype(precision)]  # and the transformer really runs reduced


def test_muq_autocast_over_the_front_end_breaks_band_limited_audio_and_cast_once_does_not():
    """The failure the design avoids, on this machine's CPU: fp16 autocast over MuQ's whole forward (as the
    old CUDA path did) makes a 16-kHz clip resampled to 24 kHz non-finite; the cast-once fp16 path keeps it
    finite and close to fp32."""
    from mmmos.testing import muq

    enc = muq.random_encoder("tiny", seed=5)
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 4) / 16000
    w16 = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    x = resample(w16, 16000, 24000)[None]
    ref = enc.forward_batch(x)
    with torch.autocast("cpu", dtype=torch.float16):
        old = enc.forward_batch(x)
    assert not np.isfinite(old).all()
    new = P._forward(enc, x, "fp16")
    assert np.isfinite(new).all()
    assert _cos(new[0], ref[0]).min() >= COS_MIN
