"""An in-order, bounded parallel map with a progress bar."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from song2vec.progress import progress_bar

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int) -> int:
  return workers if workers > 0 else max(1, os.cpu_count() or 1)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_children():
  """Spawned workers inherit 1-thread BLAS/OpenMP: the workers are the parallelism.

  Measured on 2 cores: 2 workers whose numpy and soxr each start 2 threads
  were slower per song than 1 worker.
  """
  saved = {k: os.environ.get(k) for k in _THREAD_VARS}
  for k in _THREAD_VARS:
    os.environ.setdefault(k, "1")
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def ordered_map(
  fn: Callable[[T], R],
  items: Iterable[T],
  *,
  workers: int,
  desc: str,
  total: int | None = None,
  unit: str = "song",
  postfix: Callable[[R], dict[str, Any]] | None = None,
) -> Iterator[R]:
  """Yields fn(item) for each item, in order, computed by `workers` processes.

  At most 2 * workers results wait in memory, so a slow consumer (the shard
  writer) holds back the workers instead of piling up spectrograms. With
  workers == 1 everything runs in this process, which keeps tests and
  debuggers simple. Workers are spawned, not forked: forking a process that
  has imported TensorFlow can deadlock.

  Args:
    fn: a module-level (picklable) function.
    items: its inputs.
    workers: number of processes.
    desc: the progress bar's label.
    total: number of items, for the ETA (len(items) when it has one).
    unit: what one item is called on the bar.
    postfix: maps a result to extra fields shown on the bar.
  """
  if total is None and hasattr(items, "__len__"):
    total = len(items)  # type: ignore[arg-type]
  bar = progress_bar(total=total, desc=desc, unit=unit)
  counts: collections.Counter = collections.Counter()

  def advance(result):
    bar.update(1)
    if postfix is not None:
      counts.update(postfix(result))
      bar.set_postfix(counts, refresh=False)

  try:
    if workers <= 1:
      for item in items:
        result = fn(item)
        advance(result)
        yield result
      return
    context = multiprocessing.get_context("spawn")
    with (
      _single_threaded_children(),
      concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
    ):
      pending: collections.deque = collections.deque()
      iterator = iter(items)
      for item in iterator:
        pending.append(pool.submit(fn, item))
        if len(pending) >= 2 * workers:
          break
      while pending:
        result = pending.popleft().result()
        for item in iterator:
          pending.append(pool.submit(fn, item))
          break
        advance(result)
        yield result
  finally:
    bar.close()
