"""Audio -> log-magnitude spectrogram TFRecord shards for song2vec.

A separate package from `song2vec` (which only reads what this writes). Entry
points: `python -m data_prep --help`, or `build(BuildConfig(...))`.
"""

from data_prep.builder import BuildError, build, load_metadata, summary
from data_prep.config import BuildConfig, CorpusConfig, FeatureConfig, build_config_from_dict

__all__ = [
  "BuildConfig",
  "BuildError",
  "CorpusConfig",
  "FeatureConfig",
  "build",
  "build_config_from_dict",
  "load_metadata",
  "summary",
]
