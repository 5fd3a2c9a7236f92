"""Stage 3: ensembles of trained configurations, chosen by their ranking on Dev and PAM dev.

Reads a sweep directory (see ``mmmos.core.rundir`` for its layout); it never retrains and never opens the
frame cache. An ensemble's prediction is the mean of its members' predictions, clip by clip (``stack``: a fitted
combination, clamped to the task's score range).

Strategies (the paper's Table IV):

* ``submitted``   configurations in both the top-N on the dev set and the top-N on the PAM set
                  (N = ``--top``, 12 in the paper)
* ``all``         every finished configuration
* ``pam-top-K``   the K best on the PAM set (``pam-top-8``, ``pam-top-4``, ``pam-top-1`` = best single)
* ``dev-top-K``   the K best on the dev set
* ``custom``      an explicit member list (``--members a,b,c``)
* ``stack``       a meta-model per axis over the members of another selection (``--stack-members``, default
                  ``all``), fitted on one labelled set (``--stack-fit``, default dev) whose own figures are
                  out-of-fold (folds grouped by system); see :mod:`.stacking`

Ranking uses the metrics each configuration recorded in ``metrics.parquet`` (default: utterance-level
SRCC of the composite = mean of the task's axes). The direction (higher or lower is better) comes from
the metric registry :data:`mmmos.core.metrics.METRIC_REGISTRY`.
Ties are broken deterministically: by the metric (best first), then by configuration name
(alphabetical); a NaN metric ranks last. A strategy that needs a set the sweep does not have (no
PAM set), or more configurations than there are, is reported as *unavailable* with the reason.

Outputs (``<run>/ensembles/`` unless ``--out``)::

    table_iv.parquet, table_iv.md   rows = strategies (with member count); per evaluation set the
                                    composite MSE/LCC/SRCC/KTAU at utterance and system level
    metrics.parquet                 every metric: strategy, set, level, axis, metric, value, n
    predictions/<strategy>/<set>.parquet   clip_id, system, domain, <task axes>
    members.json                    task, ranking criterion, rankings, members per strategy, truth files, notes

Labels per set come from the manifests recorded in ``<run>/run.json`` or from ``--truth NAME=PATH``.

Modules: :mod:`.sweep_reader` (reading the run through ``mmmos.core.rundir``), :mod:`.strategies`
(ranking, selection), :mod:`.evaluate` (ensemble means, metrics per strategy), :mod:`.stacking` (the
``stack`` strategy; :mod:`.stack_features`, :mod:`.meta` ridge/LightGBM, :mod:`.folds` grouped folds),
:mod:`.outputs` (tables, members.json, answer files, :func:`run_ensembles`), :mod:`.errors`. The command (options, ``--export``)
is ``mmmos.app.ensemble_cmd``. This stage imports only ``mmmos.core``.
"""
from __future__ import annotations

from .errors import EnsembleError, EnsembleFileMissing, StrategyUnavailable
from .evaluate import EnsembleResult, ensemble_predictions, evaluate_strategies, table_columns
from .outputs import default_answer_set, default_out, run_ensembles, table_markdown, write_answer, write_outputs
from .stacking import StackOptions, StackResult, fit_stack
from .strategies import (CUSTOM, DEFAULT_STRATEGIES, STACK, TIE_BREAK, check_criterion, check_members,
                         parse_strategy, rank, select)
from .sweep_reader import SetPredictions, Sweep, load_sweep

__all__ = [
    "CUSTOM", "DEFAULT_STRATEGIES", "EnsembleError", "EnsembleFileMissing", "EnsembleResult", "STACK",
    "SetPredictions", "StackOptions", "StackResult", "StrategyUnavailable", "Sweep", "TIE_BREAK", "check_criterion",
    "check_members", "default_answer_set", "default_out", "ensemble_predictions", "evaluate_strategies",
    "fit_stack", "load_sweep", "parse_strategy", "rank", "run_ensembles", "select", "table_columns",
    "table_markdown", "write_answer", "write_outputs",
]
