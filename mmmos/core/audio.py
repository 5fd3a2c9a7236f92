"""Decode audio files to mono float32 at a chosen sample rate.

Decoding uses soundfile (libsndfile: wav, flac, mp3, ogg/vorbis, opus, aiff, ...).
Multi-channel audio (any number of channels) is down-mixed by averaging the
channels.  Resampling is band-limited and polyphase (``scipy.signal.resample_poly``)
with our own Kaiser-window low-pass filter, designed once per rate pair and cached:

* pass-band up to 0.90 x the lower Nyquist frequency (ripple < 0.01 dB),
* stop-band from 1.00 x the lower Nyquist frequency, attenuated by >= 80 dB,

so nothing above the new Nyquist frequency folds back (no aliasing) and content
below 0.9 x Nyquist is kept.  scipy's default filter (Kaiser beta 5, 10 x rate
taps) has a transition band centred *on* Nyquist, which lets the top ~8 % alias;
torchaudio's resampler would also do, but scipy keeps this module numpy-only.

Policy on odd inputs (an :class:`AudioError` names the file and the problem):

* missing file, directory, non-audio or corrupt file -> error;
* zero samples -> error;
* NaN/inf samples (possible in float WAV) -> error; never replaced by zeros;
* all-silent audio is *valid* audio: it is returned, and :func:`read_clip` marks it
  ``silent=True`` (peak at or below one 16-bit step) so callers can report it;
* a truncated WAV (the header's data size promises more bytes than the file holds, e.g. a copy cut
  short) -> error naming the declared and the present duration: decoding only the bytes present would
  label a 1.67-s fragment with the ratings of a 5-s clip;
* very short clips are returned as they are: the encoders decide what is too short.

scipy is imported only when a clip is resampled, so importing this module stays cheap.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from mmmos.core.errors import UserError

__all__ = [
    "AUDIO_EXTENSIONS",
    "SILENCE_PEAK",
    "AudioClip",
    "AudioError",
    "AudioInfo",
    "audio_info",
    "is_silent",
    "load_audio",
    "read_clip",
    "resample",
    "resample_filter",
]

#: File name endings the folder scanner treats as audio.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif")

#: A clip whose absolute peak is at or below this (one 16-bit quantisation step) is "silent".
SILENCE_PEAK = 1.0 / 32768.0

# Resampling filter: pass-band edge and stop-band edge as fractions of the lower
# Nyquist frequency, and the stop-band attenuation in dB.
_PASS_EDGE = 0.90
_STOP_EDGE = 1.00
_STOP_DB = 80.0

_MIN_SR, _MAX_SR = 1_000, 768_000  # sanity bounds; 8-96 kHz is the supported range


class AudioError(UserError):
    """A file could not be turned into valid audio; the message names the file and why."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (read without decoding the samples)."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float  # seconds
    format: str
    subtype: str


@dataclass(frozen=True)
class AudioClip:
    """A decoded clip: mono float32 ``wave`` at ``sr`` plus facts about the source."""

    path: str
    wave: np.ndarray
    sr: int
    source_sr: int
    channels: int
    silent: bool

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.wave.shape[-1] / self.sr


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    _check_wav_complete(path)


_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the data size unset
_MAX_CHUNKS = 64


def _wav_data_sizes(path: Path) -> tuple[int, int, int] | None:
    """(declared data bytes, present data bytes, bytes per second) of a RIFF/WAVE file; None when it
    is not one, uses RF64, or leaves the data size unset."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        file_size = os.fstat(f.fileno()).st_size
        byte_rate = 0
        for _ in range(_MAX_CHUNKS):
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if cid == b"fmt " and size >= 16:
                fmt = f.read(16)
                byte_rate = struct.unpack(endian + "HHIIHH", fmt)[3] if len(fmt) == 16 else 0
                f.seek(size - 16 + (size & 1), os.SEEK_CUR)
            elif cid == b"data":
                if size in _UNKNOWN_SIZES or byte_rate <= 0:
                    return None
                return size, max(0, file_size - f.tell()), byte_rate
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _check_wav_complete(path: Path) -> None:
    """AudioError when a WAV file holds fewer data bytes than its header declares (a truncated copy)."""
    try:
        sizes = _wav_data_sizes(path)
    except (OSError, struct.error):
        return  # unreadable headers are reported by the decoder with its own words
    if sizes is None:
        return
    declared, present, byte_rate = sizes
    if present < declared:
        raise AudioError(
            f"{path}: truncated WAV: the header declares {declared / byte_rate:.2f} s of audio but only "
            f"{present / byte_rate:.2f} s are present ({present} of {declared} data bytes)")


def _decode_error(path: Path, err: Exception) -> AudioError:
    msg = str(err)
    if "format not recognised" in msg.lower() or "unknown format" in msg.lower():
        return AudioError(f"{path}: not an audio file soundfile can decode ({msg})")
    return AudioError(f"{path}: unreadable or corrupt audio ({msg})")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels, frames and duration from the file header (cheap)."""
    p = Path(path)
    _check_file(p)
    try:
        info = sf.info(str(p))
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as e:
        raise _decode_error(p, e) from e
    return AudioInfo(
        path=str(p),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        duration=float(info.frames) / float(info.samplerate) if info.samplerate else 0.0,
        format=str(info.format),
        subtype=str(info.subtype),
    )


