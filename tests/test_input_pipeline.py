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


def test_validation_split_is_read_like_the_test_split(dataset):
  from song2vec import embed

  info = input_pipeline.load_info(dataset)
  n = info.num_examples["validation"]
  assert n == 3 * 3  # One song of five per label (round(0.1 * 5) -> at least one), 3 segments.
  ids = [
    (song, seg)
    for b in input_pipeline.eval_iterator(dataset, batch_size=4, split="validation")
    for song, seg, m in zip(b["song_id"], b["segment"], b["mask"], strict=True)
    if m
  ]
  expected = [(ex["song_id"], ex["segment"]) for ex in read_split(dataset, "validation")]
  assert ids == expected and len(ids) == n
  segments = embed.load_segments(dataset, "validation")
  assert segments.x.shape == (n, *info.shape)
  test_songs = {ex["song_id"].decode() for ex in read_split(dataset, "test")}
  assert test_songs.isdisjoint(segments.song_ids)


def _stream(batches, key="song_id"):
  """The (song, segment) pairs of consecutive batches, in order."""
  return [(s, int(g)) for b in batches for s, g in zip(b[key], b["segment"], strict=True)]


def _take(it, n):
  return [next(it) for _ in range(n)]


_KEYS = ("spectrogram", "song_id", "segment")


def test_train_order_is_a_function_of_the_seed(dataset):
  one = _take(input_pipeline.train_iterator(dataset, 4, seed=3, keys=_KEYS), 12)
  two = _take(input_pipeline.train_iterator(dataset, 4, seed=3, keys=_KEYS), 12)
  assert _stream(one) == _stream(two)
  for a, b in zip(one, two, strict=True):
    np.testing.assert_array_equal(a["spectrogram"], b["spectrogram"])
  other = _take(input_pipeline.train_iterator(dataset, 4, seed=4, keys=_KEYS), 12)
  assert _stream(other) != _stream(one)
  assert sorted(_stream(other)) != sorted(_stream(one))  # Not just the same batches reordered.


