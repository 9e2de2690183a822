"""The one distance between song2vec embeddings, and the indexes that search it.

Distance: Euclidean between embeddings standardised per dimension with the
train split's statistics (`embed.standardize`). It is the geometry k-means,
the Gaussian mixture and the evaluation's kNN precision see, and the one a
library is queried with, so a library's neighbours are the evaluation's.

Two indexes answer the same question: `ExactIndex` (brute force, numpy) and
`HnswIndex` (a graph index from faiss-cpu: chosen by `bench/ann.py` over
hnswlib and usearch; see BENCHMARKS.md), for libraries too large for exact
search within a query's latency budget.
"""

from __future__ import annotations

import numpy as np

INDEX_KINDS = ("exact", "hnsw")


class ExactIndex:
  """Exact k nearest neighbours by Euclidean distance."""

  kind = "exact"

  def __init__(self, vectors: np.ndarray):
    self.vectors = np.ascontiguousarray(vectors, np.float32)
    self._norms = np.einsum("nd,nd->n", self.vectors, self.vectors)

  def __len__(self) -> int:
    return len(self.vectors)

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances [q, k] ascending, indices [q, k]) of each query's k nearest."""
    queries = np.atleast_2d(np.asarray(queries, np.float32))
    k = min(k, len(self))
    dists, idx = [], []
    # Candidates by the float32 expansion |v|^2 - 2 q.v + |q|^2 (one matmul),
    # then their exact distances in float64, which also fix the order of
    # near-ties the expansion's rounding could swap.
    c = min(len(self), 2 * k + 8)
    for i in range(0, len(queries), 256):  # Bounded memory: 256 x n distances at a time.
      q = queries[i : i + 256]
      d2 = self._norms[None, :] - 2.0 * (q @ self.vectors.T)
      if c < len(self):
        cand = np.argpartition(d2, c - 1, axis=1)[:, :c]
      else:
        cand = np.tile(np.arange(len(self)), (len(q), 1))
      diff = self.vectors[cand].astype(np.float64) - q[:, None, :].astype(np.float64)
      exact = np.sqrt(np.einsum("qcd,qcd->qc", diff, diff))
      # Ties (duplicate vectors) break by index, so the order is deterministic.
      order = np.lexsort((cand, exact), axis=1)[:, :k]
      idx.append(np.take_along_axis(cand, order, 1))
      dists.append(np.take_along_axis(exact, order, 1))
    return np.concatenate(dists).astype(np.float32), np.concatenate(idx)


class HnswIndex:
  """Approximate k nearest neighbours: faiss's HNSW graph over the same vectors."""

  kind = "hnsw"

  def __init__(self, index, ef_search: int):
    self.index = index
    self.ef_search = ef_search

  @classmethod
  def build(cls, vectors: np.ndarray, m: int, ef_construction: int, ef_search: int) -> HnswIndex:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], m)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(vectors, np.float32))
    return cls(index, ef_search)

  @classmethod
  def load(cls, path: str, ef_search: int) -> HnswIndex:
    import faiss

    return cls(faiss.read_index(path), ef_search)

  def save(self, path: str) -> None:
    import faiss

    faiss.write_index(self.index, path)

  def __len__(self) -> int:
    return self.index.ntotal

  def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
    self.index.hnsw.efSearch = max(self.ef_search, k)
    d2, idx = self.index.search(queries, min(k, len(self)))
    return np.sqrt(np.maximum(d2, 0.0)).astype(np.float32), idx.astype(np.int64)


def label_precision(
  index, vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int
) -> float:
  """Mean share of same-label items among each item's k nearest neighbours,
  leaving out every item of the item's own group (its song, at segment level).

  Args:
    index: an index over `vectors`, in the same order.
    vectors: the items, as the index holds them.
    labels: [n] label of each item.
    groups: [n] group of each item.
    k: neighbours per item.
  """
  extra = int(np.max(np.unique(groups, return_counts=True)[1]))
  _, idx = index.search(vectors, min(len(vectors), k + extra))
  precisions = []
  for i in range(len(vectors)):
    others = [j for j in idx[i] if j >= 0 and groups[j] != groups[i]][:k]
    if others:
      precisions.append(np.mean(labels[others] == labels[i]))
  return float(np.mean(precisions))
