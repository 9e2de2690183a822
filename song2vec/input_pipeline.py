"""tf.data over the spectrogram shards that `data_prep` wrote; yields numpy.

Reads only: the format (and the metadata.json beside the shards) belongs to
`data_prep.writer`. Training batches are shuffled, repeated, normalised with
the train split's per-frequency-bin statistics and batched with
`drop_remainder=True`, in an order that is a pure function of the seed, so a
resumed run reads exactly the batches an uninterrupted one would; the
evaluation iterator visits every segment of a split (test by default, or
validation) exactly once, in file order, padding the last batch and marking
the padding.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator

import jax
import numpy as np
import tensorflow as tf

from data_prep import writer
from data_prep.builder import load_metadata

# TensorFlow only feeds data here: keep it off the accelerators JAX uses.
tf.config.set_visible_devices([], "GPU")

_MIN_STD = 1e-3  # Bins that never vary (e.g. always at the floor) stay finite.
_EMPTY_SPLIT_FIX = {
  "validation": "it was built with validation_fraction=0 (or before the validation split "
  "existed): rebuild with --validation_fraction > 0 (python -m data_prep "
  "--validation_fraction=0.1, or --config.data.validation_fraction=0.1 in launch.py)",
  "test": "every label has a single song (or artist/album) group: add songs or rebuild "
  "with another --split_by",
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a built dataset."""

  dataset_dir: str
  shape: tuple[int, int]  # (frequency bins, frames)
  labels: tuple[str, ...]
  mean: np.ndarray  # [bins] float32, train split
  std: np.ndarray  # [bins] float32, train split
  num_examples: dict[str, int]
  metadata: dict


def load_info(dataset_dir: str) -> DatasetInfo:
  """Reads metadata.json of a finished build."""
  meta = load_metadata(dataset_dir)
  norm = meta["normalization"]
  return DatasetInfo(
    dataset_dir=dataset_dir,
    shape=tuple(meta["features"]["shape"]),
    labels=tuple(meta["labels"]),
    mean=np.asarray(norm["mean"], np.float32),
    std=np.maximum(np.asarray(norm["std"], np.float32), _MIN_STD),
    num_examples={s: v["examples"] for s, v in meta["splits"].items()},
    metadata=meta,
  )


