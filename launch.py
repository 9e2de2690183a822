r"""Runs a song2vec experiment, or a sweep of them.

python launch.py --config=experiments/ali_lsgan.py [--workdir=runs/x] [--config.key=value]
python launch.py --sweep=experiments/ablations.py [--index=i] [--aggregate_only]  (song2vec.sweep)
"""

import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (experiments/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; default runs/<config file name>.")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  "",
  "Multi-process training: host:port of process 0, the same for every process (empty: one "
  "process).",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Multi-process training: processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-process training: this process, 0..n-1.")
flags.mark_flags_as_required(["config"])


def _unknown_overrides(argv: list[str]) -> list[str]:
  """The --config.a.b overrides in argv that name no field of the config file."""
  path, arg = None, None
  for a in argv:
    if a.startswith("--config="):
      path, _, arg = a.split("=", 1)[1].partition(":")
  if not path or not os.path.exists(path):
    return []
  spec = importlib.util.spec_from_file_location("_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  bad = []
  for a in argv:
    if a.startswith("--config.") and not a.startswith("--config.help"):
      key = a[len("--config.") :].split("=", 1)[0]
      node = config
      for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
          bad.append(key)
          break
        node = node[part]
  return bad


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # ml_collections' word for an unknown key.
    bad = _unknown_overrides(argv) or [str(e)]
    sys.exit(f"error: unknown config key(s) {bad}: check the spelling against the config file")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from song2vec import experiment

  experiment.quiet_orbax_logs()
  experiment.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)

  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  name = os.path.splitext(os.path.basename(config_file))[0]
  workdir = _WORKDIR.value or os.path.join("runs", name)
  try:
    experiment.run(_CONFIG.value, workdir)
  except (ValueError, FileNotFoundError) as e:  # Bad settings or paths: say so, no traceback.
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  if any(a.startswith("--sweep") for a in sys.argv[1:]):
    from song2vec import sweep

    sys.exit(sweep.main(sys.argv[1:]))
  app.run(main, flags_parser=_parse_flags)
