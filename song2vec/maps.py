"""A library's map: its songs in 2-D, coloured by label, queries marked.

Written twice: a PNG (matplotlib) to look at, and a self-contained HTML page
(plotly, its JavaScript inlined so it opens offline) to explore, where
hovering a point shows the song's id, label, artist, album and file.

The projection is t-SNE of the standardised song embeddings (the distance
`song2vec.neighbors` defines) for up to `TSNE_MAX_SONGS` songs, PCA beyond,
where t-SNE would take minutes.
"""

from __future__ import annotations

import html as html_lib
import os
import sys
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

TSNE_MAX_SONGS = 5000
PROJECTIONS = ("auto", "tsne", "pca")


def project(x: np.ndarray, projection: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
  """[n, d] -> ([n, 2], the projection's name)."""
  if projection not in PROJECTIONS:
    raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
  if projection == "auto":
    projection = "tsne" if len(x) <= TSNE_MAX_SONGS else "pca"
  if len(x) < 3:
    return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1])))), "none"
  if projection == "tsne":
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return xy, "t-SNE"
  return PCA(2, random_state=seed).fit_transform(x), "PCA"


def write_map(
  library, prefix: str, queries: Sequence = (), projection: str = "auto"
) -> tuple[str, str]:
  """Writes prefix.png and prefix.html; returns their paths.

  Args:
    library: a `song2vec.library.Library`.
    prefix: output path without extension.
    queries: song ids, audio files or vectors to mark (see `Library.resolve`).
    projection: "auto", "tsne" or "pca".
  """
  songs = library.songs
  q_vectors = [library.resolve(q)[0] for q in queries]
  x = library.standardize(library.song_embeddings)
  if q_vectors:
    x = np.concatenate([x, library.standardize(np.stack(q_vectors))])
  xy, name = project(x, projection)
  song_xy, query_xy = xy[: len(songs)], xy[len(songs) :]
  labels = np.array([r["label"] for r in songs])
  names = sorted(set(labels))
  query_names = [q if isinstance(q, str) else f"vector {i}" for i, q in enumerate(queries)]
  title = (
    f"{len(songs)} songs, {name} of song embeddings (checkpoint step "
    f"{library.manifest['checkpoint_step']} of {library.manifest['run']})"
  )

  png = prefix + ".png"
  fig, ax = plt.subplots(figsize=(9, 7.5))
  cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
  for i, label in enumerate(names):
    pts = song_xy[labels == label]
    ax.scatter(pts[:, 0], pts[:, 1], s=12, color=cmap(i % cmap.N), label=label, alpha=0.8)
  for (px, py), qn in zip(query_xy, query_names, strict=True):
    ax.scatter([px], [py], marker="*", s=260, color="k", edgecolor="w", zorder=5)
    ax.annotate(
      qn.split("/")[-1][:40], (px, py), xytext=(6, 6), textcoords="offset points", fontsize=8
    )
  ax.set_title(title, fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])
  ax.legend(fontsize=8, markerscale=1.5, loc="best")
  fig.tight_layout()
  fig.savefig(png, dpi=120)
  plt.close(fig)

  import plotly.graph_objects as go

  fig = go.Figure()
  # SVG points up to the t-SNE limit (each one a DOM node a browser can hover);
  # WebGL beyond, where SVG would crawl.
  scatter = go.Scatter if len(songs) <= TSNE_MAX_SONGS else go.Scattergl
  for label in names:
    mask = labels == label
    rows = [r for r, m in zip(songs, mask, strict=True) if m]
    fig.add_trace(
      scatter(
        x=song_xy[mask, 0],
        y=song_xy[mask, 1],
        mode="markers",
        name=label,
        marker={"size": 6},
        text=[_hover(r) for r in rows],
        hovertemplate="%{text}<extra></extra>",
      )
    )
  if len(query_xy):
    fig.add_trace(
      go.Scatter(
        x=query_xy[:, 0],
        y=query_xy[:, 1],
        mode="markers+text",
        name="queries",
        marker={"size": 16, "symbol": "star", "color": "black"},
        text=[html_lib.escape(q.split("/")[-1][:40]) for q in query_names],
        textposition="top center",
        hovertext=[f"query: {html_lib.escape(q)}" for q in query_names],
        hoverinfo="text",
      )
    )
  fig.update_layout(
    title={"text": html_lib.escape(title), "font": {"size": 13}},
    xaxis={"visible": False},
    yaxis={"visible": False},
    template="plotly_white",
    legend={"itemsizing": "constant"},
    height=750,
  )
  out = prefix + ".html"
  fig.write_html(out, include_plotlyjs=True, full_html=True, div_id="song2vec-map")
  return png, out