def shard_files(
  dataset_dir: str, split: str, process_index: int | None = None, process_count: int | None = None
) -> list[str]:
  """This process's share of a split's shard files (every process_count-th file).

  Raises:
    FileNotFoundError: the split has no shards, or fewer shards than processes.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  files = sorted(glob.glob(os.path.join(dataset_dir, writer.shard_pattern(split))))
  if not files:
    # data_prep writes no shards for a split without songs.
    fix = _EMPTY_SPLIT_FIX.get(split, "check the split name, or rebuild (python -m data_prep)")
    raise FileNotFoundError(f"{dataset_dir} has no {split!r} split (no shard files); {fix}")
  if len(files) < process_count:
    raise FileNotFoundError(
      f"{dataset_dir}: {len(files)} {split} shard(s) for {process_count} process(es); "
      "rebuild with a smaller --examples_per_shard"
    )
  return files[process_index::process_count]


# What each `model.input_centering` removes from a segment [..., bins, frames]:
# "level", its mean over all bins and frames (its overall loudness); "bins",
# each bin's mean over its frames (cepstral mean normalisation: the static
# spectrum, on the embedded corpus the fingerprint of its piece;
# docs/remedies_cpu.md, stop 22).
CENTERING_AXES = {"none": None, "level": (-2, -1), "bins": (-1,)}


def centering_axes(how: str) -> tuple[int, ...] | None:
  """The axes `how` averages a segment over, or None ("none"); an unknown name is an error."""
  if how not in CENTERING_AXES:
    raise ValueError(f"model.input_centering must be one of {tuple(CENTERING_AXES)}, got {how!r}")
  return CENTERING_AXES[how]


def center(x, how: str):
  """x [..., bins, frames] less what `how` names (see CENTERING_AXES); numpy or JAX.

  The input pipeline's `centering=` does the same in TensorFlow.
  """
  axes = centering_axes(how)
  return x if axes is None else x - x.mean(axis=axes, keepdims=True)


def _parser(info: DatasetInfo, keys: tuple[str, ...], centering: str = "none"):
  spec = {k: v for k, v in writer.parse_spec().items() if k in keys}
  mean = tf.constant(info.mean[:, None])
  inv_std = tf.constant(1.0 / info.std[:, None])
  bins, frames = info.shape
  axes = centering_axes(centering)

  def parse(serialized):  # A batch of serialized examples.
    ex = tf.io.parse_example(serialized, spec)
    if "spectrogram" in ex:
      x = tf.io.decode_raw(ex["spectrogram"], tf.float32)
      x = tf.reshape(x, [-1, bins, frames])
      x = (x - mean) * inv_std
      ex["spectrogram"] = x if axes is None else x - tf.reduce_mean(x, axis=axes, keepdims=True)
    return ex

  return parse


def _shape_for_devices(batch: dict, num_devices: int) -> dict:
  def reshape(x):
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

  return {k: reshape(v) for k, v in batch.items()}


def examples_per_epoch(dataset_dir: str, split: str, files: list[str]) -> int:
  """How many examples the given shard files of a split hold, from metadata.json.

  Args:
    dataset_dir: a folder written by data_prep.
    split: the split the files belong to.
    files: shard paths, e.g. this process's share from shard_files.

  Returns:
    The sum of their lengths, so one epoch of this process's reading.

  Raises:
    FileNotFoundError: a file is not one of the split's shards in metadata.json.
  """
  lengths = load_metadata(dataset_dir)["splits"][split]["shard_lengths"]
  by_name = {writer.shard_name(split, i, len(lengths)): n for i, n in enumerate(lengths)}
  unknown = [f for f in files if os.path.basename(f) not in by_name]
  if unknown:
    raise FileNotFoundError(
      f"{unknown[0]} is not among the {split} shards that {dataset_dir}/metadata.json lists; "
      "rebuild the dataset (python -m data_prep)"
    )
  return sum(by_name[os.path.basename(f)] for f in files)


def _song_pairs(records: tf.data.Dataset) -> tf.data.Dataset:
  """A shard's serialized records as [2] pairs of consecutive segments of one song.

  data_prep writes a song's segments one after another, so a song of n segments
  gives n // 2 pairs (its odd last segment, if any, none).
  """
  spec = {"song_id": writer.parse_spec()["song_id"]}

  def song(record):
    song_id = tf.io.parse_single_example(record, spec)["song_id"]
    return tf.strings.to_hash_bucket_fast(song_id, 2**62)

  pairs = records.group_by_window(song, lambda _, w: w.batch(2), window_size=2)
  return pairs.filter(lambda pair: tf.shape(pair)[0] == 2)


def _epoch_fn(files: list[str], seed: int, shuffle_buffer: int, song_pairs: bool = False):
  """epoch index -> that epoch's serialized records, in an order fixed by (seed, epoch).

  With `song_pairs` the records come two by two, each two segments of one song
  (the pairs are shuffled, never their halves apart).
  """
  names = tf.constant(files)
  cycle = min(len(files), 8)

  def read(name):
    records = tf.data.TFRecordDataset(name)
    return _song_pairs(records) if song_pairs else records

  def epoch(e):
    file_key, buffer_key = tf.unstack(
      tf.random.split(tf.stack([tf.constant(seed, tf.int64), e]), num=2)
    )
    order = tf.argsort(tf.random.stateless_uniform([len(files)], seed=file_key))
    # Dataset.shuffle takes one int seed; draw it from the epoch's key.
    buffer_seed = tf.random.stateless_uniform(
      [], seed=buffer_key, minval=0, maxval=2**31 - 1, dtype=tf.int64
    )
    ds = tf.data.Dataset.from_tensor_slices(tf.gather(names, order))
    ds = ds.interleave(
      read, cycle_length=cycle, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if song_pairs:
      ds = ds.shuffle(max(1, shuffle_buffer // 2), seed=buffer_seed, reshuffle_each_iteration=False)
      return ds.unbatch()
    return ds.shuffle(shuffle_buffer, seed=buffer_seed, reshuffle_each_iteration=False)

  return epoch


def train_iterator(
  dataset_dir: str,
  batch_size: int,
  *,
  seed: int = 0,
  shuffle_buffer: int = 1024,
  num_devices: int = 0,
  keys: tuple[str, ...] = ("spectrogram", "label"),
  split: str = "train",
  repeat: bool = True,
  start_batch: int = 0,
  centering: str = "none",
  song_pairs: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of normalised spectrograms, in a seeded order.

  Epoch e reads this process's shard files in an order drawn from (seed, e),
  interleaves them deterministically and shuffles the records through a buffer
  seeded from (seed, e); epochs follow one another and batches are cut from
  that stream (a batch may span two epochs). So for a seed the batches are the
  same in every run on the same machine (TensorFlow's global seed, which
  song2vec never sets, would also enter the buffer's shuffle), and batch s
  does not depend on where reading started: `start_batch=s` skips whole epochs
  without reading them and the rest of the skip as serialized records, never
  parsed.

  Args:
    dataset_dir: a folder written by data_prep.
    batch_size: examples per batch on this process.
    seed: fixes the file order and the shuffle buffer of every epoch.
    shuffle_buffer: examples held for shuffling (each ~0.44 MB at 257 x 430).
    num_devices: >0: shape batches (num_devices, batch_size // num_devices, ...)
      for pmap; 0: (batch_size, ...).
    keys: which fields to decode (any of writer.parse_spec()).
    split: which split to read.
    repeat: cycle forever (training) or stop after one pass.
    start_batch: the first batch to yield, counted from the start of the
      first epoch (a resumed run passes the number of batches already used).
    centering: what to remove from each segment (see CENTERING_AXES).
    song_pairs: examples 2i and 2i + 1 of every batch are two segments of one
      song (the contrastive term's song-level positives); batch_size, and the
      share of each device, must be even. A song's odd last segment is never
      read, so a resumed run reads its skip from the first epoch on.

  Yields:
    dicts of numpy arrays; "spectrogram" is [..., bins, frames] float32.

  Raises:
    ValueError: batch_size does not divide among the devices, start_batch is
      negative, or this process's shards hold no examples.
    FileNotFoundError: the split has no shards (see shard_files).
  """
  if num_devices and batch_size % num_devices:
    raise ValueError(f"batch_size {batch_size} is not divisible by {num_devices} devices")
  if start_batch < 0:
    raise ValueError(f"start_batch must be >= 0, got {start_batch}")
  per_device = batch_size // num_devices if num_devices else batch_size
  if song_pairs and per_device % 2:
    raise ValueError(f"song pairs need an even batch on each device, got {per_device}")
  info = load_info(dataset_dir)
  files = shard_files(dataset_dir, split)
  per_epoch = examples_per_epoch(dataset_dir, split, files)
  if not per_epoch:  # Else an endless run of empty epochs would never yield.
    raise ValueError(f"{dataset_dir}: this process's {split} shards hold no examples")
  first_epoch, skip = divmod(start_batch * batch_size, per_epoch)
  if song_pairs:  # An epoch holds fewer records than per_epoch where a song's count is odd.
    first_epoch, skip = 0, start_batch * batch_size
  epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max if repeat else 1)
  ds = epochs.flat_map(_epoch_fn(files, seed, shuffle_buffer, song_pairs))
  ds = ds.skip(skip)  # Serialized records: skipping them costs reading, not parsing.
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.map(_parser(info, keys, centering), num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True  # The order is the point; parallel stages keep it.
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(options)
  for batch in ds.as_numpy_iterator():
    yield _shape_for_devices(batch, num_devices) if num_devices else batch


def eval_iterator(
  dataset_dir: str,
  batch_size: int,
  *,
  split: str = "test",
  num_devices: int = 0,
  keys: tuple[str, ...] = ("spectrogram", "label", "song_id", "segment"),
) -> Iterator[dict[str, np.ndarray]]:
  """Every example of a split exactly once, in file order, in fixed-size batches.

  The last batch is padded to batch_size by repeating its first example;
  "mask" is 1.0 for real examples and 0.0 for padding. `split="validation"`
  reads the split on which recipes, hyper-parameters and checkpoints are
  chosen; the test split is for the final report only.
  """
  if num_devices and batch_size % num_devices:
    raise ValueError(f"batch_size {batch_size} is not divisible by {num_devices} devices")
  info = load_info(dataset_dir)
  files = shard_files(dataset_dir, split)
  ds = tf.data.TFRecordDataset(files)  # Sequential: file order is example order.
  ds = ds.batch(batch_size, drop_remainder=False)
  ds = ds.map(_parser(info, keys), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  for batch in ds.as_numpy_iterator():
    n = len(batch["spectrogram"])
    batch["mask"] = np.ones((n,), np.float32)
    if n < batch_size:
      pad = batch_size - n
      batch = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in batch.items()}
      batch["mask"][n:] = 0.0
    yield _shape_for_devices(batch, num_devices) if num_devices else batch
