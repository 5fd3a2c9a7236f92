"""What one configuration trains (:class:`TrainConfig`) and the paper's configuration sets.

The 16 configurations of the paper = {BiEnc+mlp, TriEnc+mlp, TriEnc+blstm_t, TriEnc+blstm_h}
x {utmos, contrastive, dcq, ccc}; the ablation trains the 7 encoder subsets with mlp+utmos.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations

from mmmos.core.tasks import DEFAULT_TASK

PAPER_SETS = {"bienc": ("wavlm", "m2d"), "trienc": ("wavlm", "muq", "m2d")}
PAPER_HEADS = (("bienc", "mlp"), ("trienc", "mlp"), ("trienc", "blstm_t"), ("trienc", "blstm_h"))
PAPER_LOSSES = ("utmos", "contrastive", "dcq", "ccc")

# settings that do not change what is learned: a finished configuration is reused when only these differ
RUNTIME_ONLY = ("threads", "device", "allow_missing_clips")


@dataclass
class TrainConfig:
    name: str
    encoders: list[str]
    head: str
    loss: str
    head_cfg: dict = field(default_factory=dict)
    lr: float = 1e-4
    batch_size: int | None = None  # None: 32 for pooled heads, 16 for frame heads (the paper's)
    epochs: int = 10
    patience: int = 2  # epochs without dev-loss improvement before stopping
    crop_seconds: float = 10.0
    grid_rate: float | None = None  # common time grid for frame heads; None = slowest encoder
    seed: int = 42
    device: str = "cpu"
    threads: int | None = None
    clip_predictions: bool = True  # clamp reported scores to the task's score range
    task: str = DEFAULT_TASK
    allow_missing_clips: bool = False  # train without listed clips the cache lacks (counted, ids recorded)

    def frame_ids(self, sets: list) -> dict[str, list[str]]:
        """The cache ids this configuration may read, per encoder: every listed clip of every set."""
        ids = [c for ls in sets for c in ls.table["clip_id"].to_list()]
        return {e: ids for e in self.encoders}


def learned_settings(config: dict) -> dict:
    """The JSON form of a configuration without the runtime-only settings (records without a task: default)."""
    return {"task": DEFAULT_TASK, **{k: v for k, v in config.items() if k not in RUNTIME_ONLY}}


def config_json(cfg: TrainConfig) -> dict:
    """``cfg`` as the JSON-safe dict stored in config.json."""
    import json

    return json.loads(json.dumps(asdict(cfg), default=str))


def paper_configs(sets: dict[str, tuple[str, ...]] | None = None) -> list[TrainConfig]:
    sets = sets or PAPER_SETS
    return [TrainConfig(name=f"{s}-{h}-{lo}", encoders=list(sets[s]), head=h, loss=lo)
            for s, h in PAPER_HEADS for lo in PAPER_LOSSES]


def ablation_configs(encoders: tuple[str, ...] = ("wavlm", "muq", "m2d")) -> list[TrainConfig]:
    out = []
    for k in range(1, len(encoders) + 1):
        for sub in combinations(encoders, k):
            out.append(TrainConfig(name=f"abl-{'+'.join(sub)}-mlp-utmos", encoders=list(sub), head="mlp", loss="utmos"))
    return out
