"""Figures drawn from a run's files (PNG, matplotlib without a display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _series(ax, steps, records, specs, *, ylabel, title, refs=()):
  """Plots each (key, label, style) present in the records, plus reference lines."""
  for key, label, style in specs:
    if any(key in r for r in records):
      values = [r.get(key, np.nan) for r in records]
      ax.plot(steps, values, style, label=label, lw=1.2)
  for value, label in refs:
    ax.axhline(value, color="k", lw=0.8, ls=":", label=label)
  ax.set_title(title, fontsize=10)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  if ax.has_data():
    ax.legend(fontsize=7)


def loss_curves(records: list[dict], path: str, title: str = "ALI training") -> str:
  """The report's Figure 3 as a grid: losses beside the diagnostics that show a dead game.

  Losses; D's outputs and accuracy (training batches, and held-out pairs at
  the midpoint of its targets); the codes E(x) against the prior N(0, I);
  their effective dimension beside the prior's; reconstructions relative to
  trivial predictors (1 = no better); D's calls.
  """
  steps = np.array([r["step"] for r in records])
  fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=True)
  _series(
    axes[0, 0],
    steps,
    records,
    [
      ("d_loss", "discriminator", "-"),
      ("g_loss", "encoder + decoder", "-"),
      ("cycle_x", "cycle |x - G(E(x))|", "--"),
      ("cycle_z", "cycle |z - E(G(z))|", "--"),
      ("prior_mmd", "MMD(E(x), prior)", "-."),
      ("d_l2_penalty", "D kernel L2 penalty", ":"),
    ],
    ylabel="loss",
    title="losses",
  )
  _series(
    axes[0, 1],
    steps,
    records,
    [
      ("d_out_enc", "D(x, G_z(x))", "-"),
      ("d_out_dec", "D(G_x(z), z)", "-"),
      ("d_accuracy", "accuracy (train)", "--"),
      ("val_d_accuracy", "accuracy (held out)", "-"),
      ("val_d_gap", "output gap / target gap", "-"),
    ],
    ylabel="D",
    title="discriminator",
    refs=((0.5, "chance accuracy"),),
  )
  _series(
    axes[0, 2],
    steps,
    records,
    [("z_std", "per-dim std of E(x)", "-"), ("z_mean_norm", "norm of mean E(x)", "-")],
    ylabel="code statistics",
    title="codes against the prior (std 1, mean 0)",
    refs=((1.0, "prior std"),),
  )
  _series(
    axes[1, 0],
    steps,
    records,
    [("z_eff_dim", "E(x)", "-"), ("z_eff_dim_prior", "prior, as many samples", "--")],
    ylabel="effective dimension",
    title="effective dimension of the codes",
  )
  _series(
    axes[1, 1],
    steps,
    records,
    [
      ("x_recon_rel", "x: G_x(G_z(x)) vs batch mean", "-"),
      ("x_recon_other_rel", "x from another segment's code", ":"),
      ("z_recon_rel", "z: G_z(G_x(z)) vs 0", "-"),
    ],
    ylabel="relative squared error",
    title="reconstruction (1 = trivial predictor)",
    refs=((1.0, "trivial predictor"),),
  )
  _series(
    axes[1, 2],
    steps,
    records,
    [("d_calls_dec", "train", "--"), ("val_d_calls_dec", "held out", "-")],
    ylabel="share called decoder",
    title="D's calls (0 or 1: one-sided)",
    refs=((0.5, "balanced"),),
  )
  for ax in axes[1]:
    ax.set_xlabel("training step (batches)")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
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


def sweep_bars(rows: list[dict], keys: list[str], path: str) -> str:
  """Per sweep point: ALI's scores (mean ± std over seeds) above the game's health.

  The lower panel shows the codes' effective dimension relative to the
  prior's share threshold and D's held-out accuracy, so a point that scores
  well with collapsed codes or a dead D is visible at once.
  """
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
  bottom.bar(x - 0.2, [r.get("final_val_d_accuracy", np.nan) for r in rows], 0.4, label="D acc")
  bottom.bar(x + 0.2, [r.get("final_val_d_gap", np.nan) for r in rows], 0.4, label="D gap")
  bottom.axhline(0.5, color="k", lw=0.8, ls=":", label="chance accuracy")
  bottom.set_ylabel("held-out D")
  bottom.legend(fontsize=8, loc="lower right")
  bottom.grid(axis="y", alpha=0.3)
  bottom.set_xticks(x, [r["point"] for r in rows], rotation=30, ha="right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
