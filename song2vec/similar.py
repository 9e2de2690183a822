r"""The songs of a library nearest to each query.

    python -m song2vec.similar --library=runs/ali_lsgan/library --query=song.mp3 [--k=10] [--json]

A query is a song id of the library, an audio file of the library (read from
it), or any other audio file (embedded on the fly with the run that built the
library); repeat --query for several. The distance is Euclidean between song
embeddings standardised per dimension with the run's train-split statistics,
the one the evaluation's kNN precision uses (`song2vec.neighbors`). A query
that is in the library finds itself first, at distance 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from data_prep.audio import SongError
from song2vec.library import Library, LibraryError


def format_table(query: str, how: str, hits) -> str:
  lw = max([len("label"), *(len(h.label) for h in hits)])
  lines = [f"query: {query} ({how})", f"{'rank':>4}  {'distance':>8}  {'label':<{lw}}  song"]
  for h in hits:
    lines.append(f"{h.rank:>4}  {h.distance:>8.3f}  {h.label:<{lw}}  {h.id}")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m song2vec.similar",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--library", required=True, help="a folder written by song2vec.library build")
  parser.add_argument(
    "--query", action="append", required=True, help="song id or audio file (repeatable)"
  )
  parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
  parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
  parser.add_argument(
    "--ef_search", type=int, default=0, help="HNSW search effort (0: the library's)"
  )
  args = parser.parse_args(argv)
  try:
    lib = Library.open(args.library, ef_search=args.ef_search or None)
    resolved = [lib.resolve(q) for q in args.query]
  except (LibraryError, SongError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  import numpy as np

  results = lib.search(np.stack([v for v, _ in resolved]), args.k)
  if args.json:
    out = [
      {"query": q, "found_as": how, "neighbors": [dataclasses.asdict(h) for h in hits]}
      for q, (_, how), hits in zip(args.query, resolved, results, strict=True)
    ]
    print(json.dumps(out, indent=1))
  else:
    print(
      "\n\n".join(
        format_table(q, how, hits)
        for q, (_, how), hits in zip(args.query, resolved, results, strict=True)
      )
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
