"""``predictor.json``: the record of an exported predictor, read back as typed dataclasses.

::

    <out>/predictor.json      format + version, task, axes, the members (head config, z-score statistics,
                              encoder keys, training crop, grid rate, file), the identity of every encoder they
                              need (name, config, weights file + sha256, rates, dim, stored dtype), optional
                              default weights paths, where it came from
    <out>/members/<m>.pt      each member's head state dict (``torch.load(weights_only=True)``)

``"files"`` pins the sha256 of every file but ``predictor.json`` itself, checked on every read (:mod:`.pins`).

A stacked ensemble adds ``"stack"`` (the meta-model, see :mod:`.stacked`) and is written as format version 2,
so a reader that knows only version 1 refuses it instead of averaging the members; a plain ensemble stays
version 1. A folder written before tasks were recorded (no ``task`` key) reads as task ``track2``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmmos.core.tasks import DEFAULT_TASK, get_task

from .errors import PredictorError

FORMAT = "mmmos-predictor"
VERSION = 1
STACK_VERSION = 2  # a predictor with a "stack" record
VERSIONS = (VERSION, STACK_VERSION)
PREDICTOR_FILE = "predictor.json"
MEMBERS_DIR = "members"
DEFAULT_FEATURES = "per-encoder mean -> L2 -> concat"


def safe_member_name(name: str) -> str:
    """``name`` if it can be a file name inside ``members/`` (it is a configuration folder name)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise PredictorError(f"member name {name!r} cannot be a file name (it is a configuration folder name)")
    return name


@dataclass
class MemberSpec:
    """One member as ``predictor.json`` records it."""

    name: str
    file: str
    head_config: dict
    z_mean: list[float]
    z_std: list[float]
    encoder_keys: list[str]
    crop_seconds: float
    grid_rate: float | None
    clip_predictions: bool = True
    features: str = DEFAULT_FEATURES

    @classmethod
    def from_json(cls, d: dict) -> "MemberSpec":
        name = safe_member_name(str(d["name"]))
        return cls(name=name, file=str(d.get("file", f"{MEMBERS_DIR}/{name}.pt")), head_config=dict(d["head_config"]),
                   z_mean=[float(v) for v in d["z_mean"]], z_std=[float(v) for v in d["z_std"]],
                   encoder_keys=[str(k) for k in d["encoder_keys"]],
                   # every version-1 folder records the crop; 10 s is the sweep's default crop
                   crop_seconds=float(d.get("crop_seconds", 10.0)),
                   grid_rate=float(d["grid_rate"]) if d.get("grid_rate") is not None else None,
                   clip_predictions=bool(d.get("clip_predictions", True)),
                   features=str(d.get("features", DEFAULT_FEATURES)))

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PredictorSpec:
    """The whole ``predictor.json``."""

    members: list[MemberSpec]
    encoders: dict[str, dict]            # identity key -> encoder identity record
    task: str = DEFAULT_TASK
    weights: dict[str, str] = field(default_factory=dict)   # encoder name -> default weights path
    source: dict[str, Any] = field(default_factory=dict)    # run folder, creation time
    stack: dict | None = None                                # the meta-model of a stacked ensemble (.stacked)
    files: dict[str, str] = field(default_factory=dict)      # relative path -> sha256 of every other file (.pins)

    @property
    def axes(self) -> list[str]:
        return list(get_task(self.task).axes)

    @classmethod
    def from_json(cls, d: dict) -> "PredictorSpec":
        return cls(members=[MemberSpec.from_json(m) for m in d["members"]], encoders=dict(d["encoders"]),
                   task=str(d.get("task") or DEFAULT_TASK), weights=dict(d.get("weights") or {}),
                   source=dict(d.get("source") or {}), stack=d.get("stack"), files=dict(d.get("files") or {}))

    def to_json(self) -> dict:
        d = {"format": FORMAT, "version": STACK_VERSION if self.stack else VERSION, "task": self.task,
             "axes": self.axes, "members": [m.to_json() for m in self.members], "encoders": self.encoders,
             "weights": self.weights, "source": self.source, "files": self.files}
        if self.stack:
            d["stack"] = self.stack
        return d


def read_predictor_spec(model_dir: str | os.PathLike) -> dict:
    """``predictor.json`` of a predictor folder as JSON, checked for format, version, task and axes."""
    f = Path(model_dir) / PREDICTOR_FILE
    if not f.is_file():
        raise PredictorError(f"{model_dir}: not a predictor folder (no {PREDICTOR_FILE}); make one with "
                             f"`mmmos ensemble ... --export DIR`")
    try:
        spec = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PredictorError(f"{f}: not readable JSON ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise PredictorError(f"{f}: not an mmmos predictor (format {spec.get('format') if isinstance(spec, dict) else None!r})")
    if spec.get("version") not in VERSIONS:
        raise PredictorError(f"{f}: predictor format version {spec.get('version')} (this mmmos reads "
                             f"{', '.join(map(str, VERSIONS))})")
    if (spec.get("version") == STACK_VERSION) != bool(spec.get("stack")):
        raise PredictorError(f"{f}: format version {spec.get('version')} "
                             f"{'needs' if spec.get('version') == STACK_VERSION else 'cannot have'} a stack record")
    task = get_task(spec.get("task") or DEFAULT_TASK)
    if list(spec.get("axes", [])) != list(task.axes):
        raise PredictorError(f"{f}: axes {spec.get('axes')} are not those of task {task.name} {list(task.axes)}")
    if not spec.get("members"):
        raise PredictorError(f"{f}: no members")
    if spec.get("stack"):
        from .stacked import StackSpec

        from mmmos.core.manifests import has_prompts

        StackSpec.from_json(spec["stack"], task.axes, [str(m.get("name")) for m in spec["members"]], str(f),
                            saved_bins_ok=has_prompts(task))
    for m in spec["members"]:
        for k in m.get("encoder_keys", []):
            if k not in spec.get("encoders", {}):
                raise PredictorError(f"{f}: member {m.get('name')} needs encoder {k}, which has no identity record")
    from .pins import check_pins

    check_pins(model_dir, spec, f, [str(m.get("file", f"{MEMBERS_DIR}/{m.get('name')}.pt")) for m in spec["members"]])
    return spec


def load_spec(model_dir: str | os.PathLike) -> PredictorSpec:
    """The checked ``predictor.json`` of ``model_dir`` as a :class:`PredictorSpec`."""
    d = read_predictor_spec(model_dir)
    try:
        return PredictorSpec.from_json(d)
    except (KeyError, TypeError, ValueError) as e:
        raise PredictorError(f"{Path(model_dir) / PREDICTOR_FILE}: malformed member record "
                             f"({type(e).__name__}: {e})") from None


__all__ = ["FORMAT", "MEMBERS_DIR", "MemberSpec", "PREDICTOR_FILE", "PredictorSpec", "STACK_VERSION", "VERSION",
           "VERSIONS", "load_spec",
           "read_predictor_spec", "safe_member_name"]
