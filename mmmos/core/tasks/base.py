"""The :class:`Task` record and its answer-file layout (the registry lives in the package's ``__init__``;
task modules import this one, so the registry and the tasks form no import cycle)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

COMPOSITE = "composite"


@dataclass(frozen=True)
class AnswerLayout:
    """A challenge answer file: ``id,<axis>,...`` per line, no header."""

    header_id: str = "wavID"       # the id column's name (used in messages and a tolerated header line)
    decimals: int | None = None    # None: shortest exact float repr; else fixed decimals
    strip_suffix: str = ""         # removed from ids when written (e.g. ".wav")
    sort_ids: bool = False         # sorted by id instead of input order
    archive_member: str | None = None  # the challenge takes the file zipped under this name (None: no zip)


@dataclass(frozen=True)
class Task:
    """What one challenge task predicts and how its files look (see the module doc)."""

    name: str
    title: str
    axes: tuple[str, ...]
    axis_titles: dict[str, str]                    # axis -> long name (plots, help)
    score_range: tuple[float, float]
    # per list format: header/field name (lower case) -> axis
    label_columns: dict[str, dict[str, str]]
    answer: AnswerLayout
    system_of: Callable[[str | None, str | None], str | None]   # (clip_id, path) -> system id
    domain_of: Callable[[str | None, str | None], str | None]   # (clip_id, path) -> domain
    domains: tuple[str, ...] = ()                  # allowed domain values (empty: any)
    domain_aliases: dict[str, str] = field(default_factory=dict)  # spelling in lists -> domain (lower case)
    composite_of: tuple[str, ...] | None = None    # axes averaged into "composite"; None: all axes
    # what a clip is scored from: ("audio",) or ("audio", "prompt"); picks the predictor (mmmos.app.predict.loader)
    inputs: tuple[str, ...] = ("audio",)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def n_axes(self) -> int:
        return len(self.axes)

    @property
    def composite_axes(self) -> tuple[str, ...]:
        return self.composite_of or self.axes

    @property
    def all_axes(self) -> tuple[str, ...]:
        """The axes followed by ``composite`` (the rows of every metrics table)."""
        return self.axes + (COMPOSITE,)

    @property
    def lo(self) -> float:
        return self.score_range[0]

    @property
    def hi(self) -> float:
        return self.score_range[1]

    def domain_named(self, text: str) -> str | None:
        """The domain a list's ``domain`` field names (case-insensitive, aliases applied), or None if unknown."""
        key = text.strip().lower()
        key = self.domain_aliases.get(key, key)
        return key if not self.domains or key in self.domains else None

    def in_range(self, value: float) -> bool:
        """Whether a label/score lies inside :attr:`score_range` (ends included)."""
        return self.lo <= value <= self.hi

    def axis_of_header(self, fmt: str, name: str) -> str | None:
        """The axis a column called ``name`` holds in list format ``fmt`` (case-insensitive), or None."""
        return self.label_columns.get(fmt, {}).get(name.strip().lower())


__all__ = ["AnswerLayout", "COMPOSITE", "Task"]
