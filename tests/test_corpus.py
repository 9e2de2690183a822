"""The embedded music21 style corpus: enumeration, rendering, caching, failures."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import soundfile as sf

from data_prep import corpus
from data_prep.config import CorpusConfig

SMALL_POOL = (0, 40, 73)


def test_at_least_eight_styles_have_sixty_pieces():
  big = [s for s in corpus.STYLE_SOURCES if len(corpus.list_pieces(s)) >= 60]
  assert len(big) >= 8
  assert set(CorpusConfig().styles) <= set(big)


def test_abc_files_split_into_tunes_with_the_file_header():
  text = "% comment\nA:header\n\nX:1\nT:One\nK:C\nCDE|\n\nX:2\nT:Two\nK:G\nGAB|\n"
  tunes = corpus._split_abc(text)
  assert [n for n, _ in tunes] == ["1", "2"]
  assert (
    tunes[1][1].startswith("A:header") and "T:Two" in tunes[1][1] and "T:One" not in tunes[1][1]
  )


def test_pieces_are_unique_and_repeated_titles_dropped():
  pieces = corpus.list_pieces("irish")
  ids = [p.piece_id for p in pieces]
  assert len(ids) == len(set(ids))
  titles = [corpus._norm_title(p.title) for p in pieces if p.title]
  assert len(titles) == len(set(titles))


def _tune(title, body="K:C\nCDEF GABc|c2 B2 A2 G2|", style="irish"):
  return corpus.Piece(
    style,
    f"test/{title}.abc#1",
    "test.abc",
    title,
    abc=f"X:1\nT:{title}\nM:4/4\nL:1/8\nQ:1/4=240\n{body}\n",
  )


def test_render_piece_draws_programs_from_the_shared_pool(tmp_path):
  config = CorpusConfig(instrument_pool=SMALL_POOL, preview_seconds=1.0)
  out = str(tmp_path / "a.flac")
  info = corpus.render_piece(_tune("Alpha"), config, seed=0, out_path=out)
  y, rate = sf.read(out)
  assert rate == 48000 and y.ndim == 1
  assert len(y) <= 48000 and np.abs(y).max() == pytest.approx(0.9, abs=1e-3)
  assert set(info["programs"]) <= set(SMALL_POOL)
  # Programs depend on the seed and piece, not on the style label.
  again = corpus.render_piece(_tune("Alpha", style="scottish"), config, seed=0, out_path=out)
  assert again["programs"] == info["programs"]
  draws = {tuple(corpus.render_piece(_tune("Alpha"), config, s, out)["programs"]) for s in range(8)}
  assert len(draws) > 1


def test_render_task_caches_and_lists_failures(tmp_path):
  config = CorpusConfig(instrument_pool=SMALL_POOL, preview_seconds=1.0)
  folder = str(tmp_path / "cache")
  good = _tune("Beta")
  piece, info, error = corpus._render_task((good, config, 0, folder))
  assert error is None and info["title"] == "Beta"
  flac = os.path.join(folder, "irish", good.slug + ".flac")
  stamp = os.stat(flac).st_mtime_ns
  _, again, _ = corpus._render_task((good, config, 0, folder))
  assert again == info and os.stat(flac).st_mtime_ns == stamp  # Not re-rendered.

  missing = corpus.Piece("irish", "test/missing.krn", str(tmp_path / "missing.krn"), "missing")
  _, info, error = corpus._render_task((missing, config, 0, folder))
  assert info is None and error.startswith("music21 could not parse")
  silent = _tune("Gamma", body="K:C\nz8|z8|")
  _, info2, error2 = corpus._render_task((silent, config, 0, folder))
  assert info2 is None and error2 and "\n" not in error2
  assert os.path.exists(os.path.join(folder, "irish", silent.slug + ".failed"))


def test_render_corpus_replaces_failed_pieces(tmp_path, monkeypatch):
  # Ten silent tunes and three good ones: the seeded order surely meets a bad one first.
  pieces = [_tune(f"Bad{i}", body="K:C\nz8|") for i in range(10)] + [
    _tune(f"Tune{i}") for i in range(3)
  ]
  monkeypatch.setattr(
    corpus, "list_pieces", lambda style: tuple(dataclasses.replace(p, style=style) for p in pieces)
  )
  config = CorpusConfig(
    styles=("irish", "scottish"), pieces_per_style=3, preview_seconds=1.0, cache_dir=str(tmp_path)
  )
  songs, skipped, folder = corpus.render_corpus(config, seed=0, workers=1)
  counts = {s: sum(x.label == s for x in songs) for s in config.styles}
  assert counts == {"irish": 3, "scottish": 3}
  assert [s.reason for s in skipped] == ["score has no notes"] * len(skipped) and skipped
  assert all(os.path.exists(s.path) for s in songs)
  assert folder.startswith(str(tmp_path)) and os.path.basename(folder).startswith("music21-")
