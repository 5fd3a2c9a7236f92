"""``mmmos ensemble RUN``: options -> ensembles of a finished sweep -> optional answer file and predictor export.

The logic is the ensemble stage (:mod:`mmmos.ensemble`); this module parses options, prints Table IV and
the members, and exports a predictor through the predict application (``--export``). Bad input raises
:class:`~mmmos.core.errors.UserError` (the CLI prints one line, exit 2). Heavy libraries are imported
inside :func:`run_cli` so ``mmmos --help`` stays fast.
"""
from __future__ import annotations

import argparse
import time

from mmmos.core.argtypes import non_negative_int, positive_int
from mmmos.core.errors import UserError

DEFAULT_STRATEGIES = "submitted,all,pam-top-8,pam-top-4,dev-top-8,pam-top-1"  # = mmmos.ensemble.DEFAULT_STRATEGIES


class EnsembleOptionError(UserError, ValueError):
    """A malformed ``mmmos ensemble`` option."""


def parse_truth(items: list[str] | None) -> dict[str, str]:
    """``["pam_dev=a.csv", ...]`` -> ``{"pam_dev": "a.csv"}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise EnsembleOptionError(f"--truth expects NAME=PATH (e.g. pam_dev=combined_dev.csv), got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a sweep directory written by `mmmos sweep` (configs/<name>/...)")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                   help="comma-separated: submitted, all, pam-top-K, dev-top-K, stack (default: %(default)s)")
    p.add_argument("--members", help="an explicit ensemble a,b,c of configuration names (adds strategy 'custom')")
    p.add_argument("--out", help="output folder (default: RUN_DIR/ensembles)")
    p.add_argument("--truth", action="append", metavar="NAME=PATH",
                   help="labels for set NAME (manifest or clip_id table); default: the manifests in RUN_DIR/run.json")
    p.add_argument("--rank-metric", default="SRCC",
                   help="ranking metric, a name of the metric registry (MSE, LCC, SRCC, KTAU); its direction "
                        "(lower or higher is better) comes from the registry; default SRCC")
    p.add_argument("--rank-level", default="utterance", help="ranking level: utterance or system (default utterance)")
    p.add_argument("--rank-axis", default="composite",
                   help="ranking axis: one of the run's task axes or composite (default composite = their mean)")
    p.add_argument("--dev-set", default="dev", help="set ranked by dev-top-K and submitted (default dev)")
    p.add_argument("--pam-set", default="pam_dev", help="set ranked by pam-top-K and submitted (default pam_dev)")
    p.add_argument("--top", type=int, default=12, help="N of submitted = top-N(dev) ∩ top-N(pam) (default 12)")
    p.add_argument("--answer", help="also write a challenge answer file (id and the task's axes, no header)")
    p.add_argument("--answer-strategy", default="submitted", help="strategy for --answer (default submitted)")
    p.add_argument("--answer-set", help="set for --answer (default: the first evaluation set other than --dev-set)")
    g = p.add_argument_group("stacking (strategy 'stack')")
    g.add_argument("--stack-fit", default="dev", metavar="SET",
                   help="labelled set the meta-model is fitted on; its own figures are out-of-fold (default dev)")
    g.add_argument("--stack-members", default="all", metavar="SELECTION",
                   help="members to stack: all, submitted, dev-top-K, pam-top-K or custom (= --members); "
                        "default all")
    g.add_argument("--stack-model", default="ridge", choices=("ridge", "lightgbm"),
                   help="meta-model per axis: ridge (alpha by nested grouped CV; default) or lightgbm "
                        "(optional package)")
    g.add_argument("--stack-folds", type=positive_int, default=5, metavar="K",
                   help="folds (grouped by system) for the out-of-fold figures and the choice of alpha (default 5)")
    g.add_argument("--stack-seed", type=non_negative_int, default=0, help="seed of the fold assignment (default 0)")
    g.add_argument("--stack-features", default="auto", choices=("auto", "scores", "bins"),
                   help="scores: each member's score per axis; bins: also 20 bin probabilities per member "
                        "(saved distributions, else a Gaussian around the score); auto: bins when a member "
                        "saved distributions (default)")
    g.add_argument("--stack-recipe", default="oof", choices=("oof", "public"),
                   help="oof: the figures above (default); public: the public ASTAR-NTU stacking exactly - 20 bins "
                        "per member only, ridge alpha 1 on raw features or default LightGBM, fitted on --stack-fit "
                        "and reported IN-SAMPLE there")
    p.add_argument("--export", metavar="DIR",
                   help="save an ensemble as a self-contained predictor folder for `mmmos predict --model DIR`")
    p.add_argument("--export-strategy", default="submitted", help="strategy for --export (default submitted)")


def _export_plan(result, strategy: str) -> tuple[list[str], dict]:
    """``strategy``'s members and the extra export arguments, or :class:`EnsembleOptionError`."""
    chosen = result.members.get(strategy, {})
    if "members" not in chosen:
        raise EnsembleOptionError(f"--export-strategy {strategy}: "
                                  f"{chosen.get('unavailable', 'not among the evaluated strategies')}")
    extra = {}
    if "stack" in chosen:  # a stacked ensemble: the predictor applies the meta-model after the members
        if result.stack is None or result.stack.options.model != "ridge":
            raise EnsembleOptionError("--export-strategy stack: only a ridge meta-model can be exported "
                                      "(--stack-model ridge)")
        extra["stack"] = result.stack.export_record()
    return list(chosen["members"]), extra


