"""Song listings from a genre folder, a CSV manifest and the FMA layout."""

from __future__ import annotations

import csv
import os

import pytest

from conftest import write_audio
from data_prep import sources


def test_folder_labels_come_from_first_level_folders(genre_tree):
  write_audio(genre_tree / "low" / "nested" / "deep.au")
  (genre_tree / "low" / "notes.txt").write_text("liner notes")
  write_audio(genre_tree / "loose.wav")
  songs, skipped = sources.from_folder(str(genre_tree))
  assert {s.label for s in songs} == {"low", "mid", "high"}
  assert len(songs) == 13
  deep = [s for s in songs if s.song_id == os.path.join("low", "nested", "deep")]
  assert deep and deep[0].label == "low"
  reasons = {os.path.basename(s.item): s.reason for s in skipped}
  assert "not an audio extension" in reasons["notes.txt"]
  assert "not inside a genre folder" in reasons["loose.wav"]


def test_folder_missing_is_a_source_error(tmp_path):
  with pytest.raises(sources.SourceError, match="not a folder"):
    sources.from_folder(str(tmp_path / "nothing"))


def _write_csv(path, rows, header=("path", "genre", "song_id", "artist", "album", "year")):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  return str(path)


def test_csv_manifest_with_optional_fields_missing_fields_and_duplicates(tmp_path):
  a = write_audio(tmp_path / "audio" / "a.wav")
  write_audio(tmp_path / "audio" / "b.flac")
  manifest = _write_csv(
    tmp_path / "songs.csv",
    [
      ["audio/a.wav", "rock", "s1", "Artist A", "Album X", "1999"],
      ["audio/b.flac", "jazz", "", "", "", ""],
      ["", "jazz", "s3", "", "", ""],  # No path.
      ["audio/c.mp3", "", "s4", "", "", ""],  # No genre.
      [a, "rock", "s5", "", "", ""],  # Same file as row 2, absolute path.
      ["audio/d.ogg", "pop", "s1", "", "", ""],  # Repeated song_id.
      ["audio/e.ogg", "pop", "s6", "", "", "nineteen"],
    ],
  )
  songs, skipped = sources.from_csv(manifest)
  assert [s.song_id for s in songs] == ["s1", "audio/b.flac"]
  first = songs[0]
  assert (first.artist, first.album, first.year) == ("Artist A", "Album X", 1999)
  assert first.path == os.path.join(str(tmp_path), "audio/a.wav")
  assert songs[1].year == -1
  by_row = {s.item.rsplit(":", 1)[1]: s.reason for s in skipped}
  assert "missing field(s) ['path']" in by_row["4"]
  assert "missing field(s) ['genre']" in by_row["5"]
  assert "duplicate of" in by_row["6"] and "same file" in by_row["6"]
  assert "duplicate song_id 's1'" in by_row["7"]
  assert "not a number" in by_row["8"]


def test_csv_without_required_columns_is_a_source_error(tmp_path):
  manifest = _write_csv(tmp_path / "bad.csv", [["x.wav"]], header=("file",))
  with pytest.raises(sources.SourceError, match="missing column"):
    sources.from_csv(manifest)


def write_fma(root, tracks):
  """Writes an FMA-style tracks.csv (two header rows + track_id row) and mp3s.

  Args:
    tracks: (track_id, genre_top, subset, artist, album, date_released, write_audio).
  """
  meta = os.path.join(root, "fma_metadata")
  os.makedirs(meta, exist_ok=True)
  columns = [
    ("album", "date_released"),
    ("album", "title"),
    ("artist", "name"),
    ("set", "split"),
    ("set", "subset"),
    ("track", "genre_top"),
    ("track", "title"),
  ]
  with open(os.path.join(meta, "tracks.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([""] + [c[0] for c in columns])
    w.writerow([""] + [c[1] for c in columns])
    w.writerow(["track_id"] + [""] * len(columns))
    for tid, genre, subset, artist, album, date, audio in tracks:
      w.writerow([tid, date, album, artist, "training", subset, genre, f"t{tid}"])
      if audio:
        name = f"{tid:06d}"
        write_audio(os.path.join(root, "fma_small", name[:3], name + ".mp3"), freq=300 + tid)
  return str(root)


def test_fma_layout_uses_genre_top_and_the_subset(tmp_path):
  root = write_fma(
    tmp_path / "fma",
    [
      (2, "Hip-Hop", "small", "AWOL", "AWOL - A Way Of Life", "2009-01-05 00:00:00", True),
      (5, "Rock", "small", "Other", "Album", "", True),
      (1400, "Folk", "medium", "M", "M", "2010", False),  # Not in small.
      (7, "", "small", "NoGenre", "A", "", True),
    ],
  )
  songs, skipped = sources.from_fma(root, "small")
  assert [(s.song_id, s.label) for s in songs] == [("000002", "Hip-Hop"), ("000005", "Rock")]
  assert songs[0].path.endswith(os.path.join("fma_small", "000", "000002.mp3"))
  assert (songs[0].artist, songs[0].album, songs[0].year) == ("AWOL", "AWOL - A Way Of Life", 2009)
  assert len(skipped) == 1 and "no genre_top" in skipped[0].reason
  medium, _ = sources.from_fma(root, "medium")
  assert "001400" in {s.song_id for s in medium}


def test_fma_without_metadata_is_a_source_error(tmp_path):
  with pytest.raises(sources.SourceError, match="tracks.csv"):
    sources.from_fma(str(tmp_path))
