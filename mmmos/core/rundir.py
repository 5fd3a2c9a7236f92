"""The run directory: the one owner of every file a sweep writes and of reading them back.

::

    <run>/run.json                        RunRecord: task, store path, encoder identities, label sets
    <run>/configs/<name>/model.pt         ModelRecord: head config + weights, z-score statistics, encoders, crop
    <run>/configs/<name>/config.json      ConfigRecord: the training configuration and what training saw
    <run>/configs/<name>/train_log.jsonl  one JSON object per epoch (and notes)
    <run>/configs/<name>/predictions/<set>.parquet   clip_id, system, domain, <task axes>
    <run>/configs/<name>/metrics.parquet  set, level, axis, metric, value, n
    <run>/configs/<name>/DONE             written last: the configuration is complete
    <run>/summary.parquet, summary.md     Table III layout over the finished configurations
    <run>/ensembles/                      written by the ensemble stage

``sweep`` writes through :class:`RunDir`/:class:`ConfigDir`; ensembles, the report and the predictor export
read through them. Records written before tasks were recorded read as task ``track2``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mmmos.core.errors import UserError
from mmmos.core.outputs import replace_whole
from mmmos.core.tasks import DEFAULT_TASK

RUN_FILE = "run.json"
CONFIGS = "configs"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "train_log.jsonl"
PREDICTIONS = "predictions"
METRICS_FILE = "metrics.parquet"
DONE_FILE = "DONE"
SUMMARY_PARQUET = "summary.parquet"
SUMMARY_MD = "summary.md"
ENSEMBLES = "ensembles"


class RunDirError(UserError):
    """A run directory (or one of its files) is missing, unreadable or from something else."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename, so readers never see half a file."""
    replace_whole(path, lambda tmp: tmp.write_text(text))


def _known(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass
class RunRecord:
    """``run.json``: what a run was trained from (its identity)."""

    store: str
    encoders: dict[str, str]            # encoder name -> cache identity key
    labels: dict[str, str]              # set name -> label file (absolute path)
    task: str = DEFAULT_TASK
    label_sha256: dict[str, str] = field(default_factory=dict)   # set name -> sha256 of the label file
    extra: dict[str, Any] = field(default_factory=dict)   # later additions (e.g. label content hashes)

    @classmethod
    def from_json(cls, d: dict) -> "RunRecord":
        known = _known(cls, d)
        known.setdefault("task", DEFAULT_TASK)
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**known, extra={**known.pop("extra", {}), **extra})

    def to_json(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}


