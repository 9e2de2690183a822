"""Whether a run's adversarial game is alive, read from its logged diagnostics.

A GAN whose losses look calm can still be dead. These flags read the
diagnostics `train.diagnostics` logs on a fixed validation batch, averaged
over the last part of training, and name the ways ALI fails:

- codes collapsed: E(x) spans few directions (effective dimension under a
  quarter of the prior's on as many samples), whatever D says;
- D dead: D's outputs on the two pair kinds differ by under 5 % of its
  target gap, so its gradient tells E and G nothing;
- D wins: D tells every pair apart (accuracy above 0.99), the generators'
  gradients vanish;
- D one-sided: D calls over 99 % of all pairs the same kind (the report's
  first failure), which accuracy alone hides at 0.5;
- no inversion: x reconstructs through G_x(G_z(x)) no better than from
  another segment's code (within 5 %), so G_x ignores its code and E and G_x
  do not invert each other, however spread the codes are.

Reports and the sweep table read these; one place holds the thresholds.
"""

from __future__ import annotations

import functools
import math

import numpy as np

TAIL = 0.2  # "Final" values: the mean over the last 20 % of logged steps.
CODES_COLLAPSED = 0.25  # E(x)'s effective dimension below this share of the prior's.
D_DEAD_GAP = 0.05  # |D's output gap| below this share of its target gap.
D_WINS = 0.99  # D's accuracy above this.
ONE_SIDED = 0.99  # D calls more than this share of all pairs one kind.
NO_INVERSION = 0.95  # x's own-code reconstruction above this share of another code's.

DIAGNOSTICS = (
  "z_mean_norm",
  "z_std",
  "z_eff_dim",
  "z_eff_dim_prior",
  "x_recon_rel",
  "x_recon_other_rel",
  "z_recon_rel",
  "val_d_accuracy",
  "val_d_gap",
  "val_d_calls_dec",
)
FLAGS = ("codes_collapsed", "d_dead", "d_wins", "d_one_sided", "no_inversion")


def tail_mean(records: list[dict], key: str, tail: float = TAIL) -> float:
  """Mean of `key` over the last `tail` share of the records that have it (NaN if none)."""
  values = [r[key] for r in records if key in r]
  if not values:
    return float("nan")
  return float(np.mean(values[-max(1, int(round(tail * len(values)))) :]))


def summarize(records: list[dict]) -> dict[str, float]:
  """Final (tail-mean) value of every diagnostic and of the training losses."""
  keys = (*DIAGNOSTICS, "d_loss", "g_loss", "d_accuracy", "d_calls_dec")
  return {k: tail_mean(records, k) for k in keys}


def _known(summary: dict[str, float], *keys: str) -> bool:
  """Whether every key was logged (older runs lack some diagnostics, or all)."""
  return all(math.isfinite(summary.get(k, float("nan"))) for k in keys)


def flags(summary: dict[str, float]) -> dict[str, bool | None]:
  """Each failure flag from a summary; None where its diagnostics were not logged."""
  known = functools.partial(_known, summary)
  calls = summary.get("val_d_calls_dec", float("nan"))
  return {
    "codes_collapsed": (
      summary["z_eff_dim"] < CODES_COLLAPSED * summary["z_eff_dim_prior"]
      if known("z_eff_dim", "z_eff_dim_prior")
      else None
    ),
    "d_dead": abs(summary["val_d_gap"]) < D_DEAD_GAP if known("val_d_gap") else None,
    "d_wins": summary["val_d_accuracy"] > D_WINS if known("val_d_accuracy") else None,
    "d_one_sided": max(calls, 1 - calls) > ONE_SIDED if known("val_d_calls_dec") else None,
    "no_inversion": (
      summary["x_recon_rel"] > NO_INVERSION * summary["x_recon_other_rel"]
      if known("x_recon_rel", "x_recon_other_rel")
      else None
    ),
  }


def headline(summary: dict[str, float]) -> str:
  """One bold sentence: which failures the run shows, or that none is flagged."""
  f = flags(summary)
  if all(v is None for v in f.values()):
    return "This run logged no diagnostics (it predates them): its health is unknown."
  words = {
    "codes_collapsed": "the codes collapsed",
    "d_dead": "D is dead (it tells the pair kinds apart no better than a constant)",
    "d_wins": "D wins outright",
    "d_one_sided": "D calls almost every pair the same kind",
    "no_inversion": "G_x ignores its code (x reconstructs no better from its own code than "
    "from another segment's)",
  }
  failed = [words[name] for name, v in f.items() if v]
  if failed:
    return "**The adversarial game failed: " + "; ".join(failed) + ".**"
  return "**No failure flag is raised on the training diagnostics.**"


def describe(summary: dict[str, float]) -> str:
  """The headline, then the numbers behind it."""
  head = headline(summary)
  if all(v is None for v in flags(summary).values()):  # Nothing logged: no numbers.
    return head
  s = summary
  other = (  # Not logged before stop 19.
    f" (from another segment's code {s['x_recon_other_rel']:.2f})"
    if _known(s, "x_recon_other_rel")
    else ""
  )
  facts = (
    f"codes E(x): effective dimension {s['z_eff_dim']:.1f} (prior on as many samples: "
    f"{s['z_eff_dim_prior']:.1f}), per-dimension std {s['z_std']:.2f} (prior 1), mean norm "
    f"{s['z_mean_norm']:.2f} (prior 0); reconstruction of x {s['x_recon_rel']:.2f}{other} and of z "
    f"{s['z_recon_rel']:.2f} relative to the trivial predictor (1 = no better); D on "
    f"held-out pairs: accuracy {s['val_d_accuracy']:.2f} at its targets' midpoint, output gap "
    f"{s['val_d_gap']:.2f} of its target gap"
  )
  return f"{head} Over the last {TAIL:.0%} of logged steps: {facts}."
