"""Figures drawn from a run's files (PNG, matplotlib without a display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def loss_curves(records: list[dict], path: str, title: str = "ALI training") -> str:
  """The report's Figure 3: discriminator and generator losses against step.

  Also D's mean output on encoder and decoder pairs, which shows at a glance
  whether D has won outright (outputs pinned at its two targets).
  """
  steps = np.array([r["step"] for r in records])
  fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(2, 1))
  for key, label in (("d_loss", "discriminator"), ("g_loss", "encoder + decoder")):
    ax.plot(steps, [r[key] for r in records], label=label)
  ax.set_ylabel("loss")
  ax.set_title(title)
  ax.legend()
  ax.grid(alpha=0.3)
  for key, label in (("d_out_enc", "D(x, G_z(x))"), ("d_out_dec", "D(G_x(z), z)")):
    if records and key in records[0]:
      ax2.plot(steps, [r[key] for r in records], label=label)
  for key, label, ls in (
    ("d_accuracy", "D accuracy", "--"),
    ("d_calls_dec", "D calls decoder", ":"),
  ):
    if records and key in records[0]:
      ax2.plot(steps, [r[key] for r in records], label=label, color="gray", ls=ls)
  ax2.set_xlabel("training step (batches)")
  ax2.set_ylabel("D output")
  ax2.legend(fontsize=8)
  ax2.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def score_bars(rows: list[dict], path: str) -> str:
  """Grouped bars of V-measure and AMI (segment level) with std error bars, per test."""
  rows = [r for r in rows if r["level"] == "segment"]
  tests = list(dict.fromkeys(r["test"] for r in rows))
  names = list(dict.fromkeys(r["embedding"] for r in rows))
  series = [(a, m) for a in ("kmeans", "gmm") for m in ("v_measure", "ami")]
  fig, axes = plt.subplots(1, len(tests), figsize=(6 * len(tests), 4), squeeze=False)
  width = 0.8 / len(series)
  by = {(r["test"], r["embedding"], r["algorithm"]): r for r in rows}
  for ax, test in zip(axes[0], tests, strict=True):
    x = np.arange(len(names))
    for i, (algorithm, metric) in enumerate(series):
      means = [by[(test, n, algorithm)][f"{metric}_mean"] for n in names]
      stds = [by[(test, n, algorithm)][f"{metric}_std"] for n in names]
      label = (
        f"{'k-means' if algorithm == 'kmeans' else 'GMM'} {'V' if metric == 'v_measure' else 'AMI'}"
      )
      ax.bar(
        x + (i - len(series) / 2 + 0.5) * width, means, width, yerr=stds, label=label, capsize=2
      )
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_title(test)
    ax.set_ylabel("score (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
  axes[0][0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def tsne_pair(embeddings: dict, labels: list[str], path: str, *, seed: int, title: str) -> str:
  """t-SNE of each embedding side by side, coloured by label (Figures 5-7)."""
  from sklearn.manifold import TSNE

  names = sorted(set(labels))
  colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
  fig, axes = plt.subplots(1, len(embeddings), figsize=(6 * len(embeddings), 5.5), squeeze=False)
  for ax, (name, emb) in zip(axes[0], embeddings.items(), strict=True):
    perplexity = min(30.0, max(2.0, (len(emb) - 1) / 3))
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb)
    for i, label in enumerate(names):
      keep = np.array([lab == label for lab in labels])
      ax.scatter(xy[keep, 0], xy[keep, 1], s=6, color=colours(i), label=label)
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0][-1].legend(markerscale=3, fontsize=8, loc="best")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def pca_by_value(emb: np.ndarray, values: np.ndarray, path: str, *, title: str) -> str:
  """Figure 8: the first two principal components, coloured by a number (year)."""
  from sklearn.decomposition import PCA

  xy = PCA(2).fit_transform(emb) if len(emb) > 2 else np.zeros((len(emb), 2))
  fig, ax = plt.subplots(figsize=(7, 5.5))
  points = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap="viridis", s=14)
  fig.colorbar(points, ax=ax, label="year")
  ax.set_xlabel("PC 1")
  ax.set_ylabel("PC 2")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def sweep_bars(
  rows: list[dict], keys: list[str], path: str, collapse_accuracy: float = 0.99
) -> str:
  """Per sweep point: ALI's scores (mean ± std over seeds) above D's final accuracy."""
  fig, (top, bottom) = plt.subplots(
    2, 1, figsize=(max(6, 0.9 * len(rows) + 2), 6.5), sharex=True, height_ratios=(2, 1)
  )
  x = np.arange(len(rows))
  width = 0.8 / max(1, len(keys))
  for i, key in enumerate(keys):
    means = [r[key][0] if key in r else np.nan for r in rows]
    stds = [r[key][1] if key in r else 0.0 for r in rows]
    top.bar(x + (i - len(keys) / 2 + 0.5) * width, means, width, yerr=stds, label=key, capsize=2)
  references = [i for i, r in enumerate(rows) if r["point"].startswith("reference")]
  if references:  # Rows scoring other embeddings in the same runs, set apart.
    for ax in (top, bottom):
      ax.axvline(references[0] - 0.5, color="k", lw=0.8)
  top.set_ylabel("score (k-means, segments)")
  top.legend(fontsize=8)
  top.grid(axis="y", alpha=0.3)
  bottom.bar(x, [r.get("final_d_accuracy", np.nan) for r in rows], 0.6, color="0.5")
  bottom.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
  bottom.axhline(collapse_accuracy, color="C3", lw=0.8, ls="--", label="collapse threshold")
  bottom.set_ylim(0, 1.05)
  bottom.set_ylabel("final D accuracy")
  bottom.legend(fontsize=8, loc="lower right")
  bottom.grid(axis="y", alpha=0.3)
  bottom.set_xticks(x, [r["point"] for r in rows], rotation=30, ha="right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
