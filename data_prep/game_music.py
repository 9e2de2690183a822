"""Builds a real-audio development set from Debian's game-music packages.

    python -m data_prep.game_music --out=data/game_music
    python -m data_prep --source=csv --path=data/game_music/songs.csv \
        --out_dir=data/game_music-mel64x64 --sample_rate=22050 --n_fft=2048 \
        --hop_length=1024 --n_mels=64 --segment_seconds=3

The label of a track is the game whose soundtrack it belongs to (drascula,
planetblupi, ufoai, wesnoth, warzone2100, hedgewars, supertux; asc has too few
tracks for the default --min_tracks). It is a development set of real
recordings to take decisions on next to the embedded music21 corpus, not a
genre benchmark. Each package keeps its own licence: see
OUT/root/<package>/usr/share/doc/<package>/copyright.

The larger set adds nine more soundtracks (LARGER_PACKAGES: supertuxkart,
widelands, hyperrogue, freedroidrpg, fillets, unknownhorizons, openclonk,
nexuiz, 0ad; 16 labels and 449 tracks; about 4.1 GB of .debs, 11 GB on disk unpacked):

    python -m data_prep.game_music --larger --out=data/game_music_large
    python launch.py --config=experiments/song2vec.py:game_music_large  # builds its dataset

Steps, each skipped when its output is already there, so a rerun is cheap:
  1. `apt-get download <package>` into OUT/debs (or copy from --deb_dir);
  2. `dpkg -x` each .deb into OUT/root/<package>; UFO:AI's music is unzipped
     from its 0music.pk3 archive next to it;
  3. list the music files (only the music folders, not sound effects or
     voices), read each with `soundfile.info`, leave out tracks shorter than
     --min_seconds and labels with fewer than --min_tracks tracks;
  4. write OUT/songs.csv (path,genre,song_id,artist,album,year; paths relative
     to the CSV; song_id <label>/<file stem>; album the package; artist the
     composer where UFO:AI's file-name prefix, Hedgewars' Music/credits.txt or
     Warzone's album.json names one, else empty) and OUT/packages.json (Debian versions, counts, and every
     left-out file with its reason), and print the command that builds the
     spectrogram dataset.

Warzone 2100 ships Ogg Opus (.opus), which libsndfile >= 1.0.29 decodes; the
CSV source takes any extension, the folder source would not list it.
Not used: xblast-tnt-musics (headerless raw audio) and frozen-bubble's .xm
modules, which libsndfile does not decode.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import zipfile
from collections.abc import Callable

import soundfile as sf

MUSIC_EXTENSIONS = (".ogg", ".opus", ".mp3", ".flac", ".wav")

# The build command's feature flags: the CPU preset of experiments/ali_lsgan.py.
CPU_PRESET_FLAGS = (
  "--sample_rate=22050 --n_fft=2048 --hop_length=1024 --n_mels=64 --segment_seconds=3"
)


def _ufoai_artists(tree: str, files: list[str]) -> dict[str, str]:
  """Composer from UFO:AI's file-name prefix (names as in the package's copyright)."""
  del tree  # The names alone say it.
  prefixes = (
    (r"^Crystan-", "Crystan"),
    (r"^Marine", "Marine"),
    (r"^Psymong", "Psymong"),
    (r"^David\d", "David Reeves"),
    (r"^van_", "Vanethian"),
    (r"^karlmacklin_", "Karl Macklin"),
    (r"^azrael", "azrael1322"),
    (r"^Alex", "Alex Parker"),
    (r"-Slippycurb$", "Slippycurb"),
  )
  out = {}
  for rel in files:
    stem = os.path.splitext(os.path.basename(rel))[0]
    for pattern, artist in prefixes:
      if re.search(pattern, stem):
        out[rel] = artist
        break
  return out


def _hedgewars_artists(tree: str, files: list[str]) -> dict[str, str]:
  """Composer from Data/Music/credits.txt (`File.ogg=Name <url>`), where listed."""
  credits = {}
  for rel in files:
    path = os.path.join(tree, os.path.dirname(rel), "credits.txt")
    if path not in credits:
      credits[path] = {}
      if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
          for line in f:
            name, sep, who = line.partition("=")
            if sep:
              # "Name <url>" or 'Name - "Title" [edit]': keep the name.
              who = re.sub(r"\s*<[^>]*>", "", who).split(" - ")[0]
              credits[path][name.strip()] = who.strip()
  out = {}
  for rel in files:
    path = os.path.join(tree, os.path.dirname(rel), "credits.txt")
    who = credits[path].get(os.path.basename(rel), "")
    if who:
      out[rel] = who
  return out


def _warzone_artists(tree: str, files: list[str]) -> dict[str, str]:
  """Composer from each album folder's album.json (`tracks[].author`)."""
  out = {}
  for rel in files:
    album_json = os.path.join(tree, os.path.dirname(rel), "album.json")
    if not os.path.isfile(album_json):
      continue  # menu.opus sits outside the albums, without credits.
    with open(album_json, encoding="utf-8") as f:
      album = json.load(f)
    for track in album.get("tracks", []):
      if track.get("filename") == os.path.basename(rel):
        out[rel] = track.get("author") or album.get("author", "")
  return out


