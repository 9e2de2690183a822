r"""A music library embedded by a trained run: build it, then query and map it.

    python -m song2vec.library build --workdir=runs/ali_lsgan --source=folder \
        --path=~/Music --out=runs/ali_lsgan/library
    python -m song2vec.library map --library=runs/ali_lsgan/library --query=song.mp3
    python -m song2vec.similar --library=runs/ali_lsgan/library --query=song.mp3

`build` reads songs through data_prep's sources (folder, csv, fma, music21)
and decoding, computes features with the run's own settings (see
`song2vec.encoder`), embeds each song's consecutive segments with the run's
encoder, and writes the library folder:

  manifest.json            the run, checkpoint step, feature settings, readout,
                           standardisation statistics, index, counts; written
                           last, so a folder without it is not a finished library
  songs.csv                id, path, label, artist, album, year, duration_seconds,
                           segments, first_segment, size_bytes, mtime_ns
  song_embeddings.npy      [songs, dim] float32, the mean of each song's segments
  segment_embeddings.npy   [segments, dim] float32, songs' segments in table order
  skipped.csv              every input left out, with the reason
  index.faiss              the HNSW index, for libraries of hnsw_min_songs or more
  map.png, map.html        the library's map (2-D projection coloured by label)

Embeddings are stored as the encoder gives them; distances are taken after
standardising each dimension with the run's train-split statistics (see
`song2vec.neighbors`). A rebuild over a grown folder embeds only new or
changed files (same id, path, size and modification time are kept); a library
built by another checkpoint, run or feature settings is refused unless
`--rebuild` is given.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence

import numpy as np

from data_prep import audio, builder
from data_prep.config import SOURCES, BuildConfig, build_config_from_dict, json_ready
from data_prep.parallel import ordered_map, resolve_workers
from song2vec import neighbors

FORMAT = "song2vec-library/1"
MANIFEST = "manifest.json"
SONGS = "songs.csv"
SONG_EMB = "song_embeddings.npy"
SEGMENT_EMB = "segment_embeddings.npy"
SKIPPED = "skipped.csv"
INDEX = "index.faiss"
COLUMNS = (
  "id",
  "path",
  "label",
  "artist",
  "album",
  "year",
  "duration_seconds",
  "segments",
  "first_segment",
  "size_bytes",
  "mtime_ns",
)


class LibraryError(Exception):
  """The library cannot be built, opened or queried as asked; the message says why."""


@dataclasses.dataclass(frozen=True)
class LibraryConfig:
  """Every setting of a library build; each is a flag of `build`."""

  max_segments: int = 10  # Segments per song at most, spread over the song (0: all).
  batch_size: int = 256  # Segments per encoder call.
  workers: int = 0  # Decoding processes; 0: one per CPU core.
  # Index: "exact", "hnsw" or "auto" (hnsw from hnsw_min_songs songs). Exact
  # search of 10^5 64-d songs answers in ~1.5 ms at p99 on 2 cores, of 10^6 in
  # ~58 ms (BENCHMARKS.md, bench/ann.py).
  index: str = "auto"
  hnsw_min_songs: int = 100_000
  # faiss HNSW: with these, 10^6 random 64-d vectors (the hardest case) give
  # recall@10 0.962 at 5.9 ms p99 per query on 2 cores; M=32 and
  # ef_construction=128 stayed below 0.95 at ef_search 1024.
  hnsw_m: int = 48  # Graph degree.
  hnsw_ef_construction: int = 200
  hnsw_ef_search: int = 512
  # Train segments the standardisation statistics are computed on.
  standardize_max_segments: int = 4000
  map: bool = True  # Draw map.png and map.html after building.


# ---------------------------------------------------------------------------
# Building.


def _song_task(args):
  """Worker: a song's log-magnitude spectrograms and duration, or the reason it is skipped."""
  path, features, max_segments = args
  try:
    y = audio.load_audio(path, features.sample_rate, features.max_song_seconds)
    specs = audio.consecutive_spectrograms(y, features, max_segments)
  except audio.SongError as e:
    return None, str(e)
  except Exception as e:  # A decoder bug on one file must not stop the build.
    return None, " ".join(f"unexpected {type(e).__name__}: {e}".split())
  return (specs, len(y) / features.sample_rate), None


