"""WavLM encoder: formats, strict loading, frame geometry, chunking, frozen behaviour.

All models are tiny random WavLMs (hidden 32, 2 layers, Base+ conv kernels/strides).
"""
from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest
import torch

from mmmos import extract
from mmmos.extract import EncoderLoadError
from mmmos.extract.wavlm import parse_conv_layers
from mmmos.testing.wavlm import write_random_checkpoint

SR = 16000


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavlm")
    return {
        fmt: write_random_checkpoint(root / fmt, size="tiny", fmt=fmt, seed=7)
        for fmt in ("hf", "hf-safetensors", "original")
    }


@pytest.fixture(scope="module")
def enc(ckpts):
    return extract.load_encoder("wavlm", ckpts["hf-safetensors"], device="cpu")


def noise(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_all_formats_load_and_give_the_same_frames(ckpts):
    from safetensors.torch import load_file

    # the three files spell the same weights differently
    bin_keys = set(torch.load(ckpts["hf"] / "pytorch_model.bin", weights_only=True))
    st_keys = set(load_file(str(ckpts["hf-safetensors"] / "model.safetensors")))
    assert "encoder.pos_conv_embed.conv.weight_g" in bin_keys
    assert "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in st_keys
    assert ckpts["original"].suffix == ".pt"

    wave = noise(10 * SR)
    out = {}
    for fmt, path in ckpts.items():
        e = extract.load_encoder("wavlm", path, device="cpu")
        assert (e.sample_rate, e.frame_rate, e.dim) == (16000, 50.0, 32)
        out[fmt] = e.embed(wave)
        assert out[fmt].shape == (499, 32) and out[fmt].dtype == np.float32
        assert np.isfinite(out[fmt]).all()
    np.testing.assert_allclose(out["hf"], out["hf-safetensors"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["original"], out["hf-safetensors"], rtol=0, atol=1e-5)
    assert out["hf"].std() > 0.1  # real activations, not a constant


def test_original_file_has_exactly_the_unilm_layout(ckpts):
    """Key names of unilm's WavLM module (written out by hand, not from our table)."""
    ck = torch.load(ckpts["original"], weights_only=True)
    cfg, sd = ck["cfg"], ck["model"]
    assert all(isinstance(v, (str, int, float, bool)) for v in cfg.values())
    assert parse_conv_layers(cfg["conv_feature_layers"]) == [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    want = {"mask_emb", "layer_norm.weight", "layer_norm.bias", "post_extract_proj.weight", "post_extract_proj.bias",
            "encoder.pos_conv.0.bias", "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v",
            "encoder.layer_norm.weight", "encoder.layer_norm.bias",
            "feature_extractor.conv_layers.0.2.weight", "feature_extractor.conv_layers.0.2.bias"}
    want |= {f"feature_extractor.conv_layers.{i}.0.weight" for i in range(7)}
    for i in range(2):
        p = f"encoder.layers.{i}."
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                  "self_attn.grep_linear", "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"):
            want |= {p + m + ".weight", p + m + ".bias"}
        want.add(p + "self_attn.grep_a")
    want.add("encoder.layers.0.self_attn.relative_attention_bias.weight")  # first layer only
    assert set(sd) == want
    assert tuple(sd["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape) == (320, 2)
    assert tuple(sd["encoder.layers.1.self_attn.grep_a"].shape) == (1, 2, 1, 1)


def test_original_keys_hold_the_tensors_of_their_hf_counterparts(ckpts):
    """Same seed -> same weights in both files; the pairing below is written by hand from
    unilm's and transformers' module structure (independent of the module's table)."""
    from safetensors.torch import load_file

    orig = torch.load(ckpts["original"], weights_only=True)["model"]
    hf = load_file(str(ckpts["hf-safetensors"] / "model.safetensors"))
    pairs = {
        "mask_emb": "masked_spec_embed",
        "layer_norm.weight": "feature_projection.layer_norm.weight",
        "post_extract_proj.bias": "feature_projection.projection.bias",
        "encoder.pos_conv.0.weight_g": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv.0.weight_v": "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
        "encoder.layer_norm.bias": "encoder.layer_norm.bias",
        "feature_extractor.conv_layers.0.2.weight": "feature_extractor.conv_layers.0.layer_norm.weight",
        "feature_extractor.conv_layers.3.0.weight": "feature_extractor.conv_layers.3.conv.weight",
        "encoder.layers.0.self_attn.relative_attention_bias.weight": "encoder.layers.0.attention.rel_attn_embed.weight",
    }
    for i in range(2):
        o, h = f"encoder.layers.{i}.", f"encoder.layers.{i}."
        pairs |= {
            o + "self_attn.q_proj.weight": h + "attention.q_proj.weight",
            o + "self_attn.k_proj.bias": h + "attention.k_proj.bias",
            o + "self_attn.v_proj.weight": h + "attention.v_proj.weight",
            o + "self_attn.out_proj.weight": h + "attention.out_proj.weight",
            o + "self_attn.grep_linear.weight": h + "attention.gru_rel_pos_linear.weight",
            o + "self_attn.grep_a": h + "attention.gru_rel_pos_const",
            o + "self_attn_layer_norm.weight": h + "layer_norm.weight",
            o + "self_attn_layer_norm.bias": h + "layer_norm.bias",
            o + "fc1.weight": h + "feed_forward.intermediate_dense.weight",
            o + "fc2.weight": h + "feed_forward.output_dense.weight",
            o + "final_layer_norm.weight": h + "final_layer_norm.weight",
            o + "final_layer_norm.bias": h + "final_layer_norm.bias",
        }
    for o, h in pairs.items():
        assert torch.equal(orig[o], hf[h]), (o, h)


def test_frame_count_formula(enc):
    ns = [400, 719, 720, 1039, 3200, 16000, 160000] + list(np.random.default_rng(1).integers(400, 20000, 30))
    for n in ns:
        assert enc.expected_frames(n) == (n - 400) // 320 + 1
    for n in (400, 719, 720, 16000):
        assert enc.embed(noise(n)).shape[0] == (n - 400) // 320 + 1
    assert enc.min_samples() == 400 and enc.expected_frames(399) == 0
    with pytest.raises(ValueError, match="400 samples"):
        enc.embed(noise(399))


def test_missing_key_is_an_error_naming_file_and_key(ckpts, tmp_path):
    from safetensors.torch import load_file, save_file

    d = tmp_path / "hf"
    shutil.copytree(ckpts["hf-safetensors"], d)
    sd = load_file(str(d / "model.safetensors"))
    del sd["encoder.layers.0.attention.q_proj.weight"]
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(EncoderLoadError, match="missing keys.*encoder.layers.0.attention.q_proj.weight") as ei:
        extract.load_encoder("wavlm", d, device="cpu")
    assert str(d / "model.safetensors") in str(ei.value)

    ck = torch.load(ckpts["original"], weights_only=True)
    del ck["model"]["encoder.layers.1.fc2.weight"]
    f = tmp_path / "cut.pt"
    torch.save(ck, f)
    with pytest.raises(EncoderLoadError, match="missing keys.*encoder.layers.1.fc2.weight") as ei:
        extract.load_encoder("wavlm", f, device="cpu")
    assert str(f) in str(ei.value)


def test_wrong_architecture_is_refused(ckpts, tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    # a wav2vec2 state dict (similar names, no gated relative position bias) in a WavLM dir
    d = tmp_path / "w2v2"
    d.mkdir()
    shutil.copy(ckpts["hf"] / "config.json", d / "config.json")
    w2v2 = Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, conv_dim=(16,) * 7))
    torch.save(w2v2.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(EncoderLoadError, match="missing keys.*gru_rel_pos"):
        extract.load_encoder("wavlm", d, device="cpu")

    # right keys, wrong sizes
    d2 = tmp_path / "wide"
    shutil.copytree(ckpts["hf"], d2)
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (d2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EncoderLoadError, match="shape mismatches"):
        extract.load_encoder("wavlm", d2, device="cpu")

    # another model type, and a bare state dict posing as the original file
    cfg["model_type"] = "wav2vec2"
    (d2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EncoderLoadError, match="not 'wavlm'"):
        extract.load_encoder("wavlm", d2, device="cpu")
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(ckpts["original"], weights_only=True)["model"], bare)
    with pytest.raises(EncoderLoadError, match="not an original WavLM checkpoint"):
        extract.load_encoder("wavlm", bare, device="cpu")
    with pytest.raises(EncoderLoadError, match="not found"):
        extract.load_encoder("wavlm", tmp_path / "nothing_here", device="cpu")


def test_long_clip_is_tiled_with_full_pass_geometry(enc):
    n = 70 * SR
    wave = noise(n, seed=3)
    chunks = enc.split(wave)
    assert [len(c) for c in chunks] == [480080, 480080, 160000]  # 30 s + 80 samples context, then the rest
    np.testing.assert_array_equal(chunks[1], wave[480000:960080])
    frames = enc.embed(wave)
    assert frames.shape == ((n - 400) // 320 + 1, 32) == (3499, 32)
    first = enc.forward_batch(wave[: 30 * SR + 80][None])[0]
    assert first.shape[0] == 1500
    np.testing.assert_allclose(frames[:1500], first, rtol=0, atol=1e-5)
    last = enc.forward_batch(wave[60 * SR:][None])[0]
    np.testing.assert_allclose(frames[3000:], last, rtol=0, atol=1e-5)
    assert enc.config["chunking"] == {"policy": "tiled_chunks", "max_frames": 1500, "hop": 320, "context": 80}


def test_chunk_tiling_keeps_full_pass_count_for_any_length(ckpts):
    small = extract.load_encoder("wavlm", ckpts["hf"], device="cpu", max_chunk_frames=20)  # 0.4-s chunks
    for n in (6400, 6479, 6480, 6481, 6500, 6799, 6800, 6880, 6881, 12879, 12880, 13359, 19000):
        wave = noise(n, seed=n)
        chunks = small.split(wave)
        assert all(len(c) <= 20 * 320 + 80 for c in chunks)
        assert all(small.expected_frames(len(c)) == 20 for c in chunks[:-1])
        with torch.inference_mode():  # one real pass over the whole clip, for its frame count
            full = small.model(torch.from_numpy(wave)[None]).last_hidden_state.shape[1]
        assert small.embed(wave).shape[0] == full == (n - 400) // 320 + 1
    with pytest.raises(ValueError):
        extract.load_encoder("wavlm", ckpts["hf"], device="cpu", max_chunk_frames=1501)


def test_frozen_deterministic_and_batch_equals_single(enc):
    assert not enc.model.training
    assert not any(p.requires_grad for p in enc.model.parameters())
    wave = noise(3 * SR, seed=5)
    a = enc.embed(wave)
    torch.manual_seed(123)
    b = enc.embed(wave)
    np.testing.assert_array_equal(a, b)
    batch = np.stack([noise(2 * SR, seed=s) for s in (1, 2, 3)])
    together = enc.forward_batch(batch)
    for i in range(3):
        np.testing.assert_allclose(together[i], enc.forward_batch(batch[i : i + 1])[0], rtol=0, atol=1e-5)


def test_input_normalisation_follows_the_checkpoint(ckpts, tmp_path):
    e_raw = extract.load_encoder("wavlm", ckpts["hf"], device="cpu")
    assert e_raw.normalize is False and e_raw.config["normalize_input"] is False  # Base+: do_normalize false
    ck = torch.load(ckpts["original"], weights_only=True)
    ck["cfg"]["normalize"] = True  # as WavLM-Large declares
    f = tmp_path / "large_style.pt"
    torch.save(ck, f)
    e_norm = extract.load_encoder("wavlm", f, device="cpu")
    assert e_norm.normalize is True
    x = 0.3 * noise(SR, seed=9) + 0.05
    z = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    np.testing.assert_allclose(e_norm.embed(x), e_raw.embed(z.astype(np.float32)), rtol=0, atol=1e-4)
    assert not np.allclose(e_raw.embed(x), e_raw.embed(z.astype(np.float32)), atol=1e-3)


def test_conv_layer_spec_is_parsed_without_eval():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    )
    with pytest.raises(ValueError):
        parse_conv_layers("__import__('os').getcwd()")


def test_no_network_and_identity(ckpts, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    e = extract.load_encoder("wavlm", ckpts["original"], device="cpu")
    e.embed(noise(SR))
    ident = e.identity()
    assert ident["sha256"] and ident["weights"].endswith(".pt") and ident["config"]["source_format"] == "original"
    e2 = extract.load_encoder("wavlm", ckpts["hf"], device="cpu")
    assert e2.identity()["weights"].endswith("pytorch_model.bin")
    assert e.identity_key() != e2.identity_key()  # different files are different caches