@dataclasses.dataclass(frozen=True)
class Package:
  name: str  # Debian package.
  label: str  # The `genre` column: which soundtrack.
  music: tuple[str, ...]  # Glob patterns of the music files, relative to the tree.
  seen: int  # Files the patterns matched in the version inspected; a change is reported.
  archive: str = ""  # A zip inside the tree; `music` then matches its members.
  exclude: tuple[str, ...] = ()  # fnmatch patterns of file names that are not tracks.
  artists: Callable[[str, list[str]], dict[str, str]] | None = None


PACKAGES = (
  Package("drascula-music", "drascula", ("usr/share/scummvm/drascula/audio/*.ogg",), 31),
  Package("planetblupi-music-ogg", "planetblupi", ("usr/share/planetblupi/music/*.ogg",), 10),
  Package(
    "ufoai-music",
    "ufoai",
    ("music/*.ogg",),
    64,
    archive="usr/share/games/ufoai/base/0music.pk3",
    # Test files for the dynamic-music engine, not soundtrack pieces.
    exclude=("dynamictest-*",),
    artists=_ufoai_artists,
  ),
  Package(
    "wesnoth-1.16-music", "wesnoth", ("usr/share/games/wesnoth/1.16/data/core/music/*.ogg",), 41
  ),
  Package(
    "warzone2100-music",
    "warzone2100",
    (
      "usr/share/games/warzone2100/music/*.opus",
      "usr/share/games/warzone2100/music/albums/*/*.opus",
    ),
    30,
    artists=_warzone_artists,
  ),
  Package(
    "hedgewars-data",
    "hedgewars",
    ("usr/share/games/hedgewars/Data/Music/*.ogg",),  # Not Data/Sounds (effects, voices).
    26,
    artists=_hedgewars_artists,
  ),
  # music/<world>/*.ogg; the .music files beside them are loop-point descriptors.
  Package("supertux-data", "supertux", ("usr/share/games/supertux2/music/*/*.ogg",), 51),
  Package("asc-music", "asc", ("usr/share/games/asc/music/*.mp3",), 3),
)

# The larger set (--larger): nine more soundtracks, chosen at stop 31 because the
# default set's 168 training songs cap even a supervised encoder (song2vec/ceiling.py)
# near MFCC statistics. Label = soundtrack as above; ~210 more tracks, about 3.2 GB more
# .debs (0ad-data alone is 1.4 GB and unpacks to 3.3 GB).
LARGER_PACKAGES = (
  Package(
    "supertuxkart-data",
    "supertuxkart",
    ("usr/share/games/supertuxkart/data/music/*.ogg",),
    38,
    # Faster re-renders of the same tune (celtic_fast, farm_f): kept out, or a tune
    # could sit in train and validation at once.
    exclude=("*_fast.ogg", "farm_f.ogg"),
  ),
  Package("widelands-data", "widelands", ("usr/share/games/widelands/data/music/*.ogg",), 31),
  Package("hyperrogue-music", "hyperrogue", ("usr/share/hyperrogue/music/*.ogg",), 17),
  Package(
    "freedroidrpg-data", "freedroidrpg", ("usr/share/freedroidrpg/data/sound/music/*.ogg",), 16
  ),
  # music/ only: sound/music/ holds spoken lines.
  Package("fillets-ng-data", "fillets", ("usr/share/games/fillets-ng/music/*.ogg",), 15),
  Package(
    "unknown-horizons",
    "unknownhorizons",
    (
      "usr/share/unknown-horizons/content/audio/music/*.ogg",
      "usr/share/unknown-horizons/content/audio/music/menu/*.ogg",
    ),
    15,
  ),
  Package("openclonk-data", "openclonk", ("usr/share/games/openclonk/Music.ocg/*.ogg",), 8),
  Package(
    "nexuiz-music",
    "nexuiz",
    ("sound/cdtracks/*.ogg",),
    18,
    archive="usr/share/games/nexuiz/data/music.pk3",
  ),
  Package(
    "0ad-data",
    "0ad",
    ("audio/music/*.ogg",),
    61,
    archive="usr/share/games/0ad/mods/public/public.zip",
  ),
)


