"""M2D encoder: front end, chunking, ViT, strict checkpoint loading (tiny random weights)."""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import scipy.signal
import torch

from mmmos import extract
from mmmos.extract.base import EncoderLoadError
from mmmos.extract.m2d import (
    LOG_EPS,
    LogMelFrontEnd,
    M2DEncoder,
    parse_release_name,
    slaney_mel_filterbank,
)
from mmmos.testing.m2d import write_random_checkpoint

SR = 16000


def noise(n: int, seed: int = 0) -> np.ndarray:
    """Broadband noise plus a tone, so every mel band has energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (0.1 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 523.0 * t)).astype(np.float32)


def n_samples_for_frames(t: int) -> int:
    """Samples giving exactly ``t`` centred-STFT frames (T = 1 + n // 160)."""
    return (t - 1) * 160 + 80


def spec_steps(t: int, input_frames: int) -> int:
    """SPEC §3 formulas, written out independently of the module."""
    if input_frames == 608:
        return 38 * (t // 608) + math.ceil((t % 608) / 16)
    assert input_frames == 1001
    return 62 * (t // 1001) + min(62, math.ceil((t % 1001) / 16))


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("m2d")


@pytest.fixture(scope="module")
def enc608(ckpt_dir):
    return extract.load_encoder("m2d", write_random_checkpoint(ckpt_dir / "a", input_frames=608), device="cpu")


@pytest.fixture(scope="module")
def enc1001(ckpt_dir):
    path = write_random_checkpoint(ckpt_dir / "b", input_frames=1001, norm_stats=(-5.0, 3.0), seed=1)
    return extract.load_encoder("m2d", path, device="cpu")


def load_sd(path) -> dict:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    return ck["model"] if "model" in ck else ck


# ---------------------------------------------------------------------------------------
# front end
# ---------------------------------------------------------------------------------------
def test_mel_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, fmin=50, fmax=8000, htk=False, norm="slaney",
                              dtype=np.float64)
    ours = slaney_mel_filterbank()
    assert ours.shape == (80, 201)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


def test_log_mel_matches_float64_numpy_reference():
    w = noise(SR * 2 + 37)
    w[:3000] *= 1e-3  # a quiet stretch, to exercise small powers
    ours = LogMelFrontEnd()(w)
    t = 1 + w.size // 160
    assert ours.shape == (80, t) and ours.dtype == np.float32
    padded = np.pad(w.astype(np.float64), 200, mode="reflect")
    frames = np.stack([padded[i * 160 : i * 160 + 400] for i in range(t)])
    window = scipy.signal.get_window("hann", 400, fftbins=True)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    import librosa

    fb = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, fmin=50, fmax=8000, norm="slaney", dtype=np.float64)
    ref = np.log(fb @ power.T + 1.1920929e-7)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    assert LOG_EPS == pytest.approx(1.1920929e-7)


def test_log_mel_matches_nnaudio_front_end():
    features = pytest.importorskip("nnAudio.features")
    w = noise(SR + 555, seed=3)
    layer = features.MelSpectrogram(sr=16000, n_fft=400, win_length=400, hop_length=160, n_mels=80, fmin=50,
                                    fmax=8000, center=True, power=2, verbose=False)
    ref = torch.log(layer(torch.from_numpy(w)) + torch.finfo().eps)[0].numpy()
    np.testing.assert_allclose(LogMelFrontEnd()(w), ref, atol=1e-4)


def test_log_mel_long_clip_blocks_agree_with_one_pass():
    fe = LogMelFrontEnd()
    w = noise(160 * 5000, seed=4)
    whole = fe(w)
    fe.block_frames = 777  # blocks must tile the frames exactly
    np.testing.assert_allclose(fe(w), whole, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------
# names, loading, identity
# ---------------------------------------------------------------------------------------
def test_parse_release_name():
    assert parse_release_name("m2d_clap_vit_base-80x1001p16x16-240128_AS-FT_enconly") == {
        "n_mels": 80, "input_frames": 1001, "patch_f": 16, "patch_t": 16, "sr_khz": 16}
    assert parse_release_name("m2d_vit_base-80x608p16x16-221006-mr7")["input_frames"] == 608
    assert parse_release_name("m2d_vit_base-80x1001p16x16p32k-230000")["sr_khz"] == 32
    assert parse_release_name("my_weights") is None


@pytest.mark.parametrize("frames,steps", [(608, 63), (1001, 62)])
def test_round_trip_ten_seconds(ckpt_dir, frames, steps):
    path = write_random_checkpoint(ckpt_dir / f"rt{frames}", input_frames=frames)
    assert parse_release_name(path.parent.name)["input_frames"] == frames
    enc = extract.load_encoder("m2d", path, device="cpu")
    assert isinstance(enc, M2DEncoder)
    out = enc.embed(noise(10 * SR))
    assert out.shape == (steps, 5 * 64) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert (enc.name, enc.sample_rate, enc.frame_rate, enc.dim) == ("m2d", 16000, 6.25, 320)
    assert enc.expected_frames(10 * SR) == steps
    cfg = enc.config
    assert (cfg["input_frames"], cfg["patch_size"], cfg["width"], cfg["depth"], cfg["heads"]) == (frames, [16, 16], 64, 2, 1)
    assert cfg["norm_stats"] == [pytest.approx(-7.1), pytest.approx(4.2)]
    assert "chunk" in cfg["chunking"]
    assert enc.identity()["sha256"] is not None


def test_model_is_frozen(enc608):
    assert not enc608.model.training
    assert all(not p.requires_grad for p in enc608.model.parameters())
    assert all(not m.training for m in enc608.model.modules())


def test_norm_stats_read_from_checkpoint_and_defaulted(ckpt_dir, enc1001):
    assert enc1001.config["norm_stats"] == [-5.0, 3.0]
    w = noise(3 * SR)
    raw = LogMelFrontEnd()(w)
    lm = enc1001.log_mel(w)
    np.testing.assert_allclose(lm, (raw + 5.0) / 3.0, rtol=1e-6, atol=1e-6)
    old = write_random_checkpoint(ckpt_dir / "old", norm_stats=None)
    assert "norm_stats" not in load_sd(old)
    assert M2DEncoder.from_weights(old).config["norm_stats"] == [pytest.approx(-7.1), pytest.approx(4.2)]


def test_formats_prefixes_and_folder_give_same_outputs(ckpt_dir, enc608):
    w = noise(4 * SR, seed=5)
    want = enc608.embed(w)
    flat = write_random_checkpoint(ckpt_dir / "fmt", fmt="flat")
    st = write_random_checkpoint(ckpt_dir / "fmt_st", fmt="safetensors")
    pre = write_random_checkpoint(ckpt_dir / "fmt_pre", pretraining_keys=True)
    sd = load_sd(pre)
    assert any(k.startswith("target_blocks.") for k in sd) and "mask_token" in sd
    assert any(k.startswith("decoder_blocks.") for k in sd)
    for p in (flat, st, pre, flat.parent):  # the release folder itself also works
        np.testing.assert_array_equal(M2DEncoder.from_weights(p).embed(w), want)
    ignored = M2DEncoder.from_weights(pre).ignored_keys
    assert "mask_token" in ignored and "target_norm.weight" in ignored and "decoder_pred.weight" in ignored
    assert not any(k.startswith("blocks.") for k in ignored)
    # the same file in another folder with the same sizes is the same encoder (same cache)
    moved = ckpt_dir / "m2d_vit_base-80x608p16x16-moved"
    moved.mkdir()
    (moved / "x.pth").write_bytes(flat.read_bytes())
    assert M2DEncoder.from_weights(moved / "x.pth").identity_key() == M2DEncoder.from_weights(flat).identity_key()
    assert M2DEncoder.from_weights(st).identity_key() != M2DEncoder.from_weights(flat).identity_key()
    # wrapped as DDP ('module.') and as an EVAR fine-tune (backbone prefix + a head outside it)
    base = load_sd(flat)
    for prefix, extra in (("module.", {}), ("module.ar.runtime.backbone.", {"module.head.mlp.mlp.0.weight": torch.zeros(3, 320)})):
        d = ckpt_dir / f"m2d_vit_base-80x608p16x16-pref{len(prefix)}"
        d.mkdir()
        torch.save({"model": {**{prefix + k: v for k, v in base.items()}, **extra}}, d / "w.pth")
        np.testing.assert_array_equal(M2DEncoder.from_weights(d / "w.pth").embed(w), want)


def test_folder_without_sizes_needs_input_frames(ckpt_dir, enc608):
    src = write_random_checkpoint(ckpt_dir / "ns", fmt="flat")
    d = ckpt_dir / "renamed_weights"
    d.mkdir()
    (d / "w.pth").write_bytes(src.read_bytes())
    with pytest.raises(EncoderLoadError, match="input_frames"):
        M2DEncoder.from_weights(d / "w.pth")
    w = noise(2 * SR)
    np.testing.assert_array_equal(M2DEncoder.from_weights(d / "w.pth", input_frames=608).embed(w), enc608.embed(w))
    with pytest.raises(TypeError, match="unknown options"):
        M2DEncoder.from_weights(d / "w.pth", input_frame=608)
    with pytest.raises(EncoderLoadError, match="pos_embed"):  # 608 weights said to be 1001
        M2DEncoder.from_weights(d / "w.pth", input_frames=1001)
    (d / "second.pth").write_bytes(src.read_bytes())
    with pytest.raises(EncoderLoadError, match="several checkpoints"):
        M2DEncoder.from_weights(d, input_frames=608)
    with pytest.raises(EncoderLoadError, match="not found"):
        M2DEncoder.from_weights(d / "nope.pth", input_frames=608)


def test_folder_name_contradicting_weights(ckpt_dir):
    src = write_random_checkpoint(ckpt_dir / "contra", input_frames=608, fmt="flat")
    for name, msg in (("m2d_vit_base-80x1001p16x16-x", "pos_embed"), ("m2d_vit_base-80x608p16x8-x", "patch"),
                      ("m2d_vit_base-80x608p16x16p32k-x", "32 kHz")):
        d = ckpt_dir / name
        d.mkdir()
        (d / "w.pth").write_bytes(src.read_bytes())
        with pytest.raises(EncoderLoadError, match=msg):
            M2DEncoder.from_weights(d / "w.pth")


# ---------------------------------------------------------------------------------------
# strict keys
# ---------------------------------------------------------------------------------------
def _save_variant(ckpt_dir, tag: str, sd: dict, wrap: bool = True) -> pathlib.Path:
    d = ckpt_dir / f"m2d_vit_base-80x608p16x16-{tag}"
    d.mkdir()
    path = d / "checkpoint-300.pth"
    torch.save({"model": sd, "epoch": 1} if wrap else sd, path)
    return path


def test_missing_key_is_an_error_naming_file_and_key(ckpt_dir):
    sd = load_sd(write_random_checkpoint(ckpt_dir / "mk"))
    del sd["blocks.1.attn.qkv.weight"]
    path = _save_variant(ckpt_dir, "missing", sd)
    with pytest.raises(EncoderLoadError) as e:
        M2DEncoder.from_weights(path)
    assert "blocks.1.attn.qkv.weight" in str(e.value) and str(path) in str(e.value)
    assert "missing" in str(e.value)


def test_pretraining_keys_never_stand_in_for_encoder_keys(ckpt_dir):
    sd = load_sd(write_random_checkpoint(ckpt_dir / "pk", pretraining_keys=True))
    assert "target_blocks.0.norm1.weight" in sd
    del sd["blocks.0.norm1.weight"]  # only the target copy remains
    with pytest.raises(EncoderLoadError, match=r"blocks\.0\.norm1\.weight"):
        M2DEncoder.from_weights(_save_variant(ckpt_dir, "pk_missing", sd))
    sd2 = load_sd(write_random_checkpoint(ckpt_dir / "pk2"))
    del sd2["norm.weight"]
    sd2["target_norm.weight"] = torch.ones(64)
    with pytest.raises(EncoderLoadError, match=r"norm\.weight"):
        M2DEncoder.from_weights(_save_variant(ckpt_dir, "pk_norm", sd2))


def test_unexpected_and_misshaped_keys_are_errors(ckpt_dir):
    sd = load_sd(write_random_checkpoint(ckpt_dir / "ux"))
    sd["head.weight"] = torch.zeros(527, 64)
    with pytest.raises(EncoderLoadError, match=r"unexpected keys \[head\.weight\]"):
        M2DEncoder.from_weights(_save_variant(ckpt_dir, "unexpected", sd))
    sd = load_sd(write_random_checkpoint(ckpt_dir / "sh"))
    sd["blocks.1.mlp.fc2.bias"] = torch.zeros(65)
    with pytest.raises(EncoderLoadError, match=r"blocks\.1\.mlp\.fc2\.bias"):
        M2DEncoder.from_weights(_save_variant(ckpt_dir, "shape", sd))


def test_wrong_architecture_is_rejected(ckpt_dir):
    wavlm_like = {
        "feature_extractor.conv_layers.0.conv.weight": torch.zeros(512, 1, 10),
        "encoder.layers.0.attention.k_proj.weight": torch.zeros(768, 768),
        "encoder.layers.0.attention.q_proj.weight": torch.zeros(768, 768),
        "encoder.pos_conv_embed.conv.weight_v": torch.zeros(768, 48, 128),
    }
    with pytest.raises(EncoderLoadError, match="not an M2D"):
        M2DEncoder.from_weights(_save_variant(ckpt_dir, "wavlm", wavlm_like, wrap=False))
    with pytest.raises(EncoderLoadError, match="not a state dict"):
        M2DEncoder.from_weights(_save_variant(ckpt_dir, "list", [torch.zeros(3)], wrap=False))


def test_unsafe_pickle_is_refused(ckpt_dir):
    sd = load_sd(write_random_checkpoint(ckpt_dir / "unsafe", fmt="flat"))
    d = ckpt_dir / "m2d_vit_base-80x608p16x16-unsafe2"
    d.mkdir()
    torch.save({"model": sd, "cfg": pathlib.PurePosixPath("/x")}, d / "w.pth")  # not an allowed type
    with pytest.raises(EncoderLoadError, match="safely"):
        M2DEncoder.from_weights(d / "w.pth")


# ---------------------------------------------------------------------------------------
# steps, chunking
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("frames", [608, 1001])
def test_steps_follow_spec_formula(enc608, enc1001, frames):
    enc = enc608 if frames == 608 else enc1001
    # mel-frame counts around chunk edges, incl. > 1001 frames (several chunks) and a tail
    # that pads past 992 frames (1001 + 995: capped at 62 columns)
    for t in (2, 15, 16, 17, 607, 608, 609, 1000, 1001, 1002, 1216, 1300, 1996, 2002, 2503):
        n = n_samples_for_frames(t)
        out = enc.embed(noise(n, seed=t))
        assert out.shape == (spec_steps(t, frames), enc.dim), (frames, t)
        assert enc.expected_frames(n) == out.shape[0]
        assert len(enc.split(noise(n))) == math.ceil(t / frames)


def test_chunks_hold_the_right_frames_1001(enc1001):
    w = noise(n_samples_for_frames(1501), seed=7)
    lm = enc1001.log_mel(w)
    assert lm.shape == (80, 1501)
    c0, c1 = enc1001.split(w)
    assert c0.shape == (80, 992)  # the last 9 frames of a full 1001-frame chunk fall away
    np.testing.assert_array_equal(c0, lm[:, :992])
    assert c1.shape == (80, 512)  # 500-frame tail padded to a multiple of 16
    np.testing.assert_array_equal(c1[:, :500], lm[:, 1001:1501])
    assert np.all(c1[:, 500:] == 0.0)  # zero padding AFTER normalisation


def test_chunks_hold_the_right_frames_608(enc608):
    w = noise(n_samples_for_frames(1300), seed=8)
    lm = enc608.log_mel(w)
    chunks = enc608.split(w)
    assert [c.shape[1] for c in chunks] == [608, 608, 96]
    np.testing.assert_array_equal(np.concatenate([chunks[0], chunks[1], chunks[2][:, :84]], axis=1), lm)
    assert np.all(chunks[2][:, 84:] == 0.0)
    out = enc608.embed(w)
    parts = [enc608.forward_batch(c[None])[0] for c in chunks]
    np.testing.assert_array_equal(out, np.concatenate(parts))


def test_short_clips(enc608):
    assert enc608.min_samples() == 201
    out = enc608.embed(noise(201))  # 2 mel frames -> one padded 16-frame column
    assert out.shape == (1, 320) and np.all(np.isfinite(out))
    assert enc608.expected_frames(201) == 1 and enc608.expected_frames(200) == 0
    assert enc608.embed(noise(n_samples_for_frames(17))).shape == (2, 320)
    with pytest.raises(ValueError, match="shorter"):
        enc608.split(noise(200))
    bad = noise(4000)
    bad[7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        enc608.split(bad)
    with pytest.raises(ValueError, match="1-D"):
        enc608.split(np.zeros((2, 4000), np.float32))
    with pytest.raises(ValueError, match="multiple of 16"):
        enc608.forward_batch(np.zeros((1, 80, 20), np.float32))


# ---------------------------------------------------------------------------------------
# the ViT against an independent float64 reference
# ---------------------------------------------------------------------------------------
def reference_encode(sd: dict, chunk: np.ndarray, grid_t: int) -> np.ndarray:
    """Straightforward float64 M2D forward for one (80, L) chunk, token by token."""
    p = {k: v.double() for k, v in sd.items()}
    x = torch.from_numpy(chunk).double()
    width = p["cls_token"].shape[-1]
    heads = width // 64
    cols = chunk.shape[1] // 16
    pos = p["pos_embed"][0]
    kernel, bias = p["patch_embed.proj.weight"][:, 0], p["patch_embed.proj.bias"]
    toks = [p["cls_token"][0, 0] + pos[0]]
    for f in range(5):  # frequency-major: all time columns of band 0, then band 1, ...
        for t in range(cols):
            patch = x[16 * f : 16 * f + 16, 16 * t : 16 * t + 16]
            toks.append((kernel * patch).sum(dim=(1, 2)) + bias + pos[1 + f * grid_t + t])
    h = torch.stack(toks)

    def ln(v, name):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(var + 1e-6) * p[name + ".weight"] + p[name + ".bias"]

    depth = 1 + max(int(k.split(".")[1]) for k in p if k.startswith("blocks."))
    for i in range(depth):
        b = f"blocks.{i}."
        y = ln(h, b + "norm1")
        qkv = y @ p[b + "attn.qkv.weight"].T + p[b + "attn.qkv.bias"]
        q, k, v = qkv[:, :width], qkv[:, width : 2 * width], qkv[:, 2 * width :]
        outs = []
        for j in range(heads):
            s = slice(64 * j, 64 * (j + 1))
            a = torch.softmax(q[:, s] @ k[:, s].T / 8.0, dim=-1)
            outs.append(a @ v[:, s])
        h = h + torch.cat(outs, dim=1) @ p[b + "attn.proj.weight"].T + p[b + "attn.proj.bias"]
        y = ln(h, b + "norm2") @ p[b + "mlp.fc1.weight"].T + p[b + "mlp.fc1.bias"]
        y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        h = h + y @ p[b + "mlp.fc2.weight"].T + p[b + "mlp.fc2.bias"]
    h = ln(h, "norm")[1:]
    return torch.stack([torch.cat([h[f * cols + t] for f in range(5)]) for t in range(cols)]).numpy()


def test_vit_matches_float64_reference(ckpt_dir):
    path = write_random_checkpoint(ckpt_dir / "ref", input_frames=608, seed=11)
    enc = M2DEncoder.from_weights(path)
    sd = load_sd(path)
    chunks = enc.split(noise(n_samples_for_frames(608 + 100), seed=12))  # one full chunk, one short tail
    assert [c.shape[1] for c in chunks] == [608, 112]
    for c in chunks:
        ours = enc.forward_batch(c[None])[0]
        ref = reference_encode(sd, c, grid_t=38)
        assert ours.shape == ref.shape == (c.shape[1] // 16, 320)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_batching_is_invariant_and_deterministic(enc608):
    a, b = noise(12 * SR, seed=21), noise(9 * SR, seed=22)
    ca, cb = enc608.split(a), enc608.split(b)
    assert ca[0].shape == cb[0].shape == (80, 608)
    batch = enc608.forward_batch(np.stack([ca[0], cb[0], ca[0]]))
    alone_a = enc608.forward_batch(ca[0][None])[0]
    alone_b = enc608.forward_batch(cb[0][None])[0]
    np.testing.assert_allclose(batch[0], alone_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch[1], alone_b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch[0], batch[2])
    assert not np.allclose(alone_a, alone_b)  # different clips really differ
    np.testing.assert_array_equal(enc608.embed(a), enc608.embed(a))


@pytest.mark.slow
def test_full_size_vit_base(tmp_path):
    path = write_random_checkpoint(tmp_path, size="full", input_frames=1001, pretraining_keys=False)
    enc = extract.load_encoder("m2d", path, device="cpu")
    assert (enc.config["width"], enc.config["depth"], enc.config["heads"], enc.config["mlp_hidden"]) == (768, 12, 12, 3072)
    out = enc.embed(noise(10 * SR))
    assert out.shape == (62, 3840) and enc.dim == 3840 and np.all(np.isfinite(out))
