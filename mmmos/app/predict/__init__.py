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
* :mod:`.base` -- :class:`~.base.BasePredictor`: spec, task, members, cache, stack, loading, progress
* :mod:`.predictor` -- :class:`Predictor`: audio clips in order, bad input as error rows
* :mod:`.track1` -- :class:`~.track1.Track1Predictor`: (audio, prompt) pairs, the task's windows
* :mod:`.loader` -- :func:`load_predictor`: the folder read once, the predictor its task's inputs call for
* :mod:`.inputs` -- files, folders and manifests -> items
* :mod:`.tables` -- output tables (CSV/JSONL/Parquet)
* :mod:`.cli` -- ``add_arguments`` / ``run_cli`` (one command for every task)

Nothing here imports torch, scipy or polars at module level, so ``mmmos --help`` stays fast.
"""
from __future__ import annotations

from .cli import add_arguments, parse_weights, run_cli
from .errors import MissingWeightsError, PredictorError, WeightsMismatchError
from .pins import TamperedModelError
from .export import export_predictor
from .inputs import InputItem, expand_inputs
from .loader import PREDICTORS, load_predictor
from .predictor import ClipResult, Predictor
from .spec import PredictorSpec, read_predictor_spec
from .tables import results_table, write_table
from .windows import plan_windows

__all__ = ["ClipResult", "InputItem", "MissingWeightsError", "PREDICTORS", "load_predictor", "Predictor", "PredictorError", "PredictorSpec",
           "TamperedModelError", "WeightsMismatchError", "add_arguments", "expand_inputs", "export_predictor",
           "parse_weights",
           "plan_windows", "read_predictor_spec", "results_table", "run_cli", "write_table"]