class GameMusicError(Exception):
  """A step cannot go on; str(error) says what to do."""


def _existing_deb(folder: str, package: str) -> str | None:
  """The newest-named `<package>_*.deb` in folder, or None."""
  found = sorted(glob.glob(os.path.join(glob.escape(folder), f"{package}_*.deb")))
  return found[-1] if found else None


def _apt_get(args: list[str], cwd: str) -> subprocess.CompletedProcess:
  """Runs apt-get in cwd, capturing its output."""
  try:
    return subprocess.run(["apt-get", *args], cwd=cwd, capture_output=True, text=True)
  except FileNotFoundError:
    raise GameMusicError(
      "apt-get not found: this script needs Debian/Ubuntu's apt, or the .debs "
      "downloaded elsewhere and passed with --deb_dir"
    ) from None


def fetch_debs(packages: list[Package], debs: str, deb_dir: str = "") -> dict[str, str]:
  """Makes sure OUT/debs holds one .deb per package.

  Args:
    packages: the packages to fetch.
    debs: the folder the .debs end up in.
    deb_dir: optional folder of .debs downloaded before; copied instead of downloaded.

  Returns:
    package name -> path of its .deb.

  Raises:
    GameMusicError: apt-get is missing or cannot download a package.
  """
  os.makedirs(debs, exist_ok=True)
  missing = []
  for p in packages:
    if _existing_deb(debs, p.name):
      continue
    cached = _existing_deb(deb_dir, p.name) if deb_dir else None
    if cached:
      print(f"copying {os.path.basename(cached)} from {deb_dir}")
      shutil.copy2(cached, debs)
    else:
      missing.append(p.name)
  if missing:
    print(f"apt-get download {' '.join(missing)}  (into {debs})")
    result = _apt_get(["download", *missing], debs)
    updated = False
    if result.returncode != 0 and os.geteuid() == 0:
      # Usually "Unable to locate package": the package lists are not there yet.
      print("apt-get download failed; running apt-get update once")
      updated = _apt_get(["update"], debs).returncode == 0
      result = _apt_get(["download", *missing], debs)
    if result.returncode != 0:
      tail = "\n  ".join((result.stderr or result.stdout).strip().splitlines()[-5:])
      if updated:
        hint = (
          "apt-get update ran and the package(s) are still not found: this list was "
          "written against Debian 12 (bookworm); on another release check the names with "
          "`apt-cache policy <package>` and pass --packages, or download the .debs "
          "elsewhere and pass --deb_dir."
        )
      else:
        hint = (
          "Run `sudo apt-get update` (refreshing the package lists needs root) and rerun "
          "this command, or download the .debs elsewhere and pass --deb_dir."
        )
      raise GameMusicError(f"apt-get download {' '.join(missing)} failed:\n  {tail}\n{hint}")
  out = {}
  for p in packages:
    deb = _existing_deb(debs, p.name)
    if deb is None:
      raise GameMusicError(f"{p.name}: no .deb in {debs} after apt-get download")
    out[p.name] = deb
  return out


def deb_version(deb: str) -> str:
  """The Debian version from a `name_version_arch.deb` file name (epoch ':' decoded)."""
  return urllib.parse.unquote(os.path.basename(deb).split("_")[1])


def extract(package: Package, deb: str, root: str) -> str:
  """`dpkg -x` the .deb into root/<package> (and unzips its music archive).

  Returns:
    The folder the package's `music` patterns are relative to.
  """
  tree = os.path.join(root, package.name)
  marker = os.path.join(tree, ".extracted-from")
  stamp = os.path.basename(deb)
  done = ""
  if os.path.isfile(marker):
    with open(marker) as f:
      done = f.read()
  if done != stamp:
    print(f"dpkg -x {stamp} {tree}")
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    result = subprocess.run(["dpkg", "-x", deb, tree], capture_output=True, text=True)
    if result.returncode != 0:
      raise GameMusicError(f"dpkg -x {deb} failed: {result.stderr.strip()}")
    with open(marker, "w") as f:
      f.write(stamp)
  if not package.archive:
    return tree
  archive = os.path.join(tree, package.archive)
  unpacked = archive + ".d"
  with zipfile.ZipFile(archive) as z:
    for member in z.infolist():
      if member.is_dir() or not any(fnmatch.fnmatch(member.filename, g) for g in package.music):
        continue
      target = os.path.join(unpacked, member.filename)
      if not (os.path.isfile(target) and os.path.getsize(target) == member.file_size):
        z.extract(member, unpacked)
  return unpacked


