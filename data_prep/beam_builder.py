"""data_prep on Apache Beam: the same dataset as `builder.build`, built by a Beam pipeline.

    python -m data_prep --runner=direct ...                      # locally, DirectRunner
    python -m data_prep --runner=dataflow --beam_options="--project=P --region=R \\
        --temp_location=gs://B/tmp" ...                          # see the README

The plan (which songs, which split, which shard) is `builder.plan_build`'s, so
both builders write the same shards: the same songs, segments, labels and
spectrogram values in the same order. The per-song work is `builder._song_task`
(decode, segments, spectrograms) and the shard writer is `builder.write_shard`,
one implementation of each. What Beam adds: songs are processed in parallel
by the runner's workers, shards are written by a GroupByKey per shard file,
and the split counts and the train normalisation statistics are Beam
combiners; a song that cannot be used is skipped and listed with its reason,
as the multiprocessing builder lists it. `metadata.json` and TFDS's files are
then written by `builder.finish`.

Shards are written with local file operations: on a distributed runner,
out_dir must be a file system every worker sees (NFS, gcsfuse, ...). The
multiprocessing builder stays the default for one machine; it also resumes an
interrupted build, which this one does not (it rewrites every shard).
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil

import apache_beam as beam
import numpy as np

from data_prep import builder, writer
from data_prep.builder import STATE_DIR
from data_prep.config import BuildConfig
from data_prep.parallel import resolve_workers

RUNNERS = {
  "direct": "DirectRunner",
  "dataflow": "DataflowRunner",
  "flink": "FlinkRunner",
  "spark": "SparkRunner",
}
SUMMARY = "beam_summary.json"


def _process(task, features, seed):
  """(shard, position, song) -> the same plus the song's result or skip reason."""
  name, split, position, song = task
  result, error = builder._song_task((song, features, seed))
  return name, split, position, song, result, error


class MomentsFn(beam.CombineFn):
  """Per-bin sums of x and x^2 over every frame of the train songs, and the frame count."""

  def __init__(self, bins: int, frames: int):
    self.bins, self.frames = bins, frames

  def create_accumulator(self):
    return np.zeros(self.bins), np.zeros(self.bins), 0

  def add_input(self, acc, record):
    result = record[4]
    total, total_sq = result[2]
    return acc[0] + total, acc[1] + total_sq, acc[2] + len(result[0]) * self.frames

  def merge_accumulators(self, accs):
    accs = list(accs)
    return (
      sum((a[0] for a in accs), np.zeros(self.bins)),
      sum((a[1] for a in accs), np.zeros(self.bins)),
      sum(a[2] for a in accs),
    )

  def extract_output(self, acc):
    return acc[0].tolist(), acc[1].tolist(), acc[2]


class CountsFn(beam.CombineFn):
  """Songs and segments per (split, label) of the songs that were processed."""

  def create_accumulator(self):
    return collections.Counter()

  def add_input(self, acc, record):
    _, split, _, song, result, _ = record
    acc[f"{split}\t{song.label}\tsongs"] += 1
    acc[f"{split}\t{song.label}\texamples"] += len(result[0])
    return acc

  def merge_accumulators(self, accs):
    out = collections.Counter()
    for a in accs:
      out.update(a)
    return out

  def extract_output(self, acc):
    return dict(acc)


def _write_shard(item, out_dir, shape, labels, bins):
  """(shard name, its songs' records) -> (name, examples, bytes, skipped), shard written."""
  name, records = item
  records = sorted(records, key=lambda r: r[2])
  features = writer.tfds_features(shape, labels)
  label_index = {label: i for i, label in enumerate(labels)}
  songs_results = ((r[3], (r[4], r[5])) for r in records)
  state = builder.write_shard(out_dir, name, songs_results, features, label_index, bins)
  return name, state["examples"], state["num_bytes"], state["skipped"]


def _write_summary(_, out_dir, moments, counts, shards):
  path = os.path.join(out_dir, STATE_DIR, SUMMARY)
  with open(path + ".tmp", "w") as f:
    json.dump({"moments": moments, "counts": counts, "shards": shards}, f)
  os.replace(path + ".tmp", path)


