"""The tf.data pipeline over built shards."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from test_build import make_config, read_split

from data_prep import builder
from song2vec import input_pipeline


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  from conftest import write_audio

  root = tmp_path_factory.mktemp("src") / "genres"
  for g, (genre, freq) in enumerate([("low", 220.0), ("mid", 880.0), ("high", 2200.0)]):
    for i in range(5):
      write_audio(root / genre / f"{genre}{i}.wav", freq=freq * (1 + 0.05 * i), seed=10 * g + i)
  out = tmp_path_factory.mktemp("ds") / "ds"
  builder.build(make_config(root, out, examples_per_shard=9))
  return str(out)


def test_train_batches_are_normalised_and_shaped(dataset):
  info = input_pipeline.load_info(dataset)
  it = input_pipeline.train_iterator(dataset, batch_size=8, seed=0)
  batches = [next(it) for _ in range(30)]  # More than one pass: it repeats.
  for b in batches:
    assert b["spectrogram"].shape == (8, *info.shape)
    assert b["spectrogram"].dtype == np.float32 and b["label"].shape == (8,)
  x = np.concatenate([b["spectrogram"] for b in batches])
  # Normalised with the train split's per-bin statistics: ~N(0, 1) per bin.
  assert np.abs(x.mean(axis=(0, 2))).max() < 0.25
  assert np.abs(x.std(axis=(0, 2)) - 1).max() < 0.25

  raw = read_split(dataset, "train")
  first = np.frombuffer(raw[0]["spectrogram"], np.float32).reshape(info.shape)
  normalised = (first - info.mean[:, None]) / info.std[:, None]
  assert any(np.allclose(normalised, row, atol=1e-5) for row in x)


def test_train_batches_for_pmap_have_a_device_axis(dataset):
  it = input_pipeline.train_iterator(dataset, batch_size=8, num_devices=4)
  b = next(it)
  assert b["spectrogram"].shape[:2] == (4, 2) and b["label"].shape == (4, 2)
  with pytest.raises(ValueError, match="not divisible"):
    next(input_pipeline.train_iterator(dataset, batch_size=6, num_devices=4))


def test_one_pass_without_repeat_drops_only_the_remainder(dataset):
  info = input_pipeline.load_info(dataset)
  batches = list(input_pipeline.train_iterator(dataset, batch_size=8, repeat=False))
  assert len(batches) == info.num_examples["train"] // 8


def test_eval_visits_every_test_segment_exactly_once(dataset):
  info = input_pipeline.load_info(dataset)
  seen = collections.Counter()
  labels = {}
  for b in input_pipeline.eval_iterator(dataset, batch_size=4):
    assert b["spectrogram"].shape == (4, *info.shape)
    for song, seg, label, m in zip(b["song_id"], b["segment"], b["label"], b["mask"], strict=True):
      if m:
        seen[(song, seg)] += 1
        labels[song] = label
  expected = {(ex["song_id"], ex["segment"]): ex["label"] for ex in read_split(dataset, "test")}
  assert set(seen) == set(expected) and set(seen.values()) == {1}
  assert all(labels[s] == lab for (s, _), lab in expected.items())


def test_eval_pads_the_last_batch_and_marks_it(dataset):
  info = input_pipeline.load_info(dataset)
  n = info.num_examples["test"]
  batch_size = n + 3
  (b,) = list(input_pipeline.eval_iterator(dataset, batch_size=batch_size, num_devices=0))
  assert b["mask"].sum() == n and b["mask"][n:].sum() == 0
  assert b["spectrogram"].shape[0] == batch_size


def test_shards_are_split_between_processes_without_overlap(dataset):
  every = input_pipeline.shard_files(dataset, "train", 0, 1)
  parts = [input_pipeline.shard_files(dataset, "train", i, 2) for i in range(2)]
  assert sorted(parts[0] + parts[1]) == every and not set(parts[0]) & set(parts[1])
  with pytest.raises(FileNotFoundError, match="shard"):
    input_pipeline.shard_files(dataset, "train", 0, len(every) + 1)


def test_missing_dataset_says_how_to_build_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m data_prep"):
    input_pipeline.load_info(str(tmp_path))


def test_tensorflow_sees_no_gpu():
  import tensorflow as tf

  assert tf.config.get_visible_devices("GPU") == []
