"""Track 1 in the manifest table: MusicEval lists (``*_mos_list.txt``, ``eval_list.txt``) and clip prompts.

A task whose label columns include the ``musiceval`` list format (track1) has text prompts: every row of its
manifest table gets a ``prompt``, in this order of precedence:

1. the row's own ``prompt`` field (plain CSV ``path,prompt[,MI,TA][,system]``); an empty field is an
   ``empty_prompt`` problem (not looked up elsewhere: the list says the prompt is empty);
2. the ``prompt`` argument (``--prompt TEXT``: one prompt for every clip, e.g. of a folder);
3. the MusicEval prompt tables: ``prompt_info.txt`` by prompt id (``P044``), ``demo_prompt_info.txt`` by file
   name for the demo systems (:func:`mmmos.core.manifests.musiceval.lookup_prompt`). The tables are looked for in the
   ``prompts`` folder when given (``--prompts DIR``), else beside the list, in the list's parent folder (the
   MusicEval root when the list is in ``sets/``) and in ``data_root``; in each folder and its ``sets/``.

A clip whose prompt cannot be found (no table, no entry, an empty entry) keeps a null prompt and becomes a
:class:`~mmmos.core.manifests.Problem` (``missing_prompt`` / ``empty_prompt`` / ``no_prompt_id``) naming the
clip and the table searched. Audio folder of a MusicEval list: ``<data_root>/wav`` (or ``data_root`` itself
when it has no ``wav/``), else ``<list folder>/../wav`` for MOS lists and ``<list folder>/wav`` for the eval
list (whichever exists, trying the other second).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import polars as pl

from mmmos.core.manifests.table import PROMPT_COLUMN, ManifestError, Problem, to_frame
from mmmos.core.tasks import Task

MUSICEVAL = "musiceval"   # the MOS-list format name (also the label_columns key that marks a prompted task)
EVAL_LIST_FORMAT = "eval_list"


def has_prompts(task: Task) -> bool:
    """Whether ``task``'s clips carry text prompts (its lists are MusicEval lists)."""
    return MUSICEVAL in task.label_columns


def wav_folder(list_path: Path, data_root: Path | None, fmt: str) -> Path:
    """Where the clips of a MusicEval list are (see the module doc)."""
    if data_root is not None:
        return data_root / "wav" if (data_root / "wav").is_dir() else data_root
    first, second = list_path.parent.parent / "wav", list_path.parent / "wav"
    if fmt == EVAL_LIST_FORMAT:
        first, second = second, first
    return second if not first.is_dir() and second.is_dir() else first


def _rows_to_frame(rows: list[dict], task: Task, split: str | None) -> pl.DataFrame:
    for r in rows:
        r["system"] = task.system_of(r["clip_id"], r["path"])
        r["domain"] = task.domain_of(r["clip_id"], r["path"])
        r["split"] = split
    return to_frame(rows, task)


def load_mos_list(path: Path, data_root: Path | None, split: str | None, task: Task,
                  check_labels: bool) -> pl.DataFrame:
    """A ``*_mos_list.txt`` (``name.wav,<overall>,<textual>``, no header) as a manifest table (no prompts yet)."""
    from mmmos.core.manifests.musiceval import read_mos_list

    _need_musiceval(path, task)
    rows = read_mos_list(path, wav_folder(path, data_root, MUSICEVAL), task, check_labels=check_labels)
    return _rows_to_frame(rows, task, split)


def load_eval_list(path: Path, data_root: Path | None, split: str | None, task: Task) -> pl.DataFrame:
    """``eval_list.txt`` (one clip id per line) as a manifest table without labels (no prompts yet)."""
    from mmmos.core.manifests.musiceval import read_eval_list

    _need_musiceval(path, task)
    return _rows_to_frame(read_eval_list(path, wav_folder(path, data_root, EVAL_LIST_FORMAT)), task, split)


def _need_musiceval(path: Path, task: Task) -> None:
    if not has_prompts(task):
        raise ManifestError(path, f"a MusicEval (Track 1) list cannot be read for task {task.name}; "
                                  "use --task track1")


def prompt_dirs(manifest: Path, data_root: Path | None, prompts: Path | None) -> list[Path]:
    """The folders searched for prompt tables, in order (see the module doc)."""
    if prompts is not None:
        return [prompts]
    base = manifest if manifest.is_dir() else manifest.parent
    out: list[Path] = []
    for d in (base, base.parent, data_root):
        if d is not None and d not in out:
            out.append(d)
    return out