@dataclass
class ModelRecord:
    """``model.pt``: everything needed to rebuild and apply a trained head (the checkpoint carries its config)."""

    head_config: dict                   # heads.build_head_from_config input
    state_dict: dict                    # head weights (tensors)
    z_mean: list[float]                 # training-set label statistics per axis
    z_std: list[float]
    axes: list[str]
    encoders: list[dict]                # encoder identities, in feature order
    encoder_keys: list[str]             # cache identity keys, in feature order
    crop_seconds: float
    grid_rate: float | None
    features: str = "per-encoder mean -> L2 -> concat"
    task: str = DEFAULT_TASK

    def save(self, path: str | os.PathLike) -> None:
        import torch

        replace_whole(path, lambda tmp: torch.save(asdict(self), tmp))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelRecord":
        import torch

        try:
            d = torch.load(Path(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise RunDirError(f"{path}: model file not found") from None
        except Exception as e:  # noqa: BLE001 - a damaged/foreign file is a user-facing problem
            raise RunDirError(f"{path}: not a readable model file ({type(e).__name__}: {e})") from None
        if not isinstance(d, dict) or "state_dict" not in d or "head_config" not in d:
            raise RunDirError(f"{path}: not an mmmos model record")
        d.setdefault("task", DEFAULT_TASK)
        return cls(**_known(cls, d))


@dataclass
class ConfigRecord:
    """``config.json``: the training configuration (as a dict) and what training saw."""

    config: dict
    n_train: int = 0
    n_dev: int = 0
    epochs_run: int = 0
    best_dev_loss: float | None = None
    t_load: float = 0.0
    t_data: float = 0.0
    t_step: float = 0.0
    notes: list[str] = field(default_factory=list)
    head_params: int = 0
    # set name -> sha256 of the label file its predictions/metrics were made from (empty in older records)
    label_sha256: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> "ConfigRecord":
        known = _known(cls, d)
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**known, extra={**known.pop("extra", {}), **extra})

    def to_json(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}


class ConfigDir:
    """One configuration's folder ``<run>/configs/<name>/``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.name = self.path.name

    # paths
    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def predictions_dir(self) -> Path:
        return self.path / PREDICTIONS

    def predictions_path(self, set_name: str) -> Path:
        return self.predictions_dir / f"{set_name}.parquet"

    # state
    def is_done(self) -> bool:
        return (self.path / DONE_FILE).is_file()

    def mark_done(self) -> None:
        atomic_write_text(self.path / DONE_FILE, "ok\n")

    def clear_done(self) -> None:
        (self.path / DONE_FILE).unlink(missing_ok=True)

    def prediction_sets(self) -> list[str]:
        return sorted(p.stem for p in self.predictions_dir.glob("*.parquet"))

    # records
    def open_log(self, mode: str = "w"):
        """The training log (one JSON object per line), opened for writing (``"w"``) or appending (``"a"``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return open(self.log_path, mode)

    def write_model(self, rec: ModelRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        rec.save(self.model_path)

    def read_model(self) -> ModelRecord:
        return ModelRecord.load(self.model_path)

    def write_config(self, rec: ConfigRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, json.dumps(rec.to_json(), indent=2, default=str))

    def read_config(self) -> ConfigRecord:
        return ConfigRecord.from_json(_read_json(self.config_path))

    def write_predictions(self, set_name: str, df) -> None:
        self.predictions_dir.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(df, self.predictions_path(set_name))

    def read_predictions(self, set_name: str):
        return _read_parquet(self.predictions_path(set_name))

    def write_metrics(self, df) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(df, self.metrics_path)

    def read_metrics(self):
        return _read_parquet(self.metrics_path)


class RunDir:
    """A sweep's run folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def configs_path(self) -> Path:
        return self.path / CONFIGS

    @property
    def ensembles_path(self) -> Path:
        return self.path / ENSEMBLES

    @property
    def summary_parquet(self) -> Path:
        return self.path / SUMMARY_PARQUET

    @property
    def summary_md(self) -> Path:
        return self.path / SUMMARY_MD

    def exists(self) -> bool:
        return self.run_file.is_file() or self.configs_path.is_dir()

    def read_run(self) -> RunRecord | None:
        """The run record, or None when the folder has none yet."""
        if not self.run_file.is_file():
            return None
        return RunRecord.from_json(_read_json(self.run_file))

    def write_run(self, rec: RunRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_file, json.dumps(rec.to_json(), indent=2))

    def task(self) -> str:
        rec = self.read_run()
        return rec.task if rec else DEFAULT_TASK

    def write_summary(self, df, markdown: str) -> None:
        """``summary.parquet`` and ``summary.md`` (each replaced atomically)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(df, self.summary_parquet)
        atomic_write_text(self.summary_md, markdown)

    def config(self, name: str) -> ConfigDir:
        return ConfigDir(self.configs_path / name)

    def config_names(self) -> list[str]:
        if not self.configs_path.is_dir():
            return []
        return sorted(p.name for p in self.configs_path.iterdir() if p.is_dir())

    def finished(self) -> list[str]:
        """Names of the configurations with a DONE marker."""
        return [n for n in self.config_names() if self.config(n).is_done()]

    def unfinished(self) -> list[str]:
        return [n for n in self.config_names() if not self.config(n).is_done()]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}: not readable JSON ({e})") from None


def _atomic_parquet(df, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def _read_parquet(path: Path):
    import polars as pl

    try:
        return pl.read_parquet(path)
    except FileNotFoundError:
        raise RunDirError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - polars raises several types for damaged files
        raise RunDirError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None


__all__ = ["CONFIGS", "ConfigDir", "ConfigRecord", "ModelRecord", "RunDir", "RunDirError", "RunRecord",
           "atomic_write_text"]
