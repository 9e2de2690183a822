r"""How fast data_prep turns audio into shards, per worker, from WAV and MP3.

    python bench/data_prep.py [--songs=160] [--out=bench/results/data_prep.json]

Writes `songs` synthetic 30 s, 44.1 kHz stereo songs per format, then times a
full build (decode, resample, 10 random 5 s segments, 257 x 430 spectrograms,
serialise, write shards) with 1 worker and with every core. "x real time per
worker" = seconds of audio in / wall seconds / workers. TensorFlow is imported
before timing so its one-off import is not counted; worker start-up is.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not __package__:  # Run as a file: this file must not shadow the data_prep package.
  _here = os.path.dirname(os.path.abspath(__file__))
  sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
  sys.path.insert(0, os.path.dirname(_here))

from bench.common import report, write_song_folder  # noqa: E402
from data_prep import audio, builder  # noqa: E402
from data_prep.config import BuildConfig, FeatureConfig  # noqa: E402

SECONDS, RATE = 30.0, 44100


def time_decode(root: str) -> float:
  """Seconds to decode and resample every song once (no features)."""
  paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
  start = time.perf_counter()
  for p in paths:
    audio.load_audio(p, 22050)
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--songs", type=int, default=160)
  parser.add_argument(
    "--beam", action="store_true", help="also build with Beam's DirectRunner (1 and all cores)"
  )
  parser.add_argument("--formats", default="wav,mp3")
  parser.add_argument("--out", default="bench/results/data_prep.json")
  args = parser.parse_args()
  # Imported here, before timing, so its one-off import is not counted. Not at
  # module level: spawned workers re-import this module and must not pay it.
  import tensorflow  # noqa: F401

  cores = os.cpu_count() or 1
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for fmt in args.formats.split(","):
      root = write_song_folder(os.path.join(tmp, fmt), fmt, args.songs, SECONDS, RATE)
      audio.load_audio(os.path.join(root, "g0", f"song0000.{fmt}"), 22050)  # Warm up.
      decode = time_decode(root)
      runs = [("processes", w) for w in sorted({1, cores})]
      if args.beam:
        runs += [("beam direct", w) for w in sorted({1, cores})]
      for builder_name, workers in runs:
        config = BuildConfig(
          source="folder",
          path=root,
          out_dir=os.path.join(tmp, f"ds-{fmt}-{builder_name}-{workers}"),
          workers=workers,
          features=FeatureConfig(),
        )
        start = time.perf_counter()
        if builder_name == "processes":
          meta = builder.build(config)
        else:
          from data_prep import beam_builder

          mode = "in_memory" if workers == 1 else "multi_processing"
          options = f"--direct_num_workers={workers} --direct_running_mode={mode}"
          meta = beam_builder.build(config, "direct", options)
        wall = time.perf_counter() - start
        audio_seconds = args.songs * SECONDS
        examples = sum(split["examples"] for split in meta["splits"].values())
        rows.append(
          {
            "input": f"{fmt.upper()} 44.1k stereo",
            "builder": builder_name,
            "workers": workers,
            "songs_per_s": args.songs / wall,
            "songs": args.songs,
            "wall_s": wall,
            "decode_only_x_rt": audio_seconds / decode,
            "x_real_time": audio_seconds / wall,
            "x_real_time_per_worker": audio_seconds / wall / workers,
            "spectrograms_per_s": examples / wall,
          }
        )
  report(
    "data_prep: audio -> 257 x 430 spectrogram shards",
    rows,
    [
      "input",
      "builder",
      "workers",
      "songs",
      "wall_s",
      "songs_per_s",
      "decode_only_x_rt",
      "x_real_time",
      "x_real_time_per_worker",
      "spectrograms_per_s",
    ],
    args.out,
  )


if __name__ == "__main__":
  main()
