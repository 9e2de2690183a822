"""ALI's three networks as Flax Linen modules, used as pure functions.

- `Encoder` G_z: spectrogram x [B, F, T] -> z [B, z_dim] (deterministic, as in
  the report), or (mu, log_sigma) when `stochastic` (the ALI paper's
  reparameterised encoder; sampling happens in the train step).
- `Decoder` G_x: z -> x [B, F, T].
- `Discriminator` D(x, z): a convolutional x-branch, an MLP z-branch, a joint
  head with dropout, one linear output (a logit for the sigmoid objective, the
  raw score for least squares).

Any (F, T) works: stride-2 'SAME' convolutions round up (257 -> 129 -> 65 ...),
and the decoder upsamples to exactly the encoder's recorded shapes (resize then
convolve), so nothing is cropped or padded by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def feature_shapes(shape: tuple[int, int], num_layers: int) -> list[tuple[int, int]]:
  """(F, T) after each stride-2 'SAME' conv: [input, layer 1, ..., layer n]."""
  shapes = [tuple(shape)]
  for _ in range(num_layers):
    f, t = shapes[-1]
    shapes.append((math.ceil(f / 2), math.ceil(t / 2)))
  return shapes


def _act(x):
  return nn.leaky_relu(x, negative_slope=0.2)


def _norm(channels: int) -> nn.Module:
  # Convolutions before it have no bias: the normalisation removes it, its
  # gradient is zero up to rounding, and Adam would amplify that rounding.
  # GroupNorm is per example: no batch statistics to sync across devices, so
  # a pmapped step equals the single-device step on the same global batch.
  return nn.GroupNorm(num_groups=min(8, channels))


class Encoder(nn.Module):
  """G_z(x)."""

  z_dim: int
  channels: Sequence[int]
  stochastic: bool = False

  @nn.compact
  def __call__(self, x: jax.Array):
    h = x[..., None]
    for c in self.channels:
      h = nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)(h)
      h = _act(_norm(c)(h))
    h = h.reshape((h.shape[0], -1))
    if self.stochastic:
      mu = nn.Dense(self.z_dim, name="mu")(h)
      log_sigma = nn.Dense(self.z_dim, name="log_sigma")(h)
      return mu, jnp.clip(log_sigma, -10.0, 5.0)
    return nn.Dense(self.z_dim, name="z")(h)


class Decoder(nn.Module):
  """G_x(z), mirroring an encoder with `len(channels)` stride-2 layers."""

  shape: tuple[int, int]
  channels: Sequence[int]  # Deepest first.

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    shapes = feature_shapes(self.shape, len(self.channels))[::-1]  # Smallest first.
    f, t = shapes[0]
    h = nn.Dense(f * t * self.channels[0])(z)
    h = _act(h.reshape((z.shape[0], f, t, self.channels[0])))
    for (f, t), c in zip(shapes[1:], list(self.channels[1:]) + [self.channels[-1]], strict=True):
      h = jax.image.resize(h, (h.shape[0], f, t, h.shape[-1]), method="nearest")
      h = nn.Conv(c, (3, 3), padding="SAME", use_bias=False)(h)
      h = _act(_norm(c)(h))
    # Linear output: spectrograms are normalised to ~N(0, 1) per bin.
    return nn.Conv(1, (3, 3), padding="SAME", name="out")(h)[..., 0]


class Discriminator(nn.Module):
  """D(x, z) -> one unbounded score per pair."""

  channels: Sequence[int]
  hidden: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, z: jax.Array, *, train: bool) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)
    h = x[..., None]
    for c in self.channels:
      h = nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME")(h)
      h = drop(_act(h))
    hx = h.reshape((h.shape[0], -1))
    hz = z
    for _ in range(2):
      hz = drop(_act(nn.Dense(self.hidden)(hz)))
    h = jnp.concatenate([hx, hz], axis=-1)
    h = drop(_act(nn.Dense(2 * self.hidden)(h)))
    return nn.Dense(1, name="out")(h)[:, 0]


def make_models(model_config, shape: tuple[int, int]) -> tuple[Encoder, Decoder, Discriminator]:
  """The three modules sized by `config.model` for spectrograms of `shape`."""
  encoder = Encoder(
    z_dim=model_config.z_dim,
    channels=tuple(model_config.encoder_channels),
    stochastic=model_config.stochastic_encoder,
  )
  decoder = Decoder(shape=tuple(shape), channels=tuple(reversed(model_config.encoder_channels)))
  discriminator = Discriminator(
    channels=tuple(model_config.d_channels),
    hidden=model_config.d_hidden,
    dropout=model_config.d_dropout,
  )
  return encoder, decoder, discriminator