def _check_export(run_dir: str, result, strategy: str, out: str) -> None:
    """Everything ``--export`` could refuse that is known before writing (strategy, members, destination)."""
    from mmmos.app.predict.export import check_export

    check_export(run_dir, _export_plan(result, strategy)[0], out)


def _export(run_dir: str, result, strategy: str, out: str):
    """Export ``strategy``'s members as a predictor folder (through the predict application)."""
    from mmmos.app.predict import PredictorError, export_predictor

    members, extra = _export_plan(result, strategy)
    try:
        return export_predictor(run_dir, members, out, **extra)
    except UserError:
        raise
    except PredictorError as e:
        raise EnsembleOptionError(f"--export {out}: {e}") from None


def run_cli(a: argparse.Namespace) -> int:
    """``mmmos ensemble``: evaluate, write, print Table IV and the members; 0 ok (UserError on bad input)."""
    from mmmos import ensemble as ens
    from mmmos.ensemble.outputs import check_answer, check_out_dir

    t0 = time.perf_counter()
    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    members = a.members.split(",") if a.members else None
    sweep = ens.load_sweep(a.run_dir, parse_truth(a.truth))
    stack = ens.StackOptions(fit_set=a.stack_fit, folds=a.stack_folds, seed=a.stack_seed, model=a.stack_model,
                             members=a.stack_members, features=a.stack_features, recipe=a.stack_recipe)
    result = ens.evaluate_strategies(sweep, strategies, members=members, dev_set=a.dev_set, pam_set=a.pam_set,
                                     metric=a.rank_metric, level=a.rank_level, axis=a.rank_axis, top=a.top,
                                     stack=stack)
    # all that can be refused is checked before anything is written: a refused command keeps the old outputs
    out_dir = a.out or ens.default_out(a.run_dir)
    check_out_dir(out_dir)
    if a.answer:
        answer_set = a.answer_set or ens.default_answer_set(sweep, a.dev_set)
        check_answer(result, a.answer_strategy, answer_set, a.answer, sweep)
    if getattr(a, "export", None):
        _check_export(a.run_dir, result, a.export_strategy, a.export)
    out = ens.write_outputs(result, sweep, out_dir)
    answer = None
    if a.answer:
        answer = ens.write_answer(result, a.answer_strategy, answer_set, a.answer, sweep)
    exported = _export(a.run_dir, result, a.export_strategy, a.export) if getattr(a, "export", None) else None
    print(f"ranking: {a.rank_level}-level {a.rank_metric} of {a.rank_axis} on {a.dev_set} / {a.pam_set}; "
          f"{len(sweep.configs)} configurations, sets {', '.join(sweep.sets)}\n")
    print(ens.table_markdown(result.table, sweep.sets))
    for s, m in result.members.items():
        print(f"{s}: " + (", ".join(m["members"]) if "members" in m else f"unavailable ({m['unavailable']})"))
        if "stack" in m:
            print(f"  {m['stack']['model']} meta-model per axis, {m['stack']['figures']}; "
                  f"members from {m['stack']['member_selection']}")
    for n in result.notes:
        print(f"note: {n}")
    print(f"\nwritten to {out} in {time.perf_counter() - t0:.1f} s" + (f"; answer file {answer}" if answer else "")
          + (f"; predictor ({a.export_strategy}) exported to {exported}" if exported else ""))
    return 0


__all__ = ["EnsembleOptionError", "add_arguments", "parse_truth", "run_cli"]
