"""End-to-end dataset builds on small generated sources."""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, write_audio
from data_prep import __main__ as cli
from data_prep import audio, builder, writer
from data_prep.config import BuildConfig, FeatureConfig


def make_config(path, out_dir, **kwargs) -> BuildConfig:
  defaults = dict(
    source="folder",
    path=str(path),
    out_dir=str(out_dir),
    workers=1,
    examples_per_shard=6,
    features=TINY,
  )
  defaults.update(kwargs)
  return BuildConfig(**defaults)


def read_split(out_dir, split):
  files = sorted(glob.glob(os.path.join(out_dir, writer.shard_pattern(split))))
  spec = writer.parse_spec()
  out = []
  for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
    ex = tf.io.parse_single_example(record, spec)
    out.append({k: v.numpy() for k, v in ex.items()})
  return out


def test_folder_build_end_to_end(genre_tree, tmp_path, capsys):
  bad = genre_tree / "mid"
  (bad / "empty.wav").write_bytes(b"")
  (bad / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(2000))
  write_audio(bad / "silent.wav", data=np.zeros((16000, 1), np.float32))
  out = tmp_path / "ds"
  meta = builder.build(make_config(genre_tree, out))

  assert meta["labels"] == ["high", "low", "mid"]
  assert meta["features"]["shape"] == [65, 25]
  skipped = {os.path.basename(s["item"]): s["reason"] for s in meta["skipped"]}
  assert skipped["empty.wav"].startswith("empty file")
  assert skipped["corrupt.flac"].startswith("cannot decode")
  assert skipped["silent.wav"].startswith("silent")
  console = capsys.readouterr().err.splitlines()
  for name, reason in skipped.items():
    assert any(name in line and reason in line for line in console), name
  splits = meta["splits"]
  assert sum(splits[s]["songs"] for s in builder.SPLITS) == 12
  assert meta["split"]["validation_fraction"] == 0.1
  for label in meta["labels"]:
    assert splits["test"]["songs_per_label"][label] == 1  # round(0.2 * 4)
    # The 3 other songs of the label that decode are in train or validation.
    kept = [splits[s]["examples_per_label"][label] for s in ("train", "validation")]
    assert sum(kept) == 3 * 3
  for label in ("high", "low"):  # 4 songs: at least one group in each split.
    assert splits["validation"]["songs_per_label"][label] == 1

  read = {s: read_split(out, s) for s in builder.SPLITS}
  songs = {s: {ex["song_id"] for ex in read[s]} for s in builder.SPLITS}
  for s in builder.SPLITS:
    assert len(read[s]) == splits[s]["examples"] and len(songs[s]) == splits[s]["songs"]
  assert songs["train"].isdisjoint(songs["test"])
  assert songs["validation"].isdisjoint(songs["train"] | songs["test"])
  train = read["train"]
  for ex in train + read["validation"] + read["test"]:
    assert meta["labels"][ex["label"]] == ex["label_name"].decode()

  # Normalisation statistics are the train split's alone.
  x = np.stack([np.frombuffer(ex["spectrogram"], np.float32).reshape(65, 25) for ex in train])
  np.testing.assert_allclose(
    meta["normalization"]["mean"], x.mean(axis=(0, 2)), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(meta["normalization"]["std"], x.std(axis=(0, 2)), rtol=1e-4, atol=1e-4)

  # One song's stored segments are exactly what process_song computes.
  ex = train[0]
  song_id = ex["song_id"].decode()
  path = glob.glob(os.path.join(genre_tree, song_id + ".*"))[0]
  want = audio.process_song(path, song_id, TINY, seed=0).spectrograms[ex["segment"]]
  np.testing.assert_array_equal(np.frombuffer(ex["spectrogram"], np.float32).reshape(65, 25), want)

  assert not os.path.exists(out / writer.INCOMPLETE_DIR)
  assert meta["versions"]["librosa"] and meta["source"]["type"] == "folder"


def test_builder_from_directory_loads_the_dataset(genre_tree, tmp_path):
  import tensorflow_datasets as tfds

  out = tmp_path / "ds"
  meta = builder.build(make_config(genre_tree, out))
  ds_builder = tfds.builder_from_directory(str(out))
  for split in builder.SPLITS:
    assert ds_builder.info.splits[split].num_examples == meta["splits"][split]["examples"]
  assert (
    len(list(ds_builder.as_dataset(split="validation"))) == meta["splits"]["validation"]["examples"]
  )
  example = next(iter(tfds.as_numpy(ds_builder.as_dataset(split="test"))))
  assert example["spectrogram"].shape == (65, 25)
  assert example["spectrogram"].dtype == np.float32
  assert example["year"] == -1


def test_every_input_bad_fails_clearly(tmp_path):
  root = tmp_path / "genres"
  (root / "rock").mkdir(parents=True)
  (root / "rock" / "a.wav").write_bytes(b"")
  (root / "rock" / "b.mp3").write_text("not audio")
  with pytest.raises(builder.BuildError, match="every input was skipped"):
    builder.build(make_config(root, tmp_path / "ds"))


def test_source_with_no_usable_entries_fails_clearly(tmp_path):
  root = tmp_path / "genres"
  (root / "rock").mkdir(parents=True)
  (root / "rock" / "notes.txt").write_text("x")
  with pytest.raises(builder.BuildError, match="no usable songs"):
    builder.build(make_config(root, tmp_path / "ds"))


def _shard_bytes(out_dir):
  return {
    os.path.basename(p): open(p, "rb").read()
    for p in glob.glob(os.path.join(out_dir, "song2vec-*.tfrecord-*"))
  }


def test_resume_redoes_only_missing_shards_and_gives_identical_output(
  genre_tree, tmp_path, monkeypatch
):
  out = tmp_path / "ds"
  config = make_config(genre_tree, out)
  builder.build(config)
  before = _shard_bytes(out)
  assert len(before) >= 3
  victim = sorted(before)[1]
  os.remove(out / victim)

  calls = []
  real = audio.process_song
  monkeypatch.setattr(audio, "process_song", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
  meta = builder.build(config)
  assert _shard_bytes(out) == before
  songs_in_victim = len(read_split_file(out / victim)) // 3
  assert len(calls) == songs_in_victim
  assert sum(meta["splits"][s]["songs"] for s in builder.SPLITS) == 12

  # A third run finds everything done and processes nothing.
  calls.clear()
  builder.build(config)
  assert calls == []


def read_split_file(path):
  return list(tf.data.TFRecordDataset([str(path)]).as_numpy_iterator())


def test_interrupted_build_leaves_no_finished_looking_shard(genre_tree, tmp_path, monkeypatch):
  out = tmp_path / "ds"
  config = make_config(genre_tree, out)
  real = audio.process_song
  calls = []

  def dies_on_fourth(*args, **kwargs):
    calls.append(1)
    if len(calls) == 4:
      raise KeyboardInterrupt
    return real(*args, **kwargs)

  monkeypatch.setattr(audio, "process_song", dies_on_fourth)
  with pytest.raises(KeyboardInterrupt):
    builder.build(config)
  finished = glob.glob(os.path.join(out, "song2vec-*"))
  # Two songs per shard (6 examples / 3 segments): only the first shard is done.
  assert [os.path.basename(p) for p in finished] == [
    writer.shard_name("train", 0, len(_plan_count(config)))
  ]
  assert not os.listdir(out / writer.INCOMPLETE_DIR)
  assert not os.path.exists(out / writer.METADATA_FILE)

  monkeypatch.setattr(audio, "process_song", real)
  meta = builder.build(config)
  fresh = tmp_path / "fresh"
  builder.build(dataclasses.replace(config, out_dir=str(fresh)))
  assert _shard_bytes(out) == _shard_bytes(fresh)
  assert meta["splits"]["train"]["examples"] > 0


def _plan_count(config):
  songs, _, _ = builder.gather_songs(config, 1)
  splits = builder.split_songs(
    songs,
    config.test_fraction,
    config.split_by,
    config.seed,
    validation_fraction=config.validation_fraction,
  )
  return [
    p
    for p in builder.plan_shards(splits, config.features, config.examples_per_shard)
    if p[0] == "train"
  ]


def test_other_settings_in_the_same_folder_are_refused_unless_overwrite(genre_tree, tmp_path):
  out = tmp_path / "ds"
  builder.build(make_config(genre_tree, out))
  other = dataclasses.replace(TINY, n_mels=16)
  with pytest.raises(builder.BuildError, match=r"settings differ in \['features'\]"):
    builder.build(make_config(genre_tree, out, features=other))
  meta = builder.build(make_config(genre_tree, out, features=other, overwrite=True))
  assert meta["features"]["shape"] == [16, 25]
  assert meta["features"]["frontend"] == "mel"


def test_split_by_artist_keeps_each_artist_on_one_side(tmp_path):
  rows = []
  for genre, base in [("a", 300.0), ("b", 1200.0)]:
    for artist in range(4):
      for song in range(3):
        name = f"{genre}{artist}{song}.wav"
        write_audio(tmp_path / name, freq=base + 50 * artist + 10 * song, seed=artist * 10 + song)
        rows.append(f"{name},{genre},,{genre}-artist{artist},,")
  (tmp_path / "m.csv").write_text("path,genre,song_id,artist,album,year\n" + "\n".join(rows) + "\n")
  out = tmp_path / "ds"
  builder.build(make_config(tmp_path / "m.csv", out, source="csv", split_by="artist"))
  artists = {s: {ex["artist"] for ex in read_split(out, s)} for s in builder.SPLITS}
  assert artists["train"].isdisjoint(artists["test"] | artists["validation"])
  assert artists["validation"].isdisjoint(artists["test"])
  assert len(artists["test"]) == 2  # One of four artists per genre: round(0.2 * 12) songs.
  assert len(artists["validation"]) == 2  # Another one: round(0.1 * 12) songs.
  assert len(artists["train"]) == 4


def test_split_is_stratified_and_deterministic():
  from data_prep.sources import Song

  songs = [Song(f"/x/{g}{i}.wav", g, f"{g}{i}") for g in "abc" for i in range(10)]
  one = builder.split_songs(songs, 0.2, "song", seed=3)
  two = builder.split_songs(list(reversed(songs)), 0.2, "song", seed=3)
  assert [s.song_id for s in one["test"]] == [s.song_id for s in two["test"]]
  assert sorted(s.label for s in one["test"]) == ["a"] * 2 + ["b"] * 2 + ["c"] * 2
  other = builder.split_songs(songs, 0.2, "song", seed=4)
  assert {s.song_id for s in other["test"]} != {s.song_id for s in one["test"]}

  one = builder.split_songs(songs, 0.2, "song", seed=3, validation_fraction=0.1)
  two = builder.split_songs(list(reversed(songs)), 0.2, "song", seed=3, validation_fraction=0.1)
  for split in builder.SPLITS:
    assert [s.song_id for s in one[split]] == [s.song_id for s in two[split]]
  assert sorted(s.label for s in one["validation"]) == ["a", "b", "c"]


def _songs_with_groups(seed: int):
  """Songs of 4 labels with uneven artists and albums, some without either."""
  from data_prep.sources import Song

  rng = np.random.default_rng(seed)
  songs = []
  for label, n in [("a", 2), ("b", 3), ("c", 17), ("d", 40)]:
    for i in range(n):
      artist = f"{label}-artist{rng.integers(0, 1 + n // 3)}" if rng.random() < 0.8 else ""
      album = f"{artist}-album{rng.integers(0, 2)}" if artist else ""
      songs.append(Song(f"/x/{label}{i}.wav", label, f"{label}{i}", artist=artist, album=album))
  return songs


@pytest.mark.parametrize("split_by", ["song", "artist", "album"])
def test_three_splits_are_disjoint_whole_groups_covering_every_song(split_by):
  for seed in range(5):
    songs = _songs_with_groups(seed)
    splits = builder.split_songs(songs, 0.2, split_by, seed, validation_fraction=0.2)
    ids = [s.song_id for split in builder.SPLITS for s in splits[split]]
    assert sorted(ids) == sorted(s.song_id for s in songs)  # Disjoint and complete.

    def group(song):
      value = getattr(song, split_by) if split_by != "song" else ""
      return value or song.song_id

    side = {}
    for split in builder.SPLITS:
      for song in splits[split]:
        assert side.setdefault(group(song), split) == split, group(song)
    for label in "abcd":
      groups = {group(s) for s in songs if s.label == label}
      per_split = {
        split: {group(s) for s in splits[split] if s.label == label} for split in builder.SPLITS
      }
      assert per_split["train"]  # Train is never emptied.
      if len(groups) - len(per_split["test"]) >= 2:  # Test left room for validation.
        assert per_split["validation"]
      if len(groups) >= 2:
        assert per_split["test"]


@pytest.mark.parametrize("split_by", ["song", "artist"])
def test_validation_split_never_changes_the_test_split(split_by):
  for seed in range(5):
    songs = _songs_with_groups(seed)
    tests = []
    for fraction in (0.0, 0.1, 0.2):
      splits = builder.split_songs(songs, 0.2, split_by, seed, validation_fraction=fraction)
      tests.append([s.song_id for s in splits["test"]])
    assert tests[0] == tests[1] == tests[2]
    none = builder.split_songs(songs, 0.2, split_by, seed)
    assert none["validation"] == [] and [s.song_id for s in none["test"]] == tests[0]
    some = builder.split_songs(songs, 0.2, split_by, seed, validation_fraction=0.2)
    d = sum(s.label == "d" for s in some["validation"])
    assert abs(d - 0.2 * 40) <= 6  # Per label, near its target.


def test_no_validation_split_builds_and_reading_it_says_how_to_get_one(genre_tree, tmp_path):
  import tensorflow_datasets as tfds

  from song2vec import input_pipeline

  none = builder.build(make_config(genre_tree, tmp_path / "none", validation_fraction=0.0))
  some = builder.build(make_config(genre_tree, tmp_path / "some", validation_fraction=0.2))
  assert none["splits"]["validation"]["songs"] == 0
  assert none["splits"]["validation"]["shards"] == 0
  assert some["splits"]["validation"]["songs"] == 3
  assert not glob.glob(os.path.join(tmp_path / "none", writer.shard_pattern("validation")))
  test_songs = {
    name: sorted(ex["song_id"] for ex in read_split(tmp_path / name, "test"))
    for name in ("none", "some")
  }
  assert test_songs["none"] == test_songs["some"]
  assert none["splits"]["test"]["songs_per_label"] == some["splits"]["test"]["songs_per_label"]

  ds_builder = tfds.builder_from_directory(str(tmp_path / "none"))
  assert set(ds_builder.info.splits) == {"train", "test"}
  assert "val songs" in builder.summary(none, str(tmp_path / "none"))
  with pytest.raises(FileNotFoundError, match=r"'validation'.*--validation_fraction > 0"):
    next(input_pipeline.eval_iterator(str(tmp_path / "none"), batch_size=4, split="validation"))


def test_split_fractions_are_validated(tmp_path):
  for bad in (-0.1, 1.0):
    with pytest.raises(ValueError, match="validation_fraction must be in"):
      make_config(tmp_path, tmp_path / "ds", validation_fraction=bad)
  with pytest.raises(ValueError, match="test_fraction \\+ validation_fraction must be < 1"):
    make_config(tmp_path, tmp_path / "ds", test_fraction=0.5, validation_fraction=0.5)
  assert make_config(tmp_path, tmp_path / "ds", validation_fraction=0.0).validation_fraction == 0


def test_cli_help_documents_every_flag():
  text = cli.make_parser().format_help()
  for cls in (BuildConfig, FeatureConfig, builder.corpus.CorpusConfig):
    for field in dataclasses.fields(cls):
      if field.name not in ("features", "corpus"):
        assert f"--{field.name}" in text


def test_cli_builds_and_reports_errors(genre_tree, tmp_path, capsys):
  out = tmp_path / "ds"
  args = ["--source=folder", f"--path={genre_tree}", f"--out_dir={out}", "--workers=1"]
  args += [
    "--sample_rate=8000",
    "--n_fft=128",
    "--hop_length=64",
    "--segment_seconds=0.2",
    "--segments_per_song=2",
  ]
  assert cli.main(args) == 0
  printed = capsys.readouterr().out
  assert "low" in printed and "total" in printed and "val songs  val segs" in printed
  with open(out / writer.METADATA_FILE) as f:
    assert json.load(f)["features"]["segments_per_song"] == 2
  assert cli.main(["--source=folder", f"--path={tmp_path / 'missing'}"]) == 2
  assert "not a folder" in capsys.readouterr().err
  assert cli.main(["--source=csv"]) == 2
  assert "needs a path" in capsys.readouterr().err


def test_beam_build_writes_the_same_dataset_as_the_multiprocessing_build(genre_tree, tmp_path):
  from data_prep import beam_builder

  (genre_tree / "mid" / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(2000))
  mp = builder.build(make_config(genre_tree, tmp_path / "mp"))
  beam = beam_builder.build(make_config(genre_tree, tmp_path / "beam"), "direct")
  for key in ("labels", "splits", "features", "split"):
    assert beam[key] == mp[key], key
  assert beam["skipped"] == mp["skipped"] and any(
    "corrupt.flac" in s["item"] for s in mp["skipped"]
  )
  for stat in ("mean", "std"):
    np.testing.assert_allclose(
      beam["normalization"][stat], mp["normalization"][stat], rtol=1e-9, atol=1e-12
    )
  for split in builder.SPLITS:
    names = sorted(os.listdir(tmp_path / "mp"))
    assert sorted(os.listdir(tmp_path / "beam")) == names
    a, b = read_split(tmp_path / "mp", split), read_split(tmp_path / "beam", split)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):  # Same songs, segments, labels and values, in order.
      assert x.keys() == y.keys()
      for k in x:
        assert x[k] == y[k], (split, k)
  # TFDS reads the Beam build as it reads the other.
  import tensorflow_datasets as tfds

  ds = tfds.builder_from_directory(str(tmp_path / "beam")).as_dataset(split="train")
  assert sum(1 for _ in ds) == beam["splits"]["train"]["examples"]


def test_a_failed_shard_raises_its_own_error_even_when_its_partial_file_is_gone(tmp_path):
  with pytest.raises(RuntimeError, match="worker failed"):
    with writer.atomic_shard(str(tmp_path), "song2vec-train.tfrecord-00000-of-00001"):
      os.remove(tmp_path / writer.INCOMPLETE_DIR / "song2vec-train.tfrecord-00000-of-00001")
      raise RuntimeError("worker failed")
  assert not os.path.exists(tmp_path / "song2vec-train.tfrecord-00000-of-00001")
