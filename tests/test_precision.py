"""Compute precision: bf16 frames agree with fp32 on tiny real-architecture random models, the weights are
cast once with the sensitive parts left fp32, the choice of precision per device/encoder, cache identity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmmos import extract
from mmmos.core.errors import UserError
from mmmos.extract import precision as P
from mmmos.extract.runner import embed_many

# bf16 keeps 8 significant bits; through a tiny random transformer frames stay within these of fp32
COS_MIN, COS_MEAN = 0.999, 0.9999


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from mmmos.testing import m2d, muq, wavlm

    d = tmp_path_factory.mktemp("prec")
    return {"wavlm": wavlm.write_random_checkpoint(d / "wavlm", "tiny", seed=5),
            "muq": muq.write_random_checkpoint(d / "muq", "tiny", seed=5),
            "m2d": m2d.write_random_checkpoint(d / "m2d", "tiny", input_frames=608, seed=5)}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _wave(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name,seconds", [("wavlm", 33.0), ("muq", 31.0), ("m2d", 12.0)])
def test_reduced_frames_agree_with_fp32(weights, name, seconds, precision):
    """Whole clips (several chunks each) through embed_many: same frame count, cosine within bounds,
    and not bit-equal (the reduced path really ran)."""
    ref = extract.load_encoder(name, weights[name], device="cpu")
    low = extract.load_encoder(name, weights[name], device="cpu")
    wave = _wave(ref.sample_rate, seconds)
    fa = embed_many(ref, {"c": wave}, 2, "fp32")["c"]
    fb = embed_many(low, {"c": wave}, 2, precision)["c"]
    assert fa.shape == fb.shape == (ref.expected_frames(len(wave)), ref.dim)
    c = _cos(fa, fb)
    assert c.min() >= COS_MIN and c.mean() >= COS_MEAN, (name, c.min(), c.mean())
    assert not np.array_equal(fa, fb)
    assert fb.dtype == np.float32
    assert any(p.dtype == P.torch_dtype(precision) for p in low.model.parameters())
    assert all(p.dtype == torch.float32 for p in ref.model.parameters())


def test_wavlm_front_end_stays_fp32_and_bit_identical(weights):
    ref = extract.load_encoder("wavlm", weights["wavlm"])
    enc = extract.load_encoder("wavlm", weights["wavlm"])
    P.prepare_encoder(enc, "bf16")
    # the first conv layer (conv + GroupNorm over raw samples) stays fp32 and untouched
    got = enc.model.feature_extractor.conv_layers[0].state_dict()
    want = ref.model.feature_extractor.conv_layers[0].state_dict()
    assert all(got[k].dtype == torch.float32 and torch.equal(got[k], want[k]) for k in want)
    assert enc.model.feature_extractor.conv_layers[1].conv.weight.dtype == torch.bfloat16
    assert enc.model.encoder.layers[0].attention.q_proj.weight.dtype == torch.bfloat16
    # weight norm folded into a plain weight (no per-call recomputation) equal to the fp32 model's effective one;
    # the positional conv stays fp32 (oneDNN's bf16 grouped conv is wrong on AMX CPUs for few channels per group)
    conv = enc.model.encoder.pos_conv_embed.conv
    assert not torch.nn.utils.parametrize.is_parametrized(conv)
    assert torch.equal(conv.weight, ref.model.encoder.pos_conv_embed.conv.weight)


def test_muq_keeps_rotary_frequencies_and_front_end_fp32(weights):
    ref = extract.load_encoder("muq", weights["muq"])
    enc = extract.load_encoder("muq", weights["muq"])
    P.prepare_encoder(enc, "bf16")
    inv = [(n, b) for n, b in enc.model.named_buffers() if n.endswith("inv_freq")]
    want = dict(ref.model.named_buffers())
    assert inv and all(b.dtype == torch.float32 and torch.equal(b, want[n]) for n, b in inv)
    b0 = enc.model.model.conv.conv[0]  # the convs that read the normalised mel
    assert all(p.dtype == torch.float32 for m in (b0.conv1, b0.bn1, b0.conv3, b0.bn3) for p in m.parameters())
    assert b0.conv2.weight.dtype == torch.bfloat16
    assert enc.model.model.conformer.layers[0].self_attn.linear_q.weight.dtype == torch.bfloat16


def test_muq_rotary_table_from_an_fp32_call_is_not_reused_in_bf16(weights):
    """An fp32 call caches fp32 rotary tables; after the cast they must be rebuilt in bf16 (else every
    attention layer silently promotes back to fp32)."""
    enc = extract.load_encoder("muq", weights["muq"])
    x = _wave(enc.sample_rate, 4.0)[None]
    P._forward(enc, x, "fp32")
    P._forward(enc, x, "bf16")
    tables = [m.cached_rotary_positional_embedding for m in enc.model.modules()
              if getattr(m, "cached_rotary_positional_embedding", None) is not None]
    assert tables and all(t.dtype == torch.bfloat16 for t in tables)


def test_m2d_norm_and_embeddings_stay_fp32(weights):
    enc = extract.load_encoder("m2d", weights["m2d"])
    P.prepare_encoder(enc, "bf16")
    m = enc.model
    assert {p.dtype for p in m.blocks.parameters()} == {torch.bfloat16}
    for t in (m.norm.weight, m.pos_embed, m.cls_token, m.patch_embed.proj.weight):
        assert t.dtype == torch.float32


def test_prepare_is_once_and_refuses_going_back(weights):
    enc = extract.load_encoder("m2d", weights["m2d"])
    x = np.stack(enc.split(_wave(16000, 3.0)))
    first = P._forward(enc, x, "bf16")
    w = enc.model.blocks[0].mlp.fc1.weight
    second = P._forward(enc, x, "bf16")
    assert enc.model.blocks[0].mlp.fc1.weight is w  # not re-cast per call
    np.testing.assert_array_equal(first, second)
    with pytest.raises(RuntimeError, match="reload"):
        P._forward(enc, x, "fp32")


def test_cast_except_leaves_kept_modules_untouched():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    P.cast_except(model, torch.bfloat16, keep=(model[1],))
    sd = model.state_dict()
    assert sd["0.weight"].dtype == sd["2.bias"].dtype == torch.bfloat16
    assert torch.equal(sd["1.weight"], before["1.weight"]) and sd["1.weight"].dtype == torch.float32


def test_identity_differs_between_bf16_and_fp32(weights):
    enc = extract.load_encoder("wavlm", weights["wavlm"])
    keys = {p: P.cache_key(enc, p) for p in ("fp32", "bf16", "fp16")}
    assert len(set(keys.values())) == 3
    assert P._encoder_identity(enc, "bf16")["config"]["compute_precision"] == "bf16"


def test_resolve_precision_per_device_and_encoder(monkeypatch):
    monkeypatch.delenv(P.CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(P, "cpu_bf16_native", lambda: True)
    monkeypatch.setattr(P, "cuda_bf16_supported", lambda device: True)
    assert P.resolve_precision("auto", "cuda", "wavlm") == "bf16"
    assert P.resolve_precision("auto", "cuda:1", "m2d") == "bf16"
    assert P.resolve_precision("fp16", "cuda", "muq") == "fp16"
    assert P.resolve_precision("auto", "cuda", "logmel") == "fp32"  # numpy: no reduced path anywhere
    assert P.resolve_precision("auto", "cpu", "wavlm") == "bf16"
    assert P.resolve_precision("auto", "cpu", "muq") == "bf16"
    assert P.resolve_precision("auto", "cpu", "m2d") == "bf16"
    assert P.resolve_precision("auto", "cpu", "logmel") == "fp32"
    assert P.resolve_precision("auto", "cpu") == "fp32"  # old call shape: no encoder named
    assert P.resolve_precision("auto", "mps", "wavlm") == "fp32"
    assert P.resolve_precision("bf16", "mps", "wavlm") == "fp32"  # no reduced path measured on mps
    assert P.resolve_precision("bf16", "cpu", "logmel") == "fp32"  # numpy: computes fp32
    assert P.resolve_precision("bf16", "cpu", "m2d") == "bf16"  # asked for explicitly
    assert P.resolve_precision("fp16", "cpu", "wavlm") == "fp32"  # recorded as what is computed
    assert P.resolve_precision("fp32", "cpu", "wavlm") == "fp32"
    # an encoder class or instance carries its own traits
    assert P.resolve_precision("auto", "cpu", extract.encoder_class("muq")) == "bf16"
    monkeypatch.setattr(P, "cpu_bf16_native", lambda: False)
    assert P.resolve_precision("auto", "cpu", "wavlm") == "fp32"
    assert P.resolve_precision("bf16", "cpu", "wavlm") == "bf16"  # explicit: emulated, but asked for
    monkeypatch.setattr(P, "cuda_bf16_supported", lambda device: False)  # e.g. a pre-Ampere GPU
    assert P.resolve_precision("auto", "cuda", "wavlm") == "fp16"
    assert P.resolve_precision("bf16", "cuda", "muq") == "fp16"
    with pytest.raises(UserError, match="unknown precision"):
        P.resolve_precision("int8", "cpu", "wavlm")


@pytest.mark.parametrize("value,expect", [("1", True), ("on", True), ("0", False), ("off", False)])
def test_environment_switch_forces_the_cpu_bf16_policy(monkeypatch, value, expect):
    for native in (True, False):
        monkeypatch.setattr(P, "cpu_bf16_native", lambda native=native: native)
        monkeypatch.setenv(P.CPU_BF16_ENV, value)
        assert P.cpu_bf16_policy() is expect
        assert P.resolve_precision("auto", "cpu", "wavlm") == ("bf16" if expect else "fp32")
        monkeypatch.delenv(P.CPU_BF16_ENV)
        assert P.cpu_bf16_policy() is native  # unset: the CPU decides


def test_environment_switch_refuses_other_values(monkeypatch):
    monkeypatch.setenv(P.CPU_BF16_ENV, "maybe")
    with pytest.raises(UserError, match="MMMOS_CPU_BF16"):
        P.resolve_precision("auto", "cpu", "wavlm")


def test_cpu_bf16_native_reads_flags(tmp_path, monkeypatch):
    detect = P.cpu_bf16_native.__wrapped__
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    assert detect(str(plain)) is False
    assert detect(str(tmp_path / "missing")) is False
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert detect(str(amx)) is True
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    assert detect(str(amx)) is False


@pytest.mark.parametrize("name,kw", [("wavlm", {}), ("muq", {}), ("m2d", {"input_frames": 608})])
def test_in_memory_random_encoder_equals_the_written_checkpoint(tmp_path, name, kw):
    """The benchmarks build encoders in memory; they must be the encoders the written files load as."""
    import importlib

    mod = importlib.import_module(f"mmmos.testing.{'muq' if name == 'muq' else name}")
    a = extract.load_encoder(name, mod.write_random_checkpoint(tmp_path / name, "tiny", seed=4, **kw))
    b = mod.random_encoder("tiny", seed=4, **kw)
    w = _wave(a.sample_rate, 3.0, seed=2)
    np.testing.assert_array_equal(a.embed(w), b.embed(w))
    assert b.weights is None
    drop = {"source_format"}  # wavlm records the file format; in memory it is "random"
    assert ({k: v for k, v in a.identity()["config"].items() if k not in drop}
            == {k: v for k, v in b.identity()["config"].items() if k not in drop})
