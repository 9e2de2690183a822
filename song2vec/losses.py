"""ALI objectives and the terms added to them, as pure functions.

Each objective takes D's outputs on encoder pairs (x, G_z(x)) and decoder pairs
(G_x(z), z), plus the targets D should give decoder pairs (1, or a smoothed
value), and returns a dict of named parts: `d_loss` for the discriminator step,
`g_loss` for the encoder-and-decoder step, and diagnostics.

Labels follow the report: D learns encoder pairs -> 0 and decoder pairs -> 1.
With `swap_labels` (the report's and the ALI paper's trick) the generators
minimise the loss of the swapped labels, encoder pairs -> 1 and decoder pairs
-> 0; without it they maximise D's own loss (the saturating minimax game).

D's accuracy is read at the midpoint of its two targets, 0 and the mean
positive label (0.4 for labels drawn from [0.7, 0.9]): a D that outputs its
targets exactly scores 1, one whose outputs carry no information scores about
0.5. For the sigmoid objective the midpoint is taken on sigmoid(D).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from song2vec import models


def least_squares(
  d_enc: jax.Array,
  d_dec: jax.Array,
  dec_target: jax.Array,
  *,
  swap_labels: bool = True,
  target_mean: float | None = None,
) -> dict[str, jax.Array]:
  """The report's LSGAN objective with a linear D output.

  D:  min E[D(x, G_z(x))^2] + E[(D(G_x(z), z) - t)^2]   (t = 1 or smoothed)
  G:  min E[(D(x, G_z(x)) - 1)^2] + E[D(G_x(z), z)^2]   (swap_labels)

  Args:
    d_enc, d_dec: D's outputs on encoder and decoder pairs.
    dec_target: D's target for each decoder pair.
    swap_labels: the generators' loss with swapped labels, else minimax.
    target_mean: the mean positive label, for the accuracy's threshold
      (default: the mean of dec_target).
  """
  d_loss_enc = jnp.mean(jnp.square(d_enc))
  d_loss_dec = jnp.mean(jnp.square(d_dec - dec_target))
  if swap_labels:
    g_loss_enc = jnp.mean(jnp.square(d_enc - 1.0))
    g_loss_dec = jnp.mean(jnp.square(d_dec))
  else:
    g_loss_enc = -jnp.mean(jnp.square(d_enc))
    g_loss_dec = -jnp.mean(jnp.square(d_dec - 1.0))
  parts = _parts(d_loss_enc, d_loss_dec, g_loss_enc, g_loss_dec)
  parts.update(decision_metrics(d_enc, d_dec, _mean_target(dec_target, target_mean)))
  return parts


def sigmoid(
  d_enc: jax.Array,
  d_dec: jax.Array,
  dec_target: jax.Array,
  *,
  swap_labels: bool = True,
  target_mean: float | None = None,
) -> dict[str, jax.Array]:
  """The original ALI objective: D's logits through a sigmoid cross-entropy.

  D:  min CE(D(x, G_z(x)), 0) + CE(D(G_x(z), z), t)
  G:  min CE(D(x, G_z(x)), 1) + CE(D(G_x(z), z), 0)     (swap_labels)
  """
  ce = optax.sigmoid_binary_cross_entropy
  d_loss_enc = jnp.mean(ce(d_enc, jnp.zeros_like(d_enc)))
  d_loss_dec = jnp.mean(ce(d_dec, dec_target))
  if swap_labels:
    g_loss_enc = jnp.mean(ce(d_enc, jnp.ones_like(d_enc)))
    g_loss_dec = jnp.mean(ce(d_dec, jnp.zeros_like(d_dec)))
  else:
    g_loss_enc = -d_loss_enc
    g_loss_dec = -jnp.mean(ce(d_dec, jnp.ones_like(d_dec)))
  parts = _parts(d_loss_enc, d_loss_dec, g_loss_enc, g_loss_dec)
  parts.update(
    decision_metrics(
      jax.nn.sigmoid(d_enc), jax.nn.sigmoid(d_dec), _mean_target(dec_target, target_mean)
    )
  )
  return parts


OBJECTIVES = {"least_squares": least_squares, "sigmoid": sigmoid}


def _mean_target(dec_target, target_mean):
  return jnp.mean(dec_target) if target_mean is None else target_mean


def _parts(d_loss_enc, d_loss_dec, g_loss_enc, g_loss_dec) -> dict[str, jax.Array]:
  return {
    "d_loss": d_loss_enc + d_loss_dec,
    "d_loss_enc": d_loss_enc,
    "d_loss_dec": d_loss_dec,
    "g_loss": g_loss_enc + g_loss_dec,
    "g_loss_enc": g_loss_enc,
    "g_loss_dec": g_loss_dec,
  }


def decision_metrics(out_enc: jax.Array, out_dec: jax.Array, target_mean) -> dict[str, jax.Array]:
  """How well D tells the pair kinds apart, on the scale of its targets.

  Args:
    out_enc, out_dec: D's outputs on the scale of its targets (the raw score
      for least squares, sigmoid(logit) for cross-entropy); targets are 0 for
      encoder pairs and `target_mean` on average for decoder pairs.
    target_mean: the mean positive label.

  Returns:
    d_out_enc, d_out_dec: mean outputs; d_accuracy: share of pairs on their
    own side of the midpoint target_mean / 2; d_calls_dec: share of all pairs
    called "decoder" (the report's failure, one kind for every pair, shows as
    0 or 1 here while accuracy sits at 0.5); d_gap: mean output gap between
    the kinds in units of the target gap (1: D separates them as trained, 0:
    D carries no information).
  """
  threshold = 0.5 * target_mean
  correct = jnp.concatenate([out_enc < threshold, out_dec >= threshold])
  calls_dec = jnp.concatenate([out_enc >= threshold, out_dec >= threshold])
  return {
    "d_out_enc": jnp.mean(out_enc),
    "d_out_dec": jnp.mean(out_dec),
    "d_accuracy": jnp.mean(correct.astype(jnp.float32)),
    "d_calls_dec": jnp.mean(calls_dec.astype(jnp.float32)),
    "d_gap": (jnp.mean(out_dec) - jnp.mean(out_enc)) / target_mean,
  }


def ali_game(
  objective: str,
  scores_enc: dict[str, jax.Array],
  scores_dec: dict[str, jax.Array],
  dec_target: jax.Array,
  *,
  swap_labels: bool,
  target_mean: float,
  unary_weight: float = 0.0,
) -> dict[str, jax.Array]:
  """The objective on D's joint score, plus BigBiGAN's unary scores if D has them.

  BigBiGAN (Donahue & Simonyan, 2019) gives D a score of x alone and of z
  alone beside the joint one, and sums the same loss over all three, so the
  data and code marginals are matched directly as well as the pairs. Here the
  unary scores' losses are added with `unary_weight` to both players' losses.
  """
  fn = OBJECTIVES[objective]
  kwargs = {"swap_labels": swap_labels, "target_mean": target_mean}
  parts = fn(scores_enc["xz"], scores_dec["xz"], dec_target, **kwargs)
  for key in ("x", "z"):
    if key in scores_enc:
      unary = fn(scores_enc[key], scores_dec[key], dec_target, **kwargs)
      parts[f"d_loss_{key}"] = unary["d_loss"]
      parts[f"g_loss_{key}"] = unary["g_loss"]
      parts[f"d_accuracy_{key}"] = unary["d_accuracy"]
      parts["d_loss"] = parts["d_loss"] + unary_weight * unary["d_loss"]
      parts["g_loss"] = parts["g_loss"] + unary_weight * unary["g_loss"]
  return parts


def cycle(a: jax.Array, b: jax.Array, norm: str = "l1") -> jax.Array:
  """ALICE's cycle-consistency term: mean |a - b| (l1) or (a - b)^2 (l2)."""
  diff = a - b
  if norm == "l1":
    return jnp.mean(jnp.abs(diff))
  if norm == "l2":
    return jnp.mean(jnp.square(diff))
  raise ValueError(f"cycle norm must be 'l1' or 'l2', got {norm!r}")


