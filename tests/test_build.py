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
  assert splits["train"]["songs"] + splits["test"]["songs"] == 12
  for label in meta["labels"]:
    assert splits["test"]["songs_per_label"][label] == 1  # round(0.2 * 4)
    assert splits["train"]["examples_per_label"][label] == 3 * 3

  train, test = read_split(out, "train"), read_split(out, "test")
  assert len(train) == splits["train"]["examples"] and len(test) == splits["test"]["examples"]
  train_songs = {ex["song_id"] for ex in train}
  assert train_songs.isdisjoint({ex["song_id"] for ex in test})
  for ex in train + test:
    assert meta["labels"][ex["label"]] == ex["label_name"].decode()

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
  assert ds_builder.info.splits["train"].num_examples == meta["splits"]["train"]["examples"]
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
  assert meta["splits"]["train"]["songs"] + meta["splits"]["test"]["songs"] == 12

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
  splits = builder.split_songs(songs, config.test_fraction, config.split_by, config.seed)
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
  artists = {s: {ex["artist"] for ex in read_split(out, s)} for s in ("train", "test")}
  assert artists["test"] and artists["train"].isdisjoint(artists["test"])
  assert len(artists["test"]) == 2  # One of four artists per genre.


def test_split_is_stratified_and_deterministic():
  from data_prep.sources import Song

  songs = [Song(f"/x/{g}{i}.wav", g, f"{g}{i}") for g in "abc" for i in range(10)]
  one = builder.split_songs(songs, 0.2, "song", seed=3)
  two = builder.split_songs(list(reversed(songs)), 0.2, "song", seed=3)
  assert [s.song_id for s in one["test"]] == [s.song_id for s in two["test"]]
  assert sorted(s.label for s in one["test"]) == ["a"] * 2 + ["b"] * 2 + ["c"] * 2
  other = builder.split_songs(songs, 0.2, "song", seed=4)
  assert {s.song_id for s in other["test"]} != {s.song_id for s in one["test"]}


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
  assert "low" in printed and "total" in printed
  with open(out / writer.METADATA_FILE) as f:
    assert json.load(f)["features"]["segments_per_song"] == 2
  assert cli.main(["--source=folder", f"--path={tmp_path / 'missing'}"]) == 2
  assert "not a folder" in capsys.readouterr().err
  assert cli.main(["--source=csv"]) == 2
  assert "needs a path" in capsys.readouterr().err
