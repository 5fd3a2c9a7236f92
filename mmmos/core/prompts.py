"""Text prompts in the frame cache (Track 1): each distinct prompt is encoded once and cached under its own key.

A text encoder's group in the cache stores one "clip" per distinct prompt, keyed by :func:`prompt_key` (a hash of
the exact prompt text), holding the token sequence ``(L, dim)``; a clip's prompt frames are found through its
manifest's ``prompt`` column. Identical text shares one entry whatever clips use it.
"""
from __future__ import annotations

import hashlib

PROMPT_PREFIX = "prompt-"


def prompt_key(text: str) -> str:
    """The cache clip id of prompt ``text`` (sha256 of its UTF-8 bytes, 24 hex digits)."""
    return PROMPT_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def is_prompt_key(clip_id: str) -> bool:
    return clip_id.startswith(PROMPT_PREFIX)


__all__ = ["PROMPT_PREFIX", "is_prompt_key", "prompt_key"]
