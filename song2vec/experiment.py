"""One experiment, end to end: dataset -> training -> evaluation -> report.

`launch.py` parses flags and calls `run`; everything here is importable and
testable without absl.
"""

from __future__ import annotations

import functools
import logging as logging_lib
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import data_prep
from song2vec import embed, evaluate, input_pipeline, report, train


class _QuietOrbax(logging_lib.Filter):
  """Drops orbax's INFO lines (several per checkpoint); keeps its warnings."""

  def filter(self, record: logging_lib.LogRecord) -> bool:
    return record.levelno >= logging_lib.WARNING or "/orbax/" not in record.pathname


def quiet_orbax_logs() -> None:
  """Keeps absl's INFO log readable for command-line entry points.

  On the absl logger, not its handler: without absl.app (the sweep runner)
  records reach Python's root handler instead, and a handler filter misses them.
  """
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
    logger.addFilter(_QuietOrbax())


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Joins a multi-process run (`jax.distributed`) when a coordinator is named.

  Call before anything runs on a device. Every process gets the same
  coordinator (host:port of process 0) and process count, and its own id.
  On CPU, collectives across processes go through gloo.
  """
  if not coordinator_address:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )
  logging.info(
    "process %d of %d, %d local device(s), %d in all",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def check_config(config: ml_collections.ConfigDict, shape: tuple[int, int] = (16, 16)) -> None:
  """Traces one D step and one E+G step of `config` on a small fake batch.

  Nothing is compiled or run: the trace alone raises the ValueError that a
  misspelt choice (readout, D shape, objective, augmentation policy, ...) meets
  in the code that reads it, so a run can fail before its dataset is built
  rather than at its first step. The fake segments are `shape`, small enough
  for any preset's convolutions ('SAME' padding rounds each layer up).
  """
  centering = config.model.get("input_centering", "none")
  input_pipeline.center(np.zeros((1, *shape), np.float32), centering)
  setup = train.make_setup(config, shape)
  state = jax.eval_shape(lambda: train.init_state(setup, shape, config.seed))
  batch = {"spectrogram": jax.ShapeDtypeStruct((config.train.batch_size, *shape), jnp.float32)}
  for step in (train.d_step, train.g_step):
    jax.eval_shape(functools.partial(step, setup), state, batch)


def ensure_dataset(data_config: ml_collections.ConfigDict) -> str:
  """Builds the configured dataset, or resumes or finds it; returns its folder.

  data_prep.build is idempotent: finished shards are kept, so calling it on a
  complete dataset only re-checks the source (rendered audio is cached).
  """
  config = data_prep.build_config_from_dict(data_config.to_dict())
  data_prep.build(config)
  return config.dataset_dir


def make_batch_fn(config: ml_collections.ConfigDict, dataset_dir: str):
  """start_step -> training batches for this process, shaped for the devices."""
  num_devices = train.resolve_devices(config.train.num_devices)
  per_process = config.train.batch_size // jax.process_count()

  def make_batches(start_step: int):
    # Training uses one batch per step, so a run resumed at start_step reads
    # exactly the batches an uninterrupted run of the same seed would have.
    return input_pipeline.train_iterator(
      dataset_dir,
      per_process,
      seed=config.seed,
      start_batch=start_step,
      shuffle_buffer=config.train.shuffle_buffer,
      num_devices=num_devices if train.data_parallel(num_devices) else 0,
      keys=("spectrogram",),
      centering=config.model.get("input_centering", "none"),
      song_pairs=uses_song_pairs(config),
    )

  return make_batches


def uses_song_pairs(config: ml_collections.ConfigDict) -> bool:
  """Whether training batches come as pairs of one song's segments (the contrastive term's)."""
  loss = config.loss
  return bool(loss.get("contrastive_weight", 0.0)) and (
    loss.get("contrastive_positives", "segment") == "song"
  )


def diagnostic_segments(config: ml_collections.ConfigDict, dataset_dir: str):
  """The fixed held-out segments the training diagnostics are logged on.

  A seeded sample of the validation split; None (the diagnostics then use the
  first training batch) for a dataset built without one.
  """
  info = input_pipeline.load_info(dataset_dir)
  if not info.num_examples.get("validation"):
    logging.warning("%s has no validation split: diagnostics use a training batch", dataset_dir)
    return None
  n = config.train.diag_examples
  x = embed.load_segments(dataset_dir, "validation", max_examples=n, seed=config.seed).x
  return input_pipeline.center(x, config.model.get("input_centering", "none"))


def run(config: ml_collections.ConfigDict, workdir: str) -> train.TrainState:
  """Runs the experiment `config` describes in `workdir`; returns the trained state.

  Evaluates on each split of `config.eval.splits`: the validation split for
  choices, the test split for the final report.
  """
  # With several processes (jax.distributed), the first one writes the config,
  # builds the dataset and evaluates; all train, each on its own shards.
  primary = jax.process_index() == 0
  if config.train.batch_size % jax.process_count():
    raise ValueError(
      f"train.batch_size {config.train.batch_size} does not divide among "
      f"{jax.process_count()} processes"
    )
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  if primary:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1, sort_keys=True))
    dataset_dir = ensure_dataset(config.data)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("song2vec dataset ready")
    dataset_dir = data_prep.build_config_from_dict(config.data.to_dict()).dataset_dir
  info = input_pipeline.load_info(dataset_dir)
  if primary:
    print(data_prep.summary(info.metadata, dataset_dir))
  logging.info("training %s in %s", config.name, workdir)
  state = train.train(
    config,
    workdir,
    info.shape,
    make_batch_fn(config, dataset_dir),
    diagnostic_segments(config, dataset_dir),
  )
  for split in config.eval.splits if primary else ():
    rows = evaluate.evaluate(config, workdir, dataset_dir, split)
    print(f"{split} split, segment level:")
    print(report.markdown_table(rows, "segment"))
    print(f"report: {os.path.join(report.report_dir(workdir, split), 'report.md')}")
  return state
