r"""Clustering evaluation and the run's report (the report's §3.2 and §4.2).

    python -m song2vec.evaluate --workdir=runs/ali_lsgan     # re-run on the latest checkpoint
    python -m song2vec.evaluate --aggregate runs/a runs/b    # mean ± std across runs (seeds)
    python -m song2vec.evaluate --workdir=runs/a --split=validation --step=1000  # a kept checkpoint
    python -m song2vec.evaluate --split=validation --compare runs/b_s1 runs/b_s2 \
      --against runs/a_s1 runs/a_s2@1500    # candidate seeds against the same seeds of a reference

For each embedding (Raw, PCA-r, MFCC and spectral statistics, spectral flux,
random encoder, ALI) and each test in `config.eval.tests`, cluster into k =
number of labels with k-means and a Gaussian mixture over several seeds and score V-measure,
AMI, NMI and ARI (mean ± std), at segment and at song level, beside chance (the same
clusterings scored against shuffled labels); plus kNN retrieval precision@10
(same label, never counting the query's own song), a linear probe, and the
shares of each embedding's variance between labels, between songs and within
songs.
`song2vec.report` then writes `workdir/report/`: tables (Markdown and CSV), a
bar chart, t-SNE plots of ALI beside PCA, the loss curves and `report.md`.
"""

from __future__ import annotations

import os
import sys
import time

import ml_collections
import numpy as np
from absl import logging
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture

from song2vec import embed, input_pipeline, neighbors, report

SCORES = ("v_measure", "ami", "nmi", "ari")
ALGORITHMS = ("kmeans", "gmm")
LEVELS = ("segment", "song")  # Each segment; each song's mean segment.
# The config.eval settings `evaluate` reads; a run written before one of them
# existed is re-evaluated through launch.py, with its experiment's settings.
EVAL_SETTINGS = (
  "tests",
  "seeds",
  "pca_components",
  "pca_fit_max_segments",
  "knn_k",
  "n_mfcc",
  "clustering",
  "probe",
)


