"""Where songs come from: a folder per genre, a CSV manifest, or FMA's metadata.

Each reader returns `(songs, skipped)`: the usable entries, and a `Skipped` for
every entry that could not even be listed (missing field, duplicate, unknown
extension), so that nothing disappears without a line saying why. Whether the
audio itself decodes is checked later, by the worker that processes it.
"""

from __future__ import annotations

import csv
import dataclasses
import os

from data_prep.audio import AUDIO_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class Song:
  path: str
  label: str
  song_id: str
  artist: str = ""
  album: str = ""
  year: int = -1  # -1: unknown.


@dataclasses.dataclass(frozen=True)
class Skipped:
  item: str  # The file, row or piece.
  reason: str

  def __str__(self) -> str:
    return f"skipped {self.item}: {self.reason}"


class SourceError(Exception):
  """The source as a whole is unusable (missing folder, unreadable CSV)."""


def _dedupe(songs: list[Song], skipped: list[Skipped], where: dict[int, str]) -> list[Song]:
  """Drops repeated paths and song ids, keeping the first occurrence."""
  seen_path: dict[str, str] = {}
  seen_id: dict[str, str] = {}
  out = []
  for i, song in enumerate(songs):
    key = os.path.realpath(song.path)
    if key in seen_path:
      skipped.append(Skipped(where[i], f"duplicate of {seen_path[key]} (same file)"))
    elif song.song_id in seen_id:
      skipped.append(
        Skipped(where[i], f"duplicate song_id {song.song_id!r} (first at {seen_id[song.song_id]})")
      )
    else:
      seen_path[key] = seen_id[song.song_id] = where[i]
      out.append(song)
  return out


