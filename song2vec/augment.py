"""Differentiable augmentation of D's spectrogram inputs (DiffAugment).

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training" (mit-han-lab/data-efficient-gans, DiffAugment_tf.py): every x that D
sees, the encoder's data pairs' and the decoder's samples' alike, passes
through the same family of random transforms, in D's step and in E+G's, so D
cannot win by memorising a small training set and G_x's gradient flows back
through the transform. The encoder and the cycle terms see x untouched.

The reference's image transforms carried over to a one-channel spectrogram
[bins, frames] (saturation needs colour channels and is left out):

  color:       brightness x + U(-0.5, 0.5) (here: a level shift, in units of
               each bin's train std), then contrast (x - mean) U(0.5, 1.5) + mean.
  translation: each axis shifted by a whole number of rows up to `ratio` of its
               length, the vacated rows zero (the train mean).
  cutout:      one rectangle of `ratio` of each axis set to zero.

Ours, for the encoder's consistency term (`loss.encoder_augment`), after the
gain and filter transforms of CLMR (Spijkervet & Burgoyne 2021):

  eq:          a random equaliser: one smooth curve over the bins, the sum of
               `terms` cosines with N(0, std^2) amplitudes, added to every
               frame (a filter, in the log-magnitude domain).

Ours, for the encoder's contrastive term (`loss.contrastive_weight`), after
CLMR's random crops and COLA's (Saeed et al. 2021) segments of one clip:

  crops:       a window of whole frames at a uniform random start, one per
               example; two of them are two views of the same music.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

POLICIES = ("color", "translation", "cutout", "eq")


def parse_policy(policy: str) -> tuple[str, ...]:
  """'color,translation' -> ('color', 'translation'); '' -> (): no augmentation."""
  names = tuple(p.strip() for p in policy.split(",") if p.strip())
  unknown = [p for p in names if p not in POLICIES]
  if unknown:
    raise ValueError(f"unknown augmentation {unknown} in {policy!r}; choose from {POLICIES}")
  return names


def color(x: jax.Array, key: jax.Array) -> jax.Array:
  k_level, k_contrast = jax.random.split(key)
  x = x + jax.random.uniform(k_level, (), minval=-0.5, maxval=0.5)
  mean = jnp.mean(x)
  return (x - mean) * jax.random.uniform(k_contrast, (), minval=0.5, maxval=1.5) + mean


def eq(x: jax.Array, key: jax.Array, std: float, terms: int) -> jax.Array:
  bins = x.shape[0]
  centres = (jnp.arange(bins) + 0.5) / bins
  cosines = jnp.cos(jnp.pi * jnp.arange(1, terms + 1)[:, None] * centres)  # [terms, bins]
  curve = (std * jax.random.normal(key, (terms,))) @ cosines
  return x + curve[:, None].astype(x.dtype)


def _along(v: jax.Array, axis: int, ndim: int) -> jax.Array:
  """A vector over one axis, shaped to broadcast against an ndim-array."""
  shape = [1] * ndim
  shape[axis] = v.shape[0]
  return v.reshape(shape)


def _shift(x: jax.Array, shift: jax.Array, axis: int) -> jax.Array:
  """out[i] = x[i - shift] along `axis`, zero where i - shift falls outside."""
  n = x.shape[axis]
  source = jnp.arange(n) - shift
  inside = (source >= 0) & (source < n)
  moved = jnp.take(x, jnp.clip(source, 0, n - 1), axis=axis)
  return moved * _along(inside, axis, x.ndim).astype(x.dtype)


def translation(x: jax.Array, key: jax.Array, ratio: float) -> jax.Array:
  for axis, k in zip(range(x.ndim), jax.random.split(key, x.ndim), strict=True):
    most = int(x.shape[axis] * ratio + 0.5)
    x = _shift(x, jax.random.randint(k, (), -most, most + 1), axis)
  return x


def cutout(x: jax.Array, key: jax.Array, ratio: float) -> jax.Array:
  cut = jnp.ones(x.shape, bool)
  for axis, k in zip(range(x.ndim), jax.random.split(key, x.ndim), strict=True):
    n = x.shape[axis]
    size = int(n * ratio + 0.5)
    # The reference's centre: uniform over [0, n + 1 - size % 2), then the
    # rectangle [centre - size // 2, centre - size // 2 + size), cut at the edges.
    start = jax.random.randint(k, (), 0, n + 1 - size % 2) - size // 2
    rows = jnp.arange(n)
    cut &= _along((rows >= start) & (rows < start + size), axis, x.ndim)
  return jnp.where(cut, jnp.zeros_like(x), x)


def augment(
  x: jax.Array,
  keys: jax.Array,
  policy: Sequence[str],
  *,
  translation_ratio: float = 0.125,
  cutout_ratio: float = 0.5,
  eq_std: float = 0.5,
  eq_terms: int = 4,
) -> jax.Array:
  """Each segment of x [B, bins, frames] through `policy`, with its own key of `keys` [B].

  Keys per example (not per batch, as the reference draws them) so that a
  batch split across devices is augmented as the whole batch on one device.
  """
  if not policy:
    return x

  transforms = {  # One entry per name of POLICIES.
    "color": color,
    "translation": functools.partial(translation, ratio=translation_ratio),
    "cutout": functools.partial(cutout, ratio=cutout_ratio),
    "eq": functools.partial(eq, std=eq_std, terms=eq_terms),
  }
  fns = [transforms[name] for name in policy]  # An unknown name fails here, not silently.

  def one(xi, key):
    for fn, k in zip(fns, jax.random.split(key, len(fns)), strict=True):
      xi = fn(xi, k)
    return xi

  return jax.vmap(one)(x, keys)


def crops(x: jax.Array, keys: jax.Array, frames: int) -> jax.Array:
  """From each segment of x [B, bins, T], `frames` consecutive frames at a random start.

  Each example draws its start from its own key of `keys` [B], uniform over
  the T - frames + 1 windows that fit.
  """
  total = x.shape[-1]
  if not 0 < frames <= total:
    raise ValueError(f"a crop of {frames} frames does not fit segments of {total} frames")

  def one(xi, key):
    start = jax.random.randint(key, (), 0, total - frames + 1)
    return jax.lax.dynamic_slice_in_dim(xi, start, frames, axis=-1)

  return jax.vmap(one)(x, keys)