def score(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
  """V-measure, adjusted and normalised mutual information, adjusted Rand index."""
  return {
    "v_measure": skm.v_measure_score(labels, clusters),
    "ami": skm.adjusted_mutual_info_score(labels, clusters),
    "nmi": skm.normalized_mutual_info_score(labels, clusters),
    "ari": skm.adjusted_rand_score(labels, clusters),
  }


def gmm_covariance(n: int, k: int, dim: int, full_max_dim: int) -> str:
  """A full covariance per cluster where it can be estimated, else diagonal.

  A full d x d covariance needs more points than dimensions in each cluster
  (n / k > d), and stays affordable only up to `full_max_dim` dimensions.
  """
  return "full" if n / k > dim and dim <= full_max_dim else "diag"


def cluster(emb: np.ndarray, k: int, algorithm: str, seed: int, options) -> np.ndarray:
  """Cluster assignments of `emb` into k groups; `options` is config.eval.clustering."""
  if algorithm == "kmeans":
    return KMeans(k, n_init=options.kmeans_n_init, random_state=seed).fit_predict(emb)
  covariance = gmm_covariance(len(emb), k, emb.shape[1], options.gmm_full_max_dim)
  gmm = GaussianMixture(
    k, covariance_type=covariance, reg_covar=options.gmm_reg_covar, random_state=seed
  )
  return gmm.fit(emb).predict(emb)


def clustering_scores(
  emb: np.ndarray, labels: np.ndarray, algorithm: str, seeds: int, options
) -> dict:
  """Mean and std over seeds of each score, and of the same for shuffled labels."""
  k = len(np.unique(labels))
  runs, chance = [], []
  for seed in range(seeds):
    clusters = cluster(emb, k, algorithm, seed, options)
    runs.append(score(labels, clusters))
    chance.append(score(np.random.default_rng(seed).permutation(labels), clusters))
  out = {}
  for name in SCORES:
    values = np.array([r[name] for r in runs])
    out[name] = (float(values.mean()), float(values.std()))
    out[f"chance_{name}"] = float(np.mean([c[name] for c in chance]))
  return out


def variance_shares(emb: np.ndarray, labels: np.ndarray, songs: np.ndarray) -> dict[str, float]:
  """Where an embedding's variance lies: between labels, between the songs of
  a label, and between the segments of a song (three shares summing to 1).

  The law of total variance over the nesting label > song > segment, summed
  over dimensions. k-means can only find the labels in variance that lies
  between them: an embedding that spends it on telling songs apart (a song
  fingerprint) clusters songs, not labels, whatever its probe reads.
  """
  e = emb - emb.mean(0)
  label_mean, song_mean = np.zeros_like(e), np.zeros_like(e)
  for label in np.unique(labels):
    label_mean[labels == label] = e[labels == label].mean(0)
  for song in np.unique(songs):
    song_mean[songs == song] = e[songs == song].mean(0)
  total = float(np.sum(e**2))
  if total == 0:
    return {"var_label": float("nan"), "var_song": float("nan"), "var_segment": float("nan")}
  return {
    "var_label": float(np.sum(label_mean**2)) / total,
    "var_song": float(np.sum((song_mean - label_mean) ** 2)) / total,
    "var_segment": float(np.sum((e - song_mean) ** 2)) / total,
  }


def knn_precision(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
  """Mean share of same-label items among each item's k nearest neighbours,
  skipping every item of the query's own group (its song); exact search with
  the distance of `song2vec.neighbors`, which libraries are queried with."""
  return neighbors.label_precision(neighbors.ExactIndex(emb), emb, labels, groups, k)


def _subset(seg: embed.Segments, names) -> np.ndarray:
  """Indices of the segments whose label is in `names` (all if empty)."""
  if not names:
    return np.arange(len(seg.labels))
  wanted = [seg.label_names.index(n) for n in names]
  return np.flatnonzero(np.isin(seg.labels, wanted))


def usable_tests(tests, label_names) -> tuple[dict, list[str]]:
  """The configured tests whose labels all exist in the dataset, and a note per
  skipped one (the default four-style test means nothing on, say, GTZAN)."""
  usable, notes = {}, []
  for name, labels in tests.items():
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
      notes.append(
        f"test {name} skipped: labels {unknown} are not in this dataset "
        f"(set --config.eval.tests.{name} to labels it has: {list(label_names)})"
      )
      logging.warning(notes[-1])
    else:
      usable[name] = list(labels)
  return usable, notes


def linear_probe(
  train_emb: np.ndarray,
  train_labels: np.ndarray,
  emb: np.ndarray,
  labels: np.ndarray,
  options,
) -> float:
  """Accuracy on (emb, labels) of a logistic regression fitted on the train split.

  The representation-learning standard beside clustering: how much of the
  label a linear read-out can find, not only whether it dominates the
  geometry. Inputs are standardised embeddings; `options` is config.eval.probe.
  """
  clf = LogisticRegression(C=options.c, tol=options.tol, max_iter=options.max_iter)
  clf.fit(train_emb, train_labels)
  return float(np.mean(clf.predict(emb) == labels))


def compute_embeddings(
  config, workdir: str, dataset_dir: str, split: str = "test", step: int | None = None
):
  """Every embedding of `split` and of (a subsample of) the train split.

  Each embedding is standardised per dimension with its train statistics, so
  that clustering weighs every dimension alike whatever its scale.

  Returns:
    (embeddings of split, embeddings of train, split's Segments, train's
    Segments, checkpoint step); the embedding dicts are keyed by name.
  """
  info = input_pipeline.load_info(dataset_dir)
  ev = config.eval
  target = embed.load_segments(dataset_dir, split)
  train = embed.load_segments(
    dataset_dir, "train", max_examples=ev.pca_fit_max_segments, seed=config.seed
  )
  ema = config.train.get("ema_decay", 0.0) > 0
  params, step = embed.trained_encoder_params(workdir, ema=ema, step=step)
  untrained = embed.untrained_encoder_params(config.model, info.shape, config.seed)
  pca = embed.fit_pca(train.x, ev.pca_components, config.seed)
  embedders = {
    "Raw": embed.raw,
    f"PCA-{ev.pca_components}": lambda x: pca.transform(embed.raw(x)).astype(np.float32),
    embed.MFCC: lambda x: embed.mfcc_stats(x, info, ev.n_mfcc),
    embed.SPECTRAL: embed.spectral_stats,
    embed.FLUX: embed.spectral_flux,
    embed.UNTRAINED: lambda x: embed.encode(config.model, info.shape, untrained, x),
    "ALI": lambda x: embed.encode(config.model, info.shape, params, x),
  }
  out, train_out = {}, {}
  for name, fn in embedders.items():
    train_out[name], out[name] = embed.standardize(fn(train.x), fn(target.x))
  return out, train_out, target, train, step


def at_level(level: str, e, labels, songs, train_e, train_labels, train_songs):
  """The items a level scores: segments as they are, or each song's mean segment.

  Target and train alike. Returns (e, labels, groups, train_e, train_labels),
  groups being each item's song.
  """
  if level == "segment":
    return e, labels, songs, train_e, train_labels
  e, labels, groups = embed.song_means(e, songs, labels)
  train_e, train_labels, _ = embed.song_means(train_e, train_songs, train_labels)
  return e, labels, groups, train_e, train_labels


def evaluate(
  config,
  workdir: str,
  dataset_dir: str,
  split: str = "test",
  on: str = "",
  *,
  checkpoint: int | None = None,
) -> list[dict]:
  """Scores every embedding of `split` on every test at both levels; returns table rows.

  Choices (recipes, hyper-parameters, checkpoints) are made on the
  validation split; the test split is for the final report only.
  `checkpoint` scores a kept checkpoint other than the latest, reported in
  its own folder (report.report_dir).
  """
  start = time.perf_counter()
  embeddings, train_embeddings, target, train, step = compute_embeddings(
    config, workdir, dataset_dir, split, checkpoint
  )
  rows = []
  tests, notes = usable_tests(config.eval.tests, target.label_names)
  subsets = {name: _subset(target, labels) for name, labels in tests.items()}
  for test_name, names in tests.items():
    idx = subsets[test_name]
    train_idx = _subset(train, names)
    shares = {
      name: variance_shares(emb[idx], target.labels[idx], target.song_ids[idx])
      for name, emb in embeddings.items()
    }
    for level in LEVELS:
      for emb_name, emb in embeddings.items():
        e, labels, groups, tr, tr_labels = at_level(
          level,
          emb[idx],
          target.labels[idx],
          target.song_ids[idx],
          train_embeddings[emb_name][train_idx],
          train.labels[train_idx],
          train.song_ids[train_idx],
        )
        knn = knn_precision(e, labels, groups, config.eval.knn_k)
        probe = linear_probe(tr, tr_labels, e, labels, config.eval.probe)
        majority = float(np.max(np.bincount(labels)) / len(labels))
        for algorithm in ALGORITHMS:
          s = clustering_scores(e, labels, algorithm, config.eval.seeds, config.eval.clustering)
          rows.append(
            {
              "split": split,
              "test": test_name,
              "level": level,
              "embedding": emb_name,
              "algorithm": algorithm,
              "items": len(labels),
              "labels": len(np.unique(labels)),
              "dim": e.shape[1],
              **{f"{m}_mean": s[m][0] for m in SCORES},
              **{f"{m}_std": s[m][1] for m in SCORES},
              **{f"chance_{m}": s[f"chance_{m}"] for m in SCORES},
              "knn_p_at_k": knn,
              "probe_accuracy": probe,
              "probe_majority": majority,
              **shares[emb_name],  # Of the segments, at both levels.
              "checkpoint_step": step,
            }
          )
  logging.info("evaluation of the %s split took %.1f s", split, time.perf_counter() - start)
  scored = report.Scored(rows, embeddings, target, tests, subsets, notes, split, on, checkpoint)
  report.write(config, workdir, dataset_dir, scored)
  return rows


def main(argv: list[str] | None = None) -> int:
  import argparse

  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  group = parser.add_mutually_exclusive_group(required=True)
  group.add_argument("--workdir", help="a run folder written by launch.py")
  group.add_argument(
    "--aggregate", nargs="+", metavar="WORKDIR", help="runs whose reports to combine (mean ± std)"
  )
  group.add_argument(
    "--compare",
    nargs="+",
    metavar="WORKDIR[@STEP]",
    help="candidate runs to compare with --against (paired in order when as many)",
  )
  parser.add_argument("--against", nargs="+", metavar="WORKDIR[@STEP]", help="reference runs")
  parser.add_argument("--level", default="segment", choices=LEVELS)
  parser.add_argument(
    "--split",
    default="test",
    choices=("validation", "test"),
    help="validation: for choices; test: the final report only",
  )
  parser.add_argument(
    "--dataset",
    default="",
    help="evaluate the run's encoder on this data_prep dataset folder instead of its own "
    "(a transfer evaluation: same feature settings, the dataset's own normalisation); "
    "the report goes to report[-SPLIT]-on-<folder name>/",
  )
  parser.add_argument(
    "--step",
    type=int,
    default=None,
    help="score this kept checkpoint instead of the latest (to choose one on the validation "
    "split); the report goes to report[-SPLIT]-stepSTEP/",
  )
  args = parser.parse_args(argv)
  on = os.path.basename(os.path.normpath(args.dataset)) if args.dataset else ""
  if args.aggregate:
    print(report.aggregate(args.aggregate, args.level, args.split, on, args.step))
    return 0
  if args.compare:
    if not args.against:
      parser.error("--compare needs --against (the reference runs)")
    try:
      print(report.compare(args.compare, args.against, args.split, on))
    except (FileNotFoundError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    return 0
  try:
    config = embed.load_run_config(args.workdir)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  path = os.path.join(args.workdir, "config.json")
  missing = [f"eval.{key}" for key in EVAL_SETTINGS if key not in config.eval]
  if missing:
    print(
      f"error: {path} lacks {', '.join(missing)}: the run was written by an older "
      "song2vec. Re-evaluate it with today's settings through launch.py, which resumes "
      "its final checkpoint and only evaluates: python launch.py --config=<its experiment> "
      f"--workdir={args.workdir} [--config.seed=<its seed>]",
      file=sys.stderr,
    )
    return 2
  from data_prep.config import build_config_from_dict

  dataset_dir = build_config_from_dict(config.data.to_dict()).dataset_dir
  if args.dataset:
    theirs = input_pipeline.load_info(args.dataset).metadata["features"]
    ours = input_pipeline.load_info(dataset_dir).metadata["features"]
    if theirs != ours:
      print(
        f"error: {args.dataset} was built with other feature settings than the run's "
        f"{dataset_dir}: {theirs} vs {ours}",
        file=sys.stderr,
      )
      return 2
    dataset_dir = args.dataset
    # Its own labels: the run's tests name the run's labels.
    config.eval.tests = ml_collections.ConfigDict({"all_labels": ()})
  try:
    rows = evaluate(config, args.workdir, dataset_dir, args.split, on, checkpoint=args.step)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(report.markdown_table(rows, "segment"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