def pipeline_options(runner: str, extra: str = ""):
  """Beam's PipelineOptions for `runner` (direct, dataflow, flink, spark) plus `extra` flags."""
  from apache_beam.options.pipeline_options import PipelineOptions

  if runner not in RUNNERS:
    raise builder.BuildError(f"runner must be one of {sorted(RUNNERS)}, got {runner!r}")
  return PipelineOptions([f"--runner={RUNNERS[runner]}", *shlex.split(extra)])


def merge(plan: builder.BuildPlan, summary: dict, config: BuildConfig) -> dict:
  """The combiners' outputs in the shape `builder.finish` takes (as `_summarise` gives)."""
  splits = builder.empty_split_counts(plan.labels)
  for key, n in summary["counts"].items():
    split, label, what = key.split("\t")
    splits[split][f"{what}_per_label"][label] += n
    splits[split][what] += n
  by_name = {s[0]: s for s in summary["shards"]}
  skipped = []
  for split, name, _ in plan.shards:  # In plan order, as the other builder lists them.
    _, examples, num_bytes, shard_skipped = by_name[name]
    splits[split]["shards"] += 1
    splits[split]["num_bytes"] += num_bytes
    splits[split]["shard_lengths"].append(examples)
    skipped += shard_skipped
  total, total_sq, count = summary["moments"]
  mean, std = builder.moments_to_stats(np.asarray(total), np.asarray(total_sq), max(1, count))
  return {"splits": splits, "skipped": skipped, "mean": mean, "std": std}


def build(config: BuildConfig, runner: str = "direct", beam_options: str = "") -> dict:
  """Builds the dataset `config` describes with a Beam pipeline; returns its metadata.

  Args:
    config: the build settings (the same as for `builder.build`).
    runner: direct, dataflow, flink or spark.
    beam_options: further pipeline options, as one shell-quoted string (for
      DirectRunner e.g. "--direct_num_workers=2 --direct_running_mode=multi_processing").

  Raises:
    BuildError: as `builder.build`.
  """
  options = pipeline_options(runner, beam_options)
  plan = builder.plan_build(config, resolve_workers(config.workers))
  out_dir = os.path.abspath(config.dataset_dir)
  features, seed = config.features, config.seed
  tasks = [
    (name, split, position, plan.splits[split][i])
    for split, name, idx in plan.shards
    for position, i in enumerate(idx)
  ]
  shape, bins, frames = features.shape, features.n_bins, features.n_frames
  with beam.Pipeline(options=options) as p:
    records = (
      p
      | "songs" >> beam.Create(tasks, reshuffle=True)
      | "spectrograms" >> beam.Map(_process, features, seed)
    )
    ok = records | "usable" >> beam.Filter(lambda r: r[5] is None)
    moments = (
      ok
      | "train songs" >> beam.Filter(lambda r: r[1] == "train")
      | "train statistics" >> beam.CombineGlobally(MomentsFn(bins, frames))
    )
    counts = ok | "counts" >> beam.CombineGlobally(CountsFn())
    shards = (
      records
      | "by shard" >> beam.Map(lambda r: (r[0], r))
      | "group" >> beam.GroupByKey()
      | "write shards" >> beam.Map(_write_shard, out_dir, shape, plan.labels, bins)
      | "shard list" >> beam.combiners.ToList()
    )
    _ = (
      p
      | "once" >> beam.Create([None])
      | "summary"
      >> beam.Map(
        _write_summary,
        out_dir,
        beam.pvalue.AsSingleton(moments),
        beam.pvalue.AsSingleton(counts),
        beam.pvalue.AsSingleton(shards),
      )
    )
  with open(os.path.join(out_dir, STATE_DIR, SUMMARY)) as f:
    summary = json.load(f)
  shutil.rmtree(os.path.join(out_dir, writer.INCOMPLETE_DIR), ignore_errors=True)
  return builder.finish(config, plan, merge(plan, summary, config))
