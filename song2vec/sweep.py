r"""Runs a sweep defined as data, one point after another, and aggregates it.

    python -m song2vec.sweep --sweep=experiments/ablations.py            # every point
    python -m song2vec.sweep --sweep=experiments/ablations.py --index=3  # one point (for a scheduler)
    python -m song2vec.sweep --sweep=experiments/ablations.py --aggregate_only

A sweep file has `get_config(arg)` (the base config) and `get_sweep(arg)`, a
list of points `{"name": str, "overrides": {"dotted.key": value}}`. Each point
runs in `<root>/<name>` through `experiment.run` (data, training, evaluation,
report). A point whose report exists is skipped; a point that crashes leaves
`FAILED` (the traceback) in its folder and the sweep carries on.
"""

from __future__ import annotations

import argparse
import collections
import csv
import importlib.util
import os
import sys
import traceback

import ml_collections
import numpy as np
from absl import logging

from song2vec import embed, health, report
from song2vec.metric_writers import read_jsonl

SPLIT = "validation"  # Sweeps choose recipes: they read the validation split only.
# Scored in every run's report beside ALI; the sweep's rows are read against them
# (PCA as reported, PCA-<components>).
REFERENCES = (embed.UNTRAINED, "PCA", embed.MFCC, embed.SPECTRAL, embed.FLUX)
FINALS = ("d_loss", "g_loss", "val_d_accuracy", "val_d_gap", "z_eff_dim", "x_recon_rel")


def load_sweep(path: str, arg: str):
  spec = importlib.util.spec_from_file_location("_sweep", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg), module.get_sweep(arg)


