"""The embedded style corpus: music21's bundled scores rendered to audio.

Scores come from music21's corpus, grouped into styles by collection (the
labels are the collections' own: Bach chorales, Palestrina masses, Irish tunes
from O'Neill's 1850 collection, ...). Each piece goes music21 -> MIDI ->
pretty_midi, where every part gets a General MIDI program drawn from one pool
shared by all styles (seeded per piece), is cut to the preview length, and is
rendered by `midirenderer` with the GM SoundFont that ships inside pretty_midi.

Rendered audio is cached as FLAC under a key of everything that changes the
sound (seed, pool, preview length, SoundFont, library versions), so that
rebuilding spectrograms with other parameters, or with more pieces per style,
renders only what is new. A piece that fails leaves a `.failed` note with its
reason so reruns skip it too.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import glob
import hashlib
import io
import json
import os
import re
import warnings
import zlib

import numpy as np
import soundfile as sf

from data_prep.config import CorpusConfig
from data_prep.parallel import ordered_map
from data_prep.sources import Skipped, Song

_ESSEN_EUROPE = (
  "altdeu*",
  "ballad*",
  "boehme*",
  "dva*",
  "erk*",
  "fink*",
  "kinder*",
  "lot*",
  "lux*",
  "zuccal*",
)

# Style label -> glob patterns under music21's corpus folder. ABC files hold
# many tunes each; every tune is a piece.
STYLE_SOURCES: dict[str, tuple[str, ...]] = {
  "bach": ("bach/*.mxl", "bach/*.krn", "bach/*.xml"),  # Chorales.
  "palestrina": ("palestrina/*.krn",),  # Mass movements.
  "monteverdi": ("monteverdi/*.mxl",),  # Madrigals: only 49 in the corpus.
  "trecento": ("trecento/*.xml", "trecento/*.mxl"),  # 14th-century Italy.
  "irish": ("oneills1850/*.abc",),  # O'Neill's Music of Ireland (1903).
  "scottish": ("airdsAirs/*.abc",),  # Aird's Airs (Glasgow, 1782-1803).
  "american": ("ryansMammoth/*.abc",),  # Ryan's Mammoth Collection (Boston, 1883).
  "essen_europe": tuple(f"essenFolksong/{p}.abc" for p in _ESSEN_EUROPE),
  "essen_china": ("essenFolksong/han*.abc",),  # Han Chinese folk songs.
}

RENDER_FORMAT_VERSION = 2  # Bump when rendering changes in a way the key misses.
_PEAK = 0.9  # Rendered audio is peak-normalised so loudness is no style cue.
# Scores are cut at preview_seconds at this tempo before MIDI export (any
# slower tempo reaches the preview's end first; pretty_midi cuts exactly).
_MAX_QUARTERS_PER_MINUTE = 480


@dataclasses.dataclass(frozen=True)
class Piece:
  style: str
  piece_id: str  # Path under the corpus, plus '#<X>' for one tune of an ABC file.
  path: str
  title: str
  abc: str = ""  # For one tune of an ABC file: its text (with the file header).

  @property
  def collection(self) -> str:
    return self.piece_id.split("#")[0].rsplit(".", 1)[0]

  @property
  def slug(self) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.piece_id)


def corpus_root() -> str:
  from music21 import corpus

  return os.path.dirname(corpus.__file__)


def _split_abc(text: str) -> list[tuple[str, str]]:
  """Splits an ABC file into (X number, tune text with the file header)."""
  lines = text.splitlines()
  starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
  if not starts:
    return []
  header = "\n".join(line for line in lines[: starts[0]] if not line.startswith("%"))
  tunes = []
  for a, b in zip(starts, starts[1:] + [len(lines)], strict=True):
    number = lines[a][2:].strip()
    tunes.append((number, (header + "\n" + "\n".join(lines[a:b])).strip() + "\n"))
  return tunes


def _norm_title(title: str) -> str:
  return re.sub(r"[^a-z0-9]+", "", title.lower())


@functools.cache
def list_pieces(style: str) -> tuple[Piece, ...]:
  """Every piece of a style, in a fixed order, repeated titles dropped.

  Tunes that share a title within a style are usually transcriptions of one
  tune; keeping one of each stops copies landing on both sides of the split.
  """
  if style not in STYLE_SOURCES:
    raise ValueError(f"unknown style {style!r}; known: {sorted(STYLE_SOURCES)}")
  root = corpus_root()
  files = sorted({f for p in STYLE_SOURCES[style] for f in glob.glob(os.path.join(root, p))})
  pieces, titles = [], set()
  for path in files:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    if not path.endswith(".abc"):
      pieces.append(Piece(style, rel, path, title=os.path.basename(rel)))
      continue
    with open(path, encoding="utf-8", errors="replace") as f:
      text = f.read()
    for number, tune in _split_abc(text):
      match = re.search(r"^T:\s*(.+)$", tune, re.MULTILINE)
      title = match.group(1).strip() if match else ""
      key = _norm_title(title)
      if key and key in titles:
        continue
      titles.add(key)
      pieces.append(Piece(style, f"{rel}#{number}", path, title=title, abc=tune))
  return tuple(pieces)


def soundfont_path() -> str:
  import pretty_midi

  return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


def render_key(config: CorpusConfig, seed: int) -> str:
  """Names the cache folder: everything that changes the rendered audio."""
  import midirenderer
  import music21

  sf2 = soundfont_path()
  with open(sf2, "rb") as f:
    sf2_crc = zlib.crc32(f.read())
  parts = {
    "seed": seed,
    "instrument_pool": list(config.instrument_pool),
    "preview_seconds": config.preview_seconds,
    "soundfont_crc32": sf2_crc,
    "music21": music21.__version__,
    "midirenderer": getattr(midirenderer, "__version__", _dist_version("midirenderer")),
    "format": RENDER_FORMAT_VERSION,
  }
  digest = hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]
  return f"music21-{digest}"


def _dist_version(name: str) -> str:
  from importlib import metadata

  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return "unknown"


@functools.lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
  with open(soundfont_path(), "rb") as f:
    return f.read()


class RenderError(Exception):
  pass


def _prepare_score(score, max_quarters: float) -> None:
  """Works around two music21 snags before MIDI export, in place.

  Its ABC reader can put one TimeSignature object into two measures (a pickup
  and the first full bar), which the MIDI conductor track then refuses; each
  repeat gets its own copy. And measures past `max_quarters` are dropped: the
  preview never reaches them, and whole masses overflow pretty_midi's tick
  limit.
  """
  from music21 import meter, stream

  seen = set()
  for measure in score.recurse().getElementsByClass(stream.Measure):
    for ts in list(measure.getElementsByClass(meter.TimeSignature)):
      if id(ts) in seen:
        measure.replace(ts, copy.deepcopy(ts))
      seen.add(id(ts))
  for part in score.parts if isinstance(score, stream.Score) else [score]:
    late = [m for m in part.getElementsByClass(stream.Measure) if m.offset >= max_quarters]
    if late:
      part.remove(late)


def _score_to_midi(piece: Piece, preview_seconds: float) -> tuple[bytes, str]:
  """Parses a piece with music21 and returns (MIDI bytes, composer)."""
  from music21 import converter
  from music21.midi import translate

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if piece.abc:
      score = converter.parse(piece.abc, format="abc")
    else:
      score = converter.parse(piece.path)
    composer = (score.metadata.composer or "") if score.metadata else ""
    _prepare_score(score, preview_seconds * _MAX_QUARTERS_PER_MINUTE / 60)
    return translate.streamToMidiFile(score).writestr(), composer


def _assign_and_cut(midi: bytes, pool: tuple[int, ...], rng, preview_seconds: float):
  """Draws a program per part, drops drums, cuts notes at the preview length."""
  import pretty_midi

  pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
  kept, programs = [], []
  for inst in pm.instruments:
    notes = [n for n in inst.notes if n.start < preview_seconds and n.end > n.start]
    if not notes:
      continue
    for n in notes:
      n.end = min(n.end, preview_seconds)
    inst.notes = notes
    inst.is_drum = False
    inst.program = int(rng.choice(pool))
    inst.control_changes = [c for c in inst.control_changes if c.time < preview_seconds]
    inst.pitch_bends = [b for b in inst.pitch_bends if b.time < preview_seconds]
    programs.append(inst.program)
    kept.append(inst)
  if not kept:
    raise RenderError("score has no notes")
  pm.instruments = kept
  out = io.BytesIO()
  pm.write(out)
  return out.getvalue(), programs


def render_piece(piece: Piece, config: CorpusConfig, seed: int, out_path: str) -> dict:
  """Renders one piece to a mono FLAC at `out_path`; returns its sidecar info.

  Raises:
    RenderError: the score does not parse, has no notes, or renders silent.
  """
  try:
    midi, composer = _score_to_midi(piece, config.preview_seconds)
  except Exception as e:  # music21 raises many types on malformed scores.
    raise RenderError(f"music21 could not parse: {type(e).__name__}: {e}") from None
  if not midi:
    raise RenderError("music21 wrote an empty MIDI file")
  import midirenderer

  rng = np.random.default_rng([seed, zlib.crc32(piece.piece_id.encode())])
  try:
    midi, programs = _assign_and_cut(midi, config.instrument_pool, rng, config.preview_seconds)
  except ValueError as e:  # pretty_midi rejects MIDI it deems corrupt.
    raise RenderError(f"pretty_midi rejected the MIDI: {e}") from None
  try:
    wav = midirenderer.render_wave_from(_soundfont_bytes(), midi)
  except Exception as e:
    raise RenderError(f"midirenderer failed: {e}") from None
  y, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
  y = y[: int(config.preview_seconds * rate)] @ np.full((y.shape[1],), 1 / y.shape[1], np.float32)
  peak = float(np.abs(y).max()) if len(y) else 0.0
  if peak < 1e-4:
    raise RenderError("rendered audio is silent")
  y *= _PEAK / peak
  tmp = out_path + ".tmp.flac"
  sf.write(tmp, y, rate, format="FLAC", subtype="PCM_16")
  os.replace(tmp, out_path)
  return {
    "piece_id": piece.piece_id,
    "title": piece.title,
    "composer": composer,
    "programs": programs,
    "seconds": round(len(y) / rate, 3),
  }


def _render_task(args) -> tuple[Piece, dict | None, str | None]:
  """Worker: render one piece unless cached; returns (piece, info, error)."""
  piece, config, seed, folder = args
  base = os.path.join(folder, piece.style, piece.slug)
  if os.path.exists(base + ".flac") and os.path.exists(base + ".json"):
    with open(base + ".json") as f:
      return piece, json.load(f), None
  if os.path.exists(base + ".failed"):
    with open(base + ".failed") as f:
      return piece, None, f.read().strip()
  os.makedirs(os.path.dirname(base), exist_ok=True)
  try:
    info = render_piece(piece, config, seed, base + ".flac")
  except Exception as e:  # A bad score must not stop the build: list it, go on.
    reason = str(e) if isinstance(e, RenderError) else f"{type(e).__name__}: {e}"
    reason = " ".join(reason.split())
    with open(base + ".failed", "w") as f:
      f.write(reason)
    return piece, None, reason
  with open(base + ".json.tmp", "w") as f:
    json.dump(info, f)
  os.replace(base + ".json.tmp", base + ".json")
  return piece, info, None


def render_corpus(
  config: CorpusConfig, seed: int, workers: int
) -> tuple[list[Song], list[Skipped], str]:
  """Renders (or finds cached) `pieces_per_style` pieces of each style.

  Pieces are picked in a seeded order per style; a piece that fails is listed
  and replaced by the next candidate, so every style gets its full count
  unless the corpus runs out.

  Returns:
    (songs pointing at the cached FLAC files, skipped pieces, cache folder).
  """
  folder = os.path.join(config.cache_dir, render_key(config, seed))
  queues = {}
  for style in config.styles:
    pieces = list_pieces(style)
    order = np.random.default_rng([seed, zlib.crc32(style.encode())]).permutation(len(pieces))
    queues[style] = [pieces[i] for i in order]
  songs: list[Song] = []
  skipped: list[Skipped] = []
  need = {s: min(config.pieces_per_style, len(q)) for s, q in queues.items()}
  taken = dict.fromkeys(queues, 0)
  while True:
    batch = []
    for style, queue in queues.items():
      want = need[style] - sum(1 for s in songs if s.label == style)
      batch += queue[taken[style] : taken[style] + want]
      taken[style] += want
    if not batch:
      break
    tasks = [(p, config, seed, folder) for p in batch]
    for piece, info, error in ordered_map(
      _render_task,
      tasks,
      workers=workers,
      desc="render scores",
      unit="piece",
      postfix=lambda r: {"failed": int(r[2] is not None)},
    ):
      if error is not None:
        skipped.append(Skipped(f"music21:{piece.piece_id}", error))
        continue
      songs.append(
        Song(
          path=os.path.join(folder, piece.style, piece.slug + ".flac"),
          label=piece.style,
          song_id=piece.piece_id,
          artist=info.get("composer", ""),
          album=piece.collection,
        )
      )
  return songs, skipped, folder
