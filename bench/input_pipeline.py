r"""Spectrograms per second delivered by song2vec.input_pipeline.

    python bench/input_pipeline.py [--songs=256] [--batch_size=64] [--out=bench/results/input_pipeline.json]

Builds a dataset from synthetic songs (10 segments each) at the report's
257 x 430 and at a small mel shape, then times the training iterator (parse,
normalise, shuffle, batch, numpy) after a warm-up, the shards being in the page
cache as they are after the first epoch. MB/s counts the float32 arrays
delivered.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not __package__:  # Run as a file: keep the repo root importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import report, write_song_folder  # noqa: E402
from data_prep import builder  # noqa: E402
from data_prep.config import BuildConfig, FeatureConfig  # noqa: E402
from song2vec import input_pipeline  # noqa: E402

SHAPES = {
  "report 257x430": FeatureConfig(),
  "mel 64x129": FeatureConfig(n_mels=64, hop_length=512, segment_seconds=3.0),
}


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--songs", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--out", default="bench/results/input_pipeline.json")
  args = parser.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    songs = write_song_folder(os.path.join(tmp, "songs"), "flac", args.songs, 30.0, 22050)
    for name, features in SHAPES.items():
      out = os.path.join(tmp, name.split()[0])
      builder.build(BuildConfig(source="folder", path=songs, out_dir=out, features=features))
      it = input_pipeline.train_iterator(out, args.batch_size, seed=0)
      for _ in range(10):  # Warm-up: fills the shuffle buffer and page cache.
        next(it)
      start = time.perf_counter()
      nbytes = 0
      for _ in range(args.batches):
        nbytes += next(it)["spectrogram"].nbytes
      wall = time.perf_counter() - start
      n = args.batches * args.batch_size
      rows.append(
        {
          "shape": name,
          "batch_size": args.batch_size,
          "spectrograms": n,
          "wall_s": wall,
          "spectrograms_per_s": n / wall,
          "MB_per_s": nbytes / wall / 1e6,
        }
      )
  report(
    "input_pipeline: train_iterator throughput",
    rows,
    ["shape", "batch_size", "spectrograms", "wall_s", "spectrograms_per_s", "MB_per_s"],
    args.out,
  )


if __name__ == "__main__":
  main()