def from_folder(root: str) -> tuple[list[Song], list[Skipped]]:
  """Reads the GTZAN layout: root/<genre>/**/<file>.{mp3,wav,flac,ogg,au}.

  The genre is the first-level folder; song_id is the path below root without
  its extension. Files at the top level or with other extensions are listed as
  skipped.
  """
  if not os.path.isdir(root):
    raise SourceError(f"{root}: not a folder")
  songs, skipped, where = [], [], {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    rel_dir = os.path.relpath(dirpath, root)
    for name in sorted(filenames):
      path = os.path.join(dirpath, name)
      rel = os.path.normpath(os.path.join(rel_dir, name))
      if name.startswith("."):
        continue
      if rel_dir == ".":
        skipped.append(Skipped(path, "not inside a genre folder"))
      elif not name.lower().endswith(AUDIO_EXTENSIONS):
        skipped.append(Skipped(path, f"not an audio extension {AUDIO_EXTENSIONS}"))
      else:
        label = rel.split(os.sep)[0]
        where[len(songs)] = path
        songs.append(Song(path=path, label=label, song_id=os.path.splitext(rel)[0]))
  if not songs and not skipped:
    raise SourceError(f"{root}: no genre folders with audio files")
  return _dedupe(songs, skipped, where), skipped


def _parse_year(text: str) -> int:
  text = text.strip()
  if not text:
    return -1
  year = int(text[:4]) if len(text) >= 4 and text[:4].isdigit() else int(text)
  return year


def from_csv(csv_path: str) -> tuple[list[Song], list[Skipped]]:
  """Reads a manifest with columns path, genre and optional song_id, artist, album, year.

  Relative paths are relative to the CSV's folder; song_id defaults to the path.
  """
  if not os.path.isfile(csv_path):
    raise SourceError(f"{csv_path}: no such CSV file")
  base = os.path.dirname(os.path.abspath(csv_path))
  songs, skipped, where = [], [], {}
  with open(csv_path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = {"path", "genre"} - set(columns)
    if missing:
      raise SourceError(f"{csv_path}: missing column(s) {sorted(missing)}; has {columns}")
    for row_number, raw in enumerate(reader, start=2):
      row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
      item = f"{csv_path}:{row_number}"
      absent = [c for c in ("path", "genre") if not row.get(c)]
      if absent:
        skipped.append(Skipped(item, f"missing field(s) {absent}"))
        continue
      try:
        year = _parse_year(row.get("year", ""))
      except ValueError:
        skipped.append(Skipped(item, f"year {row['year']!r} is not a number"))
        continue
      path = row["path"] if os.path.isabs(row["path"]) else os.path.join(base, row["path"])
      where[len(songs)] = item
      songs.append(
        Song(
          path=path,
          label=row["genre"],
          song_id=row.get("song_id") or row["path"],
          artist=row.get("artist", ""),
          album=row.get("album", ""),
          year=year,
        )
      )
  if not songs and not skipped:
    raise SourceError(f"{csv_path}: no rows")
  return _dedupe(songs, skipped, where), skipped


FMA_SUBSETS = ("small", "medium", "large", "full")


def from_fma(root: str, subset: str = "small") -> tuple[list[Song], list[Skipped]]:
  """Reads the Free Music Archive layout.

  root/fma_metadata/tracks.csv (two header rows of column names plus a
  `track_id` row, as FMA ships it) and root/fma_<subset>/000/000002.mp3.
  Labels come from ('track', 'genre_top'); tracks of a larger subset than asked
  are left out without a note, as are tracks without a top genre in the
  subsets that do not guarantee one.

  Args:
    root: the folder that holds fma_metadata/ and fma_<subset>/.
    subset: which FMA subset's tracks and audio folder to use.
  """
  if subset not in FMA_SUBSETS:
    raise SourceError(f"fma_subset must be one of {FMA_SUBSETS}, got {subset!r}")
  tracks_csv = os.path.join(root, "fma_metadata", "tracks.csv")
  audio_root = os.path.join(root, f"fma_{subset}")
  if not os.path.isfile(tracks_csv):
    raise SourceError(f"{tracks_csv}: missing (expected the FMA layout under {root})")
  wanted = set(FMA_SUBSETS[: FMA_SUBSETS.index(subset) + 1])
  songs, skipped, where = [], [], {}
  with open(tracks_csv, newline="", encoding="utf-8") as f:
    reader = csv.reader(f)
    try:
      top, sub, id_row = next(reader), next(reader), next(reader)
    except StopIteration:
      raise SourceError(f"{tracks_csv}: fewer than FMA's three header rows") from None
    if not id_row or id_row[0] != "track_id":
      raise SourceError(f"{tracks_csv}: third header row should start with 'track_id'")
    # Multi-row header: ('album', 'title'), ('track', 'genre_top'), ...
    col = {(top[i], sub[i]): i for i in range(1, min(len(top), len(sub)))}
    need = [("track", "genre_top"), ("set", "subset")]
    absent = [c for c in need if c not in col]
    if absent:
      raise SourceError(f"{tracks_csv}: missing column(s) {absent}")

    def get(row, key):
      i = col.get(key)
      return row[i].strip() if i is not None and i < len(row) else ""

    for line, row in enumerate(reader, start=4):
      if not row:
        continue
      item = f"{tracks_csv}:{line}"
      if get(row, ("set", "subset")) not in wanted:
        continue
      try:
        track_id = int(row[0])
      except ValueError:
        skipped.append(Skipped(item, f"track_id {row[0]!r} is not a number"))
        continue
      genre = get(row, ("track", "genre_top"))
      if not genre:
        skipped.append(Skipped(item, f"track {track_id}: no genre_top"))
        continue
      try:
        year = _parse_year(get(row, ("album", "date_released")))
      except ValueError:
        year = -1
      tid = f"{track_id:06d}"
      where[len(songs)] = item
      songs.append(
        Song(
          path=os.path.join(audio_root, tid[:3], tid + ".mp3"),
          label=genre,
          song_id=tid,
          artist=get(row, ("artist", "name")),
          album=get(row, ("album", "title")),
          year=year,
        )
      )
  return _dedupe(songs, skipped, where), skipped
