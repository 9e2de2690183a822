"""The run's report: tables, Verdict, figures and report.md from evaluate's scores.

`evaluate` scores the embeddings; this module writes what a reader looks at,
in `workdir/report[-<split>][-on-<dataset>]/`, and combines the scores of
several runs (training seeds) into one table. clustering.csv is written last
and renamed into place, so its presence means the whole report is there.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil

import numpy as np
from absl import logging

from song2vec import embed, health, input_pipeline, plots
from song2vec.metric_writers import read_jsonl


def _algorithms(rows) -> list[str]:
  """The clustering algorithms in rows, in their order."""
  return list(dict.fromkeys(r["algorithm"] for r in rows))


def format_markdown(head: list[str], rows: list[list[str]]) -> str:
  """A Markdown table from a header and rows of cell strings."""
  lines = [head, ["---"] * len(head), *rows]
  return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def report_dir(workdir: str, split: str = "test", on: str = "", step: int | None = None) -> str:
  """report/ for the test split (the final report), report-<split>/ otherwise.

  `step` names a kept checkpoint other than the latest (report[-<split>]-step<N>/),
  for choosing a checkpoint on the validation split. `on` names another
  dataset the run's encoder was evaluated on (a transfer evaluation):
  report[-<split>][-step<N>]-on-<on>/.
  """
  name = "report" if split == "test" else f"report-{split}"
  if step is not None:
    name += f"-step{step}"
  return os.path.join(workdir, f"{name}-on-{on}" if on else name)


def scores_path(workdir: str, split: str = "test", on: str = "", step: int | None = None) -> str:
  """A run's clustering scores; written last, so it also marks a finished evaluation."""
  return os.path.join(report_dir(workdir, split, on, step), "clustering.csv")


def read_scores(workdir: str, split: str = "test", on: str = "", step: int | None = None):
  """The rows of a run's clustering.csv for `split` (on dataset `on`), as strings."""
  with open(scores_path(workdir, split, on, step)) as f:
    return list(csv.DictReader(f))


def format_mean_std(mean: float, std: float) -> str:
  """How every table here prints a mean over seeds or runs."""
  return f"{mean:.3f} ± {std:.3f}"


def markdown_table(rows: list[dict], level: str) -> str:
  """Figure 4 as Markdown: embeddings down, (test, algorithm, score) across."""
  rows = [r for r in rows if r["level"] == level]
  algorithms = _algorithms(rows)
  tests = list(dict.fromkeys(r["test"] for r in rows))
  names = list(dict.fromkeys(r["embedding"] for r in rows))
  head = ["embedding"]
  for t in tests:
    for a in algorithms:
      head += [f"{t} {a} V", f"{t} {a} AMI"]
    head += [f"{t} kNN p@10", f"{t} probe acc"]
  body = []
  by = {(r["test"], r["embedding"], r["algorithm"]): r for r in rows}
  for name in names:
    cells = [name]
    for t in tests:
      for a in algorithms:
        r = by[(t, name, a)]
        cells += [
          format_mean_std(r["v_measure_mean"], r["v_measure_std"]),
          format_mean_std(r["ami_mean"], r["ami_std"]),
        ]
      first = by[(t, name, algorithms[0])]
      cells += [f"{first['knn_p_at_k']:.3f}", f"{first['probe_accuracy']:.3f}"]
    body.append(cells)
  chance = ["chance (shuffled labels)"]
  for t in tests:
    for a in algorithms:
      r = by[(t, "ALI", a)] if (t, "ALI", a) in by else by[(t, names[0], a)]
      chance += [f"{r['chance_v_measure']:.3f}", f"{r['chance_ami']:.3f}"]
    first = by[(t, names[0], algorithms[0])]
    chance += [f"{1 / first['labels']:.3f}", f"{first['probe_majority']:.3f}"]
  return format_markdown(head, body + [chance])


SHARES = ("var_label", "var_song", "var_segment")
SHARE_HEADS = ("label", "song within label", "segment within song")


def variance_table(rows: list[dict]) -> str:
  """Where each embedding's variance lies, per test (evaluate.variance_shares)."""
  first = _algorithms(rows)[0]  # The shares are the same in every algorithm's row.
  rows = [r for r in rows if r["level"] == "segment" and r["algorithm"] == first]
  tests = list(dict.fromkeys(r["test"] for r in rows))
  head = ["embedding"] + [f"{t} {h}" for t in tests for h in SHARE_HEADS]
  by = {(r["test"], r["embedding"]): r for r in rows}
  body = []
  for name in dict.fromkeys(r["embedding"] for r in rows):
    body.append([name] + [f"{float(by[(t, name)][s]):.3f}" for t in tests for s in SHARES])
  return format_markdown(head, body)


