r"""What the evaluation's two slowest fixed costs take, each beside its former way.

    python bench/evaluate.py [--preset=cpu] [--out=bench/results/evaluate.json]

- Initial weights (the untrained control, and training's start): the three
  networks' init run eagerly, as before, against `models.init_variables`
  (one jitted program, compiled once per process), first and second call.
- The linear probe on the Raw embedding (standardised spectrogram pixels,
  4,096-d at the CPU preset) of the preset's dataset: fitted on up to
  `eval.pca_fit_max_segments` train segments, scored on the validation
  split, as the evaluation does; sklearn's L-BFGS at its default tol 1e-4
  against `config.eval.probe`. The dataset is the one the main command builds
  (`--dataset` to name another).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not __package__:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import device_name, report  # noqa: E402
from data_prep.config import build_config_from_dict  # noqa: E402
from experiments import ali_lsgan  # noqa: E402
from song2vec import embed, evaluate, models  # noqa: E402

SHAPES = {"cpu": (64, 64), "paper": (257, 430)}


def timed(fn):
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return out, time.perf_counter() - start


def eager_init(model_config, shape, seed):
  """The former init_variables: the same program not jitted, so every
  initializer op is dispatched (and compiled) on its own."""
  return models.init_program(model_config, shape)(jax.random.key(seed))


def probe_data(config, dataset_dir: str):
  """Standardised Raw embeddings and labels of train (subsampled) and validation."""
  ev = config.eval
  train = embed.load_segments(
    dataset_dir, "train", max_examples=ev.pca_fit_max_segments, seed=config.seed
  )
  held_out = embed.load_segments(dataset_dir, "validation")
  x, x_held_out = embed.standardize(embed.raw(train.x), embed.raw(held_out.x))
  return x, train.labels, x_held_out, held_out.labels


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--preset", default="cpu", choices=tuple(SHAPES))
  parser.add_argument("--dataset", default="", help="data_prep output; default: the preset's")
  parser.add_argument("--out", default="bench/results/evaluate.json")
  args = parser.parse_args()
  config = ali_lsgan.get_config(args.preset)
  shape = SHAPES[args.preset]
  rows = []
  eager, t_eager = timed(lambda: eager_init(config.model, shape, config.seed))
  jitted, t_first = timed(lambda: models.init_variables(config.model, shape, config.seed))
  _, t_second = timed(lambda: models.init_variables(config.model, shape, config.seed))
  same = jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, eager, jitted))
  rows += [
    {"what": "initial weights, eager (before)", "seconds": t_eager, "result": ""},
    {
      "what": "initial weights, init_variables 1st call",
      "seconds": t_first,
      "result": "bitwise equal" if same else "DIFFERENT",
    },
    {"what": "initial weights, init_variables 2nd call", "seconds": t_second, "result": ""},
  ]
  dataset_dir = args.dataset or build_config_from_dict(config.data.to_dict()).dataset_dir
  x, y, x_test, y_test = probe_data(config, dataset_dir)
  dim = x.shape[1]
  default = ml_collections.ConfigDict({"c": 1.0, "tol": 1e-4, "max_iter": 2000})
  for name, options in (
    ("sklearn default tol 1e-4 (before)", default),
    (f"config.eval.probe, tol {config.eval.probe.tol:g}", config.eval.probe),
  ):
    acc, seconds = timed(lambda o=options: evaluate.linear_probe(x, y, x_test, y_test, o))
    rows.append(
      {
        "what": f"probe, Raw {dim}-d, {len(x)} segments, {name}",
        "seconds": seconds,
        "result": f"accuracy {acc:.3f}",
      }
    )
  report(
    f"evaluation fixed costs, preset {args.preset}, {device_name()}",
    rows,
    ["what", "seconds", "result"],
    args.out,
  )


if __name__ == "__main__":
  main()