def test_every_example_appears_once_per_epoch(dataset):
  n = input_pipeline.load_info(dataset).num_examples["train"]
  batch_size = 5  # Does not divide n = 27: batches span epoch boundaries.
  it = input_pipeline.train_iterator(dataset, batch_size, seed=1, keys=("song_id", "segment"))
  stream = _stream(_take(it, -(-3 * n // batch_size)))
  epochs = [stream[i * n : (i + 1) * n] for i in range(3)]
  expected = sorted((ex["song_id"], int(ex["segment"])) for ex in read_split(dataset, "train"))
  for epoch in epochs:
    assert sorted(epoch) == expected
  assert epochs[0] != epochs[1] != epochs[2]  # Each epoch has its own order.


@pytest.mark.parametrize("start_batch", [1, 6, 7, 17])
def test_start_batch_resumes_exactly_where_an_uninterrupted_run_is(dataset, start_batch):
  # 27 train examples in batches of 4: batch 6 is the first to span two epochs,
  # 7 starts inside the second, 17 inside the third.
  def run(start, n):
    it = input_pipeline.train_iterator(
      dataset, 4, seed=2, num_devices=2, keys=_KEYS, start_batch=start
    )
    return _take(it, n)

  whole = run(0, start_batch + 5)
  resumed = run(start_batch, 5)
  for a, b in zip(whole[start_batch:], resumed, strict=True):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert resumed[0]["spectrogram"].shape[:2] == (2, 2)


def test_a_resumed_experiment_reads_the_batches_it_would_have(dataset):
  from experiments import ali_lsgan
  from song2vec import experiment

  config = ali_lsgan.get_config("cpu")
  config.train.batch_size = 4
  config.train.num_devices = 1
  make_batches = experiment.make_batch_fn(config, dataset)
  whole = _take(make_batches(0), 10)
  for a, b in zip(whole[7:], _take(make_batches(7), 3), strict=True):
    np.testing.assert_array_equal(a["spectrogram"], b["spectrogram"])


@pytest.mark.parametrize("centering, axes", [("level", (-2, -1)), ("bins", (-1,))])
def test_centred_batches_are_the_plain_ones_less_what_the_centering_names(dataset, centering, axes):
  from experiments import ali_lsgan
  from song2vec import experiment

  plain = next(input_pipeline.train_iterator(dataset, 4, keys=_KEYS))["spectrogram"]
  centred = next(input_pipeline.train_iterator(dataset, 4, keys=_KEYS, centering=centering))
  centred = centred["spectrogram"]
  np.testing.assert_allclose(centred, input_pipeline.center(plain, centering), atol=1e-5)
  assert np.abs(centred.mean(axis=axes)).max() < 1e-5
  assert np.abs(plain.mean(axis=axes)).max() > 0.05  # The plain batch had levels to remove.
  # The experiment centres its training batches and its diagnostic segments alike.
  config = ali_lsgan.get_config("cpu")
  config.train.batch_size = 4
  config.train.num_devices = 1
  config.model.input_centering = centering
  np.testing.assert_array_equal(
    next(experiment.make_batch_fn(config, dataset)(0))["spectrogram"], centred
  )
  diag = experiment.diagnostic_segments(config, dataset)
  assert np.abs(diag.mean(axis=axes)).max() < 1e-5


def test_start_batch_without_repeat_yields_the_rest_of_the_pass(dataset):
  n = input_pipeline.load_info(dataset).num_examples["train"]
  whole = list(input_pipeline.train_iterator(dataset, 4, keys=_KEYS, repeat=False))
  rest = list(input_pipeline.train_iterator(dataset, 4, keys=_KEYS, repeat=False, start_batch=2))
  assert len(whole) == n // 4 and _stream(rest) == _stream(whole[2:])
  past = input_pipeline.train_iterator(dataset, 4, repeat=False, start_batch=n // 4 + 1)
  assert list(past) == []
  with pytest.raises(ValueError, match="start_batch"):
    next(input_pipeline.train_iterator(dataset, 4, start_batch=-1))


def test_shards_are_split_between_processes_without_overlap(dataset):
  every = input_pipeline.shard_files(dataset, "train", 0, 1)
  parts = [input_pipeline.shard_files(dataset, "train", i, 2) for i in range(2)]
  assert sorted(parts[0] + parts[1]) == every and not set(parts[0]) & set(parts[1])
  with pytest.raises(FileNotFoundError, match="shard"):
    input_pipeline.shard_files(dataset, "train", 0, len(every) + 1)
  # Each process counts only its own files' examples towards an epoch.
  per_process = [input_pipeline.examples_per_epoch(dataset, "train", part) for part in parts]
  assert sum(per_process) == input_pipeline.load_info(dataset).num_examples["train"]


def test_missing_dataset_says_how_to_build_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m data_prep"):
    input_pipeline.load_info(str(tmp_path))


def test_tensorflow_sees_no_gpu():
  import tensorflow as tf

  assert tf.config.get_visible_devices("GPU") == []


def test_song_pairs_put_two_segments_of_one_song_side_by_side(dataset):
  segments = collections.Counter(ex["song_id"] for ex in read_split(dataset, "train"))
  per_epoch = sum(n // 2 for n in segments.values())  # A song's odd last segment is not read.
  assert any(n % 2 for n in segments.values())  # So the test sees one dropped.
  it = input_pipeline.train_iterator(dataset, 2, seed=5, keys=_KEYS, song_pairs=True)
  stream = _stream(_take(it, 3 * per_epoch))  # Three epochs, a pair per batch.
  pairs = list(zip(stream[0::2], stream[1::2], strict=True))
  assert all(a[0] == b[0] and a[1] != b[1] for a, b in pairs)  # One song, two segments.
  epochs = [pairs[e * per_epoch : (e + 1) * per_epoch] for e in range(3)]
  assert len(set(epochs[0])) == per_epoch and set(epochs[0]) == set(epochs[1]) == set(epochs[2])
  assert epochs[0] != epochs[1]  # Each epoch has its own order of pairs.

  # A resumed run reads the batches an uninterrupted one does.
  def run(start, n):
    it = input_pipeline.train_iterator(
      dataset, 4, seed=5, keys=_KEYS, song_pairs=True, start_batch=start
    )
    return _stream(_take(it, n))

  assert run(7, 2) == run(0, 9)[7 * 4 :]
  with pytest.raises(ValueError, match="even batch"):
    next(input_pipeline.train_iterator(dataset, 6, num_devices=2, song_pairs=True))
  # The experiment reads pairs when, and only when, the term asks for song positives.
  from experiments import ali_lsgan
  from song2vec import experiment

  config = ali_lsgan.get_config("cpu")
  config.train.update(batch_size=4, num_devices=1)
  config.loss.update(contrastive_weight=1.0, contrastive_positives="song")
  paired = input_pipeline.train_iterator(dataset, 4, song_pairs=True, keys=_KEYS)
  np.testing.assert_array_equal(
    next(experiment.make_batch_fn(config, dataset)(0))["spectrogram"], next(paired)["spectrogram"]
  )
  assert experiment.uses_song_pairs(config)
  config.loss.contrastive_weight = 0.0
  assert not experiment.uses_song_pairs(config)