def check_audio(path: str, full_decode: bool) -> tuple[float, str]:
  """Returns (duration in seconds, '') or (0, the reason the file does not decode)."""
  try:
    info = sf.info(path)
    if full_decode:
      frames = sum(len(b) for b in sf.blocks(path, blocksize=1 << 16))
      if frames < 0.9 * info.frames:
        return 0.0, f"truncated: decoded {frames} of {info.frames} frames"
    return info.duration, ""
  except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
    return 0.0, f"cannot decode: {str(e).splitlines()[0]}"


@dataclasses.dataclass
class Track:
  path: str  # Absolute.
  label: str
  song_id: str
  artist: str
  album: str
  seconds: float


def collect(
  package: Package, tree: str, min_seconds: float, full_decode: bool, workers: int
) -> tuple[list[Track], list[dict]]:
  """Lists the package's music tracks.

  Returns:
    (tracks, left_out) where left_out holds {'path', 'reason'} for each matched
    file that is not a track: excluded by name, undecodable or too short.
  """
  files = sorted(
    {
      os.path.relpath(p, tree)
      for g in package.music
      for p in glob.glob(os.path.join(glob.escape(tree), g))
      if p.lower().endswith(MUSIC_EXTENSIONS) and os.path.isfile(p)
    }
  )
  if len(files) != package.seen:
    print(
      f"note: {package.name}: {len(files)} music files match {package.music}, "
      f"{package.seen} did in the version this script was written for"
    )
  left_out, kept = [], []
  for rel in files:
    excluded = [x for x in package.exclude if fnmatch.fnmatch(os.path.basename(rel), x)]
    if excluded:
      left_out.append({"path": rel, "reason": f"not a soundtrack piece ({excluded[0]})"})
    else:
      kept.append(rel)
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    checks = list(pool.map(lambda r: check_audio(os.path.join(tree, r), full_decode), kept))
  artists = package.artists(tree, kept) if package.artists else {}
  tracks, stems = [], {}
  for rel, (seconds, reason) in zip(kept, checks, strict=True):
    if reason:
      left_out.append({"path": rel, "reason": reason})
      continue
    if seconds < min_seconds:
      left_out.append({"path": rel, "reason": f"{seconds:.1f} s < --min_seconds={min_seconds:g}"})
      continue
    stem = os.path.splitext(os.path.basename(rel))[0]
    if stem in stems:  # Same name in two folders: keep both, told apart by the folder.
      stem = os.path.splitext(rel)[0].replace(os.sep, "/")
    stems[stem] = rel
    tracks.append(
      Track(
        path=os.path.join(tree, rel),
        label=package.label,
        song_id=f"{package.label}/{stem}",
        artist=artists.get(rel, ""),
        album=package.name,
        seconds=seconds,
      )
    )
  return tracks, left_out


