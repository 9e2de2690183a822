r"""The training loop against the bare steps it runs, in one process.

    python bench/train_loop.py [--preset=cpu] [--steps=300] [--out=bench/results/train_loop.json]

Three ways to run the same D and G steps (the preset's 4:1 schedule) on the
same in-memory batches, one device:

- bare steps: the jitted steps back to back, synchronised once at the end;
- bare steps + per-step fetch: the same, with `jax.device_get` of every step's
  metrics, as the loop did before it kept them on the device;
- train.train: the real loop (metrics fetched once per log window, NaN check,
  diagnostics every log_every steps, progress bar), timed from its first log
  (compilation is before it) to its last step.

On a GPU the loop should reach >= 95 % of the bare steps' rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not __package__:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import device_name, report  # noqa: E402
from experiments import ali_lsgan  # noqa: E402
from song2vec import train  # noqa: E402

SHAPES = {"cpu": (64, 64), "paper": (257, 430)}


def bare_rate(config, shape, batches, steps: int, fetch: bool) -> float:
  setup = train.make_setup(config, shape)
  state = train.init_state(setup, shape, seed=config.seed)
  d_fn, g_fn = train.compile_steps(setup, 1)
  k = config.train.g_steps_per_d_step
  for step in range(k + 1):  # Compile both and warm up.
    fn = d_fn if train.is_d_step(step, k) else g_fn
    state, metrics = fn(state, batches[step % len(batches)])
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for step in range(steps):
    fn = d_fn if train.is_d_step(step, k) else g_fn
    state, metrics = fn(state, batches[step % len(batches)])
    if fetch:
      jax.device_get(metrics)
  jax.block_until_ready(state)
  return steps / (time.perf_counter() - start)


def loop_rate(config, shape, batches, steps: int) -> float:
  """Steps/s of train.train between its first log (compilation is before it) and
  its last step, timed by when the loop asks for each batch: everything the
  loop does (steps, fetches, NaN checks, diagnostics, logging) is inside."""
  config.train.num_steps = steps
  config.train.checkpoint_every = steps
  asked: dict[int, float] = {}
  with tempfile.TemporaryDirectory() as workdir:

    def make_batches(start):
      step = start
      while True:
        asked[step] = time.perf_counter()
        yield batches[step % len(batches)]
        step += 1

    train.train(config, workdir, shape, make_batches)
  first, last = config.train.log_every, steps - 1
  return (last - first) / (asked[last] - asked[first])


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--preset", default="cpu", choices=tuple(SHAPES))
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch", type=int, default=0, help="0: the preset's batch size")
  parser.add_argument("--compute_dtype", default="auto", help="model.compute_dtype")
  parser.add_argument("--out", default="bench/results/train_loop.json")
  args = parser.parse_args()
  config = ali_lsgan.get_config(args.preset)
  config.train.num_devices = 1
  config.model.compute_dtype = args.compute_dtype
  if args.batch:
    config.train.batch_size = args.batch
  shape = SHAPES[args.preset]
  rng = np.random.default_rng(0)
  batches = [
    {"spectrogram": rng.standard_normal((config.train.batch_size, *shape)).astype(np.float32)}
    for _ in range(8)
  ]
  bare = bare_rate(config, shape, batches, args.steps, fetch=False)
  fetched = bare_rate(config, shape, batches, args.steps, fetch=True)
  loop = loop_rate(config, shape, batches, args.steps)
  rows = [
    {"how": "bare steps", "steps/s": bare, "% of bare": 100.0},
    {"how": "bare steps + per-step fetch", "steps/s": fetched, "% of bare": 100 * fetched / bare},
    {
      "how": f"train.train (log every {config.train.log_every})",
      "steps/s": loop,
      "% of bare": 100 * loop / bare,
    },
  ]
  report(
    f"training loop vs bare steps, preset {args.preset}, batch {config.train.batch_size}, "
    f"{device_name()}",
    rows,
    ["how", "steps/s", "% of bare"],
    args.out,
  )


if __name__ == "__main__":
  main()
