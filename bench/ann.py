r"""Approximate nearest-neighbour libraries on random 64-d vectors, against exact search.

    python bench/ann.py [--sizes=10000,100000,1000000] [--out=bench/results/ann.json]

For each size n: n and 1,000 query vectors drawn from N(0, I) in 64-d (the
hardest case for a graph index: no low intrinsic dimension), exact top-10 by
squared L2 as the truth, then for each library an HNSW graph with the same
degree and build effort (M = 32, ef_construction = 128), built with every core.
For each library the search effort `ef` is raised until recall@10 >= 0.95 (the
row shown), and single-query latency is timed on one thread, one query at a
time, as a user's query runs. "index MB" is the serialised index. Libraries
that are not installed are left out of the table with a note.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
import tempfile
import time

if not __package__:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import report  # noqa: E402
from song2vec import neighbors  # noqa: E402

DIM, QUERIES, K = 64, 1000, 10
M, EF_CONSTRUCTION = 32, 128  # Defaults of --m and --ef_construction.
EF_STEPS = (16, 32, 64, 128, 256, 512, 1024, 1536, 2048)
TARGET_RECALL = 0.95
LATENCY_QUERIES = 300


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
  """Exact top-k by squared L2, in blocks of queries (the truth)."""
  norms = np.einsum("nd,nd->n", data, data)
  out = []
  for i in range(0, len(queries), 100):
    q = queries[i : i + 100]
    d = norms[None, :] - 2.0 * q @ data.T
    idx = np.argpartition(d, k, axis=1)[:, :k]
    order = np.take_along_axis(d, idx, 1).argsort(1)
    out.append(np.take_along_axis(idx, order, 1))
  return np.concatenate(out)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
  return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def search_one(lib, ef, q):
  return lib.search(q[None], ef)


def latencies_ms(search_one, queries: np.ndarray) -> tuple[float, float]:
  for q in queries[:10]:
    search_one(q)  # Warm up.
  times = []
  for q in queries[:LATENCY_QUERIES]:
    start = time.perf_counter()
    search_one(q)
    times.append(1000 * (time.perf_counter() - start))
  return float(np.percentile(times, 50)), float(np.percentile(times, 99))


class Faiss:
  name = "faiss-cpu"

  def build(self, data, m, ef_construction):
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    self.index = faiss.IndexHNSWFlat(data.shape[1], m)
    self.index.hnsw.efConstruction = ef_construction
    self.index.add(data)
    faiss.omp_set_num_threads(1)

  def nbytes(self):
    import faiss

    return len(faiss.serialize_index(self.index))

  def search(self, q, ef):
    self.index.hnsw.efSearch = ef
    return self.index.search(q, K)[1]


class Hnswlib:
  name = "hnswlib"

  def build(self, data, m, ef_construction):
    import hnswlib

    self.index = hnswlib.Index(space="l2", dim=data.shape[1])
    self.index.init_index(max_elements=len(data), M=m, ef_construction=ef_construction)
    self.index.add_items(data, num_threads=os.cpu_count() or 1)
    self.index.set_num_threads(1)

  def nbytes(self):
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "index.bin")
      self.index.save_index(path)
      return os.path.getsize(path)

  def search(self, q, ef):
    self.index.set_ef(max(ef, K))
    return self.index.knn_query(q, k=K)[0]


class Usearch:
  name = "usearch"

  def build(self, data, m, ef_construction):
    from usearch.index import Index

    self.index = Index(
      ndim=data.shape[1], metric="l2sq", dtype="f32", connectivity=m, expansion_add=ef_construction
    )
    self.index.add(np.arange(len(data)), data, threads=os.cpu_count() or 1)

  def nbytes(self):
    return len(self.index.save())

  def search(self, q, ef):
    self.index.expansion_search = ef
    keys = self.index.search(q, K, threads=1).keys
    return np.asarray(keys).reshape(len(q) if q.ndim == 2 else 1, -1)


LIBRARIES = {
  "faiss-cpu": ("faiss", Faiss),
  "hnswlib": ("hnswlib", Hnswlib),
  "usearch": ("usearch", Usearch),
}


def bench_size(n: int, libraries: list[str], seed: int, m: int, ef_construction: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  data = rng.standard_normal((n, DIM), dtype=np.float32)
  queries = rng.standard_normal((QUERIES, DIM), dtype=np.float32)
  truth = exact_topk(data, queries, K)

  exact = neighbors.ExactIndex(data)  # song2vec's exact search, as a library runs it.
  p50, p99 = latencies_ms(lambda q: exact.search(q, K), queries)
  rows = [
    {
      "n": n,
      "library": "exact (song2vec)",
      "build s": 0.0,
      "index MB": data.nbytes / 2**20,
      "ef": "-",
      "recall@10": 1.0,
      "p50 ms": p50,
      "p99 ms": p99,
    }
  ]
  for name in libraries:
    lib = LIBRARIES[name][1]()
    start = time.perf_counter()
    lib.build(data, m, ef_construction)
    build = time.perf_counter() - start
    row = None
    for ef in EF_STEPS:
      found = lib.search(queries, ef)
      r = recall(found, truth)
      if r >= TARGET_RECALL or ef == EF_STEPS[-1]:
        p50, p99 = latencies_ms(functools.partial(search_one, lib, ef), queries)
        row = {
          "n": n,
          "library": name,
          "build s": build,
          "index MB": lib.nbytes() / 2**20,
          "ef": ef,
          "recall@10": r,
          "p50 ms": p50,
          "p99 ms": p99,
        }
        break
    rows.append(row)
    print(row, flush=True)
    del lib
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--sizes", default="10000,100000,1000000")
  parser.add_argument("--libraries", default=",".join(LIBRARIES))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--m", type=int, default=M, help="HNSW graph degree")
  parser.add_argument("--ef_construction", type=int, default=EF_CONSTRUCTION)
  parser.add_argument("--out", default="bench/results/ann.json")
  args = parser.parse_args()
  wanted = args.libraries.split(",")
  present = [n for n in wanted if importlib.util.find_spec(LIBRARIES[n][0]) is not None]
  for n in sorted(set(wanted) - set(present)):
    print(f"note: {n} is not installed (pip install {n}); left out")
  rows = []
  for n in (int(s) for s in args.sizes.split(",")):
    rows += bench_size(n, present, args.seed, args.m, args.ef_construction)
  columns = ["n", "library", "build s", "index MB", "ef", "recall@10", "p50 ms", "p99 ms"]
  report(
    f"Nearest neighbours of random {DIM}-d vectors, HNSW M={args.m} "
    f"ef_construction={args.ef_construction}, "
    f"ef raised until recall@10 >= {TARGET_RECALL}",
    rows,
    columns,
    args.out,
  )


if __name__ == "__main__":
  main()
