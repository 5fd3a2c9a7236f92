"""Stage 1: frozen encoders and the extraction runner.

Encoders are looked up by name in ``ENCODERS`` (one line per encoder; modules are
imported lazily so ``import extract`` stays light).  Each encoder class carries its traits - ``modality``
(audio or text), ``needs_weights``, the precision traits of :class:`FrameEncoder` - and the lists below are
derived from them::

    enc = extract.load_encoder("wavlm", "/models/wavlm-base-plus")
    frames = enc.embed(wave_16k)          # (T, 768) float32
"""
from __future__ import annotations

import importlib

from .base import EncoderLoadError, FrameEncoder, select_device, sha256_file

# name -> "module:Class"; each class has ``from_weights(weights, device=None, **options)``
ENCODERS: dict[str, str] = {
    "logmel": "mmmos.extract.logmel:LogMelEncoder",
    "logmel_slow": "mmmos.extract.logmel:LogMelSlowEncoder",
    "wavlm": "mmmos.extract.wavlm:WavLMEncoder",
    "muq": "mmmos.extract.muq_encoder:MuQEncoder",
    "m2d": "mmmos.extract.m2d:M2DEncoder",
    # text encoders (Track 1 prompts): ``encode(texts)``, not ``embed(wave)``; see extract.text
    "roberta": "mmmos.extract.roberta:RobertaTextEncoder",
    "hashtext": "mmmos.extract.roberta:HashTextEncoder",
}


def modality(name: str) -> str:
    """``"audio"`` or ``"text"`` (reads prompts): the registered class's ``modality``."""
    return getattr(encoder_class(name), "modality", "audio")


def needs_weights(name: str) -> bool:
    """Whether encoder ``name`` loads from ``--weights`` (its class's ``needs_weights``)."""
    return bool(getattr(encoder_class(name), "needs_weights", True))


def __getattr__(attr: str):
    # TEXT_ENCODERS / WEIGHT_FREE: derived from the classes on first use (importing every encoder module)
    if attr == "TEXT_ENCODERS":
        return tuple(n for n in ENCODERS if modality(n) == "text")
    if attr == "WEIGHT_FREE":
        return tuple(n for n in ENCODERS if not needs_weights(n))
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def encoder_class(name: str):
    if name not in ENCODERS:
        raise KeyError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    mod, cls = ENCODERS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def parse_weights(items) -> dict[str, str]:
    """``NAME=PATH`` command-line items (repeatable or comma-separated) -> {name: path}."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"--weights expects NAME=PATH (e.g. wavlm=/models/wavlm-base-plus), got {part!r}")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def load_encoder(name: str, weights=None, device: str | None = None, **options) -> FrameEncoder:
    """Build encoder ``name`` from local ``weights`` (a file or HF directory), frozen, in eval mode."""
    return encoder_class(name).from_weights(weights, device=select_device(device), **options)


__all__ = ["ENCODERS", "EncoderLoadError", "FrameEncoder", "encoder_class", "load_encoder", "modality", "needs_weights",
           "parse_weights", "select_device", "sha256_file"]
