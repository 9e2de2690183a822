"""Builds a spectrogram dataset: songs -> split -> parallel features -> shards.

The build is planned up front (which song goes to which shard of which split),
so it is deterministic for a seed and resumable: a shard whose file exists is
done, and its counts and statistics are read back from its sidecar in
`.state/` instead of recomputing them.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import sys
import zlib
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from data_prep import audio, corpus, sources, writer
from data_prep.config import BuildConfig, FeatureConfig, to_dict
from data_prep.parallel import ordered_map, resolve_workers
from data_prep.sources import Skipped, Song

STATE_DIR = ".state"
SPLITS = ("train", "validation", "test")


class BuildError(Exception):
  """The build as a whole cannot go on; the message says why."""


def _log(message: str) -> None:
  tqdm.write(message, file=sys.stderr)


def gather_songs(config: BuildConfig, workers: int) -> tuple[list[Song], list[Skipped], dict]:
  """Lists the songs of the configured source (rendering the embedded corpus)."""
  source: dict = {"type": config.source}
  try:
    if config.source == "music21":
      songs, skipped, folder = corpus.render_corpus(config.corpus, config.seed, workers)
      source.update(
        description="music21 corpus rendered with midirenderer and TimGM6mb.sf2",
        styles=list(config.corpus.styles),
        pieces_per_style=config.corpus.pieces_per_style,
        render_cache=folder,
      )
    elif config.source == "folder":
      songs, skipped = sources.from_folder(config.path)
    elif config.source == "csv":
      songs, skipped = sources.from_csv(config.path)
    else:
      songs, skipped = sources.from_fma(config.path, config.fma_subset)
  except sources.SourceError as e:
    raise BuildError(str(e)) from None
  if config.source != "music21":
    source["path"] = os.path.abspath(config.path)
  for s in skipped:
    _log(str(s))
  return songs, skipped, source


def split_songs(
  songs: Sequence[Song],
  test_fraction: float,
  split_by: str,
  seed: int,
  *,
  validation_fraction: float = 0.0,
) -> dict[str, list[Song]]:
  """Splits songs into train, validation and test, whole groups at a time, per label.

  A group is one song, or all songs of one artist or album (songs without an
  artist/album form their own group). Within each label:

  - test: groups are shuffled with an rng of (seed, label) and moved to test
    until the label's test share reaches round(test_fraction * songs); a label
    with at least two groups keeps at least one group on each side. This does
    not depend on validation_fraction, so adding a validation split never
    changes which songs are in test.
  - validation: the groups left for train are shuffled with a separate rng of
    (seed, label, 1) and moved to validation until its share reaches
    round(validation_fraction * songs). When validation_fraction > 0, a label
    whose test pick left it at least two groups gets at least one validation
    group (so a label of at least three groups has all three splits under the
    default fractions); train always keeps at least one group.

  Each split is then shuffled so shards mix labels.

  Args:
    songs: every usable song.
    test_fraction: target share of each label's songs in test.
    split_by: "song", "artist" or "album": what a group is.
    seed: the build seed.
    validation_fraction: target share of each label's songs in validation;
      0 leaves validation empty.

  Returns:
    {"train": [...], "validation": [...], "test": [...]}.
  """

  def key(song: Song) -> str:
    value = getattr(song, split_by) if split_by != "song" else ""
    return f"{split_by}:{value}" if value else f"song:{song.song_id}"

  def pick(names: list[str], target: int) -> set[str]:
    # Whole groups in the given order until the target is reached, never the
    # last one: train always keeps a group.
    picked, count = set(), 0
    for name in names[:-1]:
      if count >= target:
        break
      picked.add(name)
      count += len(groups[name])
    return picked

  groups: dict[str, list[Song]] = collections.defaultdict(list)
  for song in songs:
    groups[key(song)].append(song)
  by_label: dict[str, list[str]] = collections.defaultdict(list)
  for name in sorted(groups):
    by_label[groups[name][0].label].append(name)
  out: dict[str, list[Song]] = {s: [] for s in SPLITS}
  for label in sorted(by_label):
    names = by_label[label]  # Sorted.
    n_songs = sum(len(groups[n]) for n in names)
    rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
    names = [names[i] for i in rng.permutation(len(names))]
    target = round(test_fraction * n_songs)
    if len(names) >= 2:
      target = max(target, 1)
    test = pick(names, target)
    # Its own rng, drawn after test and over the sorted remainder, so the
    # test draw above is the same with or without a validation split.
    candidates = sorted(n for n in names if n not in test)
    rng = np.random.default_rng([seed, zlib.crc32(label.encode()), 1])
    candidates = [candidates[i] for i in rng.permutation(len(candidates))]
    target = round(validation_fraction * n_songs)
    if validation_fraction > 0 and len(candidates) >= 2:
      target = max(target, 1)
    validation = pick(candidates, target)
    for name in names:
      split = "test" if name in test else "validation" if name in validation else "train"
      out[split] += groups[name]
  for split in SPLITS:
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    out[split] = [out[split][i] for i in rng.permutation(len(out[split]))]
  return out


def plan_shards(
  splits: dict[str, list[Song]], features: FeatureConfig, examples_per_shard: int
) -> list[tuple[str, str, list[int]]]:
  """Returns (split, shard file name, song indices into the split) per shard.

  A split without songs (validation_fraction=0) gets no shard at all: TFDS
  cannot read a split of no examples, and readers then fail with a clear
  message instead of reading nothing.
  """
  songs_per_shard = max(1, examples_per_shard // features.segments_per_song)
  plan = []
  for split in SPLITS:
    n = len(splits[split])
    num = -(-n // songs_per_shard)
    for i in range(num):
      idx = list(range(i * songs_per_shard, min(n, (i + 1) * songs_per_shard)))
      plan.append((split, writer.shard_name(split, i, num), idx))
  return plan


def _fingerprint(config: BuildConfig, splits: dict[str, list[Song]]) -> tuple[str, dict]:
  settings = to_dict(config)
  for volatile in ("workers", "overwrite", "out_dir"):
    settings.pop(volatile)
  settings["corpus"].pop("cache_dir")
  songs = {s: [x.song_id for x in splits[s]] for s in SPLITS}
  blob = json.dumps({"settings": settings, "songs": songs}, sort_keys=True).encode()
  return hashlib.sha1(blob).hexdigest(), settings


def _prepare_out_dir(out_dir: str, fingerprint: str, settings: dict, overwrite: bool) -> None:
  """Makes out_dir ready; refuses to mix with a build of other settings."""
  state = os.path.join(out_dir, STATE_DIR)
  stamp = os.path.join(state, "build.json")
  if os.path.exists(stamp):
    with open(stamp) as f:
      old = json.load(f)
    if old["fingerprint"] != fingerprint:
      if not overwrite:
        changed = sorted(
          k
          for k in set(old["settings"]) | set(settings)
          if old["settings"].get(k) != settings.get(k)
        )
        what = f"settings differ in {changed}" if changed else "the song list differs"
        raise BuildError(
          f"{out_dir} holds a build with other settings ({what}); "
          "pass --overwrite or choose another --out_dir"
        )
      shutil.rmtree(out_dir)
  elif os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
    raise BuildError(f"{out_dir} exists and is not a song2vec dataset; pass --overwrite")
  elif os.path.isdir(out_dir) and overwrite:
    shutil.rmtree(out_dir)
  shutil.rmtree(os.path.join(out_dir, writer.INCOMPLETE_DIR), ignore_errors=True)
  os.makedirs(state, exist_ok=True)
  with open(stamp + ".tmp", "w") as f:
    json.dump({"fingerprint": fingerprint, "settings": settings}, f)
  os.replace(stamp + ".tmp", stamp)


def _song_task(args):
  """Worker: features of one song, or the reason it is skipped."""
  song, features, seed = args
  try:
    result = audio.process_song(song.path, song.song_id, features, seed)
  except audio.SongError as e:
    return None, str(e)
  except Exception as e:  # A decoder bug on one file must not stop the build.
    return None, " ".join(f"unexpected {type(e).__name__}: {e}".split())
  specs = result.spectrograms
  # Per-song sums over a few thousand frames are exact enough in float32;
  # they are accumulated across songs in float64.
  stats = (
    specs.sum(axis=(0, 2)).astype(np.float64),
    np.einsum("nft,nft->f", specs, specs).astype(np.float64),
  )
  return (specs, result.offsets_seconds, stats), None


def _versions() -> dict[str, str]:
  from importlib import metadata

  names = ["librosa", "soundfile", "numpy", "tensorflow-cpu", "tensorflow", "tensorflow-datasets"]
  names += ["music21", "pretty_midi", "midirenderer"]
  out = {"python": sys.version.split()[0]}
  for name in names:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return out


def _write_shards(plan, splits, labels, config: BuildConfig, out_dir: str, workers: int):
  """Processes the songs of every unfinished shard and writes the shards."""
  features = writer.tfds_features(config.features.shape, labels)
  label_index = {name: i for i, name in enumerate(labels)}
  todo = [
    (split, name, idx)
    for split, name, idx in plan
    if not (
      os.path.exists(os.path.join(out_dir, name))
      and os.path.exists(os.path.join(out_dir, STATE_DIR, name + ".json"))
    )
  ]
  if len(todo) < len(plan):
    _log(f"resuming: {len(plan) - len(todo)} of {len(plan)} shards already written")
  tasks = [(splits[split][i], config.features, config.seed) for split, _, idx in todo for i in idx]
  results = ordered_map(
    _song_task,
    tasks,
    workers=workers,
    desc="spectrograms",
    postfix=lambda r: {"skipped": int(r[1] is not None)},
  )
  try:
    _consume(todo, results, splits, features, label_index, config.features.n_bins, out_dir)
  finally:
    results.close()  # Stops the workers at once if writing failed or was interrupted.


def write_shard(
  out_dir, name, songs_results, features, label_index, bins: int, before_rename=None
) -> dict:
  """Writes one shard from its songs' results, in order, and returns its state.

  The one writer of shards, for the multiprocessing builder and the Beam one.

  Args:
    songs_results: (song, (result, error)) per song of the shard, in order;
      a song with an error is listed as skipped and written nothing.
    before_rename: called with the state once every record is written and
      before the shard file is renamed into place.

  Returns:
    The shard's counts, sums and skipped songs (what its sidecar holds).
  """
  state = {
    "examples": 0,
    "num_bytes": 0,
    "songs_per_label": collections.Counter(),
    "examples_per_label": collections.Counter(),
    "sum": np.zeros(bins),
    "sumsq": np.zeros(bins),
    "skipped": [],
  }
  with writer.atomic_shard(out_dir, name) as records:
    for song, (result, error) in songs_results:
      if error is not None:
        skip = Skipped(song.path, error)
        _log(str(skip))
        state["skipped"].append(vars(skip))
        continue
      specs, offsets, (total, total_sq) = result
      for segment, (spec, offset) in enumerate(zip(specs, offsets, strict=True)):
        example = features.serialize_example(
          {
            "spectrogram": spec,
            "label": label_index[song.label],
            "label_name": song.label,
            "song_id": song.song_id,
            "segment": segment,
            "offset_seconds": offset,
            "artist": song.artist,
            "album": song.album,
            "year": song.year,
          }
        )
        records.write(example)
        state["num_bytes"] += len(example)
      state["examples"] += len(specs)
      state["songs_per_label"][song.label] += 1
      state["examples_per_label"][song.label] += len(specs)
      state["sum"] += total
      state["sumsq"] += total_sq
    state["sum"], state["sumsq"] = state["sum"].tolist(), state["sumsq"].tolist()
    if before_rename is not None:
      before_rename(state)
  return state


def _consume(todo, results, splits, features, label_index, bins: int, out_dir: str) -> None:
  """Writes each planned shard from the in-order song results, with its sidecar."""
  for split, name, idx in todo:
    songs_results = ((splits[split][i], next(results)) for i in idx)
    sidecar = os.path.join(out_dir, STATE_DIR, name + ".json")

    def write_sidecar(state, sidecar=sidecar):
      # The sidecar lands before the shard is renamed into place: a shard
      # file that exists always has its sidecar.
      with open(sidecar + ".tmp", "w") as f:
        json.dump(state, f)
      os.replace(sidecar + ".tmp", sidecar)

    write_shard(out_dir, name, songs_results, features, label_index, bins, write_sidecar)


def empty_split_counts(labels: list[str]) -> dict:
  """Per split: songs, examples, shards, bytes, shard lengths and per-label counts, all zero."""
  return {
    s: {
      "songs": 0,
      "examples": 0,
      "shards": 0,
      "num_bytes": 0,
      "shard_lengths": [],
      "songs_per_label": dict.fromkeys(labels, 0),
      "examples_per_label": dict.fromkeys(labels, 0),
    }
    for s in SPLITS
  }


def _summarise(plan, out_dir: str, labels: list[str], features: FeatureConfig) -> dict:
  """Merges the shard sidecars into split counts and train statistics."""
  splits = empty_split_counts(labels)
  skipped = []
  total = np.zeros(features.n_bins)
  total_sq = np.zeros(features.n_bins)
  for split, name, _ in plan:
    with open(os.path.join(out_dir, STATE_DIR, name + ".json")) as f:
      state = json.load(f)
    info = splits[split]
    info["shards"] += 1
    info["examples"] += state["examples"]
    info["num_bytes"] += state["num_bytes"]
    info["shard_lengths"].append(state["examples"])
    for label, n in state["songs_per_label"].items():
      info["songs_per_label"][label] += n
      info["songs"] += n
    for label, n in state["examples_per_label"].items():
      info["examples_per_label"][label] += n
    skipped += state["skipped"]
    if split == "train":
      total += np.asarray(state["sum"])
      total_sq += np.asarray(state["sumsq"])
  mean, std = moments_to_stats(
    total, total_sq, max(1, splits["train"]["examples"] * features.n_frames)
  )
  return {"splits": splits, "skipped": skipped, "mean": mean, "std": std}


def moments_to_stats(total: np.ndarray, total_sq: np.ndarray, count: int):
  """Per-bin mean and std from the sums of x and x^2 over `count` frames."""
  mean = total / count
  return mean, np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))


def build(config: BuildConfig) -> dict:
  """Builds (or resumes, or finds complete) the dataset that `config` describes.

  Args:
    config: the build settings.

  Returns:
    The dataset's metadata (as written to metadata.json).

  Raises:
    BuildError: the source is unusable, every input was bad, or out_dir holds
      a build with other settings.
  """
  workers = resolve_workers(config.workers)
  build_plan = plan_build(config, workers)
  _write_shards(
    build_plan.shards, build_plan.splits, build_plan.labels, config, config.dataset_dir, workers
  )
  shutil.rmtree(os.path.join(config.dataset_dir, writer.INCOMPLETE_DIR), ignore_errors=True)
  merged = _summarise(build_plan.shards, config.dataset_dir, build_plan.labels, config.features)
  return finish(config, build_plan, merged)


@dataclasses.dataclass
class BuildPlan:
  """Everything decided before any audio is read: the same for every builder."""

  songs: list[Song]
  skipped: list[Skipped]  # Entries that could not even be listed.
  source: dict
  labels: list[str]
  splits: dict[str, list[Song]]
  shards: list[tuple[str, str, list[int]]]  # (split, shard file, song indices).


def plan_build(config: BuildConfig, workers: int) -> BuildPlan:
  """Lists the songs, splits them, plans the shards and prepares out_dir.

  Raises:
    BuildError: the source is unusable or empty, or out_dir holds a build with
      other settings.
  """
  songs, skipped, source = gather_songs(config, workers)
  if not songs:
    reasons = "; ".join(str(s) for s in skipped[:3])
    raise BuildError(f"no usable songs in the source ({len(skipped)} skipped: {reasons})")
  labels = sorted({s.label for s in songs})
  splits = split_songs(
    songs,
    config.test_fraction,
    config.split_by,
    config.seed,
    validation_fraction=config.validation_fraction,
  )
  shards = plan_shards(splits, config.features, config.examples_per_shard)
  fingerprint, settings = _fingerprint(config, splits)
  _prepare_out_dir(config.dataset_dir, fingerprint, settings, config.overwrite)
  return BuildPlan(songs, skipped, source, labels, splits, shards)


def finish(config: BuildConfig, plan: BuildPlan, merged: dict) -> dict:
  """Writes metadata.json and TFDS's files from the merged counts and statistics.

  Args:
    merged: {"splits": per-split counts, "skipped": songs skipped while
      processing, "mean" and "std": train statistics per bin}, as
      `_summarise` (or the Beam builder's combiners) gives them.

  Returns:
    The metadata.

  Raises:
    BuildError: every input was skipped.
  """
  out_dir, labels, source, skipped = config.dataset_dir, plan.labels, plan.source, plan.skipped
  skipped_all = [vars(s) for s in skipped] + merged["skipped"]
  if merged["splits"]["train"]["examples"] == 0:
    reasons = "; ".join(f"{s['item']}: {s['reason']}" for s in skipped_all[:3])
    raise BuildError(
      f"every input was skipped ({len(skipped_all)} in all), nothing to train on: {reasons}"
    )
  f = config.features
  metadata = {
    "format": "song2vec-spectrograms/1",
    "name": writer.DATASET_NAME,
    "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "source": source,
    "features": {
      **to_dict(config)["features"],
      "frontend": "mel" if f.n_mels else "linear",
      "shape": list(f.shape),
      "dtype": "float32",
      "transform": "log(max(|STFT|, min_magnitude))",
    },
    "labels": labels,
    "split": {
      "by": config.split_by,
      "test_fraction": config.test_fraction,
      "validation_fraction": config.validation_fraction,
      "seed": config.seed,
    },
    "splits": merged["splits"],
    "normalization": {
      "computed_on": "train",
      "axis": "frequency bin (over all train segments and frames)",
      "mean": merged["mean"].tolist(),
      "std": merged["std"].tolist(),
    },
    "skipped": skipped_all,
    "versions": _versions(),
    "build_config": to_dict(config),
  }
  writer.write_tfds_metadata(
    out_dir,
    f.shape,
    labels,
    {s: merged["splits"][s]["shard_lengths"] for s in SPLITS},
    {s: merged["splits"][s]["num_bytes"] for s in SPLITS},
  )
  path = os.path.join(out_dir, writer.METADATA_FILE)
  with open(path + ".tmp", "w") as fp:
    json.dump(metadata, fp, indent=1)
  os.replace(path + ".tmp", path)
  return metadata


def load_metadata(dataset_dir: str) -> dict:
  """Reads a finished dataset's metadata.json.

  Raises:
    FileNotFoundError: with a hint, when the folder holds no finished build.
  """
  path = os.path.join(dataset_dir, writer.METADATA_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: build the dataset first (python -m data_prep)")
  with open(path) as f:
    return json.load(f)


def summary(metadata: dict, dataset_dir: str) -> str:
  """A per-label table of songs and segments per split, plus skipped inputs."""
  splits = metadata["splits"]
  labels = metadata["labels"]
  width = max([len("label"), *(len(x) for x in labels)])
  lines = [
    f"dataset   {dataset_dir}",
    f"source    {metadata['source']['type']}"
    + (f" ({metadata['source']['path']})" if "path" in metadata["source"] else ""),
    f"features  {metadata['features']['frontend']} {tuple(metadata['features']['shape'])} "
    f"float32, {metadata['features']['segments_per_song']} x "
    f"{metadata['features']['segment_seconds']} s segments per song",
    "",
    f"{'label':<{width}}  train songs  train segs  val songs  val segs  test songs  test segs",
  ]

  # A build from before the validation split has none: shown as zeros.
  none = {"songs": 0, "examples": 0, "songs_per_label": {}, "examples_per_label": {}}
  per_split = [splits.get(split, none) for split in SPLITS]
  widths = (11, 10, 9, 8, 10, 9)  # The headings' widths.

  def row(name: str, counts: list[int]) -> str:
    cells = "".join(f"  {n:>{w}}" for n, w in zip(counts, widths, strict=True))
    return f"{name:<{width}}{cells}"

  for label in labels:
    counts = []
    for info in per_split:
      counts += [info["songs_per_label"].get(label, 0), info["examples_per_label"].get(label, 0)]
    lines.append(row(label, counts))
  lines.append(row("total", [info[k] for info in per_split for k in ("songs", "examples")]))
  lines.append(f"skipped   {len(metadata['skipped'])} input(s), listed in metadata.json")
  return "\n".join(lines)
