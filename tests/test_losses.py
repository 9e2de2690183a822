"""Every objective against a hand computation."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from song2vec import losses

D_ENC = jnp.array([0.2, -0.4])  # D's outputs on encoder pairs (x, G_z(x)).
D_DEC = jnp.array([0.9, 0.5])  # ... on decoder pairs (G_x(z), z).
T = jnp.array([0.8, 0.7])  # Smoothed positive labels for decoder pairs.


def test_least_squares_by_hand():
  p = losses.least_squares(D_ENC, D_DEC, T)
  d_enc = (0.2**2 + 0.4**2) / 2  # Encoder pairs -> 0.
  d_dec = ((0.9 - 0.8) ** 2 + (0.5 - 0.7) ** 2) / 2  # Decoder pairs -> t.
  g_enc = ((0.2 - 1) ** 2 + (-0.4 - 1) ** 2) / 2  # Swapped: encoder -> 1,
  g_dec = (0.9**2 + 0.5**2) / 2  # decoder -> 0.
  np.testing.assert_allclose(p["d_loss_enc"], d_enc, rtol=1e-6)
  np.testing.assert_allclose(p["d_loss_dec"], d_dec, rtol=1e-6)
  np.testing.assert_allclose(p["d_loss"], d_enc + d_dec, rtol=1e-6)
  np.testing.assert_allclose(p["g_loss_enc"], g_enc, rtol=1e-6)
  np.testing.assert_allclose(p["g_loss_dec"], g_dec, rtol=1e-6)
  np.testing.assert_allclose(p["g_loss"], g_enc + g_dec, rtol=1e-6)
  np.testing.assert_allclose(p["d_out_enc"], -0.1, rtol=1e-6)
  # Correct: encoder outputs < 0.5 (both), decoder outputs >= 0.5 (both).
  assert float(p["d_accuracy"]) == 1.0
  assert float(p["d_calls_dec"]) == 0.5  # Two of the four pairs called decoder.


def test_one_sided_discriminator_is_visible_beside_chance_accuracy():
  # The report's failure: every pair called "decoder"; accuracy alone says 0.5.
  ones = jnp.ones(4)
  p = losses.least_squares(0.8 * ones, 0.9 * ones, 0.8 * ones)
  assert float(p["d_accuracy"]) == 0.5 and float(p["d_calls_dec"]) == 1.0
  p = losses.sigmoid(-2.0 * ones, -1.0 * ones, 0.8 * ones)
  assert float(p["d_accuracy"]) == 0.5 and float(p["d_calls_dec"]) == 0.0


def test_least_squares_without_swap_is_minimax():
  p = losses.least_squares(D_ENC, D_DEC, T, swap_labels=False)
  want = -((0.2**2 + 0.4**2) / 2 + ((0.9 - 1) ** 2 + (0.5 - 1) ** 2) / 2)
  np.testing.assert_allclose(p["g_loss"], want, rtol=1e-6)


def _ce(logit, label):
  s = 1 / (1 + math.exp(-logit))
  return -(label * math.log(s) + (1 - label) * math.log(1 - s))


def test_sigmoid_by_hand():
  p = losses.sigmoid(D_ENC, D_DEC, T)
  d_enc = (_ce(0.2, 0) + _ce(-0.4, 0)) / 2
  d_dec = (_ce(0.9, 0.8) + _ce(0.5, 0.7)) / 2
  g_enc = (_ce(0.2, 1) + _ce(-0.4, 1)) / 2
  g_dec = (_ce(0.9, 0) + _ce(0.5, 0)) / 2
  np.testing.assert_allclose(p["d_loss"], d_enc + d_dec, rtol=1e-5)
  np.testing.assert_allclose(p["g_loss"], g_enc + g_dec, rtol=1e-5)
  np.testing.assert_allclose(
    p["d_out_dec"], (1 / (1 + math.exp(-0.9)) + 1 / (1 + math.exp(-0.5))) / 2, rtol=1e-5
  )
  # Logit threshold 0: encoder 0.2 is wrong, -0.4 right; both decoder right.
  assert float(p["d_accuracy"]) == pytest.approx(0.75)
  assert float(p["d_calls_dec"]) == pytest.approx(0.75)  # 0.2, 0.9 and 0.5 are >= 0.
  minimax = losses.sigmoid(D_ENC, D_DEC, T, swap_labels=False)
  np.testing.assert_allclose(
    minimax["g_loss"], -(d_enc + (_ce(0.9, 1) + _ce(0.5, 1)) / 2), rtol=1e-5
  )


def test_kernel_l2_counts_only_conv_kernels():
  params = {
    "params": {
      "Conv_0": {"kernel": jnp.ones((2, 2, 1, 3)), "bias": jnp.ones((3,))},
      "Dense_0": {"kernel": jnp.ones((4, 5)), "bias": jnp.ones((5,))},
      "Conv_1": {"kernel": 2 * jnp.ones((1, 1, 3, 1))},
    }
  }
  assert float(losses.kernel_l2(params)) == 12 + 3 * 4
