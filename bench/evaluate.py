r"""What the evaluation's two slowest fixed costs take, each beside its former way.

    python bench/evaluate.py [--preset=cpu] [--out=bench/results/evaluate.json]

- Initial weights (the untrained control, and training's start): the three
  networks' init run eagerly, as before, against `models.init_variables`
  (one jitted program, compiled once per process), first and second call.
- The linear probe on a Raw-sized embedding (4,096-d at the CPU preset;
  3,360 train and 480 held-out segments of 8 labels, Gaussian with a weak
  linear label signal): sklearn's L-BFGS at its default tol 1e-4 against
  `config.eval.probe`.
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
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import report  # noqa: E402
from experiments import ali_lsgan  # noqa: E402
from song2vec import evaluate, models  # noqa: E402

SHAPES = {"cpu": (64, 64), "paper": (257, 430)}


def timed(fn):
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return out, time.perf_counter() - start


def eager_init(model_config, shape, seed):
  """The former init_variables: every initializer op dispatched (and compiled) on its own."""
  encoder, decoder, discriminator = models.make_models(model_config, shape)
  k_enc, k_dec, k_d, _ = jax.random.split(jax.random.key(seed), 4)
  x = jnp.zeros((1, *shape), jnp.float32)
  z = jnp.zeros((1, encoder.z_dim), jnp.float32)
  return {
    "encoder": encoder.init(k_enc, x),
    "decoder": decoder.init(k_dec, z),
    "discriminator": discriminator.init(k_d, x, z, train=False),
  }


def probe_data(dim: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  n_train, n_test, labels = 3360, 480, 8
  directions = rng.standard_normal((labels, dim)) / np.sqrt(dim)
  out = []
  for n in (n_train, n_test):
    y = rng.integers(0, labels, n)
    x = rng.standard_normal((n, dim)) + 8.0 * directions[y]
    out += [x.astype(np.float32), y]
  mean, std = out[0].mean(0), out[0].std(0)
  out[0], out[2] = (out[0] - mean) / std, (out[2] - mean) / std
  return out


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--preset", default="cpu", choices=tuple(SHAPES))
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
  dim = shape[0] * shape[1]
  x, y, x_test, y_test = probe_data(dim)
  default = ml_collections.ConfigDict({"c": 1.0, "tol": 1e-4, "max_iter": 2000})
  for name, options in (
    ("sklearn default tol 1e-4 (before)", default),
    ("config", config.eval.probe),
  ):
    acc, seconds = timed(lambda o=options: evaluate.linear_probe(x, y, x_test, y_test, o))
    rows.append(
      {
        "what": f"probe {dim}-d, {name}, tol {options.tol:g}",
        "seconds": seconds,
        "result": f"accuracy {acc:.3f}",
      }
    )
  device = jax.devices()[0]
  report(
    f"evaluation fixed costs, preset {args.preset}, {device.device_kind} ({device.platform})",
    rows,
    ["what", "seconds", "result"],
    args.out,
  )


if __name__ == "__main__":
  main()