def _hover(row: dict) -> str:
  parts = [f"<b>{html_lib.escape(row['id'])}</b>", f"label: {html_lib.escape(row['label'])}"]
  for key in ("artist", "album"):
    if row.get(key):
      parts.append(f"{key}: {html_lib.escape(row[key])}")
  parts.append(html_lib.escape(row["path"]))
  return "<br>".join(parts)


# ---------------------------------------------------------------------------
# Checking the page in a real browser.


def find_browser() -> str | None:
  """A headless Chromium: $SONG2VEC_BROWSER, else chromium on the PATH."""
  import shutil

  return (
    os.environ.get("SONG2VEC_BROWSER")
    or shutil.which("chromium-headless-shell")
    or (shutil.which("chromium"))
  )


def check_in_browser(html_path: str, browser: str, screenshot: str = "") -> dict:
  """Opens the map in headless Chromium (playwright), hovers its first song and
  returns what the page showed: points drawn, the hover text, script errors.

  Raises:
    RuntimeError: the page drew no points, showed no hover text or raised a
      script error.
  """
  from playwright.sync_api import sync_playwright

  with sync_playwright() as p:
    b = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
    try:
      page = b.new_page(viewport={"width": 1200, "height": 800})
      errors: list[str] = []
      page.on("pageerror", lambda e: errors.append(str(e)))
      page.goto("file://" + os.path.abspath(html_path))
      page.wait_for_selector("#song2vec-map .scatterlayer .point", timeout=30_000)
      points = page.locator(".scatterlayer .point")
      count = points.count()
      points.first.hover(force=True)  # A real mouse move onto the point.
      page.wait_for_selector(".hoverlayer .hovertext", timeout=10_000)
      hover = page.evaluate("document.querySelector('.hoverlayer .hovertext').textContent")
      if screenshot:
        page.screenshot(path=screenshot)
    finally:
      b.close()
  if errors or not count or not hover:
    raise RuntimeError(f"{html_path}: points={count}, hover={hover!r}, script errors={errors}")
  return {"points": count, "hover": hover, "errors": errors}


def main(argv: list[str] | None = None) -> int:
  import argparse

  parser = argparse.ArgumentParser(
    prog="python -m song2vec.maps",
    description="Checks that a library's map.html renders and shows a song on hover, in "
    "headless Chromium (needs `pip install playwright` and a Chromium binary; no download).",
  )
  parser.add_argument("html")
  parser.add_argument("--browser", default="", help="Chromium binary (default: find_browser())")
  parser.add_argument("--screenshot", default="", help="also save a PNG of the page")
  args = parser.parse_args(argv)
  browser = args.browser or find_browser()
  if not browser:
    print("error: no Chromium found: pass --browser or set SONG2VEC_BROWSER", file=sys.stderr)
    return 2
  result = check_in_browser(args.html, browser, args.screenshot)
  first_id = result["hover"].split("label:")[0]
  print(f"{args.html}: {result['points']} points drawn; hover shows {first_id}; no script errors")
  return 0


if __name__ == "__main__":
  sys.exit(main())
