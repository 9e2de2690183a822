"""Network shapes for the report's input, CPU presets and awkward sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from experiments import ali_lsgan
from song2vec import models


def test_feature_shapes_round_up():
  assert models.feature_shapes((257, 430), 3) == [(257, 430), (129, 215), (65, 108), (33, 54)]


@pytest.mark.parametrize(
  "preset, shape", [("cpu", (64, 64)), ("cpu", (65, 37)), ("paper", (257, 430))]
)
def test_shapes_round_trip(preset, shape):
  config = ali_lsgan.get_config(preset)
  encoder, decoder, discriminator = models.make_models(config.model, shape)
  x = jnp.zeros((2, *shape))
  key = jax.random.key(0)
  z = jax.eval_shape(lambda: encoder.apply(encoder.init(key, x), x))
  assert z.shape == (2, 64)
  x_hat = jax.eval_shape(
    lambda: decoder.apply(decoder.init(key, jnp.zeros((2, 64))), jnp.zeros((2, 64)))
  )
  assert x_hat.shape == (2, *shape)
  d = jax.eval_shape(
    lambda: discriminator.apply(
      discriminator.init(key, x, jnp.zeros((2, 64)), train=False),
      x,
      jnp.zeros((2, 64)),
      train=False,
    )
  )
  assert d.shape == (2,)


def test_stochastic_encoder_returns_mean_and_log_sigma():
  encoder = models.Encoder(z_dim=8, channels=(4, 8), stochastic=True)
  x = jnp.ones((3, 16, 16))
  mu, log_sigma = encoder.apply(encoder.init(jax.random.key(0), x), x)
  assert mu.shape == log_sigma.shape == (3, 8)


def test_discriminator_dropout_only_in_training():
  d = models.Discriminator(channels=(4,), hidden=8, dropout=0.5)
  x, z = jnp.ones((2, 8, 8)), jnp.ones((2, 3))
  params = d.init(jax.random.key(0), x, z, train=False)
  a = d.apply(params, x, z, train=False)
  assert jnp.array_equal(a, d.apply(params, x, z, train=False))
  b = d.apply(params, x, z, train=True, rngs={"dropout": jax.random.key(1)})
  c = d.apply(params, x, z, train=True, rngs={"dropout": jax.random.key(2)})
  assert not jnp.allclose(b, c)
