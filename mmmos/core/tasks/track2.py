"""Task ``track2``: AudioMOS 2025 Track 2 (MMMOS) - PQ, PC, CE, CU on 0-10 for speech, music and sound.

System id: the ``sys...`` token of a Track 2 id (clip id, then file name); else, for AES-PAM paths
``PAM/human_eval/{audio,music}/<system>/<file>``, the parent folder; else none.

Domain: from the official id ``audiomos2025-track2-{speech,music,audio}-...`` (audio -> sound); else from the
path (PAM music -> music, PAM audio -> sound; EARS, LibriTTS, Common Voice/cv-corpus -> speech; MUSDB18,
MusicCaps -> music; AudioSet -> sound; the keyword nearest the file wins); else none.
"""
from __future__ import annotations

import re

from mmmos.core.tasks.base import AnswerLayout, Task

AXES = ("PQ", "PC", "CE", "CU")
AXIS_TITLES = {
    "PQ": "Production_Quality",
    "PC": "Production_Complexity",
    "CE": "Content_Enjoyment",
    "CU": "Content_Usefulness",
}
DOMAINS = ("speech", "music", "sound")

_SYS_TOKEN_RE = re.compile(r"(?:^|-)(sys[0-9A-Za-z]+)-utt[0-9A-Za-z]+")
_PAM_RE = re.compile(r"(?:^|/)pam/human_eval/(audio|music)/([^/]+)/[^/]+$", re.IGNORECASE)
_ID_DOMAIN_RE = re.compile(r"^audiomos2025-track2-(speech|music|audio)-", re.IGNORECASE)
_DOMAIN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), d)
    for p, d in (
        (r"(?<![a-z0-9])ears(?![a-z])", "speech"),  # not "years", "hearsay"
        (r"(?<![a-z0-9])libri-?tts", "speech"),
        (r"(?<![a-z0-9])(?:common[ _-]?voice|cv-corpus)", "speech"),
        (r"(?<![a-z0-9])musdb", "music"),
        (r"(?<![a-z0-9])music-?caps", "music"),
        (r"(?<![a-z0-9])audio-?set", "sound"),
    )
)


def _slashes(p: str) -> str:
    return p.replace("\\", "/")


def system_of(clip_id: str | None, path: str | None) -> str | None:
    """System id from a Track 2 id's ``sys...`` token, else from an AES-PAM path, else None."""
    for text in (clip_id, path):
        if text:
            m = _SYS_TOKEN_RE.search(_slashes(text).rsplit("/", 1)[-1])
            if m:
                return m.group(1)
    for text in (path, clip_id):
        if text:
            m = _PAM_RE.search(_slashes(text))
            if m:
                return m.group(2)
    return None


def domain_of_path(path: str | None) -> str | None:
    """"speech" / "music" / "sound" from dataset names in ``path``, else None."""
    if not path:
        return None
    p = _slashes(path)
    m = _PAM_RE.search(p)
    if m:
        return "music" if m.group(1).lower() == "music" else "sound"
    best: tuple[int, str] | None = None
    for pattern, domain in _DOMAIN_PATTERNS:
        for hit in pattern.finditer(p):
            # The keyword nearest the file name wins: it names the corpus, outer folders may not.
            if best is None or hit.start() > best[0]:
                best = (hit.start(), domain)
    return best[1] if best else None


def domain_of(clip_id: str | None, path: str | None) -> str | None:
    """Domain from the official id's domain token, else from the path (see the module doc)."""
    if clip_id:
        m = _ID_DOMAIN_RE.match(_slashes(clip_id).rsplit("/", 1)[-1])
        if m:
            return "sound" if m.group(1).lower() == "audio" else m.group(1).lower()
    return domain_of_path(path) or (domain_of_path(clip_id) if clip_id and clip_id != path else None)


_HEADERS = {**{a.lower(): a for a in AXES}, **{v.lower(): k for k, v in AXIS_TITLES.items()}}

TRACK2 = Task(
    name="track2",
    title="AudioMOS 2025 Track 2: PQ, PC, CE, CU (0-10) of speech, music and sound",
    axes=AXES,
    axis_titles=AXIS_TITLES,
    score_range=(0.0, 10.0),
    label_columns={"track2": _HEADERS, "jsonl": _HEADERS, "csv": _HEADERS},
    answer=AnswerLayout(header_id="wavID", decimals=None, strip_suffix="", sort_ids=False),
    system_of=system_of,
    domain_of=domain_of,
    domains=DOMAINS,
    domain_aliases={"audio": "sound"},
    composite_of=None,
)
