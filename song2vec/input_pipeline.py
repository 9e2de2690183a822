"""tf.data over the spectrogram shards that `data_prep` wrote; yields numpy.

Reads only: the format (and the metadata.json beside the shards) belongs to
`data_prep.writer`. Training batches are shuffled, repeated, normalised with
the train split's per-frequency-bin statistics and batched with
`drop_remainder=True`; the evaluation iterator visits every test segment
exactly once, in file order, padding the last batch and marking the padding.
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
  if len(files) < process_count:
    raise FileNotFoundError(
      f"{dataset_dir}: {len(files)} {split} shard(s) for {process_count} process(es); "
      "rebuild with a smaller --examples_per_shard"
    )
  return files[process_index::process_count]


def _parser(info: DatasetInfo, keys: tuple[str, ...]):
  spec = {k: v for k, v in writer.parse_spec().items() if k in keys}
  mean = tf.constant(info.mean[:, None])
  inv_std = tf.constant(1.0 / info.std[:, None])
  bins, frames = info.shape

  def parse(serialized):  # A batch of serialized examples.
    ex = tf.io.parse_example(serialized, spec)
    x = tf.io.decode_raw(ex["spectrogram"], tf.float32)
    x = tf.reshape(x, [-1, bins, frames])
    ex["spectrogram"] = (x - mean) * inv_std
    return ex

  return parse


def _shape_for_devices(batch: dict, num_devices: int) -> dict:
  def reshape(x):
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

  return {k: reshape(v) for k, v in batch.items()}


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
) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of normalised spectrograms.

  Args:
    dataset_dir: a folder written by data_prep.
    batch_size: examples per batch on this process.
    seed: seeds file order and the shuffle buffer.
    shuffle_buffer: examples held for shuffling (each ~0.44 MB at 257 x 430).
    num_devices: >0: shape batches (num_devices, batch_size // num_devices, ...)
      for pmap; 0: (batch_size, ...).
    keys: which fields to decode (any of writer.parse_spec()).
    split: which split to read.
    repeat: cycle forever (training) or stop after one pass.

  Yields:
    dicts of numpy arrays; "spectrogram" is [..., bins, frames] float32.
  """
  if num_devices and batch_size % num_devices:
    raise ValueError(f"batch_size {batch_size} is not divisible by {num_devices} devices")
  info = load_info(dataset_dir)
  files = shard_files(dataset_dir, split)
  options = tf.data.Options()
  options.deterministic = False
  ds = tf.data.Dataset.from_tensor_slices(files)
  ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.interleave(
    tf.data.TFRecordDataset,
    cycle_length=min(len(files), 8),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.map(_parser(info, keys), num_parallel_calls=tf.data.AUTOTUNE)
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
  "mask" is 1.0 for real examples and 0.0 for padding.
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
