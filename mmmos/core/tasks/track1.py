"""Task ``track1``: AudioMOS 2025 Track 1 (MusicEval) - MI and TA of text-to-music clips on 1-5.

Axes: MI (overall musical impression, the lists' ``overall`` column) and TA (text alignment, ``textual``).
Labels are the mean of 5 ratings on 1-5, so multiples of 0.2.

Clip ids: official names look like ``audiomos2025-track1-S002_P044`` (``.wav`` in the MOS lists, none in the
eval list). System id = the name without the ``audiomos2025-track1-`` prefix, split on ``_``, first part
(``S002``); prompt id = the second part (``P044``). A name without the prefix counts only when it already has
the ``S<digits>_<rest>`` shape (a user's ``my_song.wav`` has no system rather than system ``my``).

Answer file: ``<id>,<overall>,<textual>`` per line, id without ``.wav``, 8 decimals, sorted by id, no header.
Domain: always ``music``.
"""
from __future__ import annotations

import re

from mmmos.core.tasks.base import AnswerLayout, Task

AXES = ("MI", "TA")
AXIS_TITLES = {"MI": "overall", "TA": "textual"}
DOMAINS = ("music",)
ID_PREFIX = "audiomos2025-track1-"
#: Systems whose prompt text lives in ``demo_prompt_info.txt`` keyed by the full file name (SPEC section 9).
DEMO_PROMPT_SYSTEMS = ("S001", "S006", "S013", "S017", "S018", "S033")

_BARE_NAME_RE = re.compile(r"^S\d+_[^_]+")


def clip_name(text: str | None) -> str | None:
    """The file name of an id or path, without folders and without a ``.wav`` extension (any case)."""
    if not text:
        return None
    name = text.replace("\\", "/").rsplit("/", 1)[-1]
    if name.lower().endswith(".wav"):
        name = name[:-4]
    return name or None


def _parts(text: str | None) -> list[str] | None:
    name = clip_name(text)
    if name is None:
        return None
    if name.startswith(ID_PREFIX):
        name = name[len(ID_PREFIX):]
    elif not _BARE_NAME_RE.match(name):
        return None
    parts = name.split("_")
    return parts if parts[0] else None


def system_of(clip_id: str | None, path: str | None) -> str | None:
    """``S002`` from ``audiomos2025-track1-S002_P044[.wav]`` (clip id first, then the path's file name)."""
    for text in (clip_id, path):
        parts = _parts(text)
        if parts:
            return parts[0]
    return None


def prompt_id_of(clip_id: str | None, path: str | None = None) -> str | None:
    """``P044`` from ``audiomos2025-track1-S002_P044[.wav]``; None when the name has no second part."""
    for text in (clip_id, path):
        parts = _parts(text)
        if parts and len(parts) > 1 and parts[1]:
            return parts[1]
    return None


def domain_of(clip_id: str | None, path: str | None) -> str | None:
    """Every Track 1 clip is music."""
    return "music"


_LIST_HEADERS = {"overall": "MI", "textual": "TA"}
_CSV_HEADERS = {**_LIST_HEADERS, **{a.lower(): a for a in AXES}}

TRACK1 = Task(
    name="track1",
    title="AudioMOS 2025 Track 1 (MusicEval): MI and TA (1-5) of text-to-music clips",
    axes=AXES,
    axis_titles=AXIS_TITLES,
    score_range=(1.0, 5.0),
    label_columns={"musiceval": _LIST_HEADERS, "csv": _CSV_HEADERS},
    answer=AnswerLayout(header_id="id", decimals=8, strip_suffix=".wav", sort_ids=True,
                        archive_member="answer.txt"),  # submitted as answer.txt inside a zip
    system_of=system_of,
    domain_of=domain_of,
    domains=DOMAINS,
    composite_of=None,
    inputs=("audio", "prompt"),
    notes={"labels": "mean of 5 ratings, multiples of 0.2", "inputs": "audio + text prompt"},
)