def apply_overrides(base: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """A copy of base with each dotted key set; an unknown key is an error."""
  config = ml_collections.ConfigDict(base.to_dict())
  for key, value in overrides.items():
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
      if part not in node:
        raise KeyError(f"sweep override {key!r}: no field {part!r}")
      node = node[part]
    if parts[-1] not in node:
      raise KeyError(f"sweep override {key!r}: no field {parts[-1]!r}")
    node[parts[-1]] = value
  return config


def run_point(point: dict, base, root: str) -> str:
  """Runs one point unless done; returns "done", "skipped" or "failed"."""
  from song2vec import experiment

  workdir = os.path.join(root, point["name"])
  if os.path.exists(report.scores_path(workdir, SPLIT)):
    return "skipped"
  os.makedirs(workdir, exist_ok=True)
  failed = os.path.join(workdir, "FAILED")
  if os.path.exists(failed):
    os.remove(failed)
  try:
    config = apply_overrides(base, point["overrides"])
    config.name = f"{config.name} / {point['name']}"
    config.eval.splits = (SPLIT,)  # Whatever the sweep file says: choices never see test.
    experiment.run(config, workdir)
  except Exception:  # Record it and carry on with the other points.
    with open(failed, "w") as f:
      f.write(traceback.format_exc())
    logging.error("sweep point %s failed; see %s", point["name"], failed)
    return "failed"
  return "done"


def aggregate(root: str, points: list[dict]) -> list[dict]:
  """One row per point name with its seeds folded in (names end in -seed<N>).

  Then one reference row per embedding in REFERENCES, over every finished run:
  the untrained encoder (each run's own initial weights), PCA-64, MFCC
  statistics, spectral statistics and spectral flux on the same validation
  set give the scale on which ALI's scores mean something.
  """
  groups: dict[str, list[str]] = collections.defaultdict(list)
  for p in points:
    groups[p["name"].rsplit("-seed", 1)[0]].append(os.path.join(root, p["name"]))
  rows = []
  references: dict[str, dict] = {}  # Embedding name as reported -> scores.
  for name, dirs in groups.items():
    row: dict = {"point": name, "runs": 0, "failed": 0, "not_run": 0}
    finals = collections.defaultdict(list)
    flags = collections.defaultdict(list)
    scores = collections.defaultdict(list)
    for d in dirs:
      if os.path.exists(os.path.join(d, "FAILED")):
        row["failed"] += 1
        continue
      if not os.path.exists(report.scores_path(d, SPLIT)):
        row["not_run"] += 1  # Not started, running, or interrupted: not counted.
        continue
      row["runs"] += 1
      summary = health.summarize(read_jsonl(os.path.join(d, "metrics.jsonl")))
      for key in FINALS:
        finals[key].append(summary[key])
      for key, value in health.flags(summary).items():
        flags[key].append(value)
      for r in report.read_scores(d, SPLIT):
        if r["level"] != "segment" or r["algorithm"] != "kmeans":
          continue
        name = r["embedding"]
        if name == "ALI":
          into = scores
        elif any(name == ref or name.startswith(f"{ref}-") for ref in REFERENCES):
          into = references.setdefault(name, collections.defaultdict(list))
        else:
          continue
        into[f"{r['test']} AMI"].append(float(r["ami_mean"]))
        into[f"{r['test']} probe"].append(float(r["probe_accuracy"]))
        if r.get("var_label"):  # Scores written since stop 21.
          into[f"{r['test']} label share"].append(float(r["var_label"]))
    for key, values in finals.items():
      row[f"final_{key}"] = float(np.mean(values))
    for key in health.FLAGS:
      values = [v for v in flags.get(key, []) if v is not None]
      row[key] = f"{sum(values)}/{len(values)}"
    for key, values in scores.items():
      row[key] = (float(np.mean(values)), float(np.std(values)))
    rows.append(row)
  for name, ref_scores in references.items():
    if ref_scores:
      row = {"point": f"reference: {name}", "runs": len(next(iter(ref_scores.values())))}
      row.update(failed=0, not_run=0, **dict.fromkeys(health.FLAGS, "–"))
      row.update({k: (float(np.mean(v)), float(np.std(v))) for k, v in ref_scores.items()})
      rows.append(row)
  return rows


def write_tables(rows: list[dict], root: str) -> str:
  """sweep.md, sweep.csv and sweep.png in root; returns the Markdown."""
  keys = sorted({k for r in rows for k in r if isinstance(r.get(k), tuple)})
  head = ["point", "runs", "failed", "not run"]
  head += [f"final {k}" for k in FINALS]
  head += [k.replace("_", " ") for k in health.FLAGS] + keys
  body = []
  for r in rows:
    cells = [r["point"], str(r["runs"]), str(r["failed"]), str(r["not_run"])]
    finals = (r.get(f"final_{k}") for k in FINALS)
    cells += ["–" if v is None else f"{v:.3f}" for v in finals]
    cells += [r[k] for k in health.FLAGS]
    cells += [report.format_mean_std(*r[k]) if k in r else "–" for k in keys]
    body.append(cells)
  text = (
    f"ALI on the {SPLIT} split, k-means AMI, linear-probe accuracy and the share of the "
    f"variance between labels (evaluate.variance_shares), segment level, mean ± "
    f"std over seeds; the reference rows score the untrained encoder (each run's initial "
    f"weights), PCA-64, MFCC statistics, spectral statistics and spectral flux in the same "
    f"runs (where a run's report has them). Final values: mean over the "
    f"last {health.TAIL:.0%} of logged steps, averaged over runs; val_d_* are D's accuracy "
    f"(at the midpoint of its targets) and output gap (in units of its target gap) on "
    f"held-out pairs; x_recon_rel is reconstruction error relative to predicting the mean. "
    f"Flags count runs: codes collapsed (E(x)'s effective dimension under "
    f"{health.CODES_COLLAPSED:.0%} of the prior's), D dead (|gap| < {health.D_DEAD_GAP}), D "
    f"wins (accuracy > {health.D_WINS}), D one-sided (over {health.ONE_SIDED:.0%} of pairs "
    f"called one kind). Not run: no report yet (not started, running or interrupted).\n\n"
    + report.format_markdown(head, body)
  )
  with open(os.path.join(root, "sweep.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(root, "sweep.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(head)
    writer.writerows(body)
  from song2vec import plots

  ami = [k for k in keys if k.endswith(" AMI")] or keys
  plots.sweep_bars(rows, ami, os.path.join(root, "sweep.png"))
  return text


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--sweep", required=True, help="sweep file with get_config and get_sweep")
  parser.add_argument("--arg", default="cpu", help="preset passed to get_config/get_sweep")
  parser.add_argument("--root", default="", help="runs folder (default runs/<sweep file name>)")
  parser.add_argument("--index", type=int, default=None, help="run only this point")
  parser.add_argument("--aggregate_only", action="store_true", help="only rebuild the tables")
  args = parser.parse_args(argv)
  from song2vec import experiment

  logging.set_verbosity(logging.INFO)
  experiment.quiet_orbax_logs()
  base, points = load_sweep(args.sweep, args.arg)
  root = args.root or os.path.join("runs", os.path.splitext(os.path.basename(args.sweep))[0])
  os.makedirs(root, exist_ok=True)
  if not args.aggregate_only:
    chosen = range(len(points)) if args.index is None else [args.index]
    for i in chosen:
      status = run_point(points[i], base, root)
      logging.info("sweep point %d/%d %s: %s", i + 1, len(points), points[i]["name"], status)
  if args.index is None:
    print(write_tables(aggregate(root, points), root))
  return 0


if __name__ == "__main__":
  sys.exit(main())
