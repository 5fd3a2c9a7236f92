"""Read clip lists ("manifests") in every supported format into one table, for a task.

Every loader returns a polars DataFrame with the columns :func:`columns` (task)::

    clip_id  str           key of the clip (never null; repeats are reported, not dropped)
    path     str | null    absolute path of the audio file; null when the manifest has none
    system   str | null    system (generator / source corpus) id, by the task's rule
    domain   str | null    one of the task's domains (track2: "speech" | "music" | "sound")
    split    str | null    e.g. "train" / "dev" / "test"
    <axes>   Float64 | null   one column per task axis, labels inside the task's score range; null when absent
    prompt   str | null    the clip's text prompt (Track 1); null for tasks without prompts

Formats (:func:`load_manifest` picks one from the extension/content, or ``fmt=``):

* ``track2`` - AudioMOS 2025 Track 2 lists and the MMMOS ``combined_{train,dev}.csv``: header
  ``sample_id,data_path,<label columns>`` (labels optional; names from ``task.label_columns["track2"]``),
  UTF-8 BOM allowed, quoted paths with commas/spaces.  ``clip_id`` = ``sample_id``.
* ``jsonl`` - AES rating files: one JSON object a line with ``data_path`` and, per axis (any spelling the
  task knows; the long title wins), a list of ratings (label = their mean) or one number.  A ``data_path``
  that is a Track 2 id gives ``clip_id`` = the id and ``path`` = null.  Otherwise ``clip_id`` =
  ``sample_id``/``clip_id`` key if present, else ``data_path`` with the ``/your_path/`` placeholder removed.
* ``csv`` - a plain CSV for users' own data: header with ``path`` and optionally the label columns,
  ``system,clip_id,domain,split`` (any order, case-insensitive; other columns are ignored).
* ``folder`` - every audio file below a directory, recursively, sorted; names starting with "." are
  skipped; ``clip_id`` = the path relative to the folder (POSIX separators).  A file whose name is not
  valid UTF-8 becomes a ``bad_file_name`` :class:`Problem` (``problems=`` list), the rest load.
* ``musiceval`` / ``eval_list`` - MusicEval (Track 1) ``*_mos_list.txt`` and ``eval_list.txt``; prompts come
  from a CSV ``prompt`` column, ``prompt=`` (one text for all) or the prompt tables (``prompts=`` folder);
  see :mod:`mmmos.core.manifests.prompted`.

Paths: a leading ``/your_path/`` placeholder is replaced by ``data_root``; other relative paths resolve
against ``data_root`` if given, else the manifest's own directory; absolute paths stay as they are.

System and domain: the manifest's field when it has one (a domain outside the task's vocabulary is an
error; aliases such as track2's ``audio`` -> ``sound`` apply); else ``task.system_of`` /
``task.domain_of`` (track2: the official id ``audiomos2025-track2-{speech,music,audio}-...``, then dataset
names in the path, PAM ``human_eval/{audio,music}/``).

Split: the ``split`` argument for every row if given; else the manifest's ``split`` field; else a
``train``/``dev``/``test`` token of the manifest's file name; else null.

Bad input: a malformed row (wrong field count, non-numeric label, invalid JSON, no id) or a label outside
the task's score range raises :class:`ManifestError` (a :class:`~mmmos.core.errors.UserError`) naming the
file and line.  Rows that are well-formed but doubtful are *kept* and reported by :func:`validate_manifest`.
"""
from __future__ import annotations

from mmmos.core.manifests.answers import read_answer_file, submission_path, write_answer_file, write_submission
from mmmos.core.manifests.fields import PLACEHOLDER
from mmmos.core.manifests.formats import scan_folder
from mmmos.core.manifests.inference import infer_domain, infer_split, infer_system
from mmmos.core.manifests.load import FORMATS, detect_format, load_manifest
from mmmos.core.manifests.prompted import find_prompt_tables, has_prompts, prompt_dirs
from mmmos.core.manifests.table import (
    AXES, COLUMNS, KEY_COLUMNS, PROMPT_COLUMN, SCHEMA, ManifestError, Problem, columns, empty_manifest, schema,
)
from mmmos.core.manifests.validation import drop_duplicate_ids, validate_manifest

__all__ = [
    "AXES",
    "COLUMNS",
    "FORMATS",
    "KEY_COLUMNS",
    "PLACEHOLDER",
    "PROMPT_COLUMN",
    "SCHEMA",
    "ManifestError",
    "Problem",
    "columns",
    "detect_format",
    "drop_duplicate_ids",
    "empty_manifest",
    "find_prompt_tables",
    "has_prompts",
    "infer_domain",
    "infer_split",
    "infer_system",
    "load_manifest",
    "prompt_dirs",
    "read_answer_file",
    "scan_folder",
    "schema",
    "validate_manifest",
    "submission_path",
    "write_answer_file",
    "write_submission",
]
