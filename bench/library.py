r"""How fast a library is embedded, end to end, from 30 s MP3s.

    python bench/library.py [--workdir=runs/ali_lsgan] [--songs=200] [--out=bench/results/library.json]

Writes `songs` synthetic 30 s, 44.1 kHz stereo MP3s (as FMA's previews are),
then builds a library of them with the run's encoder (`song2vec.library
build`): decode and resample, the run's features over consecutive segments,
the encoder, with 1 decoding process and with one per core. "songs/s" is
songs over the wall time of the embedding phase (decode -> features ->
encoder, what a rebuild of new songs costs); "total s" adds loading the run,
the standardisation statistics and writing the library. The per-stage rows time
one process on 20 songs, stage by stage. The query latencies of the indexes a
library uses are measured by bench/ann.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not __package__:
  _here = os.path.dirname(os.path.abspath(__file__))
  sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
  sys.path.insert(0, os.path.dirname(_here))

from bench.common import report, write_song_folder  # noqa: E402

SECONDS, RATE = 30.0, 44100


def stage_times(workdir: str, root: str, count: int) -> dict[str, float]:
  """Seconds per song of each stage, in this process, after one warm-up song."""
  from data_prep import audio
  from song2vec.encoder import Encoder

  enc = Encoder(workdir)
  paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)[: count + 1]
  rate = enc.features.sample_rate

  def one(path, t):
    s = time.perf_counter()
    y = audio.load_audio(path, rate)
    t["decode + resample"] += time.perf_counter() - s
    s = time.perf_counter()
    x = enc.normalise(audio.consecutive_spectrograms(y, enc.features, enc.max_segments))
    t["features"] += time.perf_counter() - s
    s = time.perf_counter()
    enc.embed_segments(x)
    t["encoder"] += time.perf_counter() - s

  one(
    paths[0], {"decode + resample": 0.0, "features": 0.0, "encoder": 0.0}
  )  # Lazy imports, compiling.
  t = {"decode + resample": 0.0, "features": 0.0, "encoder": 0.0}
  for p in paths[1:]:
    one(p, t)
  return {k: v / (len(paths) - 1) for k, v in t.items()}


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--workdir", default="runs/ali_lsgan", help="a trained run")
  parser.add_argument("--songs", type=int, default=200)
  parser.add_argument("--out", default="bench/results/library.json")
  parser.add_argument(
    "--songs_dir", default="", help="keep the generated MP3s here (default: a temporary folder)"
  )
  args = parser.parse_args()
  if not os.path.exists(os.path.join(args.workdir, "config.json")):
    sys.exit(f"error: {args.workdir} is not a run: run the README's main command first")
  from song2vec import library

  cores = os.cpu_count() or 1
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    songs_dir = args.songs_dir or os.path.join(tmp, "mp3")
    root = write_song_folder(songs_dir, "mp3", args.songs, SECONDS, RATE)
    per_song = stage_times(args.workdir, root, 20)
    for stage, seconds in per_song.items():
      rows.append(
        {
          "what": f"stage: {stage} (1 process)",
          "songs": 20,
          "songs/s": 1 / seconds,
          "ms per song": 1000 * seconds,
          "total s": 20 * seconds,
        }
      )
    for workers in sorted({1, cores}):
      config = library.LibraryConfig(workers=workers, map=False)
      out = os.path.join(tmp, f"lib{workers}")
      manifest = library.build(args.workdir, "folder", root, out, config)
      s = manifest["seconds"]
      rows.append(
        {
          "what": f"build, {workers} decoding process(es)",
          "songs": manifest["songs"],
          "songs/s": manifest["songs"] / s["embedding"],
          "ms per song": 1000 * s["embedding"] / manifest["songs"],
          "total s": s["total"],
        }
      )
  report(
    f"Library build from {SECONDS:.0f} s {RATE} Hz stereo MP3s, run {args.workdir}",
    rows,
    ["what", "songs", "songs/s", "ms per song", "total s"],
    args.out,
  )


if __name__ == "__main__":
  main()
