"""``mmmos demo`` and ``mmmos demo-data``: the whole job on the built-in synthetic corpus, by the task's driver
(:data:`DRIVERS`: :mod:`.track2`, :mod:`.track1`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from mmmos.core.argtypes import non_negative_int, positive_float, positive_int

# task -> "module:function" of its demo driver (one line per task)
DRIVERS = {
    "track2": "mmmos.app.demos.track2:run_track2_demo",
    "track1": "mmmos.app.demos.track1:run_track1_demo",
}


def add_data_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("--out", default="demo_out/corpus", help="folder to write the corpus to")
    d.add_argument("--n-train", type=non_negative_int, default=120)
    d.add_argument("--n-dev", type=non_negative_int, default=40)
    d.add_argument("--n-pam", type=non_negative_int, default=40)
    d.add_argument("--seed", type=non_negative_int, default=0)


def run_data_cli(a: argparse.Namespace) -> int:
    from mmmos.app.demos.track2_corpus import make_demo_corpus

    info = make_demo_corpus(a.out, n_train=a.n_train, n_dev=a.n_dev, n_pam=a.n_pam, seed=a.seed)
    print(f"demo corpus written to {a.out}")
    for k, v in info.items():
        if isinstance(v, (str, int, float, Path)):
            print(f"  {k}: {v}")
    return 0


def add_arguments(m: argparse.ArgumentParser) -> None:
    m.description = ("Generate the demo corpus, extract logmel/logmel_slow frames, train the 16 configurations, "
                     "evaluate ensembles, write the report and score a few files with the exported ensemble. "
                     "Re-running resumes.")
    m.add_argument("--task", choices=tuple(DRIVERS), default="track2",
                   help="track1: the Track 1 demo (MI/TA of prompted music clips, see mmmos.app.demos.track1)")
    m.add_argument("--out", default="demo_out")
    # None = the task's default (Track 2: 240/60/60 clips, 20 epochs, lr 1e-3; Track 1: see demos.track1.DEFAULTS)
    m.add_argument("--n-train", type=non_negative_int, default=None, help="default 240 (track1: 240)")
    m.add_argument("--n-dev", type=non_negative_int, default=None, help="default 60 (track1: 72)")
    m.add_argument("--n-pam", type=non_negative_int, default=None, help="default 60 (track1: 48)")
    m.add_argument("--seed", type=non_negative_int, default=0)
    m.add_argument("--epochs", type=positive_int, default=None, help="default 20 (track1: 25)")
    m.add_argument("--lr", type=positive_float, default=None,
                   help="the demo corpus is tiny, so it uses 1e-3 and 20 epochs (the paper: 1e-4, 10); "
                        "track1: 1e-3, 25 epochs (the recipe: 5e-5, 100)")
    m.add_argument("--jobs", type=positive_int, default=2, help="configurations trained in parallel")
    m.add_argument("--no-progress", action="store_true")


def run_cli(a: argparse.Namespace) -> int:
    """The whole job on built-in data, by the task's driver."""
    import importlib

    mod, fn = DRIVERS[getattr(a, "task", None) or "track2"].split(":")
    return getattr(importlib.import_module(mod), fn)(a)
