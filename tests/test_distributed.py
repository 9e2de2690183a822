"""Multi-process training: 2 CPU processes on localhost equal 1 process on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import numpy as np
from test_train import SHAPE, batch_for, tiny_config

from song2vec import train

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 6  # A D step and G steps on either side of it.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
  # The reference: one process, the global batch of 8 over 2 local devices.
  config = tiny_config(num_steps=STEPS, checkpoint_every=STEPS, num_devices=2)
  config.model.d_dropout = 0.0  # Dropout masks are drawn per device by design.

  def two_devices(start):
    step = start
    while True:
      yield batch_for(step, num_devices=2)
      step += 1

  one = train.train(config, str(tmp_path / "one"), SHAPE, two_devices)

  # Two processes with one device each, each fed its half of every batch.
  port, workdir = free_port(), str(tmp_path / "two")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        os.path.join(HERE, "distributed_worker.py"),
        str(port),
        str(i),
        workdir,
        str(STEPS),
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      env=env,
    )
    for i in range(2)
  ]
  try:
    outputs = [p.communicate(timeout=300)[0] for p in procs]
  finally:  # A worker that died leaves its peer waiting in a collective: end both.
    for p in procs:
      p.kill()
  for p, out in zip(procs, outputs, strict=True):
    assert p.returncode == 0, out[-3000:]
  two = np.load(os.path.join(workdir, "params.npz"))
  leaves = jax.tree.leaves((one.g_params, one.d_params))
  assert len(two.files) == len(leaves)
  for i, a in enumerate(leaves):
    np.testing.assert_allclose(two[f"arr_{i}"], np.asarray(a), rtol=1e-4, atol=1e-5)
  # One checkpoint, written once; one metrics log, by process 0.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(STEPS)]
  steps = [line for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert len(steps) == STEPS // 2  # log_every=2.
