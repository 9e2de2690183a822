"""Every objective against a hand computation."""

from __future__ import annotations

import math

import jax
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
  # Midpoint of the targets 0 and mean(T) = 0.75: 0.375. Encoder outputs are
  # below it (both), decoder outputs above (both).
  assert float(p["d_accuracy"]) == 1.0
  assert float(p["d_calls_dec"]) == 0.5  # Two of the four pairs called decoder.
  np.testing.assert_allclose(p["d_gap"], (0.7 - (-0.1)) / 0.75, rtol=1e-6)


def test_accuracy_is_read_at_the_midpoint_of_the_targets():
  # A least-squares D that has learnt its targets (0 for encoder pairs, 0.8
  # for decoder pairs) up to a little noise: all pairs on their own side of
  # 0.4. A threshold of 0.5 would call it wrong on most decoder pairs.
  d_enc = jnp.array([0.05, -0.05, 0.1, 0.0])
  d_dec = jnp.array([0.45, 0.7, 0.48, 0.9])
  p = losses.least_squares(d_enc, d_dec, jnp.full(4, 0.8), target_mean=0.8)
  assert float(p["d_accuracy"]) == 1.0 and float(p["d_calls_dec"]) == 0.5
  # A D whose outputs carry nothing: the same value for both kinds.
  dead = losses.least_squares(jnp.full(4, 0.3), jnp.full(4, 0.3), jnp.full(4, 0.8))
  assert float(dead["d_gap"]) == 0.0 and float(dead["d_accuracy"]) == 0.5


def test_one_sided_discriminator_is_visible_beside_chance_accuracy():
  # The report's failure: every pair called "decoder"; accuracy alone says 0.5.
  ones = jnp.ones(4)
  p = losses.least_squares(0.8 * ones, 0.9 * ones, 0.8 * ones)
  assert float(p["d_accuracy"]) == 0.5 and float(p["d_calls_dec"]) == 1.0
  p = losses.sigmoid(-3.0 * ones, -2.0 * ones, 0.8 * ones)  # sigmoid < 0.4: all "encoder".
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
  # On sigmoid(D), threshold 0.75 / 2: sigmoid(0.2) = 0.55 and sigmoid(-0.4)
  # = 0.40 are both above it (wrong), both decoder pairs right.
  assert float(p["d_accuracy"]) == pytest.approx(0.5)
  assert float(p["d_calls_dec"]) == pytest.approx(1.0)
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


def test_unary_scores_add_the_same_objective_on_each_marginal():
  enc = {"xz": D_ENC, "x": jnp.array([0.1, 0.3]), "z": jnp.array([0.0, 0.5])}
  dec = {"xz": D_DEC, "x": jnp.array([0.6, 0.2]), "z": jnp.array([1.0, 0.4])}
  kwargs = {"swap_labels": True, "target_mean": 0.75}
  joint = losses.least_squares(D_ENC, D_DEC, T, **kwargs)
  p = losses.ali_game("least_squares", enc, dec, T, unary_weight=0.5, **kwargs)
  for key in ("x", "z"):
    unary = losses.least_squares(enc[key], dec[key], T, **kwargs)
    np.testing.assert_allclose(p[f"d_loss_{key}"], unary["d_loss"], rtol=1e-6)
  want_d = joint["d_loss"] + 0.5 * (p["d_loss_x"] + p["d_loss_z"])
  want_g = joint["g_loss"] + 0.5 * (p["g_loss_x"] + p["g_loss_z"])
  np.testing.assert_allclose(p["d_loss"], want_d, rtol=1e-6)
  np.testing.assert_allclose(p["g_loss"], want_g, rtol=1e-6)
  # Without unary scores the game is the objective on the joint score alone.
  alone = losses.ali_game("least_squares", {"xz": D_ENC}, {"xz": D_DEC}, T, **kwargs)
  np.testing.assert_allclose(alone["d_loss"], joint["d_loss"], rtol=1e-6)


