"""A synthetic Track 1 (MusicEval-format) corpus with known structure, for demos and tests.

Each clip is a music-like signal generated for a text prompt that names a tempo (slow/moderate/fast), an
instrument family (piano: decaying harmonic plucks; strings: sustained, many harmonics, vibrato; flute:
near-sine with breath noise) and a brightness (bright/warm). A "system" (generator) follows each named
attribute with its own probability (otherwise it renders another value) and degrades its output with its own
mix of noise, clipping and band-limiting at a per-clip severity.

Labels (the task's axes, in order; each the mean of 5 simulated integer ratings on 1-5, so a multiple of 0.2):

* overall impression (first axis): ``4.6 - 2.8 * severity`` (+ a small system offset), falls with degradation;
* text alignment (second axis): ``1.3 + 3.4 * match`` where ``match`` = 0.35 [tempo as named] + 0.40
  [instrument as named] + 0.25 [brightness as named], minus ``0.4 * severity`` (a badly degraded clip is
  harder to hear as the prompt).

Raters add N(0, 0.55) before rounding to 1..5. Files (``out/``)::

    wav/audiomos2025-track1-S00k_Pnnn.wav   16 kHz mono, 3-6 s
    sets/train_mos_list.txt, sets/dev_mos_list.txt      systems S001-S008 (train/dev split by prompt+system)
    sets/pam_dev_mos_list.txt                           other systems (S009-S011), a second dev set
    prompt_info.txt         id<TAB>text, by prompt id (P001...)
    demo_prompt_info.txt    id<TAB>text, by file name, for the systems the task lists (S001, S006)
    eval_list.txt           the dev ids (no labels)
    factors.csv             per clip: system, split, named and rendered attributes, severity, latent scores

Sized for 2 CPU cores: the default 300 + 80 + 60 clips take about a minute to write.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mmmos.core.outputs import replace_whole
from mmmos.core.tasks import get_task
from mmmos.core.tasks.track1 import DEMO_PROMPT_SYSTEMS, ID_PREFIX

TASK = "track1"
SAMPLE_RATE = 16000
TEMPOS = {"slow": 70.0, "moderate": 100.0, "fast": 140.0}          # beats per minute
INSTRUMENTS = ("piano", "strings", "flute")
BRIGHTNESS = {"bright": 6000.0, "warm": 1200.0}                    # low-pass cutoff of the rendered timbre, Hz
TEMPLATES = ("A {tempo} {bright} {inst} piece", "{Tempo} {inst} music with a {bright} tone",
             "A {bright}-sounding {inst} melody at a {tempo} tempo")
MATCH_WEIGHTS = {"tempo": 0.35, "instrument": 0.40, "brightness": 0.25}
RATERS = 5
RATER_SD = 0.55
_PENTATONIC = (0, 2, 4, 7, 9)


@dataclass(frozen=True)
class System:
    """A generator: how often it renders each named attribute, and how it degrades its output."""

    name: str
    adherence: float          # probability of rendering each named attribute as named
    severity: tuple[float, float]   # per-clip degradation severity range
    kinds: tuple[str, ...]    # degradations applied: noise, clip, band
    quality: float = 0.0      # small offset of the overall impression


TRAIN_SYSTEMS = (
    System("S001", 0.95, (0.0, 0.25), ("noise",), 0.1),
    System("S002", 0.85, (0.1, 0.5), ("noise", "band")),
    System("S003", 0.7, (0.2, 0.7), ("clip",)),
    System("S004", 0.55, (0.0, 0.4), ("band",)),
    System("S005", 0.4, (0.4, 0.9), ("noise", "clip"), -0.1),
    System("S006", 0.8, (0.3, 1.0), ("noise", "clip", "band")),
    System("S007", 0.6, (0.0, 0.6), ("clip", "band"), 0.1),
    System("S008", 0.9, (0.2, 0.8), ("noise",)),
)
PAM_SYSTEMS = (
    System("S009", 0.9, (0.1, 0.6), ("band", "clip")),
    System("S010", 0.5, (0.0, 0.3), ("noise",)),
    System("S011", 0.65, (0.5, 1.0), ("noise", "band")),
)


def prompts() -> list[dict[str, str]]:
    """Every prompt: ``{id, text, tempo, instrument, brightness}`` (ids P001..., fixed order)."""
    out = []
    for tpl in TEMPLATES:
        for tempo in TEMPOS:
            for inst in INSTRUMENTS:
                for bright in BRIGHTNESS:
                    text = tpl.format(tempo=tempo, Tempo=tempo.capitalize(), inst=inst, bright=bright)
                    out.append({"id": f"P{len(out) + 1:03d}", "text": text, "tempo": tempo, "instrument": inst,
                                "brightness": bright})
    return out


# ---------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------
def _lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    """Brick-wall low-pass in the frequency domain (exact, no filter design needed)."""
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1.0 / sr) > cutoff] = 0.0
    return np.fft.irfft(spec, n=len(x)).astype(np.float32)


def _note(inst: str, f0: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    if inst == "piano":
        amps, env = [1.0, 0.6, 0.4, 0.25, 0.15, 0.1], np.exp(-t * 5.0)
        phase = 2 * np.pi * f0 * t
    elif inst == "strings":
        amps, env = [1.0 / k for k in range(1, 11)], np.minimum(1.0, t / 0.08) * np.minimum(1.0, (t[-1] - t + 1e-3) / 0.05)
        phase = 2 * np.pi * f0 * t + 0.6 * np.sin(2 * np.pi * 5.5 * t)  # vibrato
    else:  # flute
        amps, env = [1.0, 0.12, 0.05], np.minimum(1.0, t / 0.05) * np.minimum(1.0, (t[-1] - t + 1e-3) / 0.05)
        phase = 2 * np.pi * f0 * t
    x = sum(a * np.sin(k * phase) for k, a in enumerate(amps, 1) if k * f0 < sr / 2)
    if inst == "flute":
        x = x + 0.05 * rng.standard_normal(n)  # breath
    return (x * env).astype(np.float32)


def render(tempo: str, inst: str, bright: str, seconds: float, rng: np.random.Generator,
           sr: int = SAMPLE_RATE) -> np.ndarray:
    """A clip: notes on the beat of ``tempo`` (clicks mark the beat), ``inst`` timbre, ``bright`` cutoff."""
    n = int(seconds * sr)
    beat = int(sr * 60.0 / TEMPOS[tempo])
    x = np.zeros(n, np.float32)
    root = 220.0 * 2 ** (rng.integers(0, 5) / 12)
    for start in range(0, n, beat):
        f0 = root * 2 ** ((_PENTATONIC[rng.integers(0, 5)] + 12 * rng.integers(0, 2)) / 12)
        m = min(beat, n - start)
        x[start:start + m] += _note(inst, f0, m, sr, rng)
        click = np.exp(-np.arange(min(200, m)) / 30.0) * rng.standard_normal(min(200, m))
        x[start:start + len(click)] += 0.3 * click.astype(np.float32)
    x = _lowpass(x, BRIGHTNESS[bright], sr)
    return (0.5 * x / max(float(np.abs(x).max()), 1e-6)).astype(np.float32)


def degrade(x: np.ndarray, kinds: tuple[str, ...], severity: float, rng: np.random.Generator,
            sr: int = SAMPLE_RATE) -> np.ndarray:
    """Noise (SNR 40 -> 5 dB), clipping (gain 1 -> 8, clip at 0.5), band-limiting (cutoff 7 -> 1 kHz)."""
    y = x.copy()
    if "band" in kinds:
        y = _lowpass(y, 7000.0 - 6000.0 * severity, sr)
    if "clip" in kinds:
        y = np.clip(y * (1.0 + 7.0 * severity), -0.5, 0.5)
    if "noise" in kinds:
        snr = 40.0 - 35.0 * severity
        p = float(np.mean(y ** 2)) + 1e-12
        y = y + rng.standard_normal(len(y)).astype(np.float32) * np.sqrt(p / 10 ** (snr / 10))
    return (0.9 * y / max(float(np.abs(y).max()), 1e-6)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------
def latent_scores(severity: float, matched: dict[str, bool], quality: float = 0.0) -> tuple[float, float]:
    """(overall impression, text alignment) before rater noise; see the module doc."""
    match = sum(w for k, w in MATCH_WEIGHTS.items() if matched[k])
    return 4.6 - 2.8 * severity + quality, 1.3 + 3.4 * match - 0.4 * severity


def simulate_ratings(latent: float, rng: np.random.Generator) -> float:
    """The mean of :data:`RATERS` integer ratings on 1-5 around ``latent``: a multiple of 0.2."""
    r = np.clip(np.rint(latent + rng.normal(0.0, RATER_SD, RATERS)), 1, 5)
    return round(float(r.sum()) / RATERS, 1)  # sums are integers, so /5 is exact to one decimal


def _render_value(named: str, choices, adherence: float, rng: np.random.Generator) -> str:
    if rng.random() < adherence:
        return named
    others = [c for c in choices if c != named]
    return others[int(rng.integers(0, len(others)))]


def _clip(system: System, prompt: dict[str, str], split: str, rng: np.random.Generator, out: Path,
          durations: tuple[float, float], axes: tuple[str, ...]) -> dict[str, Any]:
    rendered = {"tempo": _render_value(prompt["tempo"], list(TEMPOS), system.adherence, rng),
                "instrument": _render_value(prompt["instrument"], INSTRUMENTS, system.adherence, rng),
                "brightness": _render_value(prompt["brightness"], list(BRIGHTNESS), system.adherence, rng)}
    matched = {k: rendered[k] == prompt[k] for k in MATCH_WEIGHTS}
    severity = float(rng.uniform(*system.severity))
    seconds = float(rng.uniform(*durations))
    wave = degrade(render(rendered["tempo"], rendered["instrument"], rendered["brightness"], seconds, rng),
                   system.kinds, severity, rng)
    name = f"{ID_PREFIX}{system.name}_{prompt['id']}"
    # under its own name only once whole
    replace_whole(out / "wav" / f"{name}.wav", lambda tmp: sf.write(tmp, wave, SAMPLE_RATE, subtype="PCM_16",
                                                                      format="WAV"))
    latent = latent_scores(severity, matched, system.quality)
    row = {"clip_id": name, "system": system.name, "split": split, "prompt_id": prompt["id"],
           "severity": round(severity, 4), "seconds": round(seconds, 3),
           **{f"named_{k}": prompt[k] for k in MATCH_WEIGHTS}, **{f"rendered_{k}": v for k, v in rendered.items()},
           **{f"matched_{k}": int(v) for k, v in matched.items()}}
    for axis, value in zip(axes, latent):
        row[f"latent_{axis}"] = round(value, 4)
        row[axis] = simulate_ratings(value, rng)
    return row


def _pairs(systems, table, rng: np.random.Generator) -> list[tuple[System, dict]]:
    pairs = [(s, p) for s in systems for p in table]
    return [pairs[i] for i in rng.permutation(len(pairs))]


def _write_whole(path: Path, text: str) -> None:
    replace_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_list(path: Path, rows: list[dict], axes: tuple[str, ...]) -> None:
    _write_whole(path, "".join(f"{r['clip_id']}.wav," + ",".join(f"{r[a]:.1f}" for a in axes) + "\n" for r in rows))


def _write_tsv(path: Path, items: list[tuple[str, str]]) -> None:
    _write_whole(path, "id\ttext\n" + "".join(f"{k}\t{v}\n" for k, v in items))


#: The corpus's listing files, the one the demo knows a complete corpus by first: removed before any audio is
#: rewritten and written after all of it, so a run cut short leaves no list describing other audio.
LISTINGS = ("sets/pam_dev_mos_list.txt", "sets/dev_mos_list.txt", "sets/train_mos_list.txt", "prompt_info.txt",
            "demo_prompt_info.txt", "eval_list.txt", "factors.csv")


def make_track1_corpus(out: str | os.PathLike, seed: int = 0, n_train: int = 300, n_dev: int = 80,
                       n_pam: int = 60, durations: tuple[float, float] = (3.0, 6.0)) -> dict[str, Any]:
    """Write the corpus into ``out`` (see the module doc); returns the paths and counts.

    Keys: ``out_dir``, ``train``, ``dev``, ``pam_dev`` (MOS lists), ``prompt_info``, ``demo_prompt_info``,
    ``eval_list``, ``factors``, ``n_clips`` (per split), ``n_prompts`` (distinct prompts used).
    """
    table = prompts()
    if min(n_train, n_dev, n_pam) < 0:
        raise ValueError("clip counts must be >= 0")
    if n_train + n_dev > len(TRAIN_SYSTEMS) * len(table) or n_pam > len(PAM_SYSTEMS) * len(table):
        raise ValueError(f"at most {len(TRAIN_SYSTEMS) * len(table)} train+dev and "
                         f"{len(PAM_SYSTEMS) * len(table)} PAM clips (one per system and prompt)")
    if not 0.5 <= durations[0] <= durations[1]:
        raise ValueError(f"durations must satisfy 0.5 <= min <= max, got {durations}")
    axes = get_task(TASK).axes
    root = Path(out)
    for d in (root / "wav", root / "sets"):
        d.mkdir(parents=True, exist_ok=True)
    for name in LISTINGS:
        (root / name).unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    main = _pairs(TRAIN_SYSTEMS, table, rng)
    plan = {"train": main[:n_train], "dev": main[n_train:n_train + n_dev],
            "pam_dev": _pairs(PAM_SYSTEMS, table, rng)[:n_pam]}
    rows: dict[str, list[dict]] = {}
    for split, pairs in plan.items():
        rows[split] = sorted((_clip(s, p, split, rng, root, durations, axes) for s, p in pairs),
                             key=lambda r: r["clip_id"])
    everything = [r for rs in rows.values() for r in rs]
    by_id = {p["id"]: p["text"] for p in table}
    # The demo systems' prompts live only in demo_prompt_info.txt, keyed by file name (as in MusicEval).
    demo = [(f"{r['clip_id']}.wav", by_id[r["prompt_id"]]) for r in everything if r["system"] in DEMO_PROMPT_SYSTEMS]
    _write_tsv(root / "prompt_info.txt", list(by_id.items()))
    _write_tsv(root / "demo_prompt_info.txt", demo)
    _write_whole(root / "eval_list.txt", "".join(r["clip_id"] + "\n" for r in rows["dev"]))
    factors = io.StringIO()
    w = csv.DictWriter(factors, fieldnames=list(everything[0]) if everything else ["clip_id"], lineterminator="\n")
    w.writeheader()
    w.writerows(everything)
    _write_whole(root / "factors.csv", factors.getvalue())
    for split in ("train", "dev", "pam_dev"):  # the pam_dev list, the completeness mark, last
        _write_list(root / "sets" / f"{split}_mos_list.txt", rows[split], axes)
    return {"out_dir": str(root), **{s: str(root / "sets" / f"{s}_mos_list.txt") for s in plan},
            "prompt_info": str(root / "prompt_info.txt"), "demo_prompt_info": str(root / "demo_prompt_info.txt"),
            "eval_list": str(root / "eval_list.txt"), "factors": str(root / "factors.csv"),
            "n_clips": {s: len(r) for s, r in rows.items()},
            "n_prompts": len({r["prompt_id"] for r in everything})}


__all__ = ["BRIGHTNESS", "INSTRUMENTS", "PAM_SYSTEMS", "TEMPOS", "TRAIN_SYSTEMS", "System", "degrade",
           "latent_scores", "make_track1_corpus", "prompts", "render", "simulate_ratings"]
