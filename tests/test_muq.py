"""MuQ encoder: strict loading of the release layout, frame geometry, chunking, frozen behaviour.

The model is a tiny random MuQ (conformer width 32, 2 layers) with the real mel
front end and strides, so frames stay at 25 Hz.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import socket

import numpy as np
import pytest
import torch

from mmmos import extract
from mmmos.extract import EncoderLoadError
from mmmos.extract.muq_encoder import chunk_plan
from mmmos.testing.muq import write_random_checkpoint

SR = 24000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("muq") / "tiny", size="tiny", seed=3)


@pytest.fixture(scope="module")
def enc(ckpt):
    return extract.load_encoder("muq", ckpt, device="cpu")


def noise(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_release_layout_loads_and_gives_25hz_frames(ckpt, enc):
    from safetensors.torch import load_file

    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["hop_length"] == 240 and cfg["label_rate"] == 25 and cfg["features"] == ["melspec_2048"]
    assert "id2label" not in cfg["w2v2_config"] and cfg["w2v2_config"]["position_embeddings_type"] == "rotary"
    keys = set(load_file(str(ckpt / "model.safetensors")))
    assert "model.conformer.layers.1.self_attn.linear_q.weight" in keys and "model.conv.linear.weight" in keys
    assert (enc.sample_rate, enc.frame_rate, enc.dim) == (24000, 25.0, 32)
    out = enc.embed(noise(10 * SR))
    assert out.shape == (250, 32) and out.dtype == np.float32 and np.isfinite(out).all()
    # the final LayerNorm (gain ~1, bias ~0) leaves each frame near zero mean, unit variance
    assert np.abs(out.mean(1)).max() < 0.5 and 0.5 < out.std(1).mean() < 1.5


def test_frame_count_and_shortest_input(enc):
    # hand-worked: n // 240 mel frames (MuQ drops the last STFT frame), 4 per output frame
    cases = {1025: 1, 1199: 1, 1200: 2, 2000: 2, 24000: 25, 239999: 250, 240000: 250, 240500: 251}
    for n, want in cases.items():
        assert enc.expected_frames(n) == want == math.ceil((n // 240) / 4)
    for n in (1025, 1200, 2000, 240500):
        assert enc.embed(noise(n)).shape[0] == cases[n]
    assert enc.min_samples() == 1025 and enc.expected_frames(1024) == 0
    with pytest.raises(ValueError, match="1025 samples"):
        enc.embed(noise(1024))


def test_missing_or_misshaped_weights_are_errors(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    d = tmp_path / "cut"
    shutil.copytree(ckpt, d)
    sd = load_file(str(d / "model.safetensors"))
    full = dict(sd)
    del sd["model.conformer.layers.1.ffn2.output_dense.weight"]
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(EncoderLoadError, match="missing keys.*model.conformer.layers.1.ffn2.output_dense.weight") as ei:
        extract.load_encoder("muq", d, device="cpu")
    assert str(d / "model.safetensors") in str(ei.value)

    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["w2v2_config"]["intermediate_size"] = 48
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(full, str(d / "model.safetensors"))
    with pytest.raises(EncoderLoadError, match="shape mismatches"):
        extract.load_encoder("muq", d, device="cpu")

    # a WavLM checkpoint is not a MuQ checkpoint
    from mmmos.testing.wavlm import write_random_checkpoint as wavlm_ckpt

    w = wavlm_ckpt(tmp_path / "wavlm", fmt="hf-safetensors")
    with pytest.raises(EncoderLoadError, match="not a MuQ config"):
        extract.load_encoder("muq", w, device="cpu")
    cfg = json.loads((ckpt / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(dict(cfg, use_encodec_target=True)))
    with pytest.raises(EncoderLoadError, match="use_encodec_target"):
        extract.load_encoder("muq", d, device="cpu")


def test_training_only_target_buffers_may_be_absent(ckpt, enc, tmp_path):
    from safetensors.torch import load_file, save_file

    d = tmp_path / "no_targets"
    shutil.copytree(ckpt, d)
    sd = load_file(str(d / "model.safetensors"))
    sd = {k: v for k, v in sd.items() if not k.startswith("model.quantizer_")}
    save_file(sd, str(d / "model.safetensors"))
    e = extract.load_encoder("muq", d, device="cpu")
    assert e.config["absent_training_only_keys"] == 2
    wave = noise(2 * SR, seed=4)
    np.testing.assert_array_equal(e.embed(wave), enc.embed(wave))
    assert e.identity_key() != enc.identity_key()


def test_float16_input_is_cast_to_float32(enc):
    w16 = noise(3 * SR, seed=6).astype(np.float16)
    a = enc.embed(w16)
    b = enc.embed(w16.astype(np.float32))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    c = enc.forward_batch(w16[None])
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c[0], b)


def test_chunk_plan_tiles_exactly():
    """Pure arithmetic over many lengths with a small chunk (9600 samples = 10 tokens)."""
    hop, token, chunk = 240, 960, 9600

    def frames(n):
        return math.ceil((n // hop) / 4)

    for n in range(1025, 40000, 37):
        plan = chunk_plan(n, chunk, token, hop)
        assert plan[-1][1] == n or n % chunk < hop
        assert all(s % token == 0 and 1025 <= e - s <= chunk for s, e, _ in plan)
        assert sum(frames(e - s) - d for s, e, d in plan) == frames(n)
        kept = [s // token + d for s, _, d in plan]  # first kept frame's index in full-pass timing
        assert kept == [sum(frames(e - s) - d for s, e, d in plan[:i]) for i in range(len(plan))]


def test_long_clip_chunks(enc):
    n = 70 * SR
    wave = noise(n, seed=8)
    plan = chunk_plan(n, enc.chunk_samples, enc.token_hop, enc.hop)
    assert plan == [(0, 720000, 0), (720000, 1440000, 0), (960000, 1680000, 500)]
    frames = enc.embed(wave)
    assert frames.shape == (1750, 32) and enc.expected_frames(n) == 1750
    np.testing.assert_allclose(frames[:750], enc.forward_batch(wave[:720000][None])[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(frames[1500:], enc.forward_batch(wave[960000:][None])[0][500:], rtol=0, atol=1e-5)
    # a remainder too short for a mel frame adds nothing, as in a full pass
    assert enc.embed(noise(720000 + 100)).shape[0] == 750 == enc.expected_frames(720100)
    assert enc.config["chunking"]["chunk_samples"] == 720000


def test_chunked_count_matches_a_real_full_pass(ckpt):
    small = extract.load_encoder("muq", ckpt, device="cpu", chunk_seconds=0.4)  # 9600-sample chunks
    assert small.chunk_samples == 9600
    for n in (9601, 9840, 21117):  # remainder without a mel frame; one with; two chunks + tail
        wave = noise(n, seed=n)
        with torch.inference_mode():
            full = small.model(torch.from_numpy(wave)[None], output_hidden_states=False).last_hidden_state.shape[1]
        assert small.embed(wave).shape[0] == full


def test_frozen_deterministic_batch_and_rng(ckpt, enc):
    assert not enc.model.training
    assert not any(p.requires_grad for p in enc.model.parameters())
    wave = noise(2 * SR, seed=1)
    a = enc.embed(wave)
    torch.manual_seed(99)
    np.testing.assert_array_equal(a, enc.embed(wave))
    batch = np.stack([noise(2 * SR, seed=s) for s in (1, 2, 3)])
    together = enc.forward_batch(batch)
    for i in range(3):
        np.testing.assert_allclose(together[i], enc.forward_batch(batch[i : i + 1])[0], rtol=0, atol=1e-5)
    # muq seeds torch and random while building; loading must not disturb the caller's streams
    torch.manual_seed(5)
    random.seed(5)
    expect = (torch.rand(1).item(), random.random())
    torch.manual_seed(5)
    random.seed(5)
    extract.load_encoder("muq", ckpt, device="cpu")
    assert (torch.rand(1).item(), random.random()) == expect


def test_no_network(ckpt, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    e = extract.load_encoder("muq", ckpt / "model.safetensors", device="cpu")
    assert e.embed(noise(SR)).shape == (25, 32)
    assert e.identity()["sha256"] and e.identity()["weights"].endswith("model.safetensors")
