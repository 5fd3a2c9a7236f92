"""Issue 17: Track 1 runs on Ray as Track 2 does (each run one task, the recipe's own training step), with the
predictions of the local sweep; the recipe registry names every task's functions."""
from __future__ import annotations

import os

import polars as pl
import pytest

ray = pytest.importorskip("ray")


def test_every_task_has_a_recipe_whose_functions_exist():
    from mmmos.core.tasks import TASKS
    from mmmos.sweep.recipes import RECIPES, UnknownRecipeError, recipe_for

    assert set(RECIPES) == set(TASKS)
    assert recipe_for("track1").train_step.endswith("train_one_track1")
    for r in RECIPES.values():
        for attr in ("configs_from_args", "train_step", "refresh", "summarise"):
            assert callable(r.fn(attr)), (r.task, attr)
    with pytest.raises(UnknownRecipeError, match="track2"):
        recipe_for("track9")


def test_ray_track1_equals_local_track1(tmp_path):
    from test_track1_train import _cfg, make_track1_cache

    from mmmos.app.ray_cluster import RayOptions
    from mmmos.app.ray_sweep import run_sweep_ray
    from mmmos.sweep.track1 import checkpoint_names
    from mmmos.sweep.track1.run import run_track1_sweep

    store, sets = make_track1_cache(tmp_path, n_train=32, n_dev=16, n_prompts=6)
    cfgs = lambda: [_cfg(epochs=2, patience=2)]  # noqa: E731 - fresh configurations per sweep
    run_track1_sweep(cfgs(), str(store), tmp_path / "local", sets["train"], sets["dev"], [], progress=False)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        res = run_sweep_ray(cfgs(), str(store), tmp_path / "ray", sets["train"], sets["dev"], [], RayOptions(),
                            progress=False)
    finally:
        ray.shutdown()
    assert "error" not in res["t1-test"], res
    for name in checkpoint_names("t1-test"):
        a, b = tmp_path / "local" / "configs" / name, tmp_path / "ray" / "configs" / name
        assert (b / "DONE").exists()
        for f in ("predictions/dev.parquet", "metrics.parquet"):
            assert pl.read_parquet(a / f).equals(pl.read_parquet(b / f)), (name, f)
    table = pl.read_parquet(tmp_path / "ray" / "summary.parquet")
    assert table["config"].to_list() == checkpoint_names("t1-test")
