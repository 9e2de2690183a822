r"""Clustering evaluation and the run's report (the report's §3.2 and §4.2).

    python -m song2vec.evaluate --workdir=runs/ali_lsgan     # re-run on the latest checkpoint
    python -m song2vec.evaluate --aggregate runs/a runs/b    # mean ± std across runs (seeds)

For each embedding (Raw, PCA-r, MFCC statistics, random encoder, ALI) and each
test in `config.eval.tests`, cluster into k = number of labels with k-means
and a Gaussian mixture over several seeds and score V-measure, AMI, NMI and
ARI (mean ± std), at segment and at song level, beside chance (the same
clusterings scored against shuffled labels); plus kNN retrieval precision@10
(same label, never counting the query's own song). Writes
`workdir/report/`: tables (Markdown and CSV), a bar chart, t-SNE plots of ALI
beside PCA, the loss curves and `report.md`.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time

import ml_collections
import numpy as np
from absl import logging
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture

from song2vec import embed, health, input_pipeline, neighbors, plots
from song2vec.metric_writers import read_jsonl

SCORES = ("v_measure", "ami", "nmi", "ari")
ALGORITHMS = ("kmeans", "gmm")
UNTRAINED = "Untrained encoder"  # This run's own encoder at step 0.
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
MFCC = "MFCC stats"


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


def compute_embeddings(config, workdir: str, dataset_dir: str, split: str = "test"):
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
  params, step = embed.trained_encoder_params(workdir, ema=config.train.get("ema_decay", 0.0) > 0)
  untrained = embed.untrained_encoder_params(config.model, info.shape, config.seed)
  pca = embed.fit_pca(train.x, ev.pca_components, config.seed)
  embedders = {
    "Raw": embed.raw,
    f"PCA-{ev.pca_components}": lambda x: pca.transform(embed.raw(x)).astype(np.float32),
    MFCC: lambda x: embed.mfcc_stats(x, info, ev.n_mfcc),
    UNTRAINED: lambda x: embed.encode(config.model, info.shape, untrained, x),
    "ALI": lambda x: embed.encode(config.model, info.shape, params, x),
  }
  out, train_out = {}, {}
  for name, fn in embedders.items():
    train_out[name], out[name] = embed.standardize(fn(train.x), fn(target.x))
  return out, train_out, target, train, step


def evaluate(
  config, workdir: str, dataset_dir: str, split: str = "test", on: str = ""
) -> list[dict]:
  """Scores every embedding of `split` on every test at both levels; returns table rows.

  Choices (recipes, hyper-parameters, checkpoints) are made on the
  validation split; the test split is for the final report only.
  """
  start = time.perf_counter()
  embeddings, train_embeddings, target, train, step = compute_embeddings(
    config, workdir, dataset_dir, split
  )
  rows = []
  tests, notes = usable_tests(config.eval.tests, target.label_names)
  for test_name, names in tests.items():
    idx = _subset(target, names)
    train_idx = _subset(train, names)
    for level in ("segment", "song"):
      for emb_name, emb in embeddings.items():
        e, labels, songs = emb[idx], target.labels[idx], target.song_ids[idx]
        tr, tr_labels = train_embeddings[emb_name][train_idx], train.labels[train_idx]
        groups = songs
        if level == "song":
          e, labels, groups = embed.song_means(e, songs, labels)
          tr, tr_labels, _ = embed.song_means(tr, train.song_ids[train_idx], tr_labels)
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
              "checkpoint_step": step,
            }
          )
  logging.info("evaluation of the %s split took %.1f s", split, time.perf_counter() - start)
  _write_report(config, workdir, dataset_dir, rows, embeddings, target, tests, notes, split, on)
  return rows


def format_markdown(head: list[str], rows: list[list[str]]) -> str:
  """A Markdown table from a header and rows of cell strings."""
  lines = [head, ["---"] * len(head), *rows]
  return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def report_dir(workdir: str, split: str = "test", on: str = "") -> str:
  """report/ for the test split (the final report), report-<split>/ otherwise.

  `on` names another dataset the run's encoder was evaluated on (a transfer
  evaluation): report[-<split>]-on-<on>/.
  """
  name = "report" if split == "test" else f"report-{split}"
  return os.path.join(workdir, f"{name}-on-{on}" if on else name)


def scores_path(workdir: str, split: str = "test", on: str = "") -> str:
  """A run's clustering scores; written last, so it also marks a finished evaluation."""
  return os.path.join(report_dir(workdir, split, on), "clustering.csv")


