r"""Runs a song2vec experiment.

python launch.py --config=experiments/ali_lsgan.py [--workdir=runs/x] [--config.key=value]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (experiments/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; default runs/<config file name>.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from song2vec import experiment

  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  name = os.path.splitext(os.path.basename(config_file))[0]
  experiment.run(_CONFIG.value, _WORKDIR.value or os.path.join("runs", name))


if __name__ == "__main__":
  app.run(main)
