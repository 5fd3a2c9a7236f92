"""Track 1 prompts into the cache: each DISTINCT prompt text is encoded once per text encoder.

A text encoder (``roberta``, ``hashtext``; :data:`mmmos.extract.TEXT_ENCODERS`) gets its own encoder group in
the store, keyed by its identity (weights and tokenizer sha256, ``max_length``, ...; see
:mod:`mmmos.extract.roberta`). Each prompt is one "clip" of that group: id ``prompt_key(text)``
(:func:`mmmos.core.prompts.prompt_key`), frames = the token vectors ``(L, dim)``, frame rate 1.0 (one frame
per token, so ``duration`` = L), no audio path and no source. A clip's prompt frames are found through the
manifest's ``prompt`` column: ``group.read(prompt_key(row["prompt"]))``.

Resume: prompts already cached (valid) are skipped; damaged ones are re-encoded and replaced. A batch that
fails is retried prompt by prompt, and a prompt that still fails is a failure row (clip id = its key). Nothing
is zero-filled. Prompts longer than ``max_length`` tokens are truncated by the encoder and counted
(``truncated`` in the return value, a warning in the log).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mmmos.cache_store import EncoderGroup, GroupWriter, clip_key
from mmmos.core.prompts import prompt_key

from .report import ExtractReport

log = logging.getLogger("mmmos.extract")

TEXT_BATCH = 32  # prompts per encode() call


@dataclass
class TextResult:
    """What one text encoder did: prompts written, reused, truncated (of those encoded now)."""

    name: str
    key: str = ""
    distinct: int = 0
    written: int = 0
    reused: int = 0
    truncated: int = 0
    failed: list[str] = field(default_factory=list)


def text_identity(enc) -> dict[str, Any]:
    """The store identity of a text encoder: its own identity plus the token "rate" the store records."""
    return {**enc.identity(), "modality": "text", "sample_rate": 0, "frame_rate": 1.0}


def distinct_prompts(texts) -> dict[str, str]:
    """``{prompt_key(text): text}`` of the distinct non-empty texts, in first-seen order."""
    out: dict[str, str] = {}
    for t in texts:
        if t:
            out.setdefault(prompt_key(t), t)
    return out


def plan_prompts(group: EncoderGroup, keys: list[str]) -> tuple[list[str], set[str]]:
    """(keys to encode, of those the ones whose damaged cached copy is replaced)."""
    bad = group.damaged_keys()
    todo, replace = [], set()
    for k in keys:
        if k in group.index and group.is_valid(k):
            continue
        if k in group.index or clip_key(k) in bad:
            replace.add(k)
        todo.append(k)
    return todo, replace


def _encode(enc, texts: list[str], on_error) -> tuple[list, int]:
    """(frames or None per text, number truncated); a failing batch is retried text by text."""
    try:
        r = enc.encode_report(texts)
        return r.frames, len(r.truncated)
    except Exception:  # noqa: BLE001 - isolate the culprit
        frames, n_trunc = [], 0
        for t in texts:
            try:
                r = enc.encode_report([t])
                frames.append(r.frames[0])
                n_trunc += len(r.truncated)
            except Exception as e:  # noqa: BLE001
                on_error(t, e)
                frames.append(None)
        return frames, n_trunc


def encode_prompts(name: str, enc, group: EncoderGroup, writer: GroupWriter, prompts: dict[str, str],
                   rep: ExtractReport, batch: int = TEXT_BATCH) -> TextResult:
    """Encode the prompts of ``prompts`` ({key: text}) not cached in ``group`` and write them through ``writer``."""
    from .pipeline import compute_policy

    res = TextResult(name, writer.info.key, distinct=len(prompts))
    writer.computed = compute_policy(enc, batch, "fp32")  # prompts are padded per batch: the policy is recorded
    todo, replace = plan_prompts(group, list(prompts))
    res.reused = len(prompts) - len(todo)
    mine = writer.claim(todo) if todo else []

    def fail(text: str, e: Exception) -> None:
        res.failed.append(prompt_key(text))
        rep.fail(prompt_key(text), None, name, "encode", f"prompt {text[:60]!r}: {type(e).__name__}: {e}")

    for s in range(0, len(mine), batch):
        keys = mine[s:s + batch]
        frames, n_trunc = _encode(enc, [prompts[k] for k in keys], fail)
        res.truncated += n_trunc
        for k, f in zip(keys, frames):
            if f is None:
                continue
            try:
                writer.write(k, f, None, float(f.shape[0]), source=None, replace=k in replace)
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                rep.fail(k, None, name, "write", f"{type(e).__name__}: {e}")
    if res.truncated:
        log.warning("%s: %d of %d prompts encoded now were longer than %d tokens and were truncated", name,
                    res.truncated, len(mine), getattr(enc, "max_length", 0))
    return res


def run_text_encoders(names: list[str], weights: dict[str, str], store, prompts: dict[str, str], device: str,
                      store_dtype: str, rep: ExtractReport) -> list[TextResult]:
    """Load each text encoder, encode the prompts it lacks, commit; an encoder that fails to load is a failure."""
    from . import load_encoder

    results = []
    for name in names:
        try:
            enc = load_encoder(name, weights.get(name), device=device)
        except Exception as e:  # noqa: BLE001 - a bad weights folder stops only this encoder
            rep.fail("*", weights.get(name), name, "load", e)
            continue
        writer = store.writer(text_identity(enc), dtype=store_dtype)
        try:
            res = encode_prompts(name, enc, store.group(writer.info.key), writer, prompts, rep)
        finally:
            try:
                writer.close()
            except Exception as e:  # noqa: BLE001 - e.g. a disk full while committing
                rep.fail("*", None, name, "commit", f"{type(e).__name__}: {e}")
        res.written = len(writer.committed)
        rep.skipped[name], rep.written[name] = res.reused, res.written
        results.append(res)
    return results


def format_text_results(results: list[TextResult]) -> str:
    """One line per text encoder: distinct prompts, written, reused, truncated."""
    return "\n".join(f"{r.name} ({r.key}): {r.distinct} distinct prompts; {r.written} encoded, {r.reused} already "
                     f"cached; {r.truncated} truncated to the encoder's max length" for r in results)


__all__ = ["TextResult", "distinct_prompts", "encode_prompts", "format_text_results", "plan_prompts",
           "run_text_encoders", "text_identity"]
