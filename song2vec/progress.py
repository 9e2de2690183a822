"""The progress bar of every long loop, data_prep's and training's alike."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(**kwargs) -> tqdm:
  """A tqdm bar with rate and ETA; redrawn at most every 10 s when stderr is a
  file or CI log rather than a terminal, so logs stay readable."""
  interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
  kwargs.setdefault("mininterval", 0.1 if interactive else 10.0)
  return tqdm(dynamic_ncols=True, smoothing=0.1, **kwargs)