def _file_stamp(path: str) -> tuple[int, int]:
  try:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
  except OSError:
    return -1, -1


def _compatibility(manifest: dict, encoder, config: LibraryConfig) -> list[str]:
  """What differs between a library's manifest and this build; empty if nothing."""
  ours = {
    "run": encoder.info.workdir,
    "checkpoint_step": encoder.info.step,
    "embedding": encoder.info.embedding,
    "ema": encoder.info.ema,
    "features": json_ready(encoder.info.features),
    "max_segments": config.max_segments,
  }
  return [
    f"{k}: library {manifest.get(k)!r}, now {v!r}" for k, v in ours.items() if manifest.get(k) != v
  ]


def standardization_stats(
  encoder, max_segments: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
  """The per-dimension mean and std of the run's encoder on its train split.

  The evaluation standardises with these (on its own subsample); a library
  does too, so that its distances are the evaluation's.
  """
  from song2vec import embed

  train = embed.load_segments(encoder.dataset_dir, "train", max_examples=max_segments, seed=seed)
  emb = encoder.embed_segments(train.x)
  where = f"train split of {os.path.abspath(encoder.dataset_dir)}, {len(emb)} segments"
  return (*embed.moments(emb), where)


def _read_songs_csv(path: str) -> list[dict]:
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    for key in ("year", "segments", "first_segment", "size_bytes", "mtime_ns"):
      r[key] = int(r[key])
    r["duration_seconds"] = float(r["duration_seconds"])
  return rows


def _write_csv(path: str, rows: Sequence[dict], columns: Sequence[str]) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)


def _source_config(encoder, source: str, path: str, fma_subset: str) -> BuildConfig:
  """data_prep's settings for reading `source` as the run's dataset was read."""
  run_build = build_config_from_dict(encoder.dataset.metadata["build_config"])
  return dataclasses.replace(
    run_build,
    source=source,
    path=path if source != "music21" else "",
    fma_subset=fma_subset,
    out_dir="unused",
    overwrite=False,
  )