def test_cycle_terms_by_hand():
  a, b = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.0])
  assert float(losses.cycle(a, b, "l1")) == pytest.approx((0.5 + 2.0) / 2)
  assert float(losses.cycle(a, b, "l2")) == pytest.approx((0.25 + 4.0) / 2)
  with pytest.raises(ValueError, match="cycle norm"):
    losses.cycle(a, b, "l3")


def test_x_cycle_on_stats_ignores_where_in_the_segment_each_frame_sits():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)  # [n, bins, frames]
  shuffled = x[..., rng.permutation(8)]  # The same frames in another order.
  stats, _ = losses.cycle_x_views(x, x, "stats")
  assert stats.shape == (2, 10)
  pairs = stats.reshape(2, 5, 2)  # Each bin's (mean, std) over frames.
  np.testing.assert_allclose(pairs[..., 0], x.mean(-1), atol=1e-6)
  np.testing.assert_allclose(pairs[..., 1], x.std(-1), atol=1e-5)
  assert float(losses.cycle(*losses.cycle_x_views(x, shuffled, "stats"))) < 1e-6
  assert float(losses.cycle(*losses.cycle_x_views(x, shuffled, "x"))) > 0.5
  louder = x + 1.0  # A level the spectrogram's statistics do see.
  assert float(losses.cycle(*losses.cycle_x_views(x, louder, "stats"))) > 0.4
  flat = jnp.zeros((1, 5, 8))  # Constant bins: the std's gradient stays finite.
  grad = jax.grad(lambda y: losses.cycle_x_views(y, y, "stats")[0].sum())(flat)
  assert np.isfinite(grad).all()
  with pytest.raises(ValueError, match="cycle_x_on"):
    losses.cycle_x_views(x, x, "frames")


def test_prior_mmd_is_near_zero_on_the_prior_and_grows_with_drift():
  rng = np.random.default_rng(0)
  prior = jnp.asarray(rng.standard_normal((256, 8)), jnp.float32)
  same = jnp.asarray(rng.standard_normal((256, 8)), jnp.float32)
  scales = (0.1, 1.0, 10.0)
  on_prior = float(losses.prior_mmd(same, prior, scales))
  offset = float(losses.prior_mmd(same + 2.0, prior, scales))
  # Two live directions of eight, as a collapsed encoder's codes.
  folded = float(losses.prior_mmd(same * jnp.array([1.0] * 2 + [0.0] * 6), prior, scales))
  assert abs(on_prior) < 0.01
  assert offset > 0.5 and folded > 0.1 and offset > folded


def test_prior_mmd_by_hand():
  z, prior = jnp.array([[0.0], [1.0]]), jnp.array([[0.0], [3.0]])
  c = 2.0  # 2 * z_dim * scale.
  within = (c / (c + 1.0)) * 2 + (c / (c + 9.0)) * 2  # Off-diagonal pairs, both orders.
  across = c / c + c / (c + 9.0) + c / (c + 1.0) + c / (c + 4.0)
  want = within / 2 - 2 * across / 4
  assert float(losses.prior_mmd(z, prior, (1.0,))) == pytest.approx(want, rel=1e-6)


def test_nt_xent_rewards_agreeing_pairs_and_scores_collapse_at_log_2n_minus_1():
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((16, 8)), jnp.float32)
  other = jnp.asarray(rng.standard_normal((16, 8)), jnp.float32)
  same = float(losses.nt_xent(a, a, 0.1))
  unrelated = float(losses.nt_xent(a, other, 0.1))
  collapsed = float(losses.nt_xent(jnp.ones((16, 8)), jnp.ones((16, 8)), 0.1))
  assert same < 0.5 < unrelated
  assert collapsed == pytest.approx(np.log(31), rel=1e-5)
  # Two examples by hand: each view's pair at cosine 1, the other two at 0.
  two = jnp.eye(2)
  want = -np.log(np.exp(1 / 0.5) / (np.exp(1 / 0.5) + 2.0))
  assert float(losses.nt_xent(two, two, 0.5)) == pytest.approx(want, rel=1e-5)
