"""launch.py and the experiment configs."""

from __future__ import annotations

import os
import subprocess
import sys

import data_prep
from experiments import ali_lsgan, ali_sigmoid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_paper_preset_holds_the_reports_numbers():
  config = ali_lsgan.get_config("paper")
  build = data_prep.build_config_from_dict(config.data.to_dict())
  assert build.features.shape == (257, 430)
  assert (build.features.segments_per_song, build.features.segment_seconds) == (10, 5.0)
  assert build.corpus.preview_seconds == 30.0
  assert config.model.z_dim == 64
  assert config.loss.objective == "least_squares" and config.loss.swap_labels
  assert tuple(config.loss.positive_label_range) == (0.7, 0.9)
  assert config.train.g_steps_per_d_step == 4


def test_cpu_preset_is_the_default_and_a_valid_build():
  config = ali_lsgan.get_config()
  build = data_prep.build_config_from_dict(config.data.to_dict())
  assert build.features.shape == (64, 64) and build.source == "music21"
  assert config.train.g_steps_per_d_step == 4


def test_sigmoid_config_differs_only_in_the_objective():
  lsgan, sig = ali_lsgan.get_config(), ali_sigmoid.get_config()
  assert sig.loss.objective == "sigmoid"
  sig.loss.objective, sig.name = lsgan.loss.objective, lsgan.name
  assert sig.to_dict() == lsgan.to_dict()


def test_unknown_config_key_fails_with_a_clear_message():
  result = subprocess.run(
    [
      sys.executable,
      "launch.py",
      "--config=experiments/ali_lsgan.py",
      "--config.data.featres.n_fft=1",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0
  assert "unknown config key(s) ['data.featres.n_fft']" in result.stderr
  assert "Traceback" not in result.stderr


def test_launch_builds_a_tiny_dataset_and_trains(genre_tree, tmp_path):
  args = [
    sys.executable,
    "launch.py",
    "--config=experiments/ali_lsgan.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.data.source=folder",
    f"--config.data.path={genre_tree}",
    f"--config.data.out_dir={tmp_path / 'ds'}",
    "--config.data.workers=1",
    "--config.data.features.sample_rate=8000",
    "--config.data.features.n_fft=128",
    "--config.data.features.hop_length=64",
    "--config.data.features.segment_seconds=0.2",
    "--config.data.features.n_mels=0",
    "--config.model.encoder_channels=(4, 8)",
    "--config.model.d_channels=(4,)",
    "--config.model.d_hidden=8",
    "--config.train.batch_size=4",
    "--config.train.num_steps=6",
    "--config.train.log_every=3",
    "--config.train.num_devices=1",
    # 2 train songs per genre x 10 segments: fewer than the preset's 64 components.
    "--config.eval.pca_components=8",
  ]
  result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "total" in result.stdout and "mid" in result.stdout
  assert os.path.exists(tmp_path / "run" / "config.json")
  assert os.path.exists(tmp_path / "ds" / "metadata.json")
  for name in ("metrics.jsonl", "loss_curves.png", "checkpoints"):
    assert os.path.exists(tmp_path / "run" / name)


def test_quiet_orbax_logs_drops_orbax_info_but_keeps_its_warnings_and_ours():
  import logging as logging_lib

  from absl import logging

  from song2vec import experiment

  experiment.quiet_orbax_logs()
  experiment.quiet_orbax_logs()  # Idempotent: one filter, not two.
  logger = logging.get_absl_logger()
  assert sum(isinstance(f, experiment._QuietOrbax) for f in logger.filters) == 1

  def record(path, level):
    return logging_lib.LogRecord("absl", level, path, 1, "msg", None, None)

  orbax = "/venv/site-packages/orbax/checkpoint/checkpoint_manager.py"
  assert not logger.filter(record(orbax, logging_lib.INFO))
  assert logger.filter(record(orbax, logging_lib.WARNING))
  assert logger.filter(record("/repo/song2vec/sweep.py", logging_lib.INFO))


def test_a_misspelt_choice_fails_before_any_data_is_built(monkeypatch, tmp_path):
  import pytest

  from song2vec import experiment

  def no_data(_):
    raise AssertionError("the dataset was built before the config was checked")

  monkeypatch.setattr(experiment, "ensure_dataset", no_data)
  misspelt = {
    ("loss", "d_augment"): ("colour", "unknown augmentation"),
    ("model", "encoder_readout"): ("pooled", "encoder readout must be one of"),
    ("model", "d_arch"): ("alI", "discriminator arch must be one of"),
    ("model", "input_centering"): ("bin", "model.input_centering must be one of"),
    ("loss", "cycle_x_on"): ("stat", "loss.cycle_x_on must be"),
  }
  for (group, key), (value, message) in misspelt.items():
    config = ali_lsgan.get_config()
    config[group][key] = value
    if key == "cycle_x_on":  # Read only where the x-cycle is on.
      config.loss.cycle_x_weight = 1.0
    with pytest.raises(ValueError, match=message):
      experiment.run(config, str(tmp_path / key))
    assert not os.path.exists(tmp_path / key)  # Not even the workdir.
  experiment.check_config(ali_lsgan.get_config("paper"))  # Each preset traces.