def verdict(rows: list[dict]) -> str:
  """Says plainly, per test and algorithm, whether ALI beats PCA and Raw."""
  out = []
  seg = [r for r in rows if r["level"] == "segment"]
  first_algorithm = _algorithms(seg)[0]
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
  for other, what in (
    (embed.UNTRAINED, "the untrained encoder (this run at step 0)"),
    (embed.MFCC, embed.MFCC),
    (embed.SPECTRAL, "spectral stats (each bin's mean and std over time)"),
    (embed.FLUX, "spectral flux (each bin's mean absolute change between frames)"),
  ):
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
      if name == "ALI" and a == first_algorithm
    ]
    out.append(
      f"Against {what}, ALI's segment-level AMI is higher in {sum(above)} of {len(above)} "
      f"(test, algorithm) cells and its linear-probe accuracy in {sum(probe)} of "
      f"{len(probe)} tests."
    )
  return " ".join(out)


def _describe_tests(tests) -> str:
  return ", ".join(f"{name} = {list(labels) or 'all labels'}" for name, labels in tests.items())


@dataclasses.dataclass(frozen=True)
class Scored:
  """One split's evaluation, everything `write` draws from.

  Attributes:
    rows: evaluate()'s score rows.
    embeddings: the split's standardised embeddings, keyed by name.
    segments: the split's Segments.
    tests: the tests scored, name -> labels (empty: all).
    subsets: name -> indices of `segments` in that test.
    notes: lines for the report's header (tests skipped and why).
    split: the split scored.
    on: the other dataset's name in a transfer evaluation, else "".
    step: the checkpoint asked for; None: the latest, reported in the default folder.
  """

  rows: list[dict]
  embeddings: dict[str, np.ndarray]
  segments: embed.Segments
  tests: dict[str, list[str]]
  subsets: dict[str, np.ndarray]
  notes: list[str]
  split: str
  on: str = ""
  step: int | None = None


