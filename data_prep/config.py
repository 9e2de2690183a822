"""Typed settings for a dataset build.

Every number the report states about its data lives here with its source; the
experiment configs under `experiments/` copy these fields into `config.data`
and override them, and the CLI (`python -m data_prep --help`) exposes each one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

SOURCES = ("music21", "folder", "csv", "fma")
SHORT_POLICIES = ("pad", "skip")
SPLIT_BY = ("song", "artist", "album")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """How one song becomes a stack of spectrogram segments."""

  sample_rate: int = 22050  # Report: 22.05 kHz (257 bins from a 512-point FFT).
  n_fft: int = 512  # Report: 257 frequency bins.
  hop_length: int = 256  # Report: 430 frames per 5 s segment.
  n_mels: int = 0  # 0: linear-frequency bins as in the report; >0: mel bands.
  segment_seconds: float = 5.0  # Report: 5-second segments.
  segments_per_song: int = 10  # Report: 10 random segments per 30 s preview.
  min_magnitude: float = 1e-5  # Floor (-100 dB re full scale) before the log.
  short_policy: str = "pad"  # Songs shorter than a segment: "pad" or "skip".
  min_song_seconds: float = 1.0  # Shorter songs are skipped under either policy.
  silence_peak: float = 1e-4  # A song whose peak |sample| is below is "silent".
  max_song_seconds: float = 0.0  # Decode at most this much (0: the whole file).

  def __post_init__(self):
    if self.short_policy not in SHORT_POLICIES:
      raise ValueError(f"short_policy must be one of {SHORT_POLICIES}, got {self.short_policy!r}")
    for name in ("sample_rate", "n_fft", "hop_length", "segments_per_song"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.n_mels < 0:
      raise ValueError(f"n_mels must be >= 0, got {self.n_mels}")
    if self.n_frames < 1:
      raise ValueError(f"segment_seconds={self.segment_seconds} is shorter than one hop")

  @property
  def segment_samples(self) -> int:
    return int(round(self.segment_seconds * self.sample_rate))

  @property
  def n_bins(self) -> int:
    return self.n_mels if self.n_mels else self.n_fft // 2 + 1

  @property
  def n_frames(self) -> int:
    # One frame per hop of the segment: 5 s * 22050 / 256 -> 430, the report's.
    return self.segment_samples // self.hop_length

  @property
  def shape(self) -> tuple[int, int]:
    return (self.n_bins, self.n_frames)


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """The embedded corpus: music21 scores rendered to audio."""

  styles: tuple[str, ...] = (
    "bach",
    "palestrina",
    "trecento",
    "irish",
    "scottish",
    "american",
    "essen_europe",
    "essen_china",
  )
  pieces_per_style: int = 60  # Upper bound; a style with fewer gives all it has.
  preview_seconds: float = 30.0  # Report: 30 s previews; longer pieces are cut.
  # General MIDI programs (0-based) drawn per part, the same pool for every
  # style so that timbre does not give the label away.
  instrument_pool: tuple[int, ...] = (
    0,  # Acoustic grand piano
    6,  # Harpsichord
    11,  # Vibraphone
    19,  # Church organ
    21,  # Accordion
    24,  # Nylon guitar
    40,  # Violin
    42,  # Cello
    46,  # Orchestral harp
    48,  # String ensemble
    52,  # Choir aahs
    56,  # Trumpet
    60,  # French horn
    68,  # Oboe
    71,  # Clarinet
    73,  # Flute
  )
  cache_dir: str = "data/cache"  # Rendered audio, reused across feature settings.

  def __post_init__(self):
    if self.pieces_per_style <= 0:
      raise ValueError(f"pieces_per_style must be positive, got {self.pieces_per_style}")
    if not self.instrument_pool or any(not 0 <= p < 128 for p in self.instrument_pool):
      raise ValueError(f"instrument_pool must hold GM programs 0..127, got {self.instrument_pool}")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """One dataset build: where songs come from, how they split, where shards go."""

  source: str = "music21"  # One of SOURCES.
  path: str = ""  # Folder, CSV file or FMA root (unused for music21).
  fma_subset: str = "small"  # FMA: small, medium, large or full.
  out_dir: str = ""  # Empty: data/<source>-<frontend><bins>x<frames>.
  test_fraction: float = 0.2  # Share of songs (or artists/albums) held out.
  # Share of each label's songs held out from training for choosing recipes,
  # hyper-parameters and checkpoints; 0 disables.
  validation_fraction: float = 0.1
  split_by: str = "song"  # Keep whole songs, artists or albums on one side.
  seed: int = 0  # Seeds instruments, selection, split and segment offsets.
  workers: int = 0  # Worker processes; 0: one per CPU core.
  examples_per_shard: int = 500  # About 220 MB per shard at 257 x 430 float32.
  overwrite: bool = False  # Replace an out_dir built with other settings.
  features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
  corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
    if self.source != "music21" and not self.path:
      raise ValueError(f"source {self.source!r} needs a path")
    if self.split_by not in SPLIT_BY:
      raise ValueError(f"split_by must be one of {SPLIT_BY}, got {self.split_by!r}")
    if not 0.0 < self.test_fraction < 1.0:
      raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
    if not 0.0 <= self.validation_fraction < 1.0:
      raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
    if self.test_fraction + self.validation_fraction >= 1.0:
      raise ValueError(
        f"test_fraction + validation_fraction must be < 1 to leave songs for training, got "
        f"{self.test_fraction} + {self.validation_fraction}"
      )
    if self.examples_per_shard <= 0:
      raise ValueError("examples_per_shard must be positive")

  @property
  def dataset_dir(self) -> str:
    if self.out_dir:
      return self.out_dir
    f = self.features
    frontend = "mel" if f.n_mels else "linear"
    return f"data/{self.source}-{frontend}{f.n_bins}x{f.n_frames}"


def _from_mapping(cls, values: Mapping[str, Any]):
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(fields)}")
  kwargs = {}
  for name, value in values.items():
    if name == "features":
      value = _from_mapping(FeatureConfig, value)
    elif name == "corpus":
      value = _from_mapping(CorpusConfig, value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


def build_config_from_dict(values: Mapping[str, Any]) -> BuildConfig:
  """Builds a BuildConfig from a (nested) mapping, e.g. `config.data.to_dict()`.

  Args:
    values: field names of BuildConfig; `features` and `corpus` as mappings.

  Returns:
    The validated BuildConfig.

  Raises:
    ValueError: on an unknown field name or an invalid value.
  """
  return _from_mapping(BuildConfig, dict(values))


def to_dict(config: BuildConfig) -> dict[str, Any]:
  """The config as plain JSON-able data (tuples become lists)."""
  return json_ready(dataclasses.asdict(config))


def json_ready(value):
  if isinstance(value, dict):
    return {k: json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value
