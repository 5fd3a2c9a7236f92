"""``mmmos sweep --task track1``: the 8-run recipe (or a subset) with the Track 1 defaults."""
from __future__ import annotations

from .recipe import DEFAULT_AUDIO_ENCODER, DEFAULT_TEXT_ENCODER, LOSS_OUTPUT, Track1Config, recipe_configs

_TRACK2_ONLY = ("sets", "ablation", "heads", "seed", "grid_rate")


def track1_configs_from_args(a) -> list[Track1Config]:
    """The recipe runs the options select (``--only``, ``--losses``), with the training options applied."""
    from ..options import SweepOptionError

    for opt in _TRACK2_ONLY:
        if getattr(a, opt, None):
            flag = "--" + opt.replace("_", "-")
            raise SweepOptionError(f"{flag} does not apply to --task track1 (the recipe fixes its heads and seeds; "
                                   f"pick runs with --only or --losses)")
    cfgs = recipe_configs(a.audio_encoder or DEFAULT_AUDIO_ENCODER, a.text_encoder or DEFAULT_TEXT_ENCODER)
    if getattr(a, "losses", None):
        wanted = a.losses.split(",")
        bad = [w for w in wanted if w not in LOSS_OUTPUT]
        if bad:
            raise SweepOptionError(f"unknown track1 loss(es) {', '.join(bad)}; valid: {', '.join(LOSS_OUTPUT)}")
        cfgs = [c for c in cfgs if c.loss in wanted]
    if getattr(a, "only", None):
        want = a.only.split(",")
        names = [c.name for c in cfgs]
        bad = [w for w in want if w not in names]
        if bad:
            raise SweepOptionError(f"unknown track1 run(s) {', '.join(bad)}; valid: {', '.join(names)}")
        cfgs = [c for c in cfgs if c.name in want]
    for c in cfgs:
        for attr, opt in (("epochs", "epochs"), ("patience", "patience"), ("lr", "lr"),
                          ("batch_size", "batch_size"), ("crop_seconds", "crop")):
            if getattr(a, opt, None) is not None:
                setattr(c, attr, getattr(a, opt))
        c.device = a.device
        c.allow_missing_clips = bool(getattr(a, "allow_missing_clips", False))
    return cfgs