def cycle_x_views(x: jax.Array, x_rec: jax.Array, on: str = "x") -> tuple[jax.Array, jax.Array]:
  """What ALICE's x-cycle term compares of x and G_x(G_z(x)) (`loss.cycle_x_on`).

  "x": the spectrograms themselves (ALICE). "stats": each bin's mean and std
  over frames (ours; a reconstruction in a feature space, as Larsen et al.
  2016 reconstruct in D's): the code must carry the segment's spectral
  statistics, not where each note sits in it.
  """
  if on == "x":
    return x, x_rec
  if on == "stats":  # The pooled readout's statistics, the bins as rows of one channel.
    return models.time_pool(x[..., None]), models.time_pool(x_rec[..., None])
  raise ValueError(f"loss.cycle_x_on must be 'x' or 'stats', got {on!r}")


def prior_mmd(z: jax.Array, z_prior: jax.Array, scales: tuple[float, ...] = (1.0,)) -> jax.Array:
  """WAE-MMD (Tolstikhin et al., 2018): unbiased MMD^2 between codes and prior draws.

  The inverse multiquadratics kernel k(a, b) = C / (C + |a - b|^2), summed over
  C = 2 * z_dim * scale for each scale (the WAE code's choice for an N(0, I)
  prior). Zero in expectation when `z` is drawn from the prior; grows as the
  codes' distribution drifts from it (an offset mean, a few live directions).

  Args:
    z: [n, z_dim] codes E(x).
    z_prior: [n, z_dim] draws from N(0, I).
    scales: multiples of 2 * z_dim, one kernel width each.

  Returns:
    The scalar estimate (it can be slightly negative).
  """
  n, z_dim = z.shape

  def sq_dists(a, b):
    return jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)

  d_zz, d_pp, d_zp = sq_dists(z, z), sq_dists(z_prior, z_prior), sq_dists(z, z_prior)
  off_diagonal = 1.0 - jnp.eye(n, dtype=z.dtype)
  total = jnp.zeros((), z.dtype)
  for scale in scales:
    c = 2.0 * z_dim * scale
    within = (c / (c + d_zz) + c / (c + d_pp)) * off_diagonal
    total += jnp.sum(within) / (n * (n - 1)) - 2.0 * jnp.mean(c / (c + d_zp))
  return total


def nt_xent(a: jax.Array, b: jax.Array, temperature: float = 0.5) -> jax.Array:
  """SimCLR's NT-Xent (Chen et al., 2020), as CLMR trains on two crops of a song.

  Row i of `a` and row i of `b` are two views of one example; every other row
  of either is a negative. Each of the 2n views is classified among the other
  2n - 1 by cosine similarity / temperature, its pair the right class; the
  mean cross-entropy is returned. It is low when pairs agree and differ from
  the rest, and log(2n - 1) when every code is the same (the collapse an
  invariance term alone allows).

  Args:
    a: [n, d] codes of the first views.
    b: [n, d] codes of the second views.
    temperature: divides the cosine similarities.
  """
  n = a.shape[0]
  z = jnp.concatenate([a, b], axis=0)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-8)
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)  # Not itself.
  pair = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(log_p[jnp.arange(2 * n), pair])


def kernel_l2(params) -> jax.Array:
  """Sum of squares of every convolution kernel (4-D leaves named 'kernel')."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  total = [
    jnp.sum(jnp.square(v))
    for path, v in leaves
    if getattr(path[-1], "key", None) == "kernel" and v.ndim == 4
  ]
  return sum(total, jnp.zeros(()))