def build(
  workdir: str,
  source: str,
  path: str,
  out: str,
  config: LibraryConfig = LibraryConfig(),
  *,
  fma_subset: str = "small",
  rebuild: bool = False,
) -> dict:
  """Builds or updates the library at `out`; returns its manifest.

  Raises:
    LibraryError: the run, the source or an existing library is unusable as
      asked (the message says which and why).
  """
  from song2vec.encoder import Encoder, RunError

  started = time.perf_counter()
  if config.index not in ("auto", *neighbors.INDEX_KINDS):
    raise LibraryError(f"index must be auto, exact or hnsw, got {config.index!r}")
  try:
    encoder = Encoder(workdir, max_segments=config.max_segments, batch_size=config.batch_size)
  except RunError as e:
    raise LibraryError(str(e)) from None
  workers = resolve_workers(config.workers)
  try:
    songs, skipped, _ = builder.gather_songs(
      _source_config(encoder, source, path, fma_subset), workers
    )
  except builder.BuildError as e:
    raise LibraryError(str(e)) from None

  old = None
  manifest_path = os.path.join(out, MANIFEST)
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      old_manifest = json.load(f)
    differs = _compatibility(old_manifest, encoder, config)
    if differs and not rebuild:
      raise LibraryError(
        f"{out} was built with other settings ({'; '.join(differs)}): pass --rebuild to embed "
        "every song again with this run, or choose another --out"
      )
    if not differs:
      old = Library.open(out)
  elif os.path.isdir(out) and os.listdir(out) and not rebuild:
    stray = sorted(os.listdir(out))
    if set(stray) - {".partial"}:
      raise LibraryError(
        f"{out} exists and is not a finished song2vec library (no {MANIFEST}; holds {stray[:5]}): "
        "pass --rebuild to replace it, or choose another --out"
      )

  # Which songs can keep their embeddings.
  kept: dict[str, tuple[dict, np.ndarray]] = {}
  if old is not None:
    by_id = {r["id"]: i for i, r in enumerate(old.songs)}
    for song in songs:
      i = by_id.get(song.song_id)
      if i is None:
        continue
      r = old.songs[i]
      size, mtime = _file_stamp(song.path)
      if (r["path"], r["size_bytes"], r["mtime_ns"]) == (os.path.abspath(song.path), size, mtime):
        first, n = r["first_segment"], r["segments"]
        kept[song.song_id] = (r, old.segment_embeddings[first : first + n])
  todo = [s for s in songs if s.song_id not in kept]
  print(
    f"library: {len(songs)} songs in the source, {len(kept)} unchanged, {len(todo)} to embed",
    file=sys.stderr,
  )

  # Embed the new and changed songs: workers decode and compute features, this
  # process runs the encoder on batches of segments.
  fresh: dict[str, tuple[dict, np.ndarray]] = {}
  song_skips = []
  pending: list[tuple] = []  # (song, duration, normalised specs)

  def flush():
    if not pending:
      return
    x = np.concatenate([p[2] for p in pending])
    emb = encoder.embed_segments(x)
    start = 0
    for song, duration, specs in pending:
      seg = emb[start : start + len(specs)]
      start += len(specs)
      size, mtime = _file_stamp(song.path)
      row = {
        "id": song.song_id,
        "path": os.path.abspath(song.path),
        "label": song.label,
        "artist": song.artist,
        "album": song.album,
        "year": song.year,
        "duration_seconds": round(duration, 3),
        "segments": len(seg),
        "size_bytes": size,
        "mtime_ns": mtime,
      }
      fresh[song.song_id] = (row, seg)
    pending.clear()

  embed_start = time.perf_counter()
  tasks = [(s.path, encoder.features, config.max_segments) for s in todo]
  results = ordered_map(
    _song_task,
    tasks,
    workers=workers,
    desc="embedding",
    postfix=lambda r: {"skipped": int(r[1] is not None)},
  )
  try:
    waiting = 0
    for song, (result, error) in zip(todo, results, strict=True):
      if error is not None:
        skip = builder.Skipped(song.path, error)
        print(str(skip), file=sys.stderr)
        song_skips.append(skip)
        continue
      specs, duration = result
      pending.append((song, duration, encoder.normalise(specs)))
      waiting += len(specs)
      if waiting >= config.batch_size:
        flush()
        waiting = 0
    flush()
  finally:
    results.close()
  embed_seconds = time.perf_counter() - embed_start

  # The library, in the source's order.
  rows, segs = [], []
  first = 0
  for song in songs:
    entry = kept.get(song.song_id) or fresh.get(song.song_id)
    if entry is None:
      continue
    row, seg = entry
    row = {**row, "first_segment": first, "segments": len(seg)}
    first += len(seg)
    rows.append(row)
    segs.append(seg)
  if not rows:
    reasons = "; ".join(str(s) for s in (skipped + song_skips)[:3])
    raise LibraryError(
      f"no song could be embedded ({len(skipped) + len(song_skips)} skipped: {reasons})"
    )
  segment_emb = np.concatenate(segs).astype(np.float32)
  song_emb = np.stack([s.mean(axis=0) for s in segs]).astype(np.float32)

  if old is not None:
    mean = np.asarray(old.manifest["standardization"]["mean"])
    std = np.asarray(old.manifest["standardization"]["std"])
    where = old.manifest["standardization"]["computed_on"]
  else:
    try:
      mean, std, where = standardization_stats(encoder, config.standardize_max_segments)
    except (FileNotFoundError, ValueError) as e:
      # The run's dataset shards are gone (only metadata.json is needed to
      # embed): fall back to the library's own segments, and say so.
      print(f"warning: {e}; standardising with this library's own segments", file=sys.stderr)
      from song2vec import embed

      mean, std = embed.moments(segment_emb)
      where = f"this library's {len(segment_emb)} segments (the run's train split was unreadable)"

  kind = config.index
  if kind == "auto":
    kind = "hnsw" if len(rows) >= config.hnsw_min_songs else "exact"
  skipped_rows = [{"item": s.item, "reason": s.reason} for s in skipped + song_skips]
  manifest = {
    "format": FORMAT,
    "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "run": encoder.info.workdir,
    "checkpoint_step": encoder.info.step,
    "embedding": encoder.info.embedding,
    "ema": encoder.info.ema,
    "dim": encoder.info.dim,
    "features": json_ready(encoder.info.features),
    "max_segments": config.max_segments,
    "source": {"type": source, "path": os.path.abspath(path) if path else ""},
    "songs": len(rows),
    "segments": int(len(segment_emb)),
    "skipped": len(skipped_rows),
    "embedded_now": len(fresh),
    "kept": len(kept),
    "standardization": {
      "computed_on": where,
      "mean": [float(v) for v in mean],
      "std": [float(v) for v in std],
    },
    "distance": "euclidean on embeddings standardised per dimension (song2vec.neighbors)",
    "index": {
      "kind": kind,
      "hnsw_m": config.hnsw_m,
      "hnsw_ef_construction": config.hnsw_ef_construction,
      "hnsw_ef_search": config.hnsw_ef_search,
    },
    "config": dataclasses.asdict(config),
    "seconds": {
      "embedding": round(embed_seconds, 3),  # Decode, features and encoder of the new songs.
      "total": round(time.perf_counter() - started, 3),  # Also loading, statistics, index.
    },
  }
  _write_library(out, manifest, rows, song_emb, segment_emb, skipped_rows, config)
  print(
    f"library: {len(rows)} songs ({len(fresh)} embedded now, {len(kept)} kept), "
    f"{len(skipped_rows)} skipped, written to {out}",
    file=sys.stderr,
  )
  lib = Library.open(out)
  if len(set(lib.labels)) > 1 and len(lib) <= 20_000:  # A quick check, not a benchmark.
    counts = np.unique(lib.labels, return_counts=True)[1]
    chance = float(np.sum(counts * (counts - 1)) / (len(lib) * (len(lib) - 1)))
    print(
      f"label precision@10 (share of each song's 10 nearest with its label): "
      f"{lib.label_precision(10):.3f}, chance {chance:.3f}",
      file=sys.stderr,
    )
  if config.map:
    from song2vec import maps

    png, html = maps.write_map(lib, os.path.join(out, "map"))
    print(f"map: {png}, {html}", file=sys.stderr)
  return manifest


