"""One process of tests/test_distributed.py: trains the tiny config on its half of each batch.

python tests/distributed_worker.py PORT PROCESS_ID WORKDIR STEPS
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from song2vec import experiment  # noqa: E402


def main():
  port, process_id, workdir, steps = sys.argv[1:]
  experiment.initialize_distributed(f"localhost:{port}", 2, int(process_id))
  import jax
  import numpy as np
  from test_train import SHAPE, batches_from, tiny_config

  from song2vec import train

  assert jax.process_count() == 2 and jax.local_device_count() == 1
  config = tiny_config(num_steps=int(steps), checkpoint_every=int(steps))
  config.model.d_dropout = 0.0  # As in the one-process reference.
  half = slice(int(process_id) * 4, int(process_id) * 4 + 4)

  def make_batches(start):
    for batch in batches_from(start):
      yield {"spectrogram": batch["spectrogram"][half][None]}  # [1 local device, 4, ...]

  state = train.train(config, workdir, SHAPE, make_batches)
  if jax.process_index() == 0:
    leaves = jax.tree.leaves((state.g_params, state.d_params))
    np.savez(os.path.join(workdir, "params.npz"), *[np.asarray(x) for x in leaves])
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
