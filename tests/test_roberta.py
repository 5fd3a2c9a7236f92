"""Text encoders: a tiny random RoBERTa + BPE tokenizer saved in the real folder layout, loaded strictly; hashtext."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmmos.extract.base import EncoderLoadError
from mmmos.extract.roberta import HashTextEncoder, RobertaTextEncoder, TextEncoder

CORPUS = [
    "a calm piano piece with soft strings",
    "energetic rock song with electric guitar and drums",
    "lofi hip hop beat with vinyl crackle",
    "an orchestral film score, epic brass and choir",
    "jazz trio with upright bass, brushed drums and piano",
] * 20
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's order: <s>=0, <pad>=1, </s>=2


def make_folder(path, *, fmt="safetensors", tokenizer="bpe", drop_key=None, seed=0):
    """A tiny RoBERTa folder: config.json, masked-LM style weights (``roberta.`` prefix + lm_head), tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, special_tokens=SPECIALS, show_progress=False)
    bpe.save_model(str(path))
    vocab_size = bpe.get_vocab_size()
    if tokenizer == "json":  # a folder with tokenizer.json only (the fast tokenizer's own file)
        fast = RobertaTokenizerFast(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"))
        fast.backend_tokenizer.save(str(path / "tokenizer.json"))
        (path / "vocab.json").unlink()
        (path / "merges.txt").unlink()
    cfg = RobertaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=140, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, type_vocab_size=1)
    torch.manual_seed(seed)
    model = RobertaForMaskedLM(cfg).eval()
    (path / "config.json").write_text(cfg.to_json_string())
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    if drop_key:
        del state[drop_key]
    if fmt == "safetensors":
        from safetensors.torch import save_file

        state.pop("lm_head.decoder.weight", None)  # tied to the word embeddings, as the real file omits it
        save_file(state, str(path / "model.safetensors"))
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path, model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("roberta") / "roberta-tiny")


def direct(model, tokenizer, text, max_length=128):
    """Last hidden states of one text run alone (no padding), straight through the transformers model."""
    enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model.roberta(**enc).last_hidden_state[0].numpy()


def test_loads_and_matches_the_model_run_alone(folder):
    path, model = folder
    enc = RobertaTextEncoder.from_weights(path, batch_size=8)
    texts = ["a calm piano piece", "energetic rock song with electric guitar and drums and a long solo", "jazz"]
    out = enc.encode(texts)
    assert enc.dim == 32 and len(out) == 3
    for text, frames in zip(texts, out):
        ref = direct(model, enc.tokenizer, text)
        assert frames.dtype == np.float32 and frames.shape == ref.shape  # real tokens only, pads dropped
        np.testing.assert_allclose(frames, ref, atol=1e-5)
    assert all(not p.requires_grad for p in enc.model.parameters()) and not enc.model.training


def test_batch_padding_does_not_change_a_prompt(folder):
    enc = RobertaTextEncoder.from_weights(folder[0], batch_size=8)
    alone = enc.encode(["jazz"])[0]
    padded = enc.encode(["jazz", "an orchestral film score, epic brass and choir with strings"])[0]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_truncation_is_counted_and_reported(folder):
    enc = RobertaTextEncoder.from_weights(folder[0], max_length=16)
    long = " ".join(["piano"] * 40)
    report = enc.encode_report(["jazz", long])
    assert report.truncated == [1]
    assert report.frames[1].shape[0] == 16 and report.frames[0].shape[0] < 16
    enc.encode([long, long])
    assert enc.n_truncated == 2


def test_pytorch_bin_and_tokenizer_json(tmp_path):
    path, model = make_folder(tmp_path / "r", fmt="bin", tokenizer="json", seed=1)
    enc = RobertaTextEncoder.from_weights(path)
    np.testing.assert_allclose(enc.encode(["lofi beat"])[0], direct(model, enc.tokenizer, "lofi beat"), atol=1e-5)


def test_missing_key_is_an_error_naming_the_file(tmp_path):
    path, _ = make_folder(tmp_path / "r", drop_key="roberta.encoder.layer.1.output.dense.weight")
    with pytest.raises(EncoderLoadError, match=r"model\.safetensors.*missing keys.*encoder\.layer\.1\.output\.dense"):
        RobertaTextEncoder.from_weights(path)


def test_missing_files_are_errors(tmp_path):
    path, _ = make_folder(tmp_path / "r")
    (path / "merges.txt").unlink()
    with pytest.raises(EncoderLoadError, match="tokenizer"):
        RobertaTextEncoder.from_weights(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(EncoderLoadError, match="no weights file"):
        RobertaTextEncoder.from_weights(path)
    with pytest.raises(EncoderLoadError, match="not a folder"):
        RobertaTextEncoder.from_weights(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EncoderLoadError, match="not a RoBERTa config"):
        RobertaTextEncoder.from_weights(tmp_path / "bad")


def test_identity_tracks_weights_tokenizer_and_length(tmp_path):
    a, _ = make_folder(tmp_path / "a", seed=0)
    b, _ = make_folder(tmp_path / "b", seed=1)
    ia = RobertaTextEncoder.from_weights(a).identity()
    assert ia["max_length"] == 128 and len(ia["sha256"]) == 64 and len(ia["tokenizer_sha256"]) == 64
    assert ia["sha256"] != RobertaTextEncoder.from_weights(b).identity()["sha256"]
    assert ia["tokenizer_sha256"] == RobertaTextEncoder.from_weights(b).identity()["tokenizer_sha256"]
    assert RobertaTextEncoder.from_weights(a, max_length=64).identity_key() != RobertaTextEncoder.from_weights(a).identity_key()
    with (a / "vocab.json").open("a") as f:
        f.write(" ")
    assert RobertaTextEncoder.from_weights(a).identity()["tokenizer_sha256"] != ia["tokenizer_sha256"]


def test_hashtext_is_deterministic_and_bounded():
    enc = HashTextEncoder.from_weights(None, dim=16, max_length=5)
    assert isinstance(enc, TextEncoder)
    a = enc.encode(["Calm piano, soft strings", ""])
    b = HashTextEncoder(dim=16, max_length=5).encode(["calm PIANO soft strings", ""])
    np.testing.assert_array_equal(a[0], b[0])  # case and punctuation do not matter; a fresh instance agrees
    assert a[0].shape == (5, 16) and a[1].shape == (1, 16)  # <s> + 4 words; empty text keeps <s>
    np.testing.assert_allclose(np.linalg.norm(a[0], axis=1), 1.0, atol=1e-6)
    assert not np.allclose(a[0][1], a[0][2])
    report = enc.encode_report(["one two three four five six"])
    assert report.truncated == [0] and report.frames[0].shape == (5, 16)
    with pytest.raises(EncoderLoadError):
        HashTextEncoder.from_weights("/models/x")
    with pytest.raises(TypeError):
        enc.encode("not a list")
