"""Importing public ASTAR-NTU checkpoints (issue 18): state dicts written here by hand in the public layout
(its module names and shapes), imported strictly, and compared with a reference forward written from the public
modules' definitions (batch 1, with the two documented corrections: the positional encoding is on, the pooling
mask keeps the real tokens)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmmos.losses.distribution import coral_score, expected_score
from mmmos.sweep.track1 import recipe_configs
from mmmos.sweep.track1.public import PublicLayoutError, get_variant, import_public, recipe_variant

FULL = dict(d=1024, ff=2048, dt=768, dc=768, mi=(512, 256), ta=(384, 192), lmi=512, lta=384, bins=20)
TINY = dict(d=16, ff=32, dt=8, dc=12, mi=(8, 4), ta=(6, 3), lmi=8, lta=6, bins=20)


# --- the public layout, written from models/base_models.py and models/roberta_transformer.py ------------------
def _lin(out, inp, name):
    return {f"{name}.weight": (out, inp), f"{name}.bias": (out,)}


def public_shapes(cls: str, d, ff, dt, dc, mi, ta, lmi, lta, bins) -> dict[str, tuple]:
    enc = "audio_transformer_encoder.layers.0."
    s = {enc + "self_attn.in_proj_weight": (3 * d, d), enc + "self_attn.in_proj_bias": (3 * d,),
         **_lin(d, d, enc + "self_attn.out_proj"), **_lin(ff, d, enc + "linear1"), **_lin(d, ff, enc + "linear2"),
         enc + "norm1.weight": (d,), enc + "norm1.bias": (d,), enc + "norm2.weight": (d,), enc + "norm2.bias": (d,),
         **_lin(1, d, "audio_attentive_pool.attention_weights"), **_lin(dc, dt, "text_seq_proj"),
         "cross_attention.in_proj_weight": (3 * dc, dc), "cross_attention.in_proj_bias": (3 * dc,),
         **_lin(dc, dc, "cross_attention.out_proj"), "cross_attention_norm.weight": (dc,),
         "cross_attention_norm.bias": (dc,), **_lin(1, dc, "fused_attentive_pool.attention_weights"),
         "audio_pos_encoder.pe": (50, 1, d)}  # a buffer: saved, not a weight
    if cls == "lstm":
        s.update(_lin(dc, d, "audio_embed_to_common_for_crossattn"))
        for name, inp, h in (("overall", d, lmi), ("coherence", dc, lta)):
            s.update({f"{name}_lstm.weight_ih_l0": (4 * h, inp), f"{name}_lstm.weight_hh_l0": (4 * h, h),
                      f"{name}_lstm.bias_ih_l0": (4 * h,), f"{name}_lstm.bias_hh_l0": (4 * h,),
                      **_lin(bins, h, f"{name}_fc")})
        return {**s, "bin_centers": (bins,)}
    s.update(_lin(dc, d, "audio_seq_proj"))
    if cls == "coral":  # OrdinalPredictorHeadMonotonic(hidden_dims=[512, 256]) on both branches
        for name, inp in (("overall_quality_head", d), ("coherence_head", dc)):
            s.update({**_lin(mi[0], inp, f"{name}.shared_fc.0"), **_lin(mi[1], mi[0], f"{name}.shared_fc.3"),
                      **_lin(4, mi[1], f"{name}.raw_outputs_layer")})
        return s
    k = 1 if cls == "scalar" else bins
    for name, inp, (h1, h2) in (("overall_mlp", d, mi), ("coherence_mlp", dc, ta)):
        s.update({**_lin(h1, inp, f"{name}.0"), **_lin(h2, h1, f"{name}.3"), **_lin(k, h2, f"{name}.5")})
    return s if cls == "scalar" else {**s, "bin_centers": (bins,)}


CLASS_OF = {"distribution": "mlp", "decoupled": "mlp", "decoupled-lstm": "lstm", "coral": "coral", "scalar": "scalar"}


def public_state(variant: str, dims: dict, seed: int = 0, encoders: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    st = {k: torch.randn(shape, generator=g) * 0.2 for k, shape in public_shapes(CLASS_OF[variant], **dims).items()}
    for k in [k for k in st if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k.endswith("norm.weight")]:
        st[k] = 1.0 + st[k]
    if encoders:  # the saved net also holds the frozen encoders; they are not the head's
        st["muq.model.layer.weight"] = torch.zeros(3)
        st["roberta.embeddings.word_embeddings.weight"] = torch.zeros(2, 2)
    return st


# --- a reference forward at batch 1, from the public tensors ---------------------------------------------------
def _pe(t, d):
    pos = torch.arange(t, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


def _load(module, st, prefix):
    module.load_state_dict({k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}, strict=True)
    return module.eval()


def _pool(x, st, name):
    w = torch.softmax(x @ st[f"{name}.attention_weights.weight"].T + st[f"{name}.attention_weights.bias"], dim=1)
    return (w * x).sum(dim=1)


def _linear(x, st, name):
    return x @ st[f"{name}.weight"].T + st[f"{name}.bias"]


def reference(st, variant, audio, text, n_heads=4):
    """(MI score, TA score, MI dist or None, TA dist or None) of one clip (``audio`` (1,T,d), ``text`` (1,L,dt))."""
    cls = CLASS_OF[variant]
    d = audio.shape[2]
    ff = st["audio_transformer_encoder.layers.0.linear1.weight"].shape[0]
    layer = _load(nn.TransformerEncoderLayer(d, n_heads, ff, 0.3, activation="relu", batch_first=True), st,
                  "audio_transformer_encoder.layers.0.")
    h = layer(audio + _pe(audio.shape[1], d).unsqueeze(0))
    pooled_a = _pool(h, st, "audio_attentive_pool")
    kv_in = audio if variant.startswith("decoupled") else h
    kv = _linear(kv_in, st, "audio_embed_to_common_for_crossattn" if cls == "lstm" else "audio_seq_proj")
    q = _linear(text, st, "text_seq_proj")
    dc = q.shape[2]
    attn = _load(nn.MultiheadAttention(dc, n_heads, dropout=0.3, batch_first=True), st, "cross_attention.")
    fused = F.layer_norm(attn(q, kv, kv)[0], (dc,), st["cross_attention_norm.weight"], st["cross_attention_norm.bias"])
    pooled_t = _pool(fused, st, "fused_attentive_pool")
    out = []
    for pooled, mlp_name, head_name, lstm_name in ((pooled_a, "overall_mlp", "overall_quality_head", "overall"),
                                                   (pooled_t, "coherence_mlp", "coherence_head", "coherence")):
        if cls == "lstm":
            n = st[f"{lstm_name}_lstm.weight_hh_l0"].shape[1]
            lstm = _load(nn.LSTM(pooled.shape[1], n, batch_first=True), st, f"{lstm_name}_lstm.")
            logits = _linear(lstm(pooled.unsqueeze(1))[0][:, -1], st, f"{lstm_name}_fc")
        elif cls == "coral":
            z = F.relu(_linear(F.relu(_linear(pooled, st, f"{head_name}.shared_fc.0")), st, f"{head_name}.shared_fc.3"))
            raw = _linear(z, st, f"{head_name}.raw_outputs_layer")
            logits = [raw[:, 0]]
            for j in range(1, 4):
                logits.append(logits[-1] - F.softplus(raw[:, j]))
            p = torch.sigmoid(torch.stack(logits, dim=1))
            probs = torch.cat([1 - p[:, :1], p[:, :-1] - p[:, 1:], p[:, -1:]], dim=1)
            out.append((float((probs * torch.arange(1, 6).float()).sum()), None))
            continue
        else:
            logits = _linear(F.relu(_linear(F.relu(_linear(pooled, st, f"{mlp_name}.0")), st, f"{mlp_name}.3")),
                             st, f"{mlp_name}.5")
        if cls == "scalar":
            out.append((float(logits[0, 0]), None))
        else:
            p = torch.softmax(logits, dim=1)
            out.append((float((p * torch.linspace(1, 5, p.shape[1])).sum()), p[0]))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def ours(head, audio, text):
    out = head(audio, torch.tensor([audio.shape[1]]), text, torch.ones(1, text.shape[1], dtype=torch.long))
    if head.output_kind == "scores":
        return float(out[0, 0]), float(out[0, 1]), None, None
    s = expected_score(out) if head.output_kind == "distribution" else coral_score(out)
    dists = (torch.softmax(out[0, 0], -1), torch.softmax(out[0, 1], -1)) if head.output_kind == "distribution" \
        else (None, None)
    return float(s[0, 0]), float(s[0, 1]), *dists


def _inputs(dims, t=9, l=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, t, dims["d"], generator=g), torch.randn(1, l, dims["dt"], generator=g)


def _same(a, b, atol):
    assert abs(a[0] - b[0]) < atol and abs(a[1] - b[1]) < atol
    for x, y in zip(a[2:], b[2:]):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, atol=atol, rtol=0)


@pytest.mark.parametrize("variant", list(CLASS_OF))
def test_imported_tiny_model_equals_the_public_forward(variant):
    st = public_state(variant, TINY)
    head = import_public(st, variant)
    audio, text = _inputs(TINY)
    with torch.no_grad():
        _same(ours(head, audio, text), reference(st, variant, audio, text), 1e-5)
    assert head.config["decoupled"] == variant.startswith("decoupled")
    assert head.config["lstm_head"] == (variant == "decoupled-lstm")


@pytest.mark.parametrize("cfg", recipe_configs(), ids=lambda c: c.name)
def test_each_recipe_model_imports_strictly_at_full_size_and_predicts(cfg):
    from mmmos.heads import build_head

    v = recipe_variant(cfg.head_cfg)
    dims = {**FULL, **({"ta": (512, 256)} if v.name == "coral" else {})}
    st = public_state(v.name, dims, seed=hash(cfg.name) % 1000)
    head = import_public(st, v)
    # the recipe's own head has exactly these tensors: public weights load into what the sweep trains
    own = build_head("dual_branch", 1024, n_axes=2, **cfg.head_cfg).state_dict()
    assert {k: tuple(t.shape) for k, t in own.items()} == {k: tuple(t.shape) for k, t in head.state_dict().items()}
    audio, text = _inputs(FULL, t=6, l=4)
    with torch.no_grad():
        _same(ours(head, audio, text), reference(st, v.name, audio, text), 2e-4)


def test_strict_import_names_every_missing_unexpected_and_misshaped_key():
    st = public_state("distribution", TINY)
    del st["coherence_mlp.3.bias"]
    st["overall_mlp.4.weight"] = torch.zeros(2, 2)  # a ReLU slot: no weights there
    st["text_seq_proj.bias"] = torch.zeros(5)
    with pytest.raises(PublicLayoutError) as e:
        import_public(st, "distribution", where="ck.pt")
    msg = str(e.value)
    assert "\n" not in msg and "ck.pt" in msg and "MuQRoBERTaTransformerDistributionPredictor" in msg
    assert "missing: coherence_mlp.3.bias" in msg and "unexpected: overall_mlp.4.weight" in msg
    assert "mis-shaped: text_seq_proj.bias [5] (expected [12])" in msg
    # the LSTM model's keys are not the distribution model's
    with pytest.raises(PublicLayoutError, match="unexpected: .*overall_fc.weight"):
        import_public(public_state("decoupled-lstm", TINY), "distribution")
    with pytest.raises(PublicLayoutError, match="unknown public variant"):
        get_variant("bilstm")
    with pytest.raises(PublicLayoutError, match="not a state dict"):
        import_public({"a": 1}, "coral")


def test_wrapped_and_dataparallel_checkpoints_import():
    st = public_state("coral", TINY, encoders=False)
    a = import_public({"model_state_dict": {f"module.{k}": v for k, v in st.items()}}, "coral")
    b = import_public(st, "MuQRoBERTaTransformerDistributionPredictorCORALPredictor")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    assert torch.equal(a.mi_out.mlp[0].weight.detach(), st["overall_quality_head.shared_fc.0.weight"])
    assert torch.equal(a.ta_out.mlp[6].weight.detach(), st["coherence_head.raw_outputs_layer.weight"])


# --- the command: a run configuration the ensembles read, a predictor `mmmos predict` loads -------------------
@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    from mmmos.app.demos.track1 import AUDIO_ENCODER, TEXT_ENCODER
    from mmmos.app.demos.track1_corpus import make_track1_corpus
    from mmmos.extract.runner import ExtractConfig, run_extract

    root = tmp_path_factory.mktemp("t1pub")
    info = make_track1_corpus(root / "corpus", n_train=4, n_dev=6, n_pam=2, seed=5)
    store = str(root / "cache.zarr")
    run_extract(ExtractConfig(manifests=[info["dev"]], store=store, encoders=[AUDIO_ENCODER, TEXT_ENCODER],
                              task="track1", progress=False))
    return root, info, store


def test_import_command_writes_a_scored_configuration_and_a_predictor(small_cache, tmp_path, capsys):
    from mmmos.app.cli import main
    from mmmos.app.predict.track1 import Track1Predictor, expand_prompted_inputs, prompted_table
    from mmmos.cache_store import open_store
    from mmmos.core.prompts import prompt_key
    from mmmos.core.tasks import get_task

    root, info, store = small_cache
    grp_a, grp_t = open_store(store).group("logmel_slow"), open_store(store).group("hashtext")
    dims = {**TINY, "d": grp_a.info.dim, "dt": grp_t.info.dim}
    st = public_state("decoupled-lstm", dims, seed=3)
    ck = tmp_path / "ckpt_best_val_loss.pth"
    torch.save(st, ck)
    run, model = tmp_path / "run", tmp_path / "model"
    argv = ["import-public", str(ck), "--variant", "decoupled-lstm", "--store", store, "--run", str(run),
            "--name", "t1-decoupled-lstm-s1984", "--audio-encoder", "logmel_slow", "--text-encoder", "hashtext",
            "--dev", info["dev"], "--export", str(model)]
    assert main(argv) == 0
    cdir = run / "configs" / "t1-decoupled-lstm-s1984"
    assert (cdir / "DONE").is_file() and (run / "run.json").is_file()
    dev = pl.read_parquet(cdir / "predictions" / "dev.parquet")
    assert dev.height == 6 and "MI_p19" in dev.columns
    # the scored dev predictions are the public forward on the cached frames
    task = get_task("track1")
    items = expand_prompted_inputs([info["dev"]], task)
    it = items[0]
    audio = torch.from_numpy(np.asarray(grp_a.read(it.clip_id), np.float32)).unsqueeze(0)
    text = torch.from_numpy(np.asarray(grp_t.read(prompt_key(it.prompt)), np.float32)).unsqueeze(0)
    with torch.no_grad():
        mi, ta, _, _ = reference(st, "decoupled-lstm", audio, text)
    row = dev.filter(pl.col("clip_id") == it.clip_id)
    assert abs(row["MI"][0] - mi) < 1e-4 and abs(row["TA"][0] - ta) < 1e-4
    # the exported predictor reproduces them from audio + prompt
    p = Track1Predictor.load(model, device="cpu")
    got = prompted_table(list(p.predict_items(items)), p.axes).join(dev, on="clip_id", suffix="_ref")
    np.testing.assert_allclose(got["MI"].to_numpy(), got["MI_ref"].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(got["TA"].to_numpy(), got["TA_ref"].to_numpy(), atol=1e-5)
    capsys.readouterr()
    # a second import of the same name needs --force; a mis-shaped checkpoint is one line, exit 2
    assert main(argv) == 2 and "--force" in capsys.readouterr().err
    st["overall_fc.weight"] = torch.zeros(20, 5)
    torch.save(st, ck)
    assert main([*argv, "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "mis-shaped: overall_fc.weight [20, 5] (expected [20, 8])" in err
