"""The on-disk format: TFRecord shards of tf.train.Example in the TFDS layout.

A dataset folder holds `song2vec-{split}.tfrecord-{i:05d}-of-{n:05d}` shards
(splits train, validation and test; a split without songs has no shards),
TFDS's `dataset_info.json` and `features.json` (so `tfds.builder_from_directory`
loads it), and our `metadata.json` (feature parameters, label vocabulary,
counts, normalisation statistics, skipped inputs). `song2vec.input_pipeline`
parses the records directly with the spec in `parse_spec`.

A shard is written under `.incomplete/` and renamed into place only when it is
complete, so a shard file that exists is a finished shard.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

DATASET_NAME = "song2vec"
FILE_FORMAT = "tfrecord"
METADATA_FILE = "metadata.json"
INCOMPLETE_DIR = ".incomplete"
UNKNOWN_YEAR = -1


def shard_name(split: str, index: int, num_shards: int) -> str:
  return f"{DATASET_NAME}-{split}.{FILE_FORMAT}-{index:05d}-of-{num_shards:05d}"


def shard_pattern(split: str) -> str:
  return f"{DATASET_NAME}-{split}.{FILE_FORMAT}-*-of-*"


def tfds_features(shape: tuple[int, int], labels: list[str]):
  """The TFDS FeaturesDict that describes (and serialises) one example."""
  import tensorflow_datasets as tfds

  text = tfds.features.Text
  return tfds.features.FeaturesDict(
    {
      # Raw little-endian float32 bytes: ~10x faster to parse than a float list.
      "spectrogram": tfds.features.Tensor(
        shape=tuple(shape), dtype=np.float32, encoding=tfds.features.Encoding.BYTES
      ),
      "label": tfds.features.ClassLabel(names=labels),
      "label_name": text(),
      "song_id": text(),
      "segment": tfds.features.Scalar(dtype=np.int32),
      "offset_seconds": tfds.features.Scalar(dtype=np.float32),
      "artist": text(),
      "album": text(),
      "year": tfds.features.Scalar(dtype=np.int32),  # -1: unknown.
    }
  )


def parse_spec():
  """tf.io feature spec matching `tfds_features`' serialised form."""
  import tensorflow as tf

  string = tf.io.FixedLenFeature([], tf.string)
  int64 = tf.io.FixedLenFeature([], tf.int64)
  return {
    "spectrogram": string,
    "label": int64,
    "label_name": string,
    "song_id": string,
    "segment": int64,
    "offset_seconds": tf.io.FixedLenFeature([], tf.float32),
    "artist": string,
    "album": string,
    "year": int64,
  }


@contextlib.contextmanager
def atomic_shard(out_dir: str, name: str):
  """Yields a TFRecordWriter whose file appears as out_dir/name only on success."""
  import tensorflow as tf

  tmp_dir = os.path.join(out_dir, INCOMPLETE_DIR)
  os.makedirs(tmp_dir, exist_ok=True)
  tmp = os.path.join(tmp_dir, name)
  writer = tf.io.TFRecordWriter(tmp)
  try:
    yield writer
  except BaseException:
    writer.close()
    # The partial file may be gone already (a build that failed in a worker
    # before this shard was written); the error to show is the one raised.
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
  writer.close()
  os.replace(tmp, os.path.join(out_dir, name))


def write_tfds_metadata(
  out_dir: str, shape, labels, shard_lengths: dict[str, list[int]], num_bytes: dict[str, int]
) -> None:
  """Writes dataset_info.json and features.json for tfds.builder_from_directory.

  Args:
    out_dir: the dataset folder, holding the shards.
    shape: (bins, frames) of a spectrogram.
    labels: the label vocabulary.
    shard_lengths: examples per shard, in shard file order, per split.
    num_bytes: serialized bytes per split.

  A split with no shard files (one without songs) is left out: TFDS requires
  the splits it is told of to match the files, and cannot read an empty split.
  """
  import tensorflow_datasets as tfds

  split_infos = [
    tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=num_bytes[split])
    for split, lengths in shard_lengths.items()
    if lengths
  ]
  tfds.folder_dataset.write_metadata(
    data_dir=out_dir,
    features=tfds_features(shape, labels),
    split_infos=split_infos,
    filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
    check_data=False,
    description="Log-magnitude spectrogram segments written by song2vec's data_prep.",
  )
