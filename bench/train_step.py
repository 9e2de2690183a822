r"""Throughput of the jitted d_step and g_step, compile time, peak memory, FLOP/s.

    python bench/train_step.py [--presets=cpu,paper] [--steps=10] [--out=bench/results/train_step.json]

Random normalised spectrograms, one device, the preset's batch size (the paper
preset on a CPU uses --paper_cpu_batch to stay quick). FLOPs per step come from
XLA's cost analysis of the compiled step; on a GPU the table also gives the
share of the device's peak (--peak_tflops, dense fp32 by default: the steps run
in float32).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
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


def peak_memory_mb() -> float:
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Process peak RSS.


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--presets", default="cpu,paper")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--paper_cpu_batch", type=int, default=8)
  parser.add_argument(
    "--compute_dtypes",
    default="float32",
    help="model.compute_dtype values to time, e.g. float32,bfloat16 (the %% column then needs "
    "the matching peak)",
  )
  parser.add_argument(
    "--peak_tflops", type=float, default=0.0, help="device peak for the %% column"
  )
  parser.add_argument("--out", default="bench/results/train_step.json")
  args = parser.parse_args()
  platform = jax.devices()[0].platform
  rows = []
  runs = [(p, d) for p in args.presets.split(",") for d in args.compute_dtypes.split(",")]
  for preset, dtype in runs:
    config = ali_lsgan.get_config(preset)
    config.model.compute_dtype = dtype
    shape = SHAPES[preset]
    batch_size = config.train.batch_size
    if preset == "paper" and platform == "cpu":
      batch_size = args.paper_cpu_batch
    setup = train.make_setup(config, shape)
    state = train.init_state(setup, shape, seed=0)
    x = np.random.default_rng(0).standard_normal((batch_size, *shape)).astype(np.float32)
    batch = {"spectrogram": jax.device_put(x)}
    d_fn, g_fn = train.compile_steps(setup, 1)
    for name, fn in (("d_step", d_fn), ("g_step", g_fn)):
      start = time.perf_counter()
      compiled = fn.lower(state, batch).compile()
      compile_s = time.perf_counter() - start
      cost = compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, list) else cost
      flops = float(cost.get("flops", 0.0)) if cost else 0.0
      state, metrics = compiled(state, batch)  # Warm-up.
      jax.block_until_ready(metrics)
      steps = max(2, args.steps // 3) if preset == "paper" and platform == "cpu" else args.steps
      start = time.perf_counter()
      for _ in range(steps):
        state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      step_s = (time.perf_counter() - start) / steps
      row = {
        "preset": preset,
        "dtype": dtype,
        "step": name,
        "shape": f"{shape[0]}x{shape[1]}",
        "batch": batch_size,
        "compile_s": compile_s,
        "ms_per_step": step_s * 1e3,
        "spectrograms_per_s": batch_size / step_s,
        "gflop_per_step": flops / 1e9,
        "achieved_tflop_s": flops / step_s / 1e12,
        "peak_mem_mb": peak_memory_mb(),
      }
      if args.peak_tflops:
        row["pct_of_peak"] = 100 * row["achieved_tflop_s"] / args.peak_tflops
      rows.append(row)
  columns = [
    "preset",
    "dtype",
    "step",
    "shape",
    "batch",
    "compile_s",
    "ms_per_step",
    "spectrograms_per_s",
  ]
  columns += ["gflop_per_step", "achieved_tflop_s", "peak_mem_mb"]
  if args.peak_tflops:
    columns.append("pct_of_peak")
  report(f"train steps on {device_name()}", rows, columns, args.out)


if __name__ == "__main__":
  main()
