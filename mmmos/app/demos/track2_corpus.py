"""A small synthetic, labelled corpus with known structure (SPEC section 8).

:func:`make_demo_corpus` writes 16-bit WAV clips plus three plain-CSV manifests
(``train.csv``, ``dev.csv``, ``pam_dev.csv``; columns ``clip_id,path,system,domain,split,
PQ,PC,CE,CU``, paths relative to the corpus folder), ``factors.csv`` (every generative
factor of every clip) and ``README.txt`` (what the factors are and how labels follow).

Content (all synthesised with vectorised numpy/scipy):

* speech-like - glottal pulse trains with an intonation contour, filtered by five vowel
  formant filters switched per syllable, syllable envelopes, fricative noise onsets and
  phrase pauses; one talker per source;
* music-like - wavetable voices with harmonics (melody, chord pad, bass) and drums,
  notes on a tempo grid, consonant or dissonant pitch choices;
* sound-like - event streams: broadband impacts, band-pass noise swells, tonal chirps.

Each clip has 1-4 sources and a log-uniform length in ``durations`` (default 2-20 s,
about 30 % of clips >= 10 s).  The clean mix is "mastered": its long-term spectrum is
pulled towards a common pink-ish balance, so every clean clip carries energy up to the
Nyquist frequency (band-limiting is audible) and a degradation's spectral signature stands
out from the content's.  A clip then gets one degradation (or none) of a known severity
level 1-5 (severity 0.2 ... 1.0), see :data:`DEGRADATIONS`: additive white noise (SNR
20/15/10/5/0 dB), hard clipping (drive 12-30 dB), band-limiting (8th-order Butterworth
low-pass at 0.40 ... 0.08 x Nyquist), coarse mu-law quantisation (7/6/5/4/3 bits re the
peak), naive resampling (decimation by 2-8 without an anti-alias filter, then
sample-and-hold: aliasing and imaging).

A "system" is a generator setting: domain, timbre (brightness, talker formants),
number-of-sources mix, degradation mix and a small quality bias of its own.  Train and
dev share eight systems; the PAM-like dev set comes from four *other* systems (music
and sound only, like AES-PAM), stored as ``PAM/human_eval/{music,audio}/<system>/``.

Labels (0-10): latent scores from the factors (see :func:`latent_scores`), then each
clip's label is the mean of 10 simulated integer ratings (rater bias + noise, rounded,
clipped to 0-10) - so labels are multiples of 0.1 like the real ones.  PQ falls with
degradation severity, PC rises with the number of sources, CE follows pleasantness and
tonality, CU follows clarity and pleasantness.

Deterministic: the same seed and sizes give byte-identical files (on the same numpy/scipy
versions: their FFTs and filters must not change); each clip's random
stream depends only on (seed, split, index), so changing ``n_train`` leaves dev intact.

Length (~620 lines): one job, the corpus; most of it is the three content synthesisers and the degradations,
which share one random-stream and labelling scheme that split modules would have to re-state.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft
from scipy import signal

from mmmos.core.manifests import PROMPT_COLUMN, columns
from mmmos.core.outputs import replace_whole
from mmmos.core.tasks import get_task

__all__ = [
    "DEGRADATIONS",
    "PAM_SYSTEMS",
    "SEVERITY_LEVELS",
    "TRAIN_SYSTEMS",
    "SystemSpec",
    "degrade",
    "latent_scores",
    "make_demo_corpus",
    "simulate_ratings",
]

#: The demo corpus is a corpus of this task: one latent formula per axis (see :data:`_LATENT`).
DEMO_TASK = "track2"
AXES = get_task(DEMO_TASK).axes
MANIFEST_COLUMNS = tuple(c for c in columns(DEMO_TASK) if c != PROMPT_COLUMN)  # Track 2 clips have no prompt

#: Severity of level k (1-5) is SEVERITY_LEVELS[k-1].
SEVERITY_LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)
#: Degradation -> (parameter name, parameter value per level 1-5, perceptual weight).
DEGRADATIONS: dict[str, tuple[str, tuple[float, ...], float]] = {
    "noise": ("snr_db", (20.0, 15.0, 10.0, 5.0, 0.0), 1.0),
    "clipping": ("drive_db", (12.0, 16.0, 20.0, 25.0, 30.0), 0.9),
    "bandlimit": ("cutoff_x_nyquist", (0.40, 0.30, 0.20, 0.13, 0.08), 0.8),
    "quantise": ("bits", (7.0, 6.0, 5.0, 4.0, 3.0), 0.95),
    "resample": ("decimation", (2.0, 3.0, 4.0, 6.0, 8.0), 0.85),
}
_KINDS = ("none", *DEGRADATIONS)
N_RATERS = 10


@dataclass(frozen=True)
class SystemSpec:
    """Generator settings of one synthetic "system"."""

    name: str
    domain: str  # speech | music | sound
    degradation_weights: tuple[float, ...]  # over ("none", noise, clipping, bandlimit, quantise, resample)
    level_weights: tuple[float, ...]  # over severity levels 1-5
    source_weights: tuple[float, ...]  # over 1-4 sources
    brightness: float  # 0 dark ... 1 bright timbre
    quality_bias: float  # the system's own offset on PQ


TRAIN_SYSTEMS: tuple[SystemSpec, ...] = (
    SystemSpec("speech_studio", "speech", (0.35, 0.15, 0.1, 0.15, 0.1, 0.15), (3, 2, 2, 1, 1), (5, 3, 1.5, 0.5), 0.6, 0.3),
    SystemSpec("speech_phone", "speech", (0.1, 0.15, 0.05, 0.35, 0.25, 0.1), (1, 1, 1, 1, 1), (6, 3, 1, 0.5), 0.4, -0.2),
    SystemSpec("speech_street", "speech", (0.15, 0.45, 0.15, 0.1, 0.05, 0.1), (1, 1, 2, 2, 1), (2, 3, 3, 2), 0.7, 0.0),
    SystemSpec("music_studio", "music", (0.35, 0.1, 0.15, 0.15, 0.1, 0.15), (3, 2, 2, 1, 1), (1, 2, 3, 3), 0.7, 0.3),
    SystemSpec("music_lofi", "music", (0.1, 0.1, 0.15, 0.2, 0.25, 0.2), (1, 1, 1, 1, 1), (2, 2, 2, 2), 0.3, -0.3),
    SystemSpec("music_live", "music", (0.15, 0.35, 0.3, 0.1, 0.05, 0.05), (1, 2, 2, 1, 1), (1, 1, 3, 4), 0.8, 0.0),
    SystemSpec("sound_field", "sound", (0.2, 0.35, 0.1, 0.15, 0.1, 0.1), (1, 1, 1, 1, 1), (3, 3, 2, 1), 0.6, 0.1),
    SystemSpec("sound_archive", "sound", (0.1, 0.1, 0.1, 0.3, 0.2, 0.2), (1, 1, 2, 2, 2), (2, 3, 2, 1), 0.4, -0.2),
)
PAM_SYSTEMS: tuple[SystemSpec, ...] = (
    SystemSpec("tta_music_a", "music", (0.2, 0.15, 0.15, 0.15, 0.15, 0.2), (2, 2, 1, 1, 1), (2, 3, 3, 2), 0.9, 0.2),
    SystemSpec("tta_music_b", "music", (0.1, 0.1, 0.1, 0.25, 0.25, 0.2), (1, 1, 1, 2, 2), (3, 3, 2, 1), 0.2, -0.4),
    SystemSpec("tta_sound_a", "sound", (0.2, 0.2, 0.15, 0.15, 0.1, 0.2), (2, 2, 1, 1, 1), (2, 2, 3, 2), 0.8, 0.1),
    SystemSpec("tta_sound_b", "sound", (0.1, 0.25, 0.1, 0.2, 0.15, 0.2), (1, 1, 2, 2, 1), (4, 3, 2, 1), 0.3, -0.3),
)
_SPLIT_INDEX = {"train": 0, "dev": 1, "pam_dev": 2}

# Vowel formants (Hz) and bandwidths: a, e, i, o, u (adult averages).
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]], dtype=float
)
_FORMANT_BW = np.array([90.0, 110.0, 170.0])


# --------------------------------------------------------------------------- small tools


def _weights(rng: np.random.Generator, w: tuple[float, ...]) -> int:
    p = np.asarray(w, dtype=float)
    return int(rng.choice(len(p), p=p / p.sum()))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Zero-mean, unit-variance white noise (uniform: ~7x cheaper than Gaussian, sounds the same)."""
    return (rng.random(n, dtype=np.float32) - np.float32(0.5)) * np.float32(math.sqrt(12.0))


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def _smooth_noise(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """Unit-variance random curve changing about ``rate_hz`` times per second (linear interp)."""
    k = max(2, int(math.ceil(n / sr * rate_hz)) + 2)
    knots = rng.standard_normal(k)
    return np.interp(np.linspace(0.0, k - 1.0, n), np.arange(k), knots).astype(np.float32)


def _segments(rng: np.random.Generator, total: float, lo: float, hi: float) -> np.ndarray:
    """Start times of back-to-back segments with durations U(lo, hi) covering ``total`` s."""
    d = rng.uniform(lo, hi, size=int(total / lo) + 2)
    starts = np.concatenate([[0.0], np.cumsum(d)])
    return starts[: int(np.searchsorted(starts, total)) + 1]


def _onset_env(
    t: np.ndarray, onsets: np.ndarray, attack: float, tau: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear-attack / exponential-decay envelope restarted at each (sorted) onset.

    Returns (envelope, index of the current onset, time since it); zero before the first onset.
    """
    onsets = np.asarray(onsets, dtype=np.float32)
    idx = np.searchsorted(onsets, t, side="right") - 1
    before = idx < 0
    idx = np.maximum(idx, 0)
    dt = np.maximum(t - onsets[idx], np.float32(0.0))
    inv_tau = (1.0 / np.asarray(tau, dtype=np.float32))
    inv_tau = inv_tau[idx] if inv_tau.ndim else inv_tau
    env = np.minimum(dt * np.float32(1.0 / attack), np.float32(1.0)) * np.exp(-dt * inv_tau)
    env[before] = 0.0
    return env, idx, dt


def _resonator_sos(freqs: np.ndarray, bws: np.ndarray, sr: int) -> np.ndarray:
    """Cascade of two-pole resonators (unit-ish peak gain) as second-order sections."""
    rows = []
    for f, b in zip(freqs, bws):
        f = min(f, 0.45 * sr)
        r = math.exp(-math.pi * b / sr)
        th = 2 * math.pi * f / sr
        rows.append([1 - r, 0.0, 0.0, 1.0, -2 * r * math.cos(th), r * r])
    return np.asarray(rows)


_TABLE = 8192  # power of two: phase wrap by bit mask


def _wavetable(rng: np.random.Generator, n_harm: int, rolloff: float) -> np.ndarray:
    """One period of a harmonic waveform (harmonic h has amplitude h**-rolloff), peak 1."""
    h = np.arange(1, n_harm + 1)
    spectrum = np.zeros(_TABLE // 2 + 1, dtype=np.complex128)
    spectrum[1 : n_harm + 1] = h ** (-rolloff) * np.exp(1j * rng.uniform(0, 2 * np.pi, n_harm))
    table = np.fft.irfft(spectrum, _TABLE)  # sum of the harmonics over one period
    return (table / np.max(np.abs(table))).astype(np.float32)


def _osc(table: np.ndarray, freq: np.ndarray, sr: int) -> np.ndarray:
    """Wavetable oscillator following the per-sample frequency ``freq`` (nearest sample;
    with 8192 points the phase error is below -60 dB for the strong low harmonics)."""
    cycles = np.cumsum(freq, dtype=np.float64) * (_TABLE / sr)
    return table[cycles.astype(np.int64) & (_TABLE - 1)]


def _midi_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=float) - 69.0) / 12.0)


# --------------------------------------------------------------------------- sources


def _speech_source(rng: np.random.Generator, n: int, sr: int, c: dict[str, float]) -> np.ndarray:
    """One talker: pulse train -> glottal tilt -> per-syllable vowel formants; fricatives; pauses."""
    t = _time(n, sr)
    f0 = rng.uniform(95.0, 230.0) * np.exp(
        0.12 * _smooth_noise(rng, n, sr, 2.0)
        + 0.05 * (1 - c["pleasantness"]) * _smooth_noise(rng, n, sr, 60.0)  # jitter: rough voice
    )
    pulses = np.diff(np.floor(np.cumsum(f0 / sr, dtype=np.float64)), prepend=0.0)
    pole = 0.97 - 0.07 * c["brightness"]
    glottal = signal.lfilter([1.0], [1.0, -pole], pulses)
    glottal = (glottal / _rms(glottal)).astype(np.float32)
    glottal += np.float32((1.2 - c["tonality"]) * 0.25) * _noise(rng, n)  # aspiration
    scale = rng.uniform(0.85, 1.2)  # the talker's vocal-tract size
    # Syllables of 0.12-0.32 s; about one in seven is a pause.
    starts = _segments(rng, n / sr, 0.12, 0.32)
    k = starts.size
    vowel = rng.integers(0, len(_VOWELS), k)
    voiced = rng.random(k) > 0.15
    fric = rng.random(k) < 0.4
    _, idx, dt = _onset_env(t, starts, 1.0, 1e9)
    dur = np.diff(np.append(starts, starts[-1] + 0.3)).astype(np.float32)
    pos = dt / dur[idx]
    vowel_env = np.where(
        voiced[idx] & (pos > 0.15), np.sin(np.float32(np.pi) * np.clip((pos - 0.15) / 0.85, 0, 1)) ** 0.6, 0.0
    ).astype(np.float32)
    out = np.zeros(n, dtype=np.float32)
    for v in range(len(_VOWELS)):
        mask = vowel_env * (vowel[idx] == v)
        if not mask.any():
            continue
        sos = _resonator_sos(_VOWELS[v] * scale, _FORMANT_BW * scale, sr)
        out += signal.sosfilt(sos, glottal).astype(np.float32) * mask
    out /= _rms(out)
    hp = signal.butter(4, min(3000.0, 0.35 * sr), "highpass", fs=sr, output="sos")
    hiss = signal.sosfilt(hp, _noise(rng, n)).astype(np.float32)
    fric_env = np.where(voiced[idx] & fric[idx] & (pos < 0.2), np.sin(np.float32(np.pi) * pos / 0.2), 0.0)
    out += 0.5 * hiss * fric_env.astype(np.float32)
    rough = 1.0 - 0.4 * (1 - c["pleasantness"]) * (0.5 + 0.5 * np.sin(np.float32(2 * np.pi * 55.0) * t))
    return out * rough


def _music_sources(rng: np.random.Generator, n: int, sr: int, n_src: int, c: dict[str, float]) -> list[np.ndarray]:
    """Melody, chord pad, bass and drums (the first ``n_src`` of them) on one tempo grid."""
    t = _time(n, sr)
    total = n / sr
    beat = 60.0 / rng.uniform(80.0, 150.0)
    root = int(rng.integers(48, 60))
    pleasant = c["pleasantness"]
    steps = np.array([0, 2, 4, 7, 9]) if rng.random() < 0.5 else np.array([0, 3, 5, 7, 10])
    rolloff = 1.6 - 0.9 * c["brightness"]
    breath = np.float32(0.05 * (1.0 - c["tonality"]))

    def pitch(octaves: tuple[int, int], size: int) -> np.ndarray:
        # Pleasant music stays on the pentatonic scale; otherwise notes stray chromatically.
        on_scale = rng.random(size) < 0.35 + 0.65 * pleasant
        octave = 12 * rng.integers(octaves[0], octaves[1] + 1, size)
        return root + octave + np.where(on_scale, steps[rng.integers(0, steps.size, size)], rng.integers(0, 12, size))

    def voice(
        midi: np.ndarray, onsets: np.ndarray, attack: float, tau: float, gate: np.ndarray | None = None
    ) -> np.ndarray:
        env, idx, _ = _onset_env(t, onsets, attack, tau)
        if gate is not None:
            env *= gate[idx]
        hz = _midi_hz(midi)
        n_harm = int(np.clip(0.45 * sr / hz.max(), 1, 60))
        tone = _osc(_wavetable(rng, n_harm, rolloff), hz[idx], sr)
        return (tone + breath * _noise(rng, n)) * env

    out: list[np.ndarray] = []
    on = np.arange(0.0, total, beat / 2)  # melody on half beats, some rests
    out.append(voice(pitch((1, 2), on.size), on, 0.01, 0.35, (rng.random(on.size) > 0.15).astype(np.float32)))
    if n_src >= 2:  # chord pad, one chord per bar
        bars = np.arange(0.0, total, 4 * beat)
        triad = np.array([0, 4, 7]) if rng.random() < 0.5 else np.array([0, 3, 7])
        consonant = rng.random(bars.size) < 0.3 + 0.7 * pleasant
        shapes = np.where(consonant[:, None], triad, np.array([0, 1, 6]))
        base = root + steps[rng.integers(0, steps.size, bars.size)]
        out.append(sum(voice(base + shapes[:, j], bars, 0.08, 2.5) for j in range(3)) / np.float32(3.0))
    if n_src >= 3:  # bass on beats
        on = np.arange(0.0, total, beat)
        out.append(voice(pitch((-2, -1), on.size), on, 0.005, 0.25))
    if n_src >= 4:  # drums: kick on beats, hi-hat between them
        on = np.arange(0.0, total, beat)
        env, _, dt = _onset_env(t, on, 0.002, 0.09)
        kick = np.sin(np.float32(2 * np.pi) * (50.0 * dt + 2.4 * (1 - np.exp(-dt / np.float32(0.04))))) * env
        henv, _, _ = _onset_env(t, np.arange(beat / 4, total, beat / 2), 0.001, 0.03)
        hat = np.diff(_noise(rng, n + 1)) * henv
        out.append(kick + 0.5 * hat)
    return out


def _sound_source(rng: np.random.Generator, n: int, sr: int, c: dict[str, float]) -> np.ndarray:
    """One event stream: impacts (broadband), swells (band-pass noise) or chirps (tonal)."""
    t = _time(n, sr)
    total = n / sr
    kind = "chirp" if rng.random() < c["tonality"] else ("impact" if rng.random() < 0.5 else "swell")
    onsets = np.sort(rng.uniform(0.0, total, max(1, rng.poisson(rng.uniform(0.6, 2.5) * total))))
    harsh = 1.0 - c["pleasantness"]
    if kind == "impact":
        env, _, _ = _onset_env(t, onsets, 0.001 + 0.004 * c["pleasantness"], rng.uniform(0.02, 0.12, onsets.size))
        x = signal.lfilter([1.0], [1.0, -(0.6 - 0.5 * c["brightness"])], _noise(rng, n))
    elif kind == "swell":
        env, _, _ = _onset_env(t, onsets, 0.08, rng.uniform(0.2, 0.8, onsets.size))
        fc = rng.uniform(300.0, 1500.0) * (1 + 3 * harsh)  # harsh sounds sit higher
        hi = min(fc * 1.5, 0.45 * sr)
        band = [min(fc / 1.5, hi / 2.25), hi]
        x = signal.sosfilt(signal.butter(2, band, "bandpass", fs=sr, output="sos"), _noise(rng, n))
    else:
        env, idx, dt = _onset_env(t, onsets, 0.005, rng.uniform(0.05, 0.25, onsets.size))
        f_start = rng.uniform(min(800.0, 0.05 * sr), min(2000.0, 0.12 * sr), onsets.size).astype(np.float32)[idx]
        # Linear sweep for 0.3 s, then steady: the frequency stays within 0.7-1.6 x f_start,
        # so the 2nd harmonic stays below Nyquist (no aliasing in clean clips).
        sweep, d0 = np.float32(rng.uniform(-0.5, 1.0)), np.minimum(dt, np.float32(0.3))
        cyc = f_start * (dt + sweep * d0 * (2 * dt - d0))
        x = np.sin(np.float32(2 * np.pi) * cyc) + np.float32(0.3) * np.sin(np.float32(4 * np.pi) * cyc)
    x = (x / _rms(x)).astype(np.float32) * env
    if harsh > 0.5:  # roughness: fast amplitude modulation
        x *= 1.0 - (harsh - 0.5) * (0.5 + 0.5 * np.sin(np.float32(2 * np.pi * 70.0) * t))
    # A faint broadband layer under each event keeps energy up to Nyquist (band-limiting is audible).
    return x + np.float32(0.05) * env * _noise(rng, n)


def _master(x: np.ndarray, sr: int, amount: float = 0.85, max_boost_db: float = 20.0) -> np.ndarray:
    """Pull the clip's long-term spectrum towards a common pink-ish target (-3 dB/octave above
    500 Hz), by ``amount`` (in dB) - like mastering.  Clean clips then share a spectral
    balance, so a degradation's spectral signature stands out from the content's."""
    n = x.size
    n_fft = sp_fft.next_fast_len(n, real=True)  # awkward lengths make the FFT 10x slower
    spec = sp_fft.rfft(x.astype(np.float64), n_fft)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    # Sixth-octave bands from 50 Hz to Nyquist: measured vs target mean power.
    edges = 50.0 * 2.0 ** (np.arange(0, 64) / 6.0)
    edges = edges[edges < sr / 2]
    band = np.clip(np.searchsorted(edges, freqs) - 1, 0, edges.size - 2)
    power = np.bincount(band, weights=np.abs(spec) ** 2, minlength=edges.size - 1)
    count = np.bincount(band, minlength=edges.size - 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    measured = power / np.maximum(count, 1) + 1e-20
    target = 1.0 / (1.0 + centres / 500.0)
    gain_db = amount * 10.0 * np.log10(target / measured)
    # Relative to the median band; cap the boost so empty bands are not blown up into noise.
    gain_db = np.minimum(gain_db - np.median(gain_db), max_boost_db)
    gain = 10.0 ** (np.interp(np.log(np.maximum(freqs, 1.0)), np.log(centres), gain_db) / 20.0)
    return sp_fft.irfft(spec * gain, n_fft)[:n].astype(np.float32)


# --------------------------------------------------------------------------- degradations


def degrade(x: np.ndarray, sr: int, kind: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """Apply degradation ``kind`` at ``level`` (1-5; ignored for "none") to a clean clip."""
    if kind not in _KINDS:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {_KINDS}")
    x = np.asarray(x, dtype=np.float64)
    if kind == "none":
        return x.copy()
    if not 1 <= level <= len(SEVERITY_LEVELS):
        raise ValueError(f"degradation level must be 1-{len(SEVERITY_LEVELS)}, got {level}")
    value = DEGRADATIONS[kind][1][level - 1]
    peak = float(np.max(np.abs(x))) + 1e-12
    if kind == "noise":
        noise = rng.standard_normal(x.size)
        return x + noise * (_rms(x) / _rms(noise)) * 10.0 ** (-value / 20.0)
    if kind == "clipping":
        thr = peak * 10.0 ** (-value / 20.0)
        return np.clip(x, -thr, thr) * (peak / thr)
    if kind == "bandlimit":
        sos = signal.butter(8, value * sr / 2, "lowpass", fs=sr, output="sos")
        return signal.sosfilt(sos, x)
    if kind == "quantise":
        # mu-law companded (as in telephony), so quiet passages are coarsened too rather than
        # gated to silence: signal-following granular noise.
        mu, steps = 255.0, 2.0 ** (value - 1)
        y = np.sign(x) * np.log1p(mu * np.abs(x) / peak) / math.log1p(mu)
        y = np.round(y * steps) / steps
        return np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu * peak
    k = int(value)  # "resample": no anti-alias filter (aliasing), sample-and-hold (imaging)
    return np.repeat(x[::k], k)[: x.size]


# --------------------------------------------------------------------------- labels


# One (formula as written in README.txt, formula) per axis of DEMO_TASK, in its axis order:
# production quality, production complexity, content enjoyment, content usefulness.
_LATENT: tuple[tuple[str, Callable[[dict[str, Any]], float]], ...] = (
    ("8.6 - 6.5 effective_severity + quality_bias",
     lambda f: 8.6 - 6.5 * f["effective_severity"] + f["quality_bias"]),
    ("1.2 + 1.8 (n_sources - 1) + 0.6 [music]",
     lambda f: 1.2 + 1.8 * (f["n_sources"] - 1) + 0.6 * (f["domain"] == "music")),
    ("2.0 + 3.0 pleasantness + 1.5 tonality + 1.0 [music] - 2.0 effective_severity",
     lambda f: 2.0 + 3.0 * f["pleasantness"] + 1.5 * f["tonality"] + 1.0 * (f["domain"] == "music")
     - 2.0 * f["effective_severity"]),
    ("2.5 + 3.5 clarity + 1.5 pleasantness",
     lambda f: 2.5 + 3.5 * f["clarity"] + 1.5 * f["pleasantness"]),
)
assert len(_LATENT) == len(AXES), "one latent formula per axis of the demo task"


def latent_scores(f: dict[str, Any]) -> dict[str, float]:
    """Noise-free 0-10 scores (axis -> score) from a clip's factors (documented formulas, see README.txt)."""
    return {axis: fn(f) for axis, (_, fn) in zip(AXES, _LATENT)}


def simulate_ratings(rng: np.random.Generator, latent: float, n: int = N_RATERS) -> np.ndarray:
    """``n`` integer ratings 0-10: latent + rater bias + noise, rounded and clipped."""
    r = latent + rng.normal(0.0, 0.5, n) + rng.normal(0.0, 0.8, n)
    return np.clip(np.rint(r), 0, 10).astype(np.int64)


# --------------------------------------------------------------------------- one clip


def _make_clip(
    rng: np.random.Generator, system: SystemSpec, sr: int, durations: tuple[float, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    # Log-uniform length: many short clips, ~30 % of 2-20 s clips are >= 10 s (cropping matters).
    duration = round(float(np.exp(rng.uniform(math.log(durations[0]), math.log(durations[1])))), 2)
    n = int(round(duration * sr))
    n_src = 1 + _weights(rng, system.source_weights)
    domain = system.domain
    tonality_range = {"speech": (0.4, 0.8), "music": (0.6, 1.0), "sound": (0.0, 0.6)}[domain]
    c = {
        "pleasantness": float(rng.uniform(0.0, 1.0)),
        "tonality": float(rng.uniform(*tonality_range)),
        "brightness": float(np.clip(system.brightness + rng.normal(0, 0.1), 0, 1)),
    }
    if domain == "speech":
        srcs = [_speech_source(rng, n, sr, c) for _ in range(n_src)]
    elif domain == "music":
        srcs = _music_sources(rng, n, sr, n_src, c)
    else:
        srcs = [_sound_source(rng, n, sr, c) for _ in range(n_src)]
    gains = 10.0 ** (rng.uniform(-6.0, 0.0, n_src) / 20.0)
    gains[0] = 1.0
    clean = _master(sum(g * s / _rms(s) for g, s in zip(gains, srcs)), sr)
    clean *= 10.0 ** (rng.uniform(-28.0, -18.0) / 20.0) / _rms(clean)
    clean *= min(1.0, 0.9 / (float(np.max(np.abs(clean))) + 1e-12))

    kind = _KINDS[_weights(rng, system.degradation_weights)]
    level = 0 if kind == "none" else 1 + _weights(rng, system.level_weights)
    x = degrade(clean, sr, kind, level, rng)
    x *= min(1.0, 0.99 / (float(np.max(np.abs(x))) + 1e-12))

    severity = 0.0 if kind == "none" else SEVERITY_LEVELS[level - 1]
    eff = severity * (DEGRADATIONS[kind][2] if kind != "none" else 0.0)
    factors: dict[str, Any] = {
        "system": system.name,
        "domain": domain,
        "duration_s": duration,
        "n_sources": n_src,
        "degradation": kind,
        "level": level,
        "severity": severity,
        "effective_severity": round(eff, 4),
        "param_name": DEGRADATIONS[kind][0] if kind != "none" else "",
        "param_value": DEGRADATIONS[kind][1][level - 1] if kind != "none" else "",
        "pleasantness": round(c["pleasantness"], 4),
        "tonality": round(c["tonality"], 4),
        "brightness": round(c["brightness"], 4),
        "clarity": round((1.0 - 0.8 * eff) * (1.0 - 0.15 * (n_src - 1)), 4),
        "quality_bias": system.quality_bias,
    }
    lat = latent_scores(factors)
    for axis in AXES:
        jitter = float(rng.normal(0.0, 0.35))  # what the factors do not explain
        factors[f"latent_{axis}"] = round(lat[axis] + jitter, 4)
        factors[axis] = float(np.mean(simulate_ratings(rng, lat[axis] + jitter)))
    return x.astype(np.float32), factors


# --------------------------------------------------------------------------- corpus


_README = """Synthetic demo corpus for mmmos (generated by mmmos.app.demos.track2_corpus.make_demo_corpus)
seed={seed} sample_rate={sr} clips: train={n_train} dev={n_dev} pam_dev={n_pam}

Files
  train.csv, dev.csv, pam_dev.csv  manifests: {manifest_columns}
                                   (paths relative to this folder)
  factors.csv                      every generative factor and the latent scores of every clip
  audio/<split>/<system>/*.wav     train and dev clips (16-bit WAV, mono)
  PAM/human_eval/{{music,audio}}/<system>/*.wav   PAM-like dev clips (systems unseen in train)

Content: speech-like (formant-filtered pulse trains, syllables), music-like (harmonic
voices, chords, bass, drums on a tempo grid), sound-like (impacts, noise swells, chirps);
1-4 sources per clip; durations log-uniform in {dmin}-{dmax} s.

Factors (factors.csv)
  n_sources           1-4 simultaneous sources (talkers / instruments / event streams)
  degradation, level  one of none, noise, clipping, bandlimit, quantise, resample; level 1-5
  severity            level/5; param_name/param_value is the degradation's setting per level 1-5:
{degradation_table}
                        (quantise = mu-law (mu 255) re the clip's peak; resample = decimation
                        without anti-alias filter, then sample-and-hold)
  effective_severity  severity x perceptual weight:
                        {weights}
  pleasantness        0-1: consonant notes/chords, smooth voices, low-pitched gentle events
  tonality            0-1: harmonic vs noisy content
  clarity             (1 - 0.8 effective_severity) x (1 - 0.15 (n_sources - 1))
  quality_bias        the system's own {quality_axis} offset

Latent scores (then + N(0, 0.35) per clip and axis)
{latent_table}
Labels = mean of 10 integer ratings round(latent + N(0,0.5) + N(0,0.8)) clipped to 0-10.

Systems (train and dev):  {train_systems}
Systems (PAM-like dev):   {pam_systems}
"""


def _write_csv(path: Path, header: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            for r in rows:
                w.writerow([_fmt(r[h]) for h in header])

    replace_whole(path, write)


#: The corpus's own listing files, the one a complete corpus is known by (the demo's check) first: removed before
#: any audio is rewritten and written again only after all of it, so an interrupted run never leaves a list
#: whose labels describe audio of another seed or size.
_LISTINGS = ("pam_dev.csv", "dev.csv", "train.csv", "factors.csv", "README.txt")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


def make_demo_corpus(
    out_dir: str | os.PathLike,
    n_train: int = 120,
    n_dev: int = 40,
    n_pam: int = 40,
    seed: int = 0,
    sample_rate: int = 16000,
    durations: tuple[float, float] = (2.0, 20.0),
) -> dict[str, Any]:
    """Generate the corpus into ``out_dir`` (created; our files are overwritten).

    The listing files are removed first and written after all audio (``pam_dev.csv`` last), each clip and list
    under its final name only once whole: a run cut short leaves no list that describes other audio.

    Returns a dict with the paths ``train``, ``dev``, ``pam_dev`` (manifests), ``factors``,
    ``readme``, ``out_dir``, plus ``n_clips`` (per split) and ``total_seconds``.
    """
    if min(n_train, n_dev, n_pam) < 0:
        raise ValueError("clip counts must be >= 0")
    lo, hi = durations
    if not 0.5 <= lo <= hi:
        raise ValueError(f"durations must satisfy 0.5 <= min <= max, got {durations}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in _LISTINGS:
        (out / name).unlink(missing_ok=True)
    plan = (
        ("train", n_train, TRAIN_SYSTEMS),
        ("dev", n_dev, TRAIN_SYSTEMS),
        ("pam_dev", n_pam, PAM_SYSTEMS),
    )
    all_factors: list[dict[str, Any]] = []
    split_rows: dict[str, list[dict[str, Any]]] = {}
    result: dict[str, Any] = {"out_dir": str(out), "n_clips": {}, "total_seconds": 0.0}
    for split, count, systems in plan:
        rows: list[dict[str, Any]] = []
        for i in range(count):
            system = systems[i % len(systems)]
            rng = np.random.default_rng([seed, _SPLIT_INDEX[split], i])
            wave, f = _make_clip(rng, system, sample_rate, (lo, hi))
            clip_id = f"{split}-{system.name}-{i:04d}"
            if split == "pam_dev":
                folder = "music" if system.domain == "music" else "audio"
                rel = f"PAM/human_eval/{folder}/{system.name}/{clip_id}.wav"
            else:
                rel = f"audio/{split}/{system.name}/{clip_id}.wav"
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            # under its own name only once whole
            replace_whole(dest, lambda tmp: sf.write(tmp, wave, sample_rate, subtype="PCM_16", format="WAV"))
            f = {"clip_id": clip_id, "path": rel, "split": split, **f}
            rows.append(f)
            all_factors.append(f)
            result["total_seconds"] += wave.size / sample_rate
        split_rows[split] = rows
        result[split] = str(out / f"{split}.csv")
        result["n_clips"][split] = count
    for split in ("train", "dev"):  # pam_dev.csv, the completeness mark, last of all
        _write_csv(out / f"{split}.csv", MANIFEST_COLUMNS, split_rows[split])
    factor_cols = list(all_factors[0]) if all_factors else ["clip_id", "path", "split"]
    _write_csv(out / "factors.csv", factor_cols, all_factors)
    (out / "README.txt").write_text(
        _README.format(
            manifest_columns=",".join(MANIFEST_COLUMNS), quality_axis=AXES[0],
            latent_table="\n".join(f"  {axis} = {text}" for axis, (text, _) in zip(AXES, _LATENT)),
            seed=seed, sr=sample_rate, n_train=n_train, n_dev=n_dev, n_pam=n_pam, dmin=lo, dmax=hi,
            degradation_table="\n".join(
                f"                        {k:<9} {name} {'/'.join(f'{v:g}' for v in values)}"
                for k, (name, values, _) in DEGRADATIONS.items()
            ),
            weights=", ".join(f"{k} {w:g}" for k, (_, _, w) in DEGRADATIONS.items()),
            train_systems=", ".join(s.name for s in TRAIN_SYSTEMS),
            pam_systems=", ".join(s.name for s in PAM_SYSTEMS),
        ),
        encoding="utf-8",
    )
    _write_csv(out / "pam_dev.csv", MANIFEST_COLUMNS, split_rows["pam_dev"])
    result["factors"] = str(out / "factors.csv")
    result["readme"] = str(out / "README.txt")
    result["total_seconds"] = round(result["total_seconds"], 3)
    return result