def find_prompt_tables(dirs: list[Path]):
    """The :class:`~mmmos.core.manifests.musiceval.PromptTables` of the first folder (or its ``sets/``) holding
    ``prompt_info.txt``; None when none does."""
    from mmmos.core.manifests.musiceval import read_prompt_tables

    for d in dirs:
        if _holds_tables(d):
            return read_prompt_tables(d)
    return None


def _holds_tables(d: Path) -> bool:
    from mmmos.core.manifests.musiceval import PROMPT_INFO

    return (d / PROMPT_INFO).is_file() or (d / "sets" / PROMPT_INFO).is_file()


def attach_prompts(df: pl.DataFrame, task: Task, manifest: Path, data_root: Path | None, *,
                   prompts: Path | None = None, prompt: str | None = None,
                   problems: list[Problem] | None = None) -> pl.DataFrame:
    """Fill the ``prompt`` column of a loaded manifest table (see the module doc); returns the new table."""
    if not has_prompts(task):
        if prompt is not None or prompts is not None:
            raise ManifestError(manifest, f"task {task.name} has no text prompts (--prompt/--prompts are for track1)")
        return df.with_columns(pl.lit(None, dtype=pl.String).alias(PROMPT_COLUMN))
    if prompt is not None and not prompt.strip():
        raise ManifestError(manifest, "the prompt given for every clip (--prompt) is empty")
    if prompts is not None and not prompts.is_dir():
        raise ManifestError(prompts, "prompt folder not found (--prompts takes the folder holding prompt_info.txt)")
    if prompts is not None and not _holds_tables(prompts):  # named by the user: one line, not an error row each
        raise ManifestError(prompts, "no prompt_info.txt in this folder or its sets/ (--prompts takes the folder "
                                     "holding prompt_info.txt)")
    texts: list[str | None] = df.get_column(PROMPT_COLUMN).to_list()
    ids, systems = df.get_column("clip_id").to_list(), df.get_column("system").to_list()
    found: list[Problem] = []
    dirs = prompt_dirs(manifest, data_root, prompts)
    tables, looked = None, False
    for i, (cid, text) in enumerate(zip(ids, texts)):
        if text is not None:
            texts[i] = text.strip() or None
            if texts[i] is None:
                found.append(Problem("empty_prompt", i, cid, f"clip {cid}: empty prompt in {manifest}", str(manifest)))
            continue
        if prompt is not None:
            texts[i] = prompt.strip()
            continue
        if not looked:
            tables, looked = find_prompt_tables(dirs), True
        texts[i], problem = _from_tables(cid, systems[i], tables, dirs)
        if problem is not None:
            found.append(Problem(problem.kind, i, cid, problem.message, problem.path))
    _report(found, manifest, problems)
    return df.with_columns(pl.Series(PROMPT_COLUMN, texts, dtype=pl.String))


def _from_tables(cid: str, system: str | None, tables, dirs: list[Path]) -> tuple[str | None, Problem | None]:
    from mmmos.core.manifests.musiceval import PROMPT_INFO, lookup_prompt
    from mmmos.core.tasks.track1 import clip_name

    if tables is None:
        where = ", ".join(os.fsdecode(d) for d in dirs)
        return None, Problem("missing_prompt", -1, cid,
                             f"clip {cid}: no prompt: no {PROMPT_INFO} found (looked in {where} and their sets/); "
                             "give --prompts DIR, or --prompt TEXT, or a prompt column", None)
    _, text, problem = lookup_prompt(clip_name(cid) or cid, system, tables)
    return text, problem


def _report(found: list[Problem], manifest: Path, problems: list[Problem] | None) -> None:
    if problems is not None:
        problems.extend(found)
    elif found:  # nobody asked for the list: at least say so, once
        warnings.warn(f"{manifest}: {len(found)} clip(s) without a usable prompt, e.g. {found[0].message}",
                      stacklevel=4)


__all__ = ["EVAL_LIST_FORMAT", "MUSICEVAL", "attach_prompts", "find_prompt_tables", "has_prompts", "load_eval_list",
           "load_mos_list", "prompt_dirs", "wav_folder"]