def standardized(emb: np.ndarray, manifest: dict) -> np.ndarray:
  """Embeddings z-scored with a library's standardisation statistics, as the distance sees them."""
  stats = manifest["standardization"]
  mean, std = np.asarray(stats["mean"], np.float64), np.asarray(stats["std"], np.float64)
  return ((np.asarray(emb) - mean) / std).astype(np.float32)


def _write_library(out, manifest, rows, song_emb, segment_emb, skipped_rows, config) -> None:
  """Writes every file into out/.partial, then moves them into place, the manifest last.

  The old manifest is removed before any file is replaced, so an interrupted
  write never leaves a folder that looks finished.
  """
  partial = os.path.join(out, ".partial")
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  np.save(os.path.join(partial, SONG_EMB), song_emb)
  np.save(os.path.join(partial, SEGMENT_EMB), segment_emb)
  _write_csv(os.path.join(partial, SONGS), rows, COLUMNS)
  _write_csv(os.path.join(partial, SKIPPED), skipped_rows, ("item", "reason"))
  files = [SONG_EMB, SEGMENT_EMB, SONGS, SKIPPED]
  if manifest["index"]["kind"] == "hnsw":
    index = neighbors.HnswIndex.build(
      standardized(song_emb, manifest),
      config.hnsw_m,
      config.hnsw_ef_construction,
      config.hnsw_ef_search,
    )
    index.save(os.path.join(partial, INDEX))
    files.append(INDEX)
  with open(os.path.join(partial, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)
  if os.path.exists(os.path.join(out, MANIFEST)):
    os.remove(os.path.join(out, MANIFEST))
  if manifest["index"]["kind"] != "hnsw" and os.path.exists(os.path.join(out, INDEX)):
    os.remove(os.path.join(out, INDEX))
  for name in files:
    os.replace(os.path.join(partial, name), os.path.join(out, name))
  os.replace(os.path.join(partial, MANIFEST), os.path.join(out, MANIFEST))
  shutil.rmtree(partial, ignore_errors=True)


# ---------------------------------------------------------------------------
# Opening and querying.


@dataclasses.dataclass(frozen=True)
class Neighbor:
  rank: int
  id: str
  distance: float
  label: str
  path: str
  artist: str
  album: str


class Library:
  """A built library: its songs, embeddings and index.

  lib = song2vec.Library.open("runs/ali_lsgan/library")
  lib.nearest("bach/bwv66.6", k=10)      # a song id
  lib.nearest("query.mp3")               # a file (embedded on the fly if new)
  lib.nearest(vector)                    # an embedding from Encoder.embed_*
  """

  def __init__(self, path, manifest, songs, song_embeddings, segment_embeddings, index):
    self.path = path
    self.manifest = manifest
    self.songs = songs
    self.song_embeddings = song_embeddings
    self.segment_embeddings = segment_embeddings
    self.index = index
    self._by_id = {r["id"]: i for i, r in enumerate(songs)}
    self._by_path = {os.path.realpath(r["path"]): i for i, r in enumerate(songs)}
    self._encoder = None

  @classmethod
  def open(cls, path: str, ef_search: int | None = None) -> Library:
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.exists(manifest_path):
      raise LibraryError(
        f"{manifest_path} not found: {path} is not a finished library "
        "(build one with python -m song2vec.library build)"
      )
    with open(manifest_path) as f:
      manifest = json.load(f)
    if manifest.get("format") != FORMAT:
      raise LibraryError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    songs = _read_songs_csv(os.path.join(path, SONGS))
    song_emb = np.load(os.path.join(path, SONG_EMB))
    segment_emb = np.load(os.path.join(path, SEGMENT_EMB), mmap_mode="r")
    lib = cls(path, manifest, songs, song_emb, segment_emb, index=None)
    if manifest["index"]["kind"] == "hnsw":
      lib.index = neighbors.HnswIndex.load(
        os.path.join(path, INDEX), ef_search or manifest["index"]["hnsw_ef_search"]
      )
    else:
      lib.index = neighbors.ExactIndex(lib.standardize(song_emb))
    return lib

  def __len__(self) -> int:
    return len(self.songs)

  def standardize(self, emb: np.ndarray) -> np.ndarray:
    """Embeddings as the distance sees them (see `song2vec.neighbors`)."""
    return standardized(emb, self.manifest)

  @property
  def labels(self) -> np.ndarray:
    return np.array([r["label"] for r in self.songs])

  @property
  def encoder(self):
    """The run's encoder, loaded on first use; refuses a run that moved on."""
    if self._encoder is None:
      from song2vec.encoder import Encoder, RunError

      try:
        enc = Encoder(self.manifest["run"], max_segments=self.manifest["max_segments"])
      except RunError as e:
        raise LibraryError(f"cannot embed a new song for {self.path}: {e}") from None
      if enc.info.step != self.manifest["checkpoint_step"]:
        raise LibraryError(
          f"{self.path} was built by checkpoint step {self.manifest['checkpoint_step']} of "
          f"{self.manifest['run']}, which now holds step {enc.info.step}: rebuild the library "
          "(python -m song2vec.library build ... --rebuild) to query it with new songs"
        )
      self._encoder = enc
    return self._encoder

  def resolve(self, query) -> tuple[np.ndarray, str]:
    """A query's (raw embedding, how it was found).

    A query is an embedding vector, a song id of this library, or an audio
    file: one already in the library and unchanged is read from it, any
    other is embedded with the run's encoder.

    Raises:
      LibraryError: neither a song id nor a file (the message names it).
      data_prep.audio.SongError: the file cannot be used (the message names it).
    """
    if not isinstance(query, str):
      vector = np.asarray(query, np.float32)
      if vector.shape != (self.song_embeddings.shape[1],):
        raise LibraryError(
          f"a query vector must have shape ({self.song_embeddings.shape[1]},), got {vector.shape}"
        )
      return vector, "vector"
    if query in self._by_id:
      return self.song_embeddings[self._by_id[query]], "song id in the library"
    if os.path.exists(query):
      i = self._by_path.get(os.path.realpath(query))
      if i is not None:
        r = self.songs[i]
        if (r["size_bytes"], r["mtime_ns"]) == _file_stamp(query):
          return self.song_embeddings[i], f"library file {r['id']}"
      return self.encoder.embed_file(query), "embedded now"
    raise LibraryError(f"{query}: not a song id in {self.path} and not a file")

  def nearest(self, query, k: int = 10) -> list[Neighbor]:
    """The k songs nearest a query (see `resolve`), nearest first; the query's
    own song, when it is in the library, comes first at distance 0."""
    return self.nearest_many([query], k)[0]

  def nearest_many(self, queries: Sequence, k: int = 10) -> list[list[Neighbor]]:
    vectors = np.stack([self.resolve(q)[0] for q in queries])
    return self.search(vectors, k)

  def search(self, vectors: np.ndarray, k: int) -> list[list[Neighbor]]:
    """Nearest songs of raw embeddings [q, dim]."""
    dist, idx = self.index.search(self.standardize(vectors), k)
    out = []
    for d_row, i_row in zip(dist, idx, strict=True):
      hits = []
      for rank, (d, i) in enumerate(
        ((d, i) for d, i in zip(d_row, i_row, strict=True) if i >= 0), 1
      ):
        r = self.songs[i]
        hits.append(
          Neighbor(rank, r["id"], float(d), r["label"], r["path"], r["artist"], r["album"])
        )
      out.append(hits)
    return out

  def label_precision(self, k: int = 10) -> float:
    """Share of same-label songs among each song's k nearest (itself left out),
    searched with this library's index: the evaluation's song-level kNN p@k."""
    ids = np.array([r["id"] for r in self.songs])
    return neighbors.label_precision(
      self.index, self.standardize(self.song_embeddings), self.labels, ids, k
    )


# ---------------------------------------------------------------------------
# Command line.


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m song2vec.library",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  sub = parser.add_subparsers(dest="command", required=True)
  b = sub.add_parser(
    "build",
    help="embed a music library with a trained run",
    description="Embeds the songs of a source with a run's encoder into a library folder "
    "(incremental: only new or changed files are embedded again).",
  )
  b.add_argument("--workdir", required=True, help="a run folder written by launch.py")
  b.add_argument("--source", required=True, choices=SOURCES, help="where the songs come from")
  b.add_argument(
    "--path",
    default="",
    help="folder (one sub-folder per genre), CSV manifest (path, genre[, song_id, artist, "
    "album, year]) or FMA root; unused for music21 (the run's embedded corpus)",
  )
  b.add_argument("--fma_subset", default="small", help="FMA: small, medium, large or full")
  b.add_argument("--out", required=True, help="the library folder to write or update")
  b.add_argument(
    "--rebuild",
    action="store_true",
    help="embed every song again, replacing a library built by another run, checkpoint or "
    "feature settings",
  )
  defaults = LibraryConfig()
  helps = {
    "max_segments": "segments per song at most, evenly spread over it (0: every full segment)",
    "batch_size": "segments per encoder call",
    "workers": "decoding processes (0: one per CPU core)",
    "index": "nearest-neighbour index: exact, hnsw (faiss) or auto (hnsw from --hnsw_min_songs)",
    "hnsw_min_songs": "with --index=auto, songs from which the HNSW index is built",
    "hnsw_m": "HNSW graph degree",
    "hnsw_ef_construction": "HNSW build effort",
    "hnsw_ef_search": "HNSW search effort (higher: better recall, slower queries)",
    "standardize_max_segments": "train segments the standardisation statistics use",
    "map": "draw map.png and map.html (--no-map to skip)",
  }
  for field in dataclasses.fields(LibraryConfig):
    value = getattr(defaults, field.name)
    if isinstance(value, bool):
      b.add_argument(
        f"--{field.name}",
        action=argparse.BooleanOptionalAction,
        default=value,
        help=helps[field.name],
      )
    else:
      b.add_argument(
        f"--{field.name}",
        type=type(value),
        default=value,
        help=f"{helps[field.name]} (default {value})",
      )
  m = sub.add_parser(
    "map",
    help="draw a library's map with queries marked",
    description="Writes PREFIX.png and PREFIX.html: the library's songs in 2-D, coloured by label.",
  )
  m.add_argument("--library", required=True)
  m.add_argument("--query", action="append", default=[], help="song id or audio file (repeatable)")
  m.add_argument("--out", default="", help="file prefix (default LIBRARY/map)")
  m.add_argument("--projection", default="auto", choices=("auto", "tsne", "pca"))
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    if args.command == "build":
      config = LibraryConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(LibraryConfig)}
      )
      build(
        args.workdir,
        args.source,
        args.path,
        args.out,
        config,
        fma_subset=args.fma_subset,
        rebuild=args.rebuild,
      )
    else:
      from song2vec import maps

      lib = Library.open(args.library)
      png, html = maps.write_map(
        lib, args.out or os.path.join(args.library, "map"), args.query, args.projection
      )
      print(f"wrote {png} and {html}")
  except (LibraryError, audio.SongError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