def read_scores(workdir: str, split: str = "test", on: str = "") -> list[dict]:
  """The rows of a run's clustering.csv for `split` (on dataset `on`), as strings."""
  with open(scores_path(workdir, split, on)) as f:
    return list(csv.DictReader(f))


def format_mean_std(mean: float, std: float) -> str:
  """How every table here prints a mean over seeds or runs."""
  return f"{mean:.3f} ± {std:.3f}"


def markdown_table(rows: list[dict], level: str) -> str:
  """Figure 4 as Markdown: embeddings down, (test, algorithm, score) across."""
  rows = [r for r in rows if r["level"] == level]
  tests = list(dict.fromkeys(r["test"] for r in rows))
  names = list(dict.fromkeys(r["embedding"] for r in rows))
  head = ["embedding"]
  for t in tests:
    for a in ALGORITHMS:
      head += [f"{t} {a} V", f"{t} {a} AMI"]
    head += [f"{t} kNN p@10", f"{t} probe acc"]
  body = []
  by = {(r["test"], r["embedding"], r["algorithm"]): r for r in rows}
  for name in names:
    cells = [name]
    for t in tests:
      for a in ALGORITHMS:
        r = by[(t, name, a)]
        cells += [
          format_mean_std(r["v_measure_mean"], r["v_measure_std"]),
          format_mean_std(r["ami_mean"], r["ami_std"]),
        ]
      first = by[(t, name, ALGORITHMS[0])]
      cells += [f"{first['knn_p_at_k']:.3f}", f"{first['probe_accuracy']:.3f}"]
    body.append(cells)
  chance = ["chance (shuffled labels)"]
  for t in tests:
    for a in ALGORITHMS:
      r = by[(t, "ALI", a)] if (t, "ALI", a) in by else by[(t, names[0], a)]
      chance += [f"{r['chance_v_measure']:.3f}", f"{r['chance_ami']:.3f}"]
    first = by[(t, names[0], ALGORITHMS[0])]
    chance += [f"{1 / first['labels']:.3f}", f"{first['probe_majority']:.3f}"]
  return format_markdown(head, body + [chance])


def _verdict(rows: list[dict]) -> str:
  """Says plainly, per test and algorithm, whether ALI beats PCA and Raw."""
  out = []
  seg = [r for r in rows if r["level"] == "segment"]
  by = {(r["test"], r["embedding"], r["algorithm"]): r for r in seg}
  pca_name = next(r["embedding"] for r in seg if r["embedding"].startswith("PCA"))
  wins = total = clear = 0
  for (t, name, a), r in by.items():
    if name != "ALI":
      continue
    for base in (pca_name, "Raw"):
      b = by[(t, base, a)]
      for m in ("v_measure", "ami"):
        total += 1
        diff = r[f"{m}_mean"] - b[f"{m}_mean"]
        wins += diff > 0
        clear += diff > r[f"{m}_std"] + b[f"{m}_std"]
  out.append(
    f"At segment level, ALI's mean score is above the baseline's in {wins} of {total} "
    f"comparisons (ALI vs {pca_name} and vs Raw; V-measure and AMI; each test and algorithm), "
    f"and above by more than the two standard deviations combined in {clear}."
  )
  if clear == total:
    verdict = "beats"
  elif wins == 0:
    verdict = "does not beat"
  else:
    verdict = "does not clearly beat"
  out.append(f"**On this data, ALI {verdict} PCA and Raw.**")
  for other, what in ((UNTRAINED, "the untrained encoder (this run at step 0)"), (MFCC, MFCC)):
    if not any(name == other for (_, name, _) in by):
      continue
    above = [
      by[(t, "ALI", a)]["ami_mean"] > by[(t, other, a)]["ami_mean"]
      for (t, name, a) in by
      if name == "ALI"
    ]
    probe = [
      by[(t, "ALI", a)]["probe_accuracy"] > by[(t, other, a)]["probe_accuracy"]
      for (t, name, a) in by
      if name == "ALI" and a == ALGORITHMS[0]
    ]
    out.append(
      f"Against {what}, ALI's segment-level AMI is higher in {sum(above)} of {len(above)} "
      f"(test, algorithm) cells and its linear-probe accuracy in {sum(probe)} of "
      f"{len(probe)} tests."
    )
  return " ".join(out)


