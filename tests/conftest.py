"""Shared fixtures: tiny feature settings and audio files the tests write themselves."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Four CPU "devices", so pmapped code runs across devices in tests (set before
# anything imports jax).
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

# One persistent XLA compilation cache for the test session, shared by the
# xdist workers and the subprocesses the tests start (they inherit the
# environment). The tests build the same tiny train steps many times, each
# `compile_steps` a new jit, and on CPU compiling is most of their time. It is
# a cache only: executables are the same, a torn entry is recompiled with a
# warning. It starts empty in a fresh clone (.pytest_cache is git-ignored).
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR",
  os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"),
)

import numpy as np
import pytest
import soundfile as sf

from data_prep.config import FeatureConfig

FORMATS = {
  ".wav": ("WAV", "PCM_16"),
  ".flac": ("FLAC", "PCM_16"),
  ".ogg": ("OGG", "VORBIS"),
  ".mp3": ("MP3", "MPEG_LAYER_III"),
  ".au": ("AU", "PCM_16"),
}

# Small enough that a song takes milliseconds: 65 bins x 25 frames.
TINY = FeatureConfig(
  sample_rate=8000, n_fft=128, hop_length=64, segment_seconds=0.2, segments_per_song=3
)


def tone(seconds: float, rate: int, freq: float, channels: int = 1, seed: int = 0) -> np.ndarray:
  """A sine plus a little noise, [samples, channels] float32."""
  t = np.arange(int(seconds * rate)) / rate
  rng = np.random.default_rng(seed)
  y = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
  return np.repeat(y[:, None], channels, axis=1).astype(np.float32)


def write_audio(path, seconds=1.0, rate=16000, freq=440.0, channels=1, seed=0, data=None):
  """Writes a test song in the format its extension names; returns the path."""
  path = str(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fmt, subtype = FORMATS[os.path.splitext(path)[1]]
  if data is None:
    data = tone(seconds, rate, freq, channels, seed)
  sf.write(path, data, rate, format=fmt, subtype=subtype)
  return path


@pytest.fixture
def tiny_features() -> FeatureConfig:
  return TINY


@pytest.fixture
def genre_tree(tmp_path):
  """A GTZAN-style folder: 3 genres x 4 songs, with distinct pitches per genre."""
  root = tmp_path / "genres"
  exts = [".wav", ".flac", ".ogg", ".mp3"]
  for g, (genre, freq) in enumerate([("low", 220.0), ("mid", 880.0), ("high", 2200.0)]):
    for i in range(4):
      write_audio(
        root / genre / f"{genre}{i}{exts[i]}",
        seconds=1.0,
        freq=freq * (1 + 0.05 * i),
        seed=10 * g + i,
      )
  return root
