"""Text encoders for Track 1 prompts: ``roberta`` (a local RoBERTa-base folder) and ``hashtext`` (weight-free).

Text does not fit the audio ``split / forward_batch / join`` steps, so :class:`TextEncoder` is a small base of
its own: ``encode(texts) -> list of (L_i, dim) float32`` (one array of real-token vectors per text, pads
removed), ``identity()`` (everything that determines those vectors) and ``identity_key()``.

``roberta``: the folder holds ``config.json``, ``model.safetensors`` or ``pytorch_model.bin`` and the tokenizer
(``vocab.json`` + ``merges.txt``, or ``tokenizer.json``). ``from_pretrained`` is never called (it may reach the
hub); we build ``RobertaModel`` from config.json and load the weights with strict key and shape checks: a
missing or unexpected key is an :class:`EncoderLoadError` naming the file, never random weights. Keys may carry
the ``roberta.`` prefix of the masked-LM checkpoint; its ``lm_head.*``, a ``pooler.*`` and the old
``embeddings.position_ids`` buffer are not features and are ignored. Output: the last hidden state of the real
tokens (attention mask applied), at most ``max_length`` = 128 tokens including ``<s>`` and ``</s>``; longer
prompts are truncated and counted (``truncated`` in :meth:`RobertaTextEncoder.encode_report`, a running total
in ``n_truncated``, and a log warning).

``hashtext``: deterministic token vectors from blake2b hashes of each word and its character trigrams (summed,
then L2-normalised), after a fixed ``<s>`` vector so every text has at least one token; for demos and tests.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # we never resolve hub ids; make sure nothing tries

import numpy as np

from .base import CODE_VERSION, EncoderLoadError, load_checkpoint, sha256_file, strict_load, transformers_without_sklearn

log = logging.getLogger(__name__)

MAX_LENGTH = 128
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
# Parts of a RoBERTa checkpoint that are not the encoder (masked-LM head, pooler, a legacy buffer).
IGNORED_PREFIXES = ("lm_head.", "pooler.", "embeddings.position_ids")


@dataclass
class TextEncoding:
    """What :meth:`TextEncoder.encode_report` returns: per-text token vectors and the truncated texts' indices."""

    frames: list[np.ndarray]
    truncated: list[int]


class TextEncoder:
    """Base of the prompt encoders: ``name``, ``dim``, ``max_length``, ``config`` (everything that changes output)."""

    name: str = "text"
    dim: int = 0
    modality: str = "text"  # reads prompts, not audio
    needs_weights: bool = True

    def __init__(self, *, max_length: int = MAX_LENGTH, config: dict | None = None) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"{self.name}: max_length must be an int >= 2, got {max_length!r}")
        self.max_length = max_length
        self.config: dict[str, Any] = dict(config or {})
        self.n_truncated = 0

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "dim": int(self.dim), "max_length": self.max_length, "config": self.config,
                "code_version": CODE_VERSION}

    def identity_key(self) -> str:
        """The cache folder name for this encoder (see ``cache_store.identity_key``)."""
        from mmmos.cache_store import identity_key

        return identity_key(self.identity())

    def encode_report(self, texts: Sequence[str]) -> TextEncoding:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``(L_i, dim)`` float32 per text; truncations are counted in ``n_truncated`` and logged."""
        report = self.encode_report(texts)
        if report.truncated:
            self.n_truncated += len(report.truncated)
            log.warning("%s: %d of %d prompts were longer than %d tokens and were truncated",
                        self.name, len(report.truncated), len(texts), self.max_length)
        return report.frames

    @staticmethod
    def _check_texts(texts: Sequence[str], name: str) -> list[str]:
        if isinstance(texts, str):
            raise TypeError(f"{name}: encode() takes a list of texts, not one string")
        out = list(texts)
        bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{name}: texts must be strings (item {bad[0]} is {type(out[bad[0]]).__name__})")
        return out


# ----------------------------------------------------------------------------------
# roberta
# ----------------------------------------------------------------------------------
def _weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise EncoderLoadError(f"{folder}: no weights file ({' or '.join(WEIGHT_FILES)})")


def encoder_state(raw: dict, source: str) -> dict:
    """The encoder's tensors of a checkpoint: ``roberta.`` prefix removed, non-encoder parts dropped."""
    if not raw:
        raise EncoderLoadError(f"{source}: empty checkpoint")
    prefixed = any(k.startswith("roberta.") for k in raw)
    out = {}
    for k, v in raw.items():
        key = k[len("roberta."):] if prefixed and k.startswith("roberta.") else k
        if not key.startswith(IGNORED_PREFIXES):
            out[key] = v
    return out


def load_tokenizer(folder: Path):
    """A ``RobertaTokenizerFast`` from local files only (tokenizer.json, else vocab.json + merges.txt)."""
    from transformers import RobertaTokenizerFast

    tok_json, vocab, merges = (folder / n for n in TOKENIZER_FILES)
    if tok_json.is_file():
        return RobertaTokenizerFast(tokenizer_file=str(tok_json))
    if vocab.is_file() and merges.is_file():
        return RobertaTokenizerFast(vocab_file=str(vocab), merges_file=str(merges))
    raise EncoderLoadError(f"{folder}: no tokenizer (needs tokenizer.json, or vocab.json and merges.txt)")


def tokenizer_hash(folder: Path) -> str:
    """sha256 over the present tokenizer files' names and contents' sha256 (a changed vocabulary = a new cache)."""
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            h.update(f"{name}:{sha256_file(folder / name)}\n".encode())
    return h.hexdigest()