def _check_rate(sr: int, what: str) -> int:
    if isinstance(sr, bool) or int(sr) != sr or not (_MIN_SR <= int(sr) <= _MAX_SR):
        raise ValueError(f"{what} must be an integer sample rate in [{_MIN_SR}, {_MAX_SR}] Hz, got {sr!r}")
    return int(sr)


@lru_cache(maxsize=32)
def resample_filter(up: int, down: int) -> np.ndarray:
    """The low-pass FIR (at rate ``sr_in * up``) used to resample by ``up/down``; cached.

    Odd length (zero-phase after ``resample_poly``'s delay compensation), unit DC gain;
    ``resample_poly`` multiplies it by ``up`` itself.  The returned array is read-only.
    """
    if up < 1 or down < 1 or math.gcd(up, down) != 1:
        raise ValueError(f"up/down must be coprime positive integers, got {up}/{down}")
    from scipy import signal  # lazily: importing scipy.signal costs ~1 s of start-up

    max_rate = max(up, down)
    # firwin/kaiserord measure frequencies relative to the Nyquist of the up-sampled rate;
    # the lower of the two Nyquist frequencies sits at 1/max_rate there.
    width = (_STOP_EDGE - _PASS_EDGE) / max_rate
    numtaps, beta = signal.kaiserord(_STOP_DB, width)
    numtaps |= 1  # odd length -> integer group delay
    cutoff = 0.5 * (_PASS_EDGE + _STOP_EDGE) / max_rate
    h = signal.firwin(numtaps, cutoff, window=("kaiser", beta))
    h.setflags(write=False)
    return h


def resample(wave: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Band-limited resampling of ``wave`` (along the last axis) from ``sr_from`` to ``sr_to``.

    Output length is ``ceil(n * sr_to / sr_from)``; dtype float32.  Equal rates return a
    float32 copy unchanged.
    """
    sr_from = _check_rate(sr_from, "sr_from")
    sr_to = _check_rate(sr_to, "sr_to")
    x = np.asarray(wave)
    if sr_from == sr_to:
        return x.astype(np.float32, copy=True)
    g = math.gcd(sr_from, sr_to)
    up, down = sr_to // g, sr_from // g
    h = resample_filter(up, down)
    from scipy import signal

    # float64 inside: a 40k-tap filter summed in float32 would lose ~1e-5 of precision.
    y = signal.resample_poly(x.astype(np.float64, copy=False), up, down, axis=-1, window=h)
    return y.astype(np.float32)


def is_silent(wave: np.ndarray, peak: float = SILENCE_PEAK) -> bool:
    """True when every sample's magnitude is at or below ``peak`` (default: one 16-bit step)."""
    return bool(wave.size == 0 or float(np.max(np.abs(wave))) <= peak)


def read_clip(path: str | os.PathLike, target_sr: int | None = None) -> AudioClip:
    """Decode ``path`` to a mono float32 :class:`AudioClip`, resampled to ``target_sr`` if given.

    Raises :class:`AudioError` for missing, non-audio, corrupt, empty or non-finite audio.
    """
    p = Path(path)
    _check_file(p)
    if target_sr is not None:
        target_sr = _check_rate(target_sr, "target_sr")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as e:
        raise _decode_error(p, e) from e
    n_frames, channels = data.shape
    if n_frames == 0 or channels == 0:
        raise AudioError(f"{p}: contains no audio samples (zero length)")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise AudioError(f"{p}: {bad} non-finite samples (NaN/inf); refusing to decode")
    try:
        sr = _check_rate(sr, "sample rate")
    except ValueError as e:
        raise AudioError(f"{p}: unsupported sample rate {sr} Hz") from e
    # Average the channels (float64 accumulator keeps 8-channel sums exact enough).
    mono = data[:, 0].copy() if channels == 1 else data.mean(axis=1, dtype=np.float64).astype(np.float32)
    out_sr = sr
    if target_sr is not None and target_sr != sr:
        mono = resample(mono, sr, target_sr)
        out_sr = target_sr
    return AudioClip(
        path=str(p),
        wave=mono,
        sr=out_sr,
        source_sr=sr,
        channels=int(channels),
        silent=is_silent(mono),
    )


def load_audio(path: str | os.PathLike, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` to ``(mono float32 wave, sample rate)``, resampled to ``target_sr`` if given.

    See :func:`read_clip` for the checks and for the ``silent`` flag.
    """
    clip = read_clip(path, target_sr)
    return clip.wave, clip.sr
