"""The real-audio dev set's builder: which files become tracks, and the larger set."""

from __future__ import annotations

import os
import zipfile

from conftest import write_audio
from data_prep import game_music
from experiments import ali_lsgan
from experiments import song2vec as song2vec_config


def test_collect_keeps_tracks_and_lists_each_file_it_left_out(tmp_path):
  tree = tmp_path / "tree"
  write_audio(tree / "music" / "theme.wav", seconds=1.0)
  write_audio(tree / "music" / "theme_fast.wav", seconds=1.0)
  write_audio(tree / "music" / "sting.wav", seconds=0.2)
  write_audio(tree / "voices" / "line.wav", seconds=1.0)  # Not matched by the pattern.
  package = game_music.Package("demo-music", "demo", ("music/*.wav",), 3, exclude=("*_fast.wav",))
  tracks, left_out = game_music.collect(
    package, str(tree), min_seconds=0.5, full_decode=True, workers=1
  )
  assert [t.song_id for t in tracks] == ["demo/theme"]
  assert tracks[0].label == "demo" and tracks[0].album == "demo-music"
  reasons = {os.path.basename(x["path"]): x["reason"] for x in left_out}
  assert set(reasons) == {"theme_fast.wav", "sting.wav"}
  assert "not a soundtrack piece" in reasons["theme_fast.wav"]
  assert "--min_seconds" in reasons["sting.wav"]


def test_extract_unzips_only_the_music_members_of_an_archive(tmp_path):
  # A tree already unpacked from this .deb (its marker says so): no dpkg needed.
  root = tmp_path / "root"
  tree = root / "demo-data"
  tree.mkdir(parents=True)
  (tree / ".extracted-from").write_text("demo-data_1.0_all.deb")
  song = write_audio(tmp_path / "src" / "song.wav", seconds=0.5)
  archive = tree / "data" / "public.zip"
  archive.parent.mkdir()
  with zipfile.ZipFile(archive, "w") as z:
    z.write(song, "audio/music/song.wav")
    z.write(song, "audio/sfx/click.wav")
  package = game_music.Package(
    "demo-data", "demo", ("audio/music/*.wav",), 1, archive="data/public.zip"
  )
  unpacked = game_music.extract(package, "/debs/demo-data_1.0_all.deb", str(root))
  assert os.path.isfile(os.path.join(unpacked, "audio", "music", "song.wav"))
  assert not os.path.exists(os.path.join(unpacked, "audio", "sfx"))


def test_larger_adds_each_of_its_packages_once(monkeypatch, tmp_path, capsys):
  asked = []

  def fetch(packages, debs, deb_dir=""):
    asked.extend(p.name for p in packages)
    raise game_music.GameMusicError("stop here")

  monkeypatch.setattr(game_music, "fetch_debs", fetch)
  first = game_music.LARGER_PACKAGES[0].name
  argv = ["--out", str(tmp_path), "--larger", f"--packages=drascula-music,{first}"]
  assert game_music.main(argv) == 1
  assert "stop here" in capsys.readouterr().err
  assert asked == ["drascula-music"] + [p.name for p in game_music.LARGER_PACKAGES]


def test_every_package_has_its_own_name_and_label():
  every = game_music.PACKAGES + game_music.LARGER_PACKAGES
  assert len({p.name for p in every}) == len(every)
  assert len({p.label for p in every}) == len(every)


def test_each_dev_set_preset_reads_its_own_build():
  for make in (ali_lsgan.get_config, song2vec_config.get_config):
    small, large = make("game_music"), make("game_music_large")
    assert small.data.path == "data/game_music/songs.csv"
    assert small.data.out_dir == "data/game_music-mel64x64"
    assert large.data.path == "data/game_music_large/songs.csv"
    assert large.data.out_dir == "data/game_music_large-mel64x64"
    assert large.data.source == small.data.source == "csv"
    assert "game music large" in large.name and "large" not in small.name
