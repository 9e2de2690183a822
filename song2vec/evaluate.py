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
import json
import os
import shutil
import sys
import time

import ml_collections
import numpy as np
from absl import logging
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from song2vec import embed, input_pipeline, plots

SCORES = ("v_measure", "ami", "nmi", "ari")
ALGORITHMS = ("kmeans", "gmm")
_GMM_FULL_MAX_DIM = 256  # Above this, a full covariance per cluster cannot be estimated.


def score(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
  """V-measure, adjusted and normalised mutual information, adjusted Rand index."""
  return {
    "v_measure": skm.v_measure_score(labels, clusters),
    "ami": skm.adjusted_mutual_info_score(labels, clusters),
    "nmi": skm.normalized_mutual_info_score(labels, clusters),
    "ari": skm.adjusted_rand_score(labels, clusters),
  }


def cluster(emb: np.ndarray, k: int, algorithm: str, seed: int) -> np.ndarray:
  """Cluster assignments of `emb` into k groups."""
  if algorithm == "kmeans":
    return KMeans(k, n_init=4, random_state=seed).fit_predict(emb)
  covariance = "full" if emb.shape[1] <= _GMM_FULL_MAX_DIM else "diag"
  gmm = GaussianMixture(k, covariance_type=covariance, reg_covar=1e-3, random_state=seed)
  return gmm.fit(emb).predict(emb)


def clustering_scores(emb: np.ndarray, labels: np.ndarray, algorithm: str, seeds: int) -> dict:
  """Mean and std over seeds of each score, and of the same for shuffled labels."""
  k = len(np.unique(labels))
  runs, chance = [], []
  for seed in range(seeds):
    clusters = cluster(emb, k, algorithm, seed)
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
  skipping every item of the query's own group (its song)."""
  n = len(emb)
  extra = int(np.max(np.unique(groups, return_counts=True)[1]))
  nn = NearestNeighbors(n_neighbors=min(n, k + extra)).fit(emb)
  _, idx = nn.kneighbors(emb)
  precisions = []
  for i in range(n):
    others = [j for j in idx[i] if groups[j] != groups[i]][:k]
    if others:
      precisions.append(np.mean(labels[others] == labels[i]))
  return float(np.mean(precisions))


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


def compute_embeddings(config, workdir: str, dataset_dir: str) -> tuple[dict, embed.Segments, int]:
  """Every embedding of the test split, keyed by name; and the checkpoint step."""
  info = input_pipeline.load_info(dataset_dir)
  ev = config.eval
  test = embed.load_segments(dataset_dir, "test")
  train = embed.load_segments(
    dataset_dir, "train", max_examples=ev.pca_fit_max_segments, seed=config.seed
  )
  params, step = embed.trained_encoder_params(workdir)
  pca = embed.fit_pca(train.x, ev.pca_components, config.seed)
  flat = embed.raw(test.x)
  out = {
    "Raw": flat,
    f"PCA-{ev.pca_components}": pca.transform(flat).astype(np.float32),
    "MFCC stats": embed.mfcc_stats(test.x, info),
    "Random encoder": embed.encode(
      config.model,
      info.shape,
      embed.random_encoder_params(config.model, info.shape, config.seed + 1),
      test.x,
    ),
    "ALI": embed.encode(config.model, info.shape, params, test.x),
  }
  return out, test, step


def evaluate(config, workdir: str, dataset_dir: str) -> list[dict]:
  """Scores every embedding on every test at both levels; returns table rows."""
  start = time.perf_counter()
  embeddings, test, step = compute_embeddings(config, workdir, dataset_dir)
  rows = []
  tests, notes = usable_tests(config.eval.tests, test.label_names)
  for test_name, names in tests.items():
    idx = _subset(test, names)
    for level in ("segment", "song"):
      for emb_name, emb in embeddings.items():
        e, labels, songs = emb[idx], test.labels[idx], test.song_ids[idx]
        groups = songs
        if level == "song":
          e, labels, groups = embed.song_means(e, songs, labels)
        knn = knn_precision(e, labels, groups, config.eval.knn_k)
        for algorithm in ALGORITHMS:
          s = clustering_scores(e, labels, algorithm, config.eval.seeds)
          rows.append(
            {
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
              "checkpoint_step": step,
            }
          )
  logging.info("evaluation took %.1f s", time.perf_counter() - start)
  _write_report(config, workdir, dataset_dir, rows, embeddings, test, tests, notes)
  return rows


def format_markdown(head: list[str], rows: list[list[str]]) -> str:
  """A Markdown table from a header and rows of cell strings."""
  lines = [head, ["---"] * len(head), *rows]
  return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def scores_path(workdir: str) -> str:
  """A run's clustering scores; written last, so it also marks a finished run."""
  return os.path.join(workdir, "report", "clustering.csv")


def read_scores(workdir: str) -> list[dict]:
  """The rows of a run's report/clustering.csv, as strings."""
  with open(scores_path(workdir)) as f:
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
    head.append(f"{t} kNN p@10")
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
      cells.append(f"{by[(t, name, ALGORITHMS[0])]['knn_p_at_k']:.3f}")
    body.append(cells)
  chance = ["chance (shuffled labels)"]
  for t in tests:
    for a in ALGORITHMS:
      r = by[(t, "ALI", a)] if (t, "ALI", a) in by else by[(t, names[0], a)]
      chance += [f"{r['chance_v_measure']:.3f}", f"{r['chance_ami']:.3f}"]
    labels = by[(t, names[0], ALGORITHMS[0])]["labels"]
    chance.append(f"{1 / labels:.3f}")
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
  control = [
    by[(t, "ALI", a)]["ami_mean"] > by[(t, "Random encoder", a)]["ami_mean"]
    for (t, name, a) in by
    if name == "ALI"
  ]
  out.append(
    f"Against the untrained encoder (same network, random weights), ALI's segment-level AMI "
    f"is higher in {sum(control)} of {len(control)} (test, algorithm) cells."
  )
  return " ".join(out)


def _describe_tests(tests) -> str:
  return ", ".join(f"{name} = {list(labels) or 'all labels'}" for name, labels in tests.items())


def _write_report(config, workdir, dataset_dir, rows, embeddings, test, tests, notes) -> str:
  out = os.path.dirname(scores_path(workdir))
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
      title=f"t-SNE of test segments ({test_name})",
    )
  curves = os.path.join(workdir, "loss_curves.png")
  if os.path.exists(curves):
    shutil.copy(curves, os.path.join(out, "loss_curves.png"))
  meta = input_pipeline.load_info(dataset_dir).metadata
  step = rows[0]["checkpoint_step"]
  lines = [
    f"# song2vec report: {config.name}",
    "",
    f"- run: `{workdir}`, checkpoint step {step}; seed {config.seed}",
    f"- data: `{dataset_dir}` ({meta['source']['type']}), {meta['features']['frontend']} "
    f"{tuple(meta['features']['shape'])}, {len(meta['labels'])} labels, "
    f"{meta['splits']['train']['songs']} train / {meta['splits']['test']['songs']} test songs, "
    f"{meta['splits']['test']['examples']} test segments",
    f"- clustering: k = number of labels; k-means (4 inits) and a Gaussian mixture "
    f"(full covariance up to {_GMM_FULL_MAX_DIM} dimensions, diagonal above), "
    f"each over {config.eval.seeds} seeds: mean ± std; chance = the same clusterings "
    "scored against shuffled labels; kNN p@10 = share of same-label items among the 10 "
    "nearest, the query's own song excluded (chance row: 1/labels)",
    f"- tests: {_describe_tests(tests)}",
    *[f"- {note}" for note in notes],
    "",
    "## Verdict",
    "",
    _verdict(rows),
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
  partial = scores_path(workdir) + ".incomplete"
  with open(partial, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  os.replace(partial, scores_path(workdir))
  logging.info("report: %s", path)
  return path


def aggregate(workdirs: list[str], level: str = "segment") -> str:
  """Mean ± std across runs (e.g. training seeds) of each run's mean scores.

  Spread across training seeds is the one that matters for a claim about
  ALI; the ± inside a single report is only over clustering seeds.
  """
  runs: dict[tuple, list[tuple[float, float]]] = {}
  for workdir in workdirs:
    for r in read_scores(workdir):
      if r["level"] == level:
        key = (r["test"], r["embedding"], r["algorithm"])
        runs.setdefault(key, []).append((float(r["v_measure_mean"]), float(r["ami_mean"])))
  tests = list(dict.fromkeys(k[0] for k in runs))
  names = list(dict.fromkeys(k[1] for k in runs))
  head = ["embedding"] + [f"{t} {a} {m}" for t in tests for a in ALGORITHMS for m in ("V", "AMI")]
  body = []
  for name in names:
    cells = [name]
    for t in tests:
      for a in ALGORITHMS:
        values = np.array(runs[(t, name, a)])
        cells += [format_mean_std(values[:, i].mean(), values[:, i].std()) for i in (0, 1)]
    body.append(cells)
  return f"{len(workdirs)} runs, {level} level, mean ± std across runs\n\n" + format_markdown(
    head, body
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
  args = parser.parse_args(argv)
  if args.aggregate:
    print(aggregate(args.aggregate, args.level))
    return 0
  path = os.path.join(args.workdir, "config.json")
  if not os.path.exists(path):
    print(f"error: {path} not found: not a launch.py run folder", file=sys.stderr)
    return 2
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  from data_prep.config import build_config_from_dict

  dataset_dir = build_config_from_dict(config.data.to_dict()).dataset_dir
  rows = evaluate(config, args.workdir, dataset_dir)
  print(markdown_table(rows, "segment"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
