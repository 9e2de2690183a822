"""Decoding, segmenting and spectrograms, including every kind of bad input."""

from __future__ import annotations

import dataclasses
import os

import librosa
import numpy as np
import pytest

from conftest import TINY, tone, write_audio
from data_prep import audio
from data_prep.config import FeatureConfig


def test_report_shape_is_257_by_430():
  assert FeatureConfig().shape == (257, 430)


@pytest.mark.parametrize("n_mels", [0, 32])
def test_spectrograms_match_librosa_called_directly(n_mels):
  config = FeatureConfig(n_mels=n_mels)
  rng = np.random.default_rng(0)
  segments = rng.standard_normal((2, config.segment_samples)).astype(np.float32) * 0.1
  got = audio.spectrograms(segments, config)
  assert got.shape == (2, *config.shape)
  for seg, spec in zip(segments, got, strict=True):
    mag = np.abs(librosa.stft(seg, n_fft=512, hop_length=256))[:, :430]
    if n_mels:
      mag = librosa.feature.melspectrogram(S=mag, sr=22050, n_fft=512, n_mels=n_mels, power=1.0)
    want = np.log(np.maximum(mag, config.min_magnitude))
    np.testing.assert_allclose(spec, want, rtol=1e-4, atol=1e-4)


def test_segment_offsets_are_seeded_per_song_and_in_range():
  config = FeatureConfig(segments_per_song=10)
  n = 30 * config.sample_rate
  a = audio.segment_offsets(n, config, audio.song_rng(0, "song-a"))
  again = audio.segment_offsets(n, config, audio.song_rng(0, "song-a"))
  other = audio.segment_offsets(n, config, audio.song_rng(0, "song-b"))
  reseeded = audio.segment_offsets(n, config, audio.song_rng(1, "song-a"))
  np.testing.assert_array_equal(a, again)
  assert not np.array_equal(a, other) and not np.array_equal(a, reseeded)
  assert len(a) == 10 and a.min() >= 0 and a.max() + config.segment_samples <= n
  assert np.all(np.diff(a) >= 0)


def test_short_song_is_padded_to_one_segment_or_skipped():
  pad = dataclasses.replace(TINY, short_policy="pad", min_song_seconds=0.05)
  n = TINY.segment_samples // 2
  offsets = audio.segment_offsets(n, pad, audio.song_rng(0, "s"))
  np.testing.assert_array_equal(offsets, [0])
  y = np.ones(n, np.float32)
  seg = audio.cut_segments(y, offsets, TINY.segment_samples)
  assert seg.shape == (1, TINY.segment_samples)
  assert np.all(seg[0, :n] == 1) and np.all(seg[0, n:] == 0)
  skip = dataclasses.replace(pad, short_policy="skip")
  with pytest.raises(audio.SongError, match="too short.*short_policy=skip"):
    audio.segment_offsets(n, skip, audio.song_rng(0, "s"))
  with pytest.raises(audio.SongError, match="min_song_seconds"):
    audio.segment_offsets(10, pad, audio.song_rng(0, "s"))


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 96000])
def test_any_sample_rate_is_resampled_preserving_pitch(tmp_path, rate):
  path = write_audio(tmp_path / "a.wav", seconds=1.0, rate=rate, freq=1000.0)
  y = audio.load_audio(path, 22050)
  assert y.dtype == np.float32 and abs(len(y) - 22050) <= 1
  spectrum = np.abs(np.fft.rfft(y))
  assert abs(np.argmax(spectrum) * 22050 / len(y) - 1000.0) < 3.0


def test_multichannel_is_downmixed_to_mono(tmp_path):
  data = np.zeros((8000, 4), np.float32)
  data[:, 0] = tone(1.0, 8000, 440.0)[:, 0]
  path = write_audio(tmp_path / "quad.wav", rate=8000, data=data)
  y = audio.load_audio(path, 8000)
  np.testing.assert_allclose(y, data.mean(axis=1), atol=1e-4)


@pytest.mark.parametrize("ext", [".mp3", ".wav", ".flac", ".ogg", ".au"])
def test_every_supported_format_decodes(tmp_path, ext):
  path = write_audio(tmp_path / f"a{ext}", seconds=1.0, rate=16000, freq=440.0)
  result = audio.process_song(path, "a", TINY, seed=0)
  assert result.spectrograms.shape == (3, *TINY.shape)
  assert np.all(np.isfinite(result.spectrograms))


def _truncate(path):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])
  return path


@pytest.mark.parametrize(
  "make, reason",
  [
    (lambda d: os.path.join(d, "nope.wav"), "missing file"),
    (
      lambda d: open(os.path.join(d, "e.wav"), "w").close() or os.path.join(d, "e.wav"),
      "empty file",
    ),
    (lambda d: _write_text(os.path.join(d, "t.mp3")), "cannot decode"),
    (lambda d: _truncate(write_audio(os.path.join(d, "t.wav"))), "truncated"),
    (lambda d: _truncate(write_audio(os.path.join(d, "t.au"))), "truncated"),
    (lambda d: _truncate(write_audio(os.path.join(d, "t.flac"))), "cannot decode|truncated"),
    (lambda d: _truncate(write_audio(os.path.join(d, "t.mp3"))), "truncated"),
    (lambda d: _truncate(write_audio(os.path.join(d, "t.ogg"))), "no audio frames|cannot decode"),
    (
      lambda d: write_audio(os.path.join(d, "s.wav"), data=np.zeros((8000, 1), np.float32)),
      "silent",
    ),
    (lambda d: write_audio(os.path.join(d, "n.wav"), seconds=0.01), "too short"),
  ],
  ids=[
    "missing",
    "empty",
    "non-audio",
    "trunc-wav",
    "trunc-au",
    "trunc-flac",
    "trunc-mp3",
    "trunc-ogg",
    "silent",
    "too-short",
  ],
)
def test_bad_input_raises_a_one_line_reason(tmp_path, make, reason):
  path = make(str(tmp_path))
  with pytest.raises(audio.SongError, match=reason) as info:
    audio.process_song(path, "x", TINY, seed=0)
  assert "\n" not in str(info.value)


def _write_text(path):
  with open(path, "w") as f:
    f.write("this is not audio\n" * 100)
  return path
