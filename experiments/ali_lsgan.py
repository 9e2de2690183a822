r"""The report's experiment: ALI with the least-squares objective and its stabilisers.

    python launch.py --config=experiments/ali_lsgan.py
    python launch.py --config=experiments/ali_lsgan.py --config.data.corpus.pieces_per_style=30

Until training and evaluation land, running it builds the dataset (if missing)
and prints its summary. Every number the report gives about the data is set
here explicitly, with its source.
"""

import ml_collections

from data_prep.config import BuildConfig, to_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg  # Presets (paper scale, CPU) arrive with the model.
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Every data_prep setting, so that any of them can be overridden by flag.
  config.data = ml_collections.ConfigDict(to_dict(BuildConfig()))
  config.data.source = "music21"  # Embedded style corpus; folder/csv/fma for real audio.
  features = config.data.features
  features.sample_rate = 22050  # Report: 257 frequency bins ...
  features.n_fft = 512  # ... from a 512-point FFT,
  features.hop_length = 256  # ... 430 frames per 5 s segment.
  features.n_mels = 0  # Report: linear-frequency log magnitude.
  features.segment_seconds = 5.0  # Report: 5-second segments,
  features.segments_per_song = 10  # ... 10 random ones per song,
  config.data.corpus.preview_seconds = 30.0  # ... of a 30 s preview.
  config.data.corpus.pieces_per_style = 60  # 8 styles x 60 songs (report: 15 x 800).
  config.data.test_fraction = 0.2  # Songs held out for clustering.
  return config
