"""What one Track 1 run trains (:class:`Track1Config`) and the 8-run recipe of SPEC section 9.

The recipe (ASTAR-NTU, AudioMOS 2025 Track 1): the dual-branch head with Gaussian-KL on 20 bins x seeds 1984,
1990, 1910, 1510; one-hot KL (seed 1984); CORAL (seed 1510); "decoupled" (TA attends to the raw audio frames
instead of the Transformer output; Gaussian-KL, seed 1984); decoupled + LSTM head (same). Losses are on the
raw 1-5 scores. The CORAL run's TA branch uses the public ordinal head's shared 512 -> 256 MLP (as its MI branch
does), not the distribution head's 384 -> 192.

Each run leaves three checkpoints, each a run-folder configuration of its own (an ensemble member):
``<name>`` (best dev loss), ``<name>@sysmi`` (best system-level MI SRCC on dev) and ``<name>@combined``
(best (utterance MI SRCC + system TA SRCC) / 2 on dev).
"""
from __future__ import annotations

from dataclasses import dataclass, field

TASK = "track1"
HEAD = "dual_branch"
DEFAULT_AUDIO_ENCODER = "muq"
DEFAULT_TEXT_ENCODER = "roberta"
SEEDS = (1984, 1990, 1910, 1510)

#: checkpoint suffix -> what it selects ("" is the main checkpoint: best dev loss)
CHECKPOINTS = {"": "best dev loss", "@sysmi": "best system-level MI SRCC",
               "@combined": "best (utterance MI SRCC + system TA SRCC) / 2"}
CHECKPOINT_SEP = "@"

#: the hidden widths of the public CORAL head (OrdinalPredictorHeadMonotonic), both branches
CORAL_HIDDEN = (512, 256)

#: loss -> the head's output kind
LOSS_OUTPUT = {"kl_gaussian": "distribution", "kl_onehot": "distribution", "coral": "coral"}


@dataclass
class Track1Config:
    """One Track 1 training run (its three checkpoints share it)."""

    name: str
    encoders: list[str]                 # [audio encoder, text encoder]
    loss: str = "kl_gaussian"
    head: str = HEAD
    head_cfg: dict = field(default_factory=dict)   # DualBranchHead options (output, decoupled, lstm_head, ...)
    lr: float = 5e-5
    weight_decay: float = 0.01          # torch AdamW's default
    batch_size: int = 32
    eval_batch_size: int = 16
    epochs: int = 100
    patience: int = 15                  # epochs without a better dev loss before stopping
    crop_seconds: float = 30.0          # training crop; dev/eval: whole clip, or crop-long windows averaged
    seed: int = 1984
    device: str = "cpu"
    threads: int | None = None
    task: str = TASK
    allow_missing_clips: bool = False   # train without listed clips the cache lacks (noted, ids recorded)

    def frame_ids(self, sets: list) -> dict[str, list[str]]:
        """The cache ids this run may read: the listed clips' audio frames, their prompts' token frames."""
        from mmmos.core.prompts import prompt_key

        clips = [c for ls in sets for c in ls.table["clip_id"].to_list()]
        prompts = [prompt_key(p) for ls in sets if "prompt" in ls.table.columns
                   for p in ls.table["prompt"].to_list() if p is not None]
        return {self.audio_encoder: clips, self.text_encoder: prompts}

    @property
    def audio_encoder(self) -> str:
        return self.encoders[0]

    @property
    def text_encoder(self) -> str:
        return self.encoders[1]


def checkpoint_names(name: str) -> list[str]:
    """The run-folder configuration names of a run's three checkpoints (main first)."""
    return [name + suffix for suffix in CHECKPOINTS]


def recipe_configs(audio_encoder: str = DEFAULT_AUDIO_ENCODER,
                   text_encoder: str = DEFAULT_TEXT_ENCODER) -> list[Track1Config]:
    """The 8 runs of the public recipe (SPEC section 9)."""
    enc = [audio_encoder, text_encoder]

    def cfg(name, loss="kl_gaussian", seed=SEEDS[0], **head):
        return Track1Config(name=name, encoders=list(enc), loss=loss, seed=seed,
                            head_cfg={"output": LOSS_OUTPUT[loss], **head})

    out = [cfg(f"t1-gauss-s{s}", seed=s) for s in SEEDS]
    out += [cfg("t1-onehot-s1984", loss="kl_onehot"),
            cfg("t1-coral-s1510", loss="coral", seed=1510, ta_hidden=list(CORAL_HIDDEN)),
            cfg("t1-decoupled-s1984", decoupled=True),
            cfg("t1-decoupled-lstm-s1984", decoupled=True, lstm_head=True)]
    return out
