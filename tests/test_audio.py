"""mmmos.audio: decoding, down-mix, band-limited resampling, and refusal of bad files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from mmmos.core.audio import (
    AudioError,
    audio_info,
    is_silent,
    load_audio,
    read_clip,
    resample,
    resample_filter,
)


def tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * sr))) / sr)


def level_db(x: np.ndarray) -> float:
    return 20 * math.log10(math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))) + 1e-30)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spec)])


# --------------------------------------------------------------------------- down-mix


@pytest.mark.parametrize("channels", range(1, 9))
def test_downmix_is_channel_mean(tmp_path, channels):
    rng = np.random.default_rng(channels)
    data = rng.uniform(-0.9, 0.9, size=(1000, channels)).astype(np.float32)
    path = tmp_path / f"c{channels}.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    clip = read_clip(path)
    assert clip.channels == channels and clip.sr == 16000 and clip.source_sr == 16000
    assert clip.wave.dtype == np.float32 and clip.wave.ndim == 1
    np.testing.assert_allclose(clip.wave, data.astype(np.float64).mean(axis=1), atol=1e-7)


def test_stereo_pcm16_mean(tmp_path):
    left, right = tone(300, 16000, 0.5), -0.3 * tone(700, 16000, 0.5)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], 1), 16000, subtype="PCM_16")
    wave, sr = load_audio(path)
    decoded = sf.read(path, dtype="float32")[0]
    assert sr == 16000
    np.testing.assert_allclose(wave, decoded.mean(axis=1), atol=1e-7)
    # and the PCM round trip itself is within half a 16-bit step of the source
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1.0 / 32768)


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("sr_in", [8000, 22050, 44100, 48000, 96000])
def test_resample_to_16k_keeps_a_tone(tmp_path, sr_in):
    x = tone(1000.0, sr_in, 1.0)
    path = tmp_path / f"s{sr_in}.wav"
    sf.write(path, x, sr_in, subtype="FLOAT")
    wave, sr = load_audio(path, target_sr=16000)
    assert sr == 16000
    assert wave.size == math.ceil(x.size * 16000 / sr_in)
    assert abs(peak_hz(wave, 16000) - 1000.0) <= 16000 / wave.size
    # Sample-exact against the ideal 1 kHz tone at 16 kHz, away from the edges.
    ideal = tone(1000.0, 16000, wave.size / 16000)
    assert np.max(np.abs(wave[400:-400] - ideal[400:-400])) < 2e-4
    # Whatever is not the tone (aliases, images, ripple) is tiny.
    resid = wave[400:-400] - ideal[400:-400]
    assert level_db(resid) - level_db(ideal) < -70


def test_resample_passes_7k_and_removes_10k_at_48k():
    sr = 48000
    kept = resample(tone(7000.0, sr, 1.0), sr, 16000)
    assert abs(level_db(kept[300:-300]) - level_db(tone(7000.0, 16000, 1.0))) < 0.1
    assert abs(peak_hz(kept, 16000) - 7000.0) <= 2.0
    # A naive decimation would fold 10 kHz onto 6 kHz at full strength; band-limited removes it.
    removed = resample(tone(10000.0, sr, 1.0), sr, 16000)
    assert level_db(removed[300:-300]) - level_db(tone(10000.0, sr, 1.0)) < -75
    naive = tone(10000.0, sr, 1.0)[::3]
    assert abs(peak_hz(naive, 16000) - 6000.0) <= 2.0  # the control really would alias


def test_upsampling_has_no_images():
    up = resample(tone(1000.0, 8000, 1.0), 8000, 16000)
    spec = np.abs(np.fft.rfft(up[400:-400] * np.hanning(up.size - 800)))
    f = np.fft.rfftfreq(up.size - 800, 1 / 16000)
    image = spec[(f > 6500) & (f < 7500)].max()
    assert 20 * np.log10(image / spec.max()) < -80


def test_matches_ideal_fft_resampler_on_periodic_signal():
    # A band-limited periodic signal: scipy's FFT resampler is exact for it.
    sr_in, n = 44100, 44100
    t = np.arange(n) / sr_in
    x = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in [(0.3, 220, 0.1), (0.2, 1330, 1.0), (0.1, 5000, 2.0)])
    ours = resample(x, sr_in, 16000)
    ideal = signal.resample(x, 16000)
    assert np.max(np.abs(ours[500:-500] - ideal[500:-500])) < 3e-4


def test_resample_same_rate_is_a_copy_and_filter_is_cached():
    x = np.arange(10, dtype=np.float64)
    y = resample(x, 16000, 16000)
    assert y.dtype == np.float32 and np.array_equal(y, x) and y is not x
    h1 = resample_filter(1, 3)
    h2 = resample_filter(1, 3)
    assert h1 is h2 and not h1.flags.writeable
    assert h1.size % 2 == 1 and abs(h1.sum() - 1.0) < 1e-3  # odd length, unit DC gain
    with pytest.raises(ValueError):
        resample(x, 16000, 0)
    with pytest.raises(ValueError):
        resample(x, 16000.5, 8000)


# --------------------------------------------------------------------------- codecs


def test_flac_round_trip_exact(tmp_path):
    x = tone(440.0, 22050, 0.7)
    path = tmp_path / "a.flac"
    sf.write(path, x, 22050, subtype="PCM_16")
    wave, sr = load_audio(path)
    assert sr == 22050
    np.testing.assert_array_equal(wave, sf.read(path, dtype="float32")[0])
    np.testing.assert_allclose(wave, x, atol=1.0 / 32768)


@pytest.mark.parametrize("fmt,ext,subtype", [("MP3", "mp3", "MPEG_LAYER_III"), ("OGG", "ogg", "VORBIS")])
def test_lossy_round_trip(tmp_path, fmt, ext, subtype):
    x = tone(440.0, 44100, 1.0)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 44100, format=fmt, subtype=subtype)
    info = audio_info(path)
    assert info.sample_rate == 44100 and info.channels == 1
    wave, sr = load_audio(path, target_sr=16000)
    assert sr == 16000
    assert abs(wave.size / 16000 - 1.0) < 0.1
    assert abs(peak_hz(wave, 16000) - 440.0) < 3.0
    assert abs(level_db(wave[2000:-2000]) - level_db(x)) < 1.0


def test_audio_info(tmp_path):
    path = tmp_path / "i.wav"
    sf.write(path, np.zeros((24000, 3)), 48000)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (48000, 3, 24000)
    assert info.duration == pytest.approx(0.5)
    assert info.format == "WAV"


# --------------------------------------------------------------------------- bad input


def _expect_error(path, *words):
    with pytest.raises(AudioError) as e:
        load_audio(path)
    msg = str(e.value)
    assert str(path) in msg
    for w in words:
        assert w in msg.lower()
    return msg


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.wav", "not found")
    with pytest.raises(AudioError, match="not found"):
        audio_info(tmp_path / "nope.wav")


def test_directory_and_empty_file(tmp_path):
    _expect_error(tmp_path, "not a regular file")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _expect_error(empty, "empty")


def test_non_audio_file(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("definitely not audio\n" * 20)
    _expect_error(p, "not an audio file")
    with pytest.raises(AudioError, match="not an audio file"):
        audio_info(p)


def test_corrupt_files(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, tone(440, 16000, 1.0), 16000)
    data = bytearray(good.read_bytes())
    truncated = tmp_path / "trunc.flac"
    truncated.write_bytes(bytes(data[:200]))
    _expect_error(truncated, "corrupt")
    wav = tmp_path / "good.wav"
    sf.write(wav, tone(440, 16000, 1.0), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:30])  # header without a data chunk
    _expect_error(cut, "corrupt")


def test_zero_length(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0), 16000)
    assert p.stat().st_size > 0  # a valid header, no samples
    _expect_error(p, "zero length")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_refused(tmp_path, bad):
    x = tone(440, 16000, 0.2).astype(np.float32)
    x[100] = bad
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    msg = _expect_error(p, "non-finite")
    assert "1 non-finite" in msg


def test_silent_audio_is_returned_and_flagged(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(8000), 8000, subtype="PCM_16")
    clip = read_clip(p, target_sr=16000)
    assert clip.silent and clip.wave.size == 16000 and not clip.wave.any()
    loud = tmp_path / "loud.wav"
    sf.write(loud, tone(440, 8000, 1.0), 8000)
    assert not read_clip(loud).silent
    assert is_silent(np.full(10, 1.0 / 32768)) and not is_silent(np.full(10, 2.0 / 32768))


def test_short_clip_is_returned(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, np.full(3, 0.25), 16000, subtype="FLOAT")
    wave, sr = load_audio(p)
    np.testing.assert_array_equal(wave, np.full(3, 0.25, dtype=np.float32))