class RobertaTextEncoder(TextEncoder):
    """Frozen RoBERTa last hidden states of a prompt's real tokens (see the module doc)."""

    name = "roberta"

    def __init__(self, model, tokenizer, folder: Path, weights: Path, *, device: str = "cpu",
                 max_length: int = MAX_LENGTH, batch_size: int = 16) -> None:
        cfg = model.config
        super().__init__(max_length=max_length, config={
            "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads, "vocab_size": cfg.vocab_size})
        if max_length > cfg.max_position_embeddings - cfg.pad_token_id - 1:
            raise EncoderLoadError(f"{folder}: max_length {max_length} exceeds the model's "
                                   f"{cfg.max_position_embeddings - cfg.pad_token_id - 1} positions")
        self.model, self.tokenizer, self.folder, self.weights = model, tokenizer, folder, weights
        self.device, self.batch_size, self.dim = device, int(batch_size), int(cfg.hidden_size)

    @classmethod
    def from_weights(cls, weights, device: str | None = None, *, max_length: int = MAX_LENGTH,
                     batch_size: int = 16, **options) -> "RobertaTextEncoder":
        """Load the local RoBERTa folder ``weights`` strictly, frozen, in eval mode."""
        if options:
            raise TypeError(f"roberta: unknown options {sorted(options)}")
        if weights is None:
            raise EncoderLoadError("roberta: a local RoBERTa folder is required (--weights roberta=/models/roberta-base)")
        folder = Path(weights)
        if not folder.is_dir():
            raise EncoderLoadError(f"{folder}: not a folder (expected config.json, weights and tokenizer files)")
        model = cls._build(folder)
        wfile = _weights_file(folder)
        strict_load(model, encoder_state(load_checkpoint(wfile), str(wfile)), str(wfile))
        device = device or "cpu"
        model.to(device).eval().requires_grad_(False)
        return cls(model, load_tokenizer(folder), folder, wfile, device=device, max_length=max_length,
                   batch_size=batch_size)

    @staticmethod
    def _build(folder: Path):
        with transformers_without_sklearn():
            from transformers import RobertaConfig, RobertaModel

        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise EncoderLoadError(f"{cfg_file}: config not found")
        try:
            raw = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise EncoderLoadError(f"{cfg_file}: not valid JSON ({e})") from e
        if not isinstance(raw, dict) or raw.get("model_type", "roberta") != "roberta":
            raise EncoderLoadError(f"{cfg_file}: not a RoBERTa config (model_type {raw.get('model_type')!r})")
        kept = {k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")}
        # eager attention: a prompt's vectors do not depend on the padding of its batch (to float rounding)
        cfg = RobertaConfig(**kept, attn_implementation="eager")
        return RobertaModel(cfg, add_pooling_layer=False)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights": str(self.weights), "sha256": sha256_file(self.weights),
                "tokenizer_sha256": tokenizer_hash(self.folder)}

    def encode_report(self, texts: Sequence[str]) -> TextEncoding:
        import torch

        texts = self._check_texts(texts, self.name)
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        truncated = [i for i, ids in enumerate(full) if len(ids) > self.max_length]
        frames: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            mask = enc["attention_mask"].to(self.device)
            with torch.inference_mode():
                h = self.model(input_ids=enc["input_ids"].to(self.device), attention_mask=mask).last_hidden_state
            for row, n in zip(h.float().cpu().numpy(), mask.sum(dim=1).tolist()):
                frames.append(np.ascontiguousarray(row[:n], dtype=np.float32))  # right padding: real tokens first
        return TextEncoding(frames, truncated)


# ----------------------------------------------------------------------------------
# hashtext
# ----------------------------------------------------------------------------------
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def _hashed_vector(token: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


class HashTextEncoder(TextEncoder):
    """Weight-free deterministic text vectors (see the module doc); ``dim`` 64 by default."""

    name = "hashtext"
    needs_weights = False  # built in

    def __init__(self, *, dim: int = 64, max_length: int = MAX_LENGTH, ngram: int = 3) -> None:
        super().__init__(max_length=max_length, config={"ngram": ngram, "hash": "blake2b-8"})
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"hashtext: dim must be a positive int, got {dim!r}")
        self.dim, self.ngram = dim, ngram
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_weights(cls, weights=None, device: str | None = None, **options) -> "HashTextEncoder":
        """No weights: ``weights`` must be None or empty (``device`` is ignored)."""
        if weights:
            raise EncoderLoadError(f"hashtext has no weights, got {weights!r}")
        return cls(**options)

    def _word(self, word: str) -> np.ndarray:
        if word not in self._cache:
            padded = f"<{word}>"
            grams = [padded[i:i + self.ngram] for i in range(max(1, len(padded) - self.ngram + 1))]
            v = _hashed_vector("w:" + word, self.dim) + sum(_hashed_vector("g:" + g, self.dim) for g in grams)
            self._cache[word] = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
        return self._cache[word]

    def encode_report(self, texts: Sequence[str]) -> TextEncoding:
        texts = self._check_texts(texts, self.name)
        frames, truncated = [], []
        for i, text in enumerate(texts):
            words = ["<s>"] + _WORD_RE.findall(text.lower())
            if len(words) > self.max_length:
                truncated.append(i)
                words = words[: self.max_length]
            frames.append(np.stack([self._word(w) for w in words]).astype(np.float32))
        return TextEncoding(frames, truncated)


__all__ = ["HashTextEncoder", "RobertaTextEncoder", "TextEncoder", "TextEncoding", "encoder_state",
           "load_tokenizer", "tokenizer_hash"]
