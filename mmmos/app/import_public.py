"""``mmmos import-public``: a checkpoint of the public ASTAR-NTU Track 1 code -> a configuration of a Track 1 run
folder (``mmmos ensemble``/``report`` members) and, with ``--export``, a predictor folder for ``mmmos predict``."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mmmos.sweep.track1.public import VARIANTS

    p.add_argument("checkpoint", help="a state dict saved by the public code (torch.save(net.state_dict()))")
    p.add_argument("--variant", required=True,
                   help="the public model class: " + "; ".join(f"{v.name} = {v.public_class}" for v in VARIANTS.values()))
    p.add_argument("--store", required=True, help="the frame cache holding the audio and text encoders' groups")
    p.add_argument("--run", required=True, help="the Track 1 run folder to add the configuration to")
    p.add_argument("--name", required=True, help="configuration name (e.g. t1-gauss-s1984)")
    p.add_argument("--audio-encoder", default="muq")
    p.add_argument("--text-encoder", default="roberta")
    p.add_argument("--heads", type=int, default=4, help="attention heads (not readable from the weights; public: 4)")
    p.add_argument("--crop", type=float, default=30.0, help="window length in seconds for long clips (public: 30)")
    p.add_argument("--dev", help="a label list scored as set 'dev' (what the ensembles read)")
    p.add_argument("--eval", action="append", default=[], metavar="NAME=LIST", help="further sets to score")
    p.add_argument("--data-root", default=None)
    p.add_argument("--export", metavar="DIR", help="also write a predictor folder with this one member")
    p.add_argument("--force", action="store_true", help="replace a finished configuration of the same name")


def run_cli(a: argparse.Namespace) -> int:
    from mmmos.sweep.cli import parse_evals
    from mmmos.sweep.labels import load_labels
    from mmmos.sweep.track1.imported import import_checkpoint

    sets = ([load_labels("dev", a.dev, a.data_root, "track1")] if a.dev else []) + \
        [load_labels(k, v, a.data_root, "track1") for k, v in parse_evals(a.eval)]
    cdir = import_checkpoint(a.checkpoint, a.variant, a.store, a.run, a.name, a.audio_encoder, a.text_encoder,
                             sets, n_heads=a.heads, crop_seconds=a.crop, force=a.force)
    print(f"imported {a.checkpoint} as {cdir.path}" + (f" (scored: {', '.join(s.name for s in sets)})" if sets else ""))
    if a.export:
        from mmmos.app.predict import export_predictor

        out = export_predictor(a.run, [a.name], a.export)
        print(f"predictor: {out}")
    return 0
