"""Ranking configurations by a recorded metric and choosing each strategy's members.

Directions come from :data:`mmmos.core.metrics.METRIC_REGISTRY` (best first); ties are broken by
configuration name; a NaN metric ranks last.
"""
from __future__ import annotations

import re

import polars as pl

from mmmos.core.metrics import LEVELS, METRICS, get_metric
from mmmos.core.tasks import Task

from .errors import EnsembleError, StrategyUnavailable
from .sweep_reader import Sweep

DEFAULT_STRATEGIES: tuple[str, ...] = ("submitted", "all", "pam-top-8", "pam-top-4", "dev-top-8", "pam-top-1")
CUSTOM = "custom"
STACK = "stack"  # a meta-model over the members of another selection (see .stacking)
TIE_BREAK = "metric (best first), then configuration name (alphabetical); NaN last"
_TOP_RE = re.compile(r"^(dev|pam)-top-(\d+)$")


def check_criterion(metric: str, level: str, axis: str, task: Task) -> None:
    """A known metric, level and (task) axis; an :class:`EnsembleError` listing the valid names otherwise."""
    if metric not in METRICS:
        raise EnsembleError(f"unknown ranking metric {metric!r}; valid: {', '.join(METRICS)}")
    if level not in LEVELS:
        raise EnsembleError(f"unknown ranking level {level!r}; valid: {', '.join(LEVELS)}")
    if axis not in task.all_axes:
        raise EnsembleError(f"unknown ranking axis {axis!r}; valid: {', '.join(task.all_axes)}")


def rank(sweep: Sweep, set_name: str, metric: str = "SRCC", level: str = "utterance",
         axis: str = "composite") -> list[tuple[str, float]]:
    """Configurations best first by the recorded ``metric`` on ``set_name``.

    Best = the metric's direction in the registry; ties by configuration name; NaN last. Raises
    :class:`StrategyUnavailable` when the set is absent, or absent for some configurations.
    """
    check_criterion(metric, level, axis, sweep.task)
    m = sweep.metrics.filter((pl.col("set") == set_name) & (pl.col("level") == level) & (pl.col("axis") == axis)
                             & (pl.col("metric") == metric))
    have = dict(zip(m["config"].to_list(), m["value"].to_list()))
    if not have:
        sets = sweep.metrics["set"].unique(maintain_order=True).to_list()
        raise StrategyUnavailable(f"no metrics for set {set_name!r} in the sweep (sets with metrics: "
                                  f"{', '.join(sets) or 'none'})")
    lacking = [c for c in sweep.configs if c not in have]
    if lacking:
        raise StrategyUnavailable(f"set {set_name!r}: no recorded {metric} for {', '.join(lacking)} "
                                  "(trained before the set was added? retrain them with --force)")
    direction = get_metric(metric)
    values = [(c, float("nan") if have[c] is None else float(have[c])) for c in sweep.configs]
    return sorted(values, key=lambda item: (*direction.sort_key(item[1]), item[0]))


def parse_strategy(strategy: str) -> tuple[str, int | None]:
    """``"pam-top-4"`` -> ``("pam", 4)``; ``"submitted"``/``"all"``/``"custom"``/``"stack"`` -> (name, None)."""
    if strategy in ("submitted", "all", CUSTOM, STACK):
        return strategy, None
    m = _TOP_RE.match(strategy)
    if m and int(m.group(2)) >= 1:
        return m.group(1), int(m.group(2))
    raise EnsembleError(f"unknown strategy {strategy!r}; valid: submitted, all, pam-top-K, dev-top-K "
                        f"(K >= 1, e.g. pam-top-4, pam-top-1), custom (with an explicit member list), "
                        "stack (a meta-model over --stack-members)")


def check_members(sweep: Sweep, members: list[str]) -> list[str]:
    """The member list, validated: non-empty, known names, no repeats."""
    members = [m.strip() for m in members if m.strip()]
    if not members:
        raise EnsembleError("empty member list")
    bad = [m for m in members if m not in sweep.configs]
    if bad:
        raise EnsembleError(f"unknown member(s) {', '.join(bad)}; valid: {', '.join(sweep.configs)}")
    dup = sorted({m for m in members if members.count(m) > 1})
    if dup:
        raise EnsembleError(f"member(s) listed more than once: {', '.join(dup)}")
    return members


def _submitted(sweep: Sweep, top: int, dev_set: str, pam_set: str, crit: tuple[str, str, str]) -> list[str]:
    if top < 1:
        raise EnsembleError(f"--top must be >= 1, got {top}")
    dev = [c for c, _ in rank(sweep, dev_set, *crit)[:top]]
    pam = {c for c, _ in rank(sweep, pam_set, *crit)[:top]}
    chosen = [c for c in dev if c in pam]
    if not chosen:
        raise StrategyUnavailable(f"no configuration is in both the top-{top} on {dev_set} and on {pam_set}")
    return chosen


def select(strategy: str, sweep: Sweep, *, members: list[str] | None = None, dev_set: str = "dev",
           pam_set: str = "pam_dev", metric: str = "SRCC", level: str = "utterance", axis: str = "composite",
           top: int = 12) -> list[str]:
    """Members of ``strategy`` (ranked strategies: best first; ``all``: alphabetical).

    Raises :class:`EnsembleError` for an unknown strategy or member, :class:`StrategyUnavailable` when the
    sweep cannot support the strategy (missing set, too few configurations, empty intersection).
    """
    kind, k = parse_strategy(strategy)
    check_criterion(metric, level, axis, sweep.task)
    if kind == STACK:
        raise EnsembleError("'stack' is not a member selection; its members come from --stack-members")
    if kind == CUSTOM:
        if members is None:
            raise EnsembleError("strategy 'custom' needs an explicit member list (--members a,b,c)")
        return check_members(sweep, members)
    if members is not None:
        raise EnsembleError(f"a member list goes with strategy 'custom', not {strategy!r}")
    if kind == "all":
        return list(sweep.configs)
    if kind == "submitted":
        return _submitted(sweep, top, dev_set, pam_set, (metric, level, axis))
    ranked = rank(sweep, dev_set if kind == "dev" else pam_set, metric, level, axis)  # a missing set first
    if k > len(ranked):
        raise StrategyUnavailable(f"needs {k} configurations, the sweep has {len(ranked)}")
    return [c for c, _ in ranked[:k]]


__all__ = ["CUSTOM", "DEFAULT_STRATEGIES", "STACK", "TIE_BREAK", "check_criterion", "check_members", "parse_strategy",
           "rank", "select"]
