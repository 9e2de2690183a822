"""ALI objectives as pure functions of the discriminator's outputs.

Each objective takes D's outputs on encoder pairs (x, G_z(x)) and decoder pairs
(G_x(z), z), plus the targets D should give decoder pairs (1, or a smoothed
value), and returns a dict of named parts: `d_loss` for the discriminator step,
`g_loss` for the encoder-and-decoder step, and diagnostics.

Labels follow the report: D learns encoder pairs -> 0 and decoder pairs -> 1.
With `swap_labels` (the report's and the ALI paper's trick) the generators
minimise the loss of the swapped labels, encoder pairs -> 1 and decoder pairs
-> 0; without it they maximise D's own loss (the saturating minimax game).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def least_squares(
  d_enc: jax.Array, d_dec: jax.Array, dec_target: jax.Array, *, swap_labels: bool = True
) -> dict[str, jax.Array]:
  """The report's LSGAN objective with a linear D output.

  D:  min E[D(x, G_z(x))^2] + E[(D(G_x(z), z) - t)^2]   (t = 1 or smoothed)
  G:  min E[(D(x, G_z(x)) - 1)^2] + E[D(G_x(z), z)^2]   (swap_labels)
  """
  d_loss_enc = jnp.mean(jnp.square(d_enc))
  d_loss_dec = jnp.mean(jnp.square(d_dec - dec_target))
  if swap_labels:
    g_loss_enc = jnp.mean(jnp.square(d_enc - 1.0))
    g_loss_dec = jnp.mean(jnp.square(d_dec))
  else:
    g_loss_enc = -jnp.mean(jnp.square(d_enc))
    g_loss_dec = -jnp.mean(jnp.square(d_dec - 1.0))
  return _parts(d_loss_enc, d_loss_dec, g_loss_enc, g_loss_dec, d_enc, d_dec, threshold=0.5)


def sigmoid(
  d_enc: jax.Array, d_dec: jax.Array, dec_target: jax.Array, *, swap_labels: bool = True
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
  parts = _parts(d_loss_enc, d_loss_dec, g_loss_enc, g_loss_dec, d_enc, d_dec, threshold=0.0)
  parts["d_out_enc"] = jnp.mean(jax.nn.sigmoid(d_enc))
  parts["d_out_dec"] = jnp.mean(jax.nn.sigmoid(d_dec))
  return parts


def _parts(d_loss_enc, d_loss_dec, g_loss_enc, g_loss_dec, d_enc, d_dec, *, threshold):
  correct = jnp.concatenate([d_enc < threshold, d_dec >= threshold])
  # The report's failure: D calls every pair one kind (this -> 0 or 1, accuracy ~ 0.5).
  calls_dec = jnp.concatenate([d_enc >= threshold, d_dec >= threshold])
  return {
    "d_loss": d_loss_enc + d_loss_dec,
    "d_loss_enc": d_loss_enc,
    "d_loss_dec": d_loss_dec,
    "g_loss": g_loss_enc + g_loss_dec,
    "g_loss_enc": g_loss_enc,
    "g_loss_dec": g_loss_dec,
    "d_out_enc": jnp.mean(d_enc),
    "d_out_dec": jnp.mean(d_dec),
    "d_accuracy": jnp.mean(correct.astype(jnp.float32)),
    "d_calls_dec": jnp.mean(calls_dec.astype(jnp.float32)),
  }


OBJECTIVES = {"least_squares": least_squares, "sigmoid": sigmoid}


def kernel_l2(params) -> jax.Array:
  """Sum of squares of every convolution kernel (4-D leaves named 'kernel')."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  total = [
    jnp.sum(jnp.square(v))
    for path, v in leaves
    if getattr(path[-1], "key", None) == "kernel" and v.ndim == 4
  ]
  return sum(total, jnp.zeros(()))