def _describe_tests(tests) -> str:
  return ", ".join(f"{name} = {list(labels) or 'all labels'}" for name, labels in tests.items())


def _write_report(config, workdir, dataset_dir, rows, embeddings, test, tests, notes, split, on):
  out = report_dir(workdir, split, on)
  os.makedirs(out, exist_ok=True)
  tables = {level: markdown_table(rows, level) for level in ("segment", "song")}
  for level, text in tables.items():
    with open(os.path.join(out, f"clustering_{level}.md"), "w") as f:
      f.write(text + "\n")
  figures = {"bars": plots.score_bars(rows, os.path.join(out, "clustering_bars.png"))}
  pca_name = next(n for n in embeddings if n.startswith("PCA"))
  for test_name, names in tests.items():
    idx = _subset(test, names)
    labels = [test.label_names[i] for i in test.labels[idx]]
    figures[f"tsne_{test_name}"] = plots.tsne_pair(
      {"ALI": embeddings["ALI"][idx], pca_name: embeddings[pca_name][idx]},
      labels,
      os.path.join(out, f"tsne_{test_name}.png"),
      seed=config.seed,
      title=f"t-SNE of {split} segments ({test_name})",
    )
  curves = os.path.join(workdir, "loss_curves.png")
  if os.path.exists(curves):
    shutil.copy(curves, os.path.join(out, "loss_curves.png"))
  meta = input_pipeline.load_info(dataset_dir).metadata
  step = rows[0]["checkpoint_step"]
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  summary = health.summarize(records)
  ema = config.train.get("ema_decay", 0.0)
  purpose = (
    "the final report: nothing was chosen on this split"
    if split == "test"
    else "for choosing recipes, hyper-parameters and checkpoints; the test split is kept apart"
  )
  cl = config.eval.clustering
  lines = [
    f"# song2vec report: {config.name} ({split} split)",
    "",
    f"- run: `{workdir}`, checkpoint step {step}; seed {config.seed}"
    + (f"; encoder weights: moving average (decay {ema})" if ema else ""),
    f"- data: `{dataset_dir}` ({meta['source']['type']}), {meta['features']['frontend']} "
    f"{tuple(meta['features']['shape'])}, {len(meta['labels'])} labels, "
    f"{meta['splits']['train']['songs']} train / {meta['splits'][split]['songs']} {split} songs, "
    f"{meta['splits'][split]['examples']} {split} segments; scored on the {split} split, {purpose}",
    f"- embeddings: each standardised per dimension with its train-split mean and std; "
    f"ALI = the encoder's {config.model.get('embedding', 'z')!r} embedding; "
    f"{UNTRAINED} = the same network with this run's initial weights",
    f"- clustering: k = number of labels; k-means ({cl.kmeans_n_init} inits) and a Gaussian mixture "
    f"(full covariance where each cluster would have more points than dimensions and up to "
    f"{cl.gmm_full_max_dim} dimensions, diagonal otherwise), "
    f"each over {config.eval.seeds} seeds: mean ± std; chance = the same clusterings "
    "scored against shuffled labels; kNN p@10 = share of same-label items among the 10 "
    "nearest, the query's own song excluded (chance row: 1/labels); probe acc = accuracy of "
    "a logistic regression fitted on train-split embeddings (chance row: the majority label's "
    "share)",
    f"- tests: {_describe_tests(tests)}",
    *[f"- {note}" for note in notes],
    "",
    "## Verdict",
    "",
    _verdict(rows) + " Training: " + health.headline(summary),
    "",
    "## Training health",
    "",
    health.describe(summary),
    "",
    "## Segment level (the report's Figure 4)",
    "",
    tables["segment"],
    "",
    "## Song level (mean of a song's segments)",
    "",
    tables["song"],
    "",
    "![scores](clustering_bars.png)",
    "",
  ]
  for test_name in tests:
    lines += [f"![t-SNE {test_name}](tsne_{test_name}.png)", ""]
  if os.path.exists(os.path.join(out, "loss_curves.png")):
    lines += ["## Training (the report's Figure 3)", "", "![loss curves](loss_curves.png)", ""]
  known = test.years >= 0
  if known.any():
    song_emb, _, songs = embed.song_means(
      embeddings["ALI"][known], test.song_ids[known], test.labels[known]
    )
    year_of = dict(zip(test.song_ids[known], test.years[known], strict=True))
    plots.pca_by_value(
      song_emb,
      np.array([year_of[s] for s in songs]),
      os.path.join(out, "pca_year.png"),
      title="ALI song embeddings, first two principal components, coloured by year",
    )
    lines += ["## Songs by year (the report's Figure 8)", "", "![PCA by year](pca_year.png)", ""]
  else:
    lines += [
      "No song in the test split has a year, so the report's Figure 8 (a 2-D PCA of "
      "song embeddings coloured by year) is not drawn.",
      "",
    ]
  lines += [
    "## Config",
    "",
    "```json",
    config.to_json_best_effort(indent=1, sort_keys=True),
    "```",
    "",
  ]
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  # Last, and renamed into place: its presence means the whole report is there.
  final = scores_path(workdir, split, on)
  partial = final + ".incomplete"
  with open(partial, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  os.replace(partial, final)
  logging.info("report: %s", path)
  return path


def aggregate(
  workdirs: list[str], level: str = "segment", split: str = "test", on: str = ""
) -> str:
  """Mean ± std across runs (e.g. training seeds) of each run's mean scores.

  Spread across training seeds is the one that matters for a claim about
  ALI; the ± inside a single report is only over clustering seeds.
  """
  runs: dict[tuple, list[list[float]]] = {}
  for workdir in workdirs:
    for r in read_scores(workdir, split, on):
      if r["level"] == level:
        key = (r["test"], r["embedding"], r["algorithm"])
        values = [float(r["v_measure_mean"]), float(r["ami_mean"])]
        values += [float(r.get("knn_p_at_k", "nan")), float(r.get("probe_accuracy", "nan"))]
        runs.setdefault(key, []).append(values)
  tests = list(dict.fromkeys(k[0] for k in runs))
  names = list(dict.fromkeys(k[1] for k in runs))
  head = ["embedding"]
  for t in tests:
    head += [f"{t} {a} {m}" for a in ALGORITHMS for m in ("V", "AMI")]
    head += [f"{t} kNN p@10", f"{t} probe acc"]
  body = []
  for name in names:
    cells = [name]
    for t in tests:
      for a in ALGORITHMS:
        values = np.array(runs[(t, name, a)])
        cells += [format_mean_std(values[:, i].mean(), values[:, i].std()) for i in (0, 1)]
      values = np.array(runs[(t, name, ALGORITHMS[0])])
      cells += [format_mean_std(values[:, i].mean(), values[:, i].std()) for i in (2, 3)]
    body.append(cells)
  return (
    f"{len(workdirs)} runs, {split} split, {level} level, mean ± std across runs\n\n"
    + format_markdown(head, body)
  )


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
  parser.add_argument("--level", default="segment", choices=("segment", "song"))
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
  args = parser.parse_args(argv)
  on = os.path.basename(os.path.normpath(args.dataset)) if args.dataset else ""
  if args.aggregate:
    print(aggregate(args.aggregate, args.level, args.split, on))
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
  rows = evaluate(config, args.workdir, dataset_dir, args.split, on)
  print(markdown_table(rows, "segment"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
