"""One experiment, end to end: dataset -> (training -> evaluation -> report).

`launch.py` parses flags and calls `run`; everything here is importable and
testable without absl.
"""

from __future__ import annotations

import json
import os

import ml_collections
from absl import logging

import data_prep


def ensure_dataset(data_config: ml_collections.ConfigDict) -> str:
  """Builds the configured dataset, or resumes or finds it; returns its folder.

  data_prep.build is idempotent: finished shards are kept, so calling it on a
  complete dataset only re-checks the source (rendered audio is cached).
  """
  config = data_prep.build_config_from_dict(data_config.to_dict())
  data_prep.build(config)
  return config.dataset_dir


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment `config` describes in `workdir`.

  Returns:
    The dataset's metadata.
  """
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=1, sort_keys=True))
  dataset_dir = ensure_dataset(config.data)
  metadata = data_prep.load_metadata(dataset_dir)
  logging.info("dataset ready in %s", dataset_dir)
  with open(os.path.join(workdir, "dataset.json"), "w") as f:
    json.dump({"dataset_dir": dataset_dir, "splits": metadata["splits"]}, f, indent=1)
  print(data_prep.summary(metadata, dataset_dir))
  return metadata
