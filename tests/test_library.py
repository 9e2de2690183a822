"""Libraries: build (incremental), query, map, the notebook API, the ANN index."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_build import make_config
from test_train import tiny_config

from conftest import write_audio
from data_prep import audio, builder
from song2vec import embed, evaluate, input_pipeline, library, maps, neighbors, similar, train
from song2vec import encoder as encoder_lib

GENRES = (("low", 220.0), ("mid", 880.0), ("high", 2200.0))


def write_songs(root, count: int = 4, start: int = 0):
  """count songs per genre, 1 s each, pitches per genre."""
  paths = []
  for g, (genre, freq) in enumerate(GENRES):
    for i in range(start, start + count):
      ext = (".wav", ".flac", ".mp3")[i % 3]
      paths.append(
        write_audio(
          root / genre / f"{genre}{i}{ext}", 1.0, freq=freq * (1 + 0.05 * i), seed=10 * g + i
        )
      )
  return paths


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny dataset and a run trained on it for 3 steps, as launch.py leaves them."""
  tmp = tmp_path_factory.mktemp("run")
  write_songs(tmp / "songs")
  data = tmp / "ds"
  builder.build(make_config(tmp / "songs", data))
  config = tiny_config(num_steps=3, log_every=3)
  config.data.out_dir = str(data)
  workdir = str(tmp / "run")
  info = input_pipeline.load_info(str(data))
  train.train(
    config,
    workdir,
    info.shape,
    lambda s: input_pipeline.train_iterator(str(data), 4, keys=("spectrogram",)),
  )
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort())
  return workdir


@pytest.fixture
def songs(tmp_path):
  root = tmp_path / "music"
  write_songs(root, count=3, start=10)
  return root


def small(**kw):
  return library.LibraryConfig(workers=1, map=False, **kw)


def test_segment_starts_cover_the_song_and_spread_a_cap_over_it():
  assert list(audio.consecutive_offsets(1000, 100, 0)) == list(range(0, 1000, 100))
  assert list(audio.consecutive_offsets(1000, 100, 20)) == list(range(0, 1000, 100))
  assert list(audio.consecutive_offsets(1000, 100, 4)) == [0, 300, 600, 900]
  assert list(audio.consecutive_offsets(50, 100, 4)) == [0]  # Shorter than a segment: padded.


def test_a_library_file_finds_itself_first_and_a_new_file_is_embedded(run, songs, tmp_path):
  out = str(tmp_path / "lib")
  manifest = library.build(run, "folder", str(songs), out, small())
  assert manifest["songs"] == 9 and manifest["embedded_now"] == 9
  lib = library.Library.open(out)
  assert lib.song_embeddings.shape == (9, 8) and lib.song_embeddings.dtype == np.float32
  assert sum(r["segments"] for r in lib.songs) == len(lib.segment_embeddings)
  row = lib.songs[4]
  hits = lib.nearest(row["path"], k=3)
  assert hits[0].id == row["id"] and hits[0].distance == pytest.approx(0.0, abs=1e-5)
  assert [h.id for h in lib.nearest(row["id"], k=3)] == [h.id for h in hits]
  # A copy outside the library is embedded on the fly, with the same features.
  copy = tmp_path / ("copy" + os.path.splitext(row["path"])[1])
  shutil.copy(row["path"], copy)
  vector, how = lib.resolve(str(copy))
  assert how == "embedded now"
  np.testing.assert_allclose(vector, lib.song_embeddings[4], atol=1e-4)
  assert lib.nearest(str(copy), k=1)[0].id == row["id"]
  # The notebook API gives the same vector, from a file and from a waveform.
  enc = encoder_lib.load_encoder(run)
  np.testing.assert_allclose(enc.embed_file(row["path"]), lib.song_embeddings[4], atol=1e-4)
  y = audio.load_audio(row["path"], enc.features.sample_rate)
  np.testing.assert_allclose(enc.embed_audio(y, enc.features.sample_rate), vector, atol=1e-4)
  import song2vec

  assert song2vec.Library is library.Library and song2vec.load_encoder is encoder_lib.load_encoder


def test_queries_that_cannot_be_used_are_named(run, songs, tmp_path, capsys):
  out = str(tmp_path / "lib")
  library.build(run, "folder", str(songs), out, small())
  lib = library.Library.open(out)
  with pytest.raises(library.LibraryError, match="no/such/song: not a song id"):
    lib.nearest("no/such/song")
  corrupt = tmp_path / "corrupt.flac"
  corrupt.write_bytes(b"fLaC" + b"\x00" * 200)
  with pytest.raises(audio.SongError, match=str(corrupt)):
    lib.nearest(str(corrupt))
  assert similar.main([f"--library={out}", f"--query={corrupt}"]) == 2
  assert f"error: {corrupt}" in capsys.readouterr().err
  # Several queries at once, as JSON.
  ids = [lib.songs[0]["id"], lib.songs[5]["id"]]
  assert similar.main([f"--library={out}", f"--query={ids[0]}", f"--query={ids[1]}", "--json"]) == 0
  answer = json.loads(capsys.readouterr().out)
  assert [a["neighbors"][0]["id"] for a in answer] == ids
  assert all(len(a["neighbors"]) == 9 for a in answer)  # k=10 capped at the library's size.
  assert (
    library.main(
      [
        "build",
        f"--workdir={tmp_path / 'nope'}",
        "--source=folder",
        f"--path={songs}",
        f"--out={tmp_path / 'x'}",
      ]
    )
    == 2
  )
  assert "not a launch.py run folder" in capsys.readouterr().err