def write(config, workdir: str, dataset_dir: str, scored: Scored) -> str:
  """Writes report[-split][-on-<on>]/: tables, figures, report.md, then clustering.csv.

  Args:
    config: the run's config.
    workdir: the run folder.
    dataset_dir: the dataset the rows were scored on.
    scored: the split's evaluation.

  Returns:
    The path of report.md.
  """
  rows, embeddings, test, tests = scored.rows, scored.embeddings, scored.segments, scored.tests
  subsets, notes, split, on = scored.subsets, scored.notes, scored.split, scored.on
  out = report_dir(workdir, split, on, scored.step)
  os.makedirs(out, exist_ok=True)
  tables = {level: markdown_table(rows, level) for level in ("segment", "song")}
  for level, text in tables.items():
    with open(os.path.join(out, f"clustering_{level}.md"), "w") as f:
      f.write(text + "\n")
  figures = {"bars": plots.score_bars(rows, os.path.join(out, "clustering_bars.png"))}
  pca_name = next(n for n in embeddings if n.startswith("PCA"))
  for test_name in tests:
    idx = subsets[test_name]
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
    f"{embed.UNTRAINED} = the same network with this run's initial weights; "
    f"{embed.SPECTRAL} = each frequency bin's mean and std over the segment's frames; "
    f"{embed.FLUX} = each bin's mean absolute change between consecutive frames",
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
    verdict(rows) + " Training: " + health.headline(summary),
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
    "## Where each embedding's variance lies",
    "",
    "Shares of the standardised segments' variance that lie between labels, between the "
    "songs of a label and between the segments of a song. k-means finds the labels only in "
    "variance between them; an embedding that spends its variance telling songs apart "
    "clusters songs, whatever its probe reads.",
    "",
    variance_table(rows),
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
  final = scores_path(workdir, split, on, scored.step)
  partial = final + ".incomplete"
  with open(partial, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  os.replace(partial, final)
  logging.info("report: %s", path)
  return path


def aggregate(
  workdirs: list[str],
  level: str = "segment",
  split: str = "test",
  on: str = "",
  step: int | None = None,
) -> str:
  """Mean ± std across runs (e.g. training seeds) of each run's mean scores.

  Spread across training seeds is the one that matters for a claim about
  ALI; the ± inside a single report is only over clustering seeds.
  """
  runs: dict[tuple, list[list[float]]] = {}
  for workdir in workdirs:
    for r in read_scores(workdir, split, on, step):
      if r["level"] == level:
        key = (r["test"], r["embedding"], r["algorithm"])
        values = [float(r["v_measure_mean"]), float(r["ami_mean"])]
        values += [float(r.get("knn_p_at_k", "nan")), float(r.get("probe_accuracy", "nan"))]
        values += [float(r.get(share, "nan")) for share in SHARES]  # Runs before stop 21: nan.
        runs.setdefault(key, []).append(values)
  tests = list(dict.fromkeys(k[0] for k in runs))
  names = list(dict.fromkeys(k[1] for k in runs))
  algorithms = list(dict.fromkeys(k[2] for k in runs))
  head = ["embedding"]
  for t in tests:
    head += [f"{t} {a} {m}" for a in algorithms for m in ("V", "AMI")]
    head += [f"{t} kNN p@10", f"{t} probe acc"]
  body = []
  for name in names:
    cells = [name]
    for t in tests:
      for a in algorithms:
        values = np.array(runs[(t, name, a)])
        cells += [format_mean_std(values[:, i].mean(), values[:, i].std()) for i in (0, 1)]
      values = np.array(runs[(t, name, algorithms[0])])
      cells += [format_mean_std(values[:, i].mean(), values[:, i].std()) for i in (2, 3)]
    body.append(cells)
  text = (
    f"{len(workdirs)} runs, {split} split, {level} level, mean ± std across runs\n\n"
    + format_markdown(head, body)
  )
  if level != "segment" or all(np.isnan(v[4]) for vs in runs.values() for v in vs):
    return text
  # Where the variance lies: one value per run and embedding (any algorithm's row).
  head = ["embedding"] + [f"{t} {h}" for t in tests for h in SHARE_HEADS]
  body = []
  for name in names:
    cells = [name]
    for t in tests:
      values = np.array(runs[(t, name, algorithms[0])])[:, 4:]
      cells += [format_mean_std(v.mean(), v.std()) for v in values.T]
    body.append(cells)
  return text + "\n\nShares of the segments' variance\n\n" + format_markdown(head, body)


# The columns a recipe is judged on (docs/remedies_cpu.md's screens): (level, algorithm, score).
COMPARED = (
  ("segment", "kmeans", "ami_mean"),
  ("segment", "gmm", "ami_mean"),
  ("segment", "kmeans", "probe_accuracy"),
  ("song", "kmeans", "ami_mean"),
  ("song", "gmm", "ami_mean"),
  ("song", "kmeans", "probe_accuracy"),
)


def run_and_step(arg: str) -> tuple[str, int | None]:
  """'runs/a@1500' -> ('runs/a', 1500), a kept checkpoint's report; 'runs/a' -> ('runs/a', None)."""
  run, at, step = arg.rpartition("@")
  if at and step.isdigit():
    return run, int(step)
  return arg, None


def compare(
  candidates: list[str],
  references: list[str],
  split: str = "validation",
  on: str = "",
  test: str = "all_labels",
  embedding: str = "ALI",
) -> str:
  """Candidate runs against reference runs, as the screens' rules read them.

  Each run is a workdir, or workdir@STEP for a kept checkpoint's report. A
  row per side (mean ± std across runs of each run's mean over clustering
  seeds) and a verdict per column: "above" or "below" only where the means
  differ by more than the two spreads combined, "level" otherwise. With as
  many candidates as references, the runs are taken as pairs in order (the
  same seeds on the same machine) and the per-pair differences are added,
  with how many pairs rose.
  """
  heads = [
    f"{level} {'probe' if score == 'probe_accuracy' else algorithm + ' AMI'}"
    for level, algorithm, score in COMPARED
  ]

  def values(arg: str) -> list[float]:
    workdir, step = run_and_step(arg)
    rows = read_scores(workdir, split, on, step)
    by = {(r["test"], r["embedding"], r["level"], r["algorithm"]): r for r in rows}
    out = []
    for level, algorithm, score in COMPARED:
      row = by.get((test, embedding, level, algorithm))
      if row is None:
        raise ValueError(
          f"{scores_path(workdir, split, on, step)} has no {test} {embedding} {level} {algorithm} row"
        )
      out.append(float(row[score]))
    return out

  cand = np.array([values(a) for a in candidates])
  ref = np.array([values(a) for a in references])
  body = [
    [f"{side} ({len(runs)} runs)"]
    + [format_mean_std(m, s) for m, s in zip(runs.mean(0), runs.std(0), strict=True)]
    for side, runs in (("reference", ref), ("candidate", cand))
  ]
  if len(cand) == len(ref):
    diff = cand - ref
    body.append(
      ["difference, by pair"]
      + [
        f"{m:+.3f} ± {s:.3f} ({int((d > 0).sum())}/{len(d)} up)"
        for m, s, d in zip(diff.mean(0), diff.std(0), diff.T, strict=True)
      ]
    )
  gap, spreads = cand.mean(0) - ref.mean(0), cand.std(0) + ref.std(0)
  body.append(
    ["verdict"]
    + [
      "above" if g > s else "below" if -g > s else "level"
      for g, s in zip(gap, spreads, strict=True)
    ]
  )
  return (
    f"{embedding}, {test}, {split} split{' on ' + on if on else ''}: candidate against reference; "
    "above / below = by more than the two spreads (std across runs) combined\n\n"
    + format_markdown(["runs", *heads], body)
  )