def write_csv(tracks: list[Track], csv_path: str) -> None:
  """Writes the manifest `python -m data_prep --source=csv` reads."""
  base = os.path.dirname(os.path.abspath(csv_path))
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "genre", "song_id", "artist", "album", "year"])
    for t in tracks:
      rel = os.path.relpath(t.path, base).replace(os.sep, "/")
      writer.writerow([rel, t.label, t.song_id, t.artist, t.album, ""])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Parses the command line (every flag is documented in --help)."""
  parser = argparse.ArgumentParser(
    prog="python -m data_prep.game_music",
    description="Build a real-audio development set (label = game soundtrack) from "
    "Debian's game-music packages: OUT/songs.csv for `python -m data_prep --source=csv`.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  parser.add_argument(
    "--out",
    default="data/game_music",
    help="output folder: debs/ (downloaded packages), root/<package>/ (extracted "
    "trees), songs.csv and packages.json",
  )
  parser.add_argument(
    "--deb_dir",
    default="",
    help="folder of .debs downloaded before; those found there are copied into "
    "OUT/debs instead of downloaded",
  )
  parser.add_argument(
    "--min_seconds",
    type=float,
    default=20.0,
    help="leave out shorter files (jingles, stings, a silence file)",
  )
  parser.add_argument(
    "--min_tracks",
    type=int,
    default=8,
    help="leave out a label with fewer tracks than this (after --min_seconds)",
  )
  parser.add_argument(
    "--full_decode",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="decode every file to the end, not only its header (slower; catches "
    "truncated files before the dataset build does)",
  )
  parser.add_argument(
    "--workers", type=int, default=os.cpu_count() or 1, help="threads for the audio checks"
  )
  parser.add_argument(
    "--packages",
    default=",".join(p.name for p in PACKAGES),
    help="comma-separated Debian packages to use, from the default list or LARGER_PACKAGES",
  )
  parser.add_argument(
    "--larger",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="add LARGER_PACKAGES' nine soundtracks to --packages (the larger dev set, "
    "449 tracks in the versions inspected; give it its own --out, e.g. data/game_music_large)",
  )
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  """Fetches, unpacks, lists and checks the tracks; writes songs.csv and packages.json.

  Returns:
    The exit status: 0, 1 when apt-get or dpkg fails, 2 for an unknown --packages name.
  """
  args = parse_args(argv)
  by_name = {p.name: p for p in PACKAGES + LARGER_PACKAGES}
  names = [n.strip() for n in args.packages.split(",") if n.strip()]
  if args.larger:
    names += [p.name for p in LARGER_PACKAGES if p.name not in names]
  unknown = [n for n in names if n not in by_name]
  if unknown:
    print(f"error: unknown package(s) {unknown}; known: {sorted(by_name)}", file=sys.stderr)
    return 2
  packages = [by_name[n] for n in names]
  out = args.out
  try:
    debs = fetch_debs(packages, os.path.join(out, "debs"), args.deb_dir)
    trees = {p.name: extract(p, debs[p.name], os.path.join(out, "root")) for p in packages}
  except GameMusicError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1

  tracks, report = [], {}
  for p in packages:
    found, left_out = collect(p, trees[p.name], args.min_seconds, args.full_decode, args.workers)
    report[p.name] = {
      "label": p.label,
      "version": deb_version(debs[p.name]),
      "deb": os.path.basename(debs[p.name]),
      "deb_bytes": os.path.getsize(debs[p.name]),
      "tracks": len(found),
      "minutes": round(sum(t.seconds for t in found) / 60, 1),
      "artists_known": sum(bool(t.artist) for t in found),
      "included": len(found) >= args.min_tracks,
      "left_out": left_out,
    }
    if len(found) >= args.min_tracks:
      tracks.extend(found)

  os.makedirs(out, exist_ok=True)
  csv_path = os.path.join(out, "songs.csv")
  write_csv(tracks, csv_path)
  with open(os.path.join(out, "packages.json"), "w", encoding="utf-8") as f:
    json.dump(
      {"min_seconds": args.min_seconds, "min_tracks": args.min_tracks, "packages": report},
      f,
      indent=2,
    )

  print(f"\n{'label':<15} {'tracks':>6} {'minutes':>8} {'artist':>6} {'left out':>8}  package")
  for name, r in report.items():
    note = "" if r["included"] else f"  DROPPED: {r['tracks']} < --min_tracks={args.min_tracks}"
    print(
      f"{r['label']:<15} {r['tracks']:>6} {r['minutes']:>8.1f} {r['artists_known']:>6} "
      f"{len(r['left_out']):>8}  {name} {r['version']}{note}"
    )
  included = [r for r in report.values() if r["included"]]
  print(
    f"{'total':<15} {sum(r['tracks'] for r in included):>6} "
    f"{sum(r['minutes'] for r in included):>8.1f}  ({len(included)} labels)"
  )
  undecodable = [
    (name, x) for name, r in report.items() for x in r["left_out"] if "decode" in x["reason"]
  ]
  for r in report.values():
    for x in r["left_out"]:
      print(f"  left out {r['label']}: {os.path.basename(x['path'])}: {x['reason']}")
  print(f"\nfiles that do not decode: {len(undecodable) or 'none'}")
  for name, x in undecodable:
    print(f"  {name}: {x['path']}: {x['reason']}")
  print(f"\nwrote {csv_path} ({len(tracks)} rows) and {os.path.join(out, 'packages.json')}")
  print("next, build the dataset (CPU preset features):")
  print(
    f"  python -m data_prep --source=csv --path={csv_path} "
    f"--out_dir={out.rstrip('/')}-mel64x64 {CPU_PRESET_FLAGS}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