def test_rebuild_embeds_only_new_and_changed_files_and_refuses_other_settings(
  run, songs, tmp_path, monkeypatch
):
  out = str(tmp_path / "lib")
  library.build(run, "folder", str(songs), out, small())
  first = library.Library.open(out)
  # Two new songs and a corrupt file: only the two are embedded, the corrupt one is listed.
  write_audio(songs / "low" / "new_a.wav", 1.0, freq=300.0, seed=1)
  write_audio(songs / "high" / "new_b.flac", 1.0, freq=2500.0, seed=2)
  (songs / "mid" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
  calls = []
  real = library._song_task
  monkeypatch.setattr(library, "_song_task", lambda args: calls.append(args[0]) or real(args))
  manifest = library.build(run, "folder", str(songs), out, small())
  assert sorted(os.path.basename(p) for p in calls) == ["broken.wav", "new_a.wav", "new_b.flac"]
  assert manifest["embedded_now"] == 2 and manifest["kept"] == 9 and manifest["songs"] == 11
  skipped = open(os.path.join(out, library.SKIPPED)).read()
  assert "broken.wav" in skipped
  second = library.Library.open(out)
  old = {r["id"]: first.song_embeddings[i] for i, r in enumerate(first.songs)}
  for i, r in enumerate(second.songs):
    if r["id"] in old:
      np.testing.assert_array_equal(second.song_embeddings[i], old[r["id"]])
  # Another segment cap is another library: refused unless asked.
  with pytest.raises(library.LibraryError, match="max_segments: library 10, now 3"):
    library.build(run, "folder", str(songs), out, small(max_segments=3))
  calls.clear()
  manifest = library.build(run, "folder", str(songs), out, small(max_segments=3), rebuild=True)
  assert manifest["embedded_now"] == 11 and len(calls) == 12


def test_an_interrupted_write_leaves_no_finished_library(run, songs, tmp_path, monkeypatch):
  out = str(tmp_path / "lib")
  library.build(run, "folder", str(songs), out, small())
  write_audio(songs / "low" / "extra.wav", 1.0, freq=330.0, seed=3)

  def fail(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(library, "_write_csv", fail)
  with pytest.raises(OSError, match="disk full"):
    library.build(run, "folder", str(songs), out, small())
  # The old library is still whole (nothing was replaced before the failure).
  assert len(library.Library.open(out)) == 9
  monkeypatch.undo()
  monkeypatch.setattr(library.os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    library.build(run, "folder", str(songs), out, small())
  with pytest.raises(library.LibraryError, match="not a finished library"):
    library.Library.open(out)


def test_hnsw_index_agrees_with_exact_search():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((3000, 16)).astype(np.float32)
  q = rng.standard_normal((200, 16)).astype(np.float32)
  exact_d, exact_i = neighbors.ExactIndex(x).search(q, 10)
  hnsw_d, hnsw_i = neighbors.HnswIndex.build(x, 32, 128, 128).search(q, 10)
  recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_i, hnsw_i, strict=True)])
  assert recall >= 0.95
  same = exact_i[:, 0] == hnsw_i[:, 0]
  np.testing.assert_allclose(exact_d[same, 0], hnsw_d[same, 0], rtol=1e-4)


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_library_knn_precision_is_the_evaluations(run, songs, tmp_path, index):
  out = str(tmp_path / "lib")
  library.build(run, "folder", str(songs), out, small(index=index))
  lib = library.Library.open(out)
  assert lib.manifest["index"]["kind"] == index
  assert os.path.exists(os.path.join(out, library.INDEX)) == (index == "hnsw")
  # The evaluation's song level: segment embeddings standardised with the run's
  # train statistics, averaged per song, kNN with the song as its own group.
  seg = lib.standardize(np.asarray(lib.segment_embeddings))
  ids = np.repeat([r["id"] for r in lib.songs], [r["segments"] for r in lib.songs])
  labels = np.repeat(lib.labels, [r["segments"] for r in lib.songs])
  song_emb, song_labels, song_ids = embed.song_means(seg, ids, labels)
  expected = evaluate.knn_precision(song_emb, song_labels, song_ids, k=3)
  assert lib.label_precision(k=3) == pytest.approx(expected)
  # The standardisation is the run's train split's, as the evaluation's is.
  assert "train split" in lib.manifest["standardization"]["computed_on"]


def test_map_draws_every_song_and_marks_queries(run, songs, tmp_path):
  out = str(tmp_path / "lib")
  library.build(run, "folder", str(songs), out, small())
  lib = library.Library.open(out)
  assert library.main(["map", f"--library={out}", f"--query={lib.songs[0]['id']}"]) == 0
  html = open(os.path.join(out, "map.html")).read()
  # Plotly's JSON writes "/" as "\\/": look for each id's last part.
  assert all(r["id"].split("/")[-1] in html for r in lib.songs) and "query: " in html
  assert os.path.getsize(os.path.join(out, "map.png")) > 10_000
  browser = maps.find_browser()
  if browser is None or importlib.util.find_spec("playwright") is None:
    pytest.skip("no headless browser or no playwright (README: Find similar songs, the map)")
  # In its own process: playwright's event loop must not meet the tests'.
  result = subprocess.run(
    [sys.executable, "-m", "song2vec.maps", os.path.join(out, "map.html"), f"--browser={browser}"],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"{len(lib.songs) + 1} points" in result.stdout
  assert any(f"hover shows {r['id']}" in result.stdout for r in lib.songs)
