"""Command line: `python -m data_prep [flags]` builds a spectrogram dataset.

Examples:
  python -m data_prep                                   # embedded music21 corpus
  python -m data_prep --source=folder --path=~/gtzan/genres
  python -m data_prep --source=csv --path=songs.csv --split_by=artist
  python -m data_prep --source=fma --path=~/fma --fma_subset=small
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from data_prep import (
  builder,  # noqa: E402
  corpus,  # noqa: E402
)
from data_prep.config import (  # noqa: E402
  SHORT_POLICIES,
  SOURCES,
  SPLIT_BY,
  BuildConfig,
  CorpusConfig,
  FeatureConfig,
)
from data_prep.sources import FMA_SUBSETS  # noqa: E402

_HELP = {
  # BuildConfig
  "source": "where songs come from: the embedded music21 corpus, a folder per genre, "
  "a CSV manifest, or the FMA layout",
  "path": "folder (folder: one sub-folder per genre), CSV file (csv: columns path, genre "
  "and optional song_id, artist, album, year) or FMA root holding fma_metadata/ (fma)",
  "fma_subset": "FMA subset whose tracks and fma_<subset>/ audio folder are used",
  "out_dir": "dataset folder; empty: data/<source>-<frontend><bins>x<frames>",
  "test_fraction": "share of each label's songs held out for the test split",
  "validation_fraction": "share of each label's songs held out from training for the "
  "validation split, on which recipes, hyper-parameters and checkpoints are chosen (0: none)",
  "split_by": "keep whole songs, artists or albums on one side of the split",
  "seed": "seeds instrument draws, piece selection, the split and segment offsets",
  "workers": "worker processes (0: one per CPU core)",
  "examples_per_shard": "spectrogram segments per TFRecord shard",
  "overwrite": "replace an out_dir that holds a build with other settings",
  # FeatureConfig
  "sample_rate": "resample every song to this rate (Hz)",
  "n_fft": "FFT size; n_fft/2+1 linear frequency bins",
  "hop_length": "STFT hop in samples; frames per segment = segment samples // hop",
  "n_mels": "0: linear-frequency log magnitude (report); >0: that many mel bands",
  "segment_seconds": "length of each random segment",
  "segments_per_song": "random segments drawn per song (seeded per song)",
  "min_magnitude": "magnitude floor before the log",
  "short_policy": "songs shorter than one segment: pad (one zero-padded segment) or skip",
  "min_song_seconds": "songs shorter than this are skipped under either policy",
  "silence_peak": "songs whose peak |sample| is below this are skipped as silent",
  "max_song_seconds": "decode at most this many seconds of each file (0: all)",
  # CorpusConfig
  "styles": "comma-separated music21 styles (see --list_styles)",
  "pieces_per_style": "pieces rendered per style (fewer if the corpus has fewer)",
  "preview_seconds": "render at most this many seconds of each piece",
  "instrument_pool": "comma-separated General MIDI programs (0-127) drawn per part, "
  "shared by all styles",
  "cache_dir": "where rendered audio is cached across builds",
}


def _add_fields(parser: argparse.ArgumentParser, cls, title: str) -> None:
  group = parser.add_argument_group(title)
  for field in dataclasses.fields(cls):
    if field.name in ("features", "corpus"):
      continue
    default = field.default if field.default is not dataclasses.MISSING else None
    kwargs = {"help": _HELP[field.name], "default": default}
    if isinstance(default, bool):
      kwargs["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, tuple):
      kwargs["type"] = str
      kwargs["default"] = ",".join(str(x) for x in default)
    else:
      kwargs["type"] = type(default)
    if field.name == "source":
      kwargs["choices"] = SOURCES
    elif field.name == "split_by":
      kwargs["choices"] = SPLIT_BY
    elif field.name == "short_policy":
      kwargs["choices"] = SHORT_POLICIES
    elif field.name == "fma_subset":
      kwargs["choices"] = FMA_SUBSETS
    group.add_argument(f"--{field.name}", **kwargs)


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m data_prep",
    description="Build a song2vec spectrogram dataset (TFRecord shards + metadata.json).",
    epilog=__doc__.split("\n", 2)[2],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  parser.add_argument(
    "--list_styles", action="store_true", help="list the embedded corpus's styles and exit"
  )
  parser.add_argument(
    "--runner",
    default="",
    choices=("", "direct", "dataflow", "flink", "spark"),
    help="build with an Apache Beam pipeline on this runner (pip install -e '.[beam]'); "
    "empty: worker processes on this machine (resumable)",
  )
  parser.add_argument(
    "--beam_options",
    default="",
    help="further Beam pipeline options, one quoted string, e.g. '--project=P --region=R "
    "--temp_location=gs://B/tmp' for Dataflow or '--direct_num_workers=2 "
    "--direct_running_mode=multi_processing' locally",
  )
  _add_fields(parser, BuildConfig, "dataset")
  _add_fields(parser, FeatureConfig, "features (per song)")
  _add_fields(parser, CorpusConfig, "embedded corpus (--source=music21)")
  return parser


def config_from_args(args: argparse.Namespace) -> BuildConfig:
  def pick(cls):
    values = {}
    for field in dataclasses.fields(cls):
      if field.name in ("features", "corpus"):
        continue
      value = getattr(args, field.name)
      if isinstance(field.default, tuple):
        items = [x.strip() for x in value.split(",") if x.strip()]
        value = tuple(int(x) for x in items) if field.name == "instrument_pool" else tuple(items)
      values[field.name] = value
    return values

  return BuildConfig(
    **pick(BuildConfig),
    features=FeatureConfig(**pick(FeatureConfig)),
    corpus=CorpusConfig(**pick(CorpusConfig)),
  )


def main(argv: list[str] | None = None) -> int:
  args = make_parser().parse_args(argv)
  if args.list_styles:
    for style, patterns in corpus.STYLE_SOURCES.items():
      print(f"{style:<14} {len(corpus.list_pieces(style)):>5} pieces  {', '.join(patterns)}")
    return 0
  try:
    config = config_from_args(args)
  except ValueError as e:
    print(f"error: invalid setting: {e}", file=sys.stderr)
    return 2
  try:
    if args.runner:
      from data_prep import beam_builder

      metadata = beam_builder.build(config, args.runner, args.beam_options)
    else:
      metadata = builder.build(config)
  except builder.BuildError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(builder.summary(metadata, config.dataset_dir))
  return 0


if __name__ == "__main__":
  sys.exit(main())
