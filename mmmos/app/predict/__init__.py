"""Exported predictors and ``mmmos predict``: audio files in, the task's scores out.

Modules (one job each):

* :mod:`.spec` -- ``predictor.json`` as typed records (:class:`PredictorSpec`), format checks
* :mod:`.pins` -- the sha256 of every file of the folder, recorded at export and checked on load
* :mod:`.export` -- :func:`export_predictor`: sweep run members -> predictor folder
* :mod:`.windows` -- window planning for long audio; the default window is the training crop
* :mod:`.members` -- a member's head applied to a clip's windows (the sweep's feature code)
* :mod:`.encoders` -- weights lookup, identity checks, frames from a waveform
* :mod:`.cache` -- reuse of cached frames, only for the same source audio
* :mod:`.stacked` -- a stacked ensemble's meta-model (``predictor.json`` "stack"), applied after the members
* :mod:`.base` -- :class:`~.base.BasePredictor`: spec, task, members, encoders, cache, stack, loading, progress,
  and items scored in order (bad input as error rows) into :class:`ClipResult` s, one result type for every task
* :mod:`.predictor` -- :class:`Predictor`: a clip's audio frames -> scores, in windows of the training crop
* :mod:`.track1` -- :class:`~.track1.Track1Predictor`: a clip's audio frames and prompt -> scores and bins
* :mod:`.loader` -- :func:`load_predictor`: the folder read once, the predictor its task's inputs call for
* :mod:`.inputs` -- files, folders and manifests -> :class:`InputItem` s (with a prompt where the task has one)
* :mod:`.tables` -- the output table of every task (CSV/JSONL/Parquet)
* :mod:`.cli` -- ``add_arguments`` / ``run_cli`` (one command, one path for every task)

``PromptedItem``, ``PromptedResult``, ``prompted_table`` and ``expand_prompted_inputs`` (:mod:`.track1`) are
the old Track 1 names of :class:`InputItem`, :class:`ClipResult`, :func:`results_table` and
:func:`expand_inputs`, kept for code written against them.

Nothing here imports torch, scipy or polars at module level, so ``mmmos --help`` stays fast.
"""
from __future__ import annotations

from .cli import add_arguments, parse_weights, run_cli
from .errors import MissingWeightsError, PredictorError, WeightsMismatchError
from .pins import TamperedModelError
from .export import export_predictor
from .base import BasePredictor, ClipResult
from .inputs import InputItem, expand_inputs
from .loader import PREDICTORS, load_predictor
from .predictor import Predictor
from .spec import PredictorSpec, read_predictor_spec
from .tables import results_table, write_table
from .windows import plan_windows

__all__ = ["BasePredictor", "ClipResult", "InputItem", "MissingWeightsError", "PREDICTORS", "load_predictor", "Predictor", "PredictorError", "PredictorSpec",
           "TamperedModelError", "WeightsMismatchError", "add_arguments", "expand_inputs", "export_predictor",
           "parse_weights",
           "plan_windows", "read_predictor_spec", "results_table", "run_cli", "write_table"]
