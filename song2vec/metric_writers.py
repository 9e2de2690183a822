"""Training metrics to TensorBoard and to `metrics.jsonl` (what the plots read)."""

from __future__ import annotations

import json
import math
import os


class MetricWriter:
  """Writes scalars to TensorBoard event files and one JSON line per step."""

  def __init__(self, workdir: str, *, resume_step: int = 0):
    """Opens the writers; on resume, drops records past `resume_step`.

    Records after the restored checkpoint come from work that is being
    redone, so keeping them would duplicate steps in the history.
    """
    import tensorflow as tf

    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = [r for r in read_jsonl(self.path) if r["step"] <= resume_step]
    with open(self.path, "w") as f:
      for r in kept:
        f.write(json.dumps(r) + "\n")
    self._jsonl = open(self.path, "a")
    self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    import tensorflow as tf

    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps({k: _json_float(v) for k, v in record.items()}) + "\n")
    self._jsonl.flush()
    with self._tb.as_default(step=int(step)):
      for name, value in scalars.items():
        tf.summary.scalar(name, float(value))
    self._tb.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tb.close()


class NullWriter:
  """What processes other than the first write: nothing (process 0 logs the run)."""

  def write(self, step: int, scalars: dict[str, float]) -> None:
    del step, scalars

  def close(self) -> None:
    pass


def _json_float(v):
  return v if not isinstance(v, float) or math.isfinite(v) else str(v)


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
