"""Every file of an exported predictor is pinned by sha256 in ``predictor.json`` (``"files"``) and checked on load.

``predictor.json`` already pins the *encoder* weights; without this a flipped byte in ``members/<m>.pt`` would
still load (a float changed is a valid tensor) and change the scores without a word.  So:

* :func:`pin_files` (export): ``{relative path: sha256}`` of every file in the folder except ``predictor.json``;
* :func:`check_pins` (load): each pinned file exists and hashes to its record (an error names the file and both
  hashes), no file the members load is unpinned, and no stray file sits in ``members/``.  A folder written before
  pins existed is refused with the command that re-exports it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from .errors import PredictorError

FILES_KEY = "files"


class TamperedModelError(PredictorError):
    """A file of an exported predictor differs from the sha256 its ``predictor.json`` pins (or is missing)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pin_files(folder: Path, spec_file: str) -> dict[str, str]:
    """``{posix relative path: sha256}`` of every file under ``folder`` but ``spec_file``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != spec_file:
            out[p.relative_to(folder).as_posix()] = sha256_file(p)
    return out


def _safe(rel: str, where: str) -> str:
    pp = PurePosixPath(rel)
    if pp.is_absolute() or ".." in pp.parts or not pp.parts:
        raise PredictorError(f"{where}: pinned file {rel!r} lies outside the predictor folder")
    return rel


def check_pins(model_dir: str | os.PathLike, spec: dict, spec_file: Path, member_files: list[str]) -> None:
    """Refuse a predictor folder whose files are not exactly the ones ``spec`` pins (see the module doc)."""
    root = Path(model_dir)
    pins = spec.get(FILES_KEY)
    if pins is None:
        raise PredictorError(
            f"{spec_file}: written by an older mmmos that did not pin the model's files by sha256, so they cannot be "
            f"checked; re-export it from its sweep run: `mmmos ensemble RUN --export {root}` (same "
            f"--export-strategy; the run folder is recorded under \"source\" in {spec_file.name})")
    if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
        raise PredictorError(f"{spec_file}: malformed \"{FILES_KEY}\" record (expected {{path: sha256}})")
    for rel in member_files:
        if rel not in pins:
            raise TamperedModelError(f"{root / rel}: not pinned in {spec_file.name} (the model's files were changed "
                                     f"after export; re-export it with `mmmos ensemble RUN --export {root}`)")
    for rel, want in sorted(pins.items()):
        p = root / _safe(rel, str(spec_file))
        if not p.is_file():
            raise TamperedModelError(f"{p}: missing (pinned in {spec_file.name}); re-export the model")
        got = sha256_file(p)
        if got != want:
            raise TamperedModelError(f"{p}: sha256 {got} differs from {want} pinned in {spec_file.name}: the file "
                                     f"was changed after export; re-export the model (`mmmos ensemble RUN --export "
                                     f"{root}`)")
    members = root / "members"
    if members.is_dir():
        stray = sorted(p.relative_to(root).as_posix() for p in members.rglob("*") if p.is_file()
                       and p.relative_to(root).as_posix() not in pins)
        if stray:
            raise TamperedModelError(f"{root}: {', '.join(stray[:3])} not pinned in {spec_file.name} (added after "
                                     f"export); remove it or re-export the model")


__all__ = ["FILES_KEY", "TamperedModelError", "check_pins", "pin_files", "sha256_file"]
