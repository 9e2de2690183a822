"""The sweep runner: every point in its own folder, skips, crash records, tables."""

from __future__ import annotations

import json
import os

from experiments import ablations
from song2vec import sweep

SWEEP_FILE = """
from test_train import tiny_config

def get_config(arg):
  c = tiny_config(num_steps=3, log_every=3, checkpoint_every=3)
  c.data.source = "folder"
  c.data.path = {path!r}
  c.data.out_dir = {out!r}
  c.data.workers = 1
  c.data.features.update(dict(sample_rate=8000, n_fft=128, hop_length=64, n_mels=0,
                              segment_seconds=0.2, segments_per_song=3))
  c.eval.tests = {{"all_labels": ()}}
  c.eval.seeds = 1
  c.eval.pca_components = 2
  return c

def get_sweep(arg):
  return [
    {{"name": "plain-seed0", "overrides": {{"seed": 0}}}},
    {{"name": "plain-seed1", "overrides": {{"seed": 1}}}},
    {{"name": "broken-seed0", "overrides": {{"loss.objective": "no_such_objective"}}}},
  ]
"""


def test_ablations_cover_the_grid_and_each_stabiliser():
  names = {p["name"].rsplit("-seed", 1)[0] for p in ablations.get_sweep()}
  assert {f"{o}-g{r}" for o in ("sigmoid", "least_squares") for r in (1, 2, 4, 8)} <= names
  assert {"no_label_swap", "no_label_smoothing", "no_instance_noise", "no_d_kernel_l2"} <= names
  assert "no_stabilisers" in names
  base = ablations.get_config()
  for point in ablations.get_sweep():
    sweep.apply_overrides(base, point["overrides"])  # Every key exists.


def test_runner_runs_skips_records_crashes_and_aggregates(genre_tree, tmp_path):
  path = tmp_path / "tiny_sweep.py"
  path.write_text(SWEEP_FILE.format(path=str(genre_tree), out=str(tmp_path / "ds")))
  root = tmp_path / "runs"
  assert sweep.main([f"--sweep={path}", f"--root={root}"]) == 0
  # A sweep chooses: it evaluates on the validation split only.
  assert os.path.exists(root / "plain-seed0" / "report-validation" / "report.md")
  assert not os.path.exists(root / "plain-seed0" / "report")
  failed = (root / "broken-seed0" / "FAILED").read_text()
  assert "no_such_objective" in failed
  base, points = sweep.load_sweep(str(path), "cpu")
  assert sweep.run_point(points[0], base, str(root)) == "skipped"
  unfinished = {"name": "plain-seed2", "overrides": {"seed": 2}}  # E.g. still on the scheduler.
  rows = {r["point"]: r for r in sweep.aggregate(str(root), [*points, unfinished])}
  assert rows["plain"]["runs"] == 2 and rows["plain"]["failed"] == 0
  assert rows["plain"]["not_run"] == 1
  reference = rows["reference: Untrained encoder"]  # Scored in both finished runs.
  assert reference["runs"] == 2 and len(reference["all_labels AMI"]) == 2
  assert "reference: PCA-2" in rows and "reference: MFCC stats" in rows
  assert "reference: Spectral stats" in rows
  assert rows["broken"]["failed"] == 1
  assert rows["plain"]["codes_collapsed"].endswith("/2")
  # Over the tail: seed 0's D wins outright with collapsed codes; seed 1's D
  # calls every pair "decoder" and is dead.
  healthy = {"z_eff_dim": 40.0, "z_eff_dim_prior": 50.0, "val_d_gap": 0.5}
  tails = (
    {"val_d_accuracy": 1.0, "val_d_calls_dec": 0.5, "z_eff_dim": 2.0, "z_eff_dim_prior": 50.0},
    {"val_d_accuracy": 0.5, "val_d_calls_dec": 1.0, "val_d_gap": 0.0},
  )
  for seed, record in enumerate(tails):
    with open(root / f"plain-seed{seed}" / "metrics.jsonl", "a") as f:
      for step in range(4, 8):
        f.write(json.dumps({"step": step, "d_loss": 0.1, **healthy, **record}) + "\n")
  rows = {r["point"]: r for r in sweep.aggregate(str(root), points)}
  plain = rows["plain"]
  assert plain["d_wins"] == "1/2" and plain["d_one_sided"] == "1/2"
  assert plain["codes_collapsed"] == "1/2" and plain["d_dead"] == "1/2"
  ami = plain["all_labels AMI"]
  assert len(ami) == 2 and -1 <= ami[0] <= 1
  assert 0 <= plain["all_labels label share"][0] <= 1
  sweep.write_tables(list(rows.values()), str(root))
  for name in ("sweep.md", "sweep.csv", "sweep.png"):
    assert os.path.getsize(root / name) > 0


def test_unknown_override_key_is_an_error():
  import pytest

  with pytest.raises(KeyError, match="no field 'objectiv'"):
    sweep.apply_overrides(ablations.get_config(), {"loss.objectiv": "sigmoid"})


def test_launch_sweep_flag_runs_the_sweep_runner(tmp_path):
  import subprocess
  import sys

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
    [
      sys.executable,
      "launch.py",
      "--sweep=experiments/ablations.py",
      "--aggregate_only",
      f"--root={tmp_path}",
    ],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  table = (tmp_path / "sweep.md").read_text()
  # Nothing has run in this root: every point is listed, none counted as run.
  assert "| least_squares-g4 | 0 | 0 | 2 |" in table
  assert "| no_d_kernel_l2 | 0 | 0 | 2 |" in table
  assert "codes collapsed" in table and "validation split" in table


def test_remedies_sweep_points_name_real_fields_and_song2vec_is_its_chosen_point():
  from experiments import remedies, song2vec

  for arg in remedies.ARGS:
    base = remedies.get_config(arg)
    assert tuple(base.eval.splits) == ("validation",)  # Choices never read test.
    points = remedies.get_sweep(arg)
    assert {int(p["name"].rsplit("-seed", 1)[1]) for p in points} == set(remedies.SEEDS)
    for point in points:
      sweep.apply_overrides(base, point["overrides"])  # Raises on a misspelt key.
  chosen = remedies.combined(*remedies.CHOSEN)
  recipe = song2vec.get_config()
  point = sweep.apply_overrides(remedies.get_config(), chosen)
  assert point.model == recipe.model
  assert point.loss == recipe.loss
  assert point.train == recipe.train
