"""Network shapes for the report's input, CPU presets and awkward sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ali_lsgan
from song2vec import embed, models


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
  assert d["xz"].shape == (2,)


@pytest.mark.parametrize("arch", ["report", "ali"])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_discriminator_variants_score_each_pair(arch, spectral_norm):
  d = models.Discriminator(
    channels=(4, 8), hidden=8, dropout=0.2, arch=arch, spectral_norm=spectral_norm, unary=True
  )
  x, z = jnp.ones((3, 16, 12)), jnp.ones((3, 5))
  variables = d.init(jax.random.key(0), x, z, train=False)
  assert ("batch_stats" in variables) == spectral_norm
  scores = d.apply(variables, x, z, train=False)
  assert {k: v.shape for k, v in scores.items()} == {"xz": (3,), "x": (3,), "z": (3,)}


def test_spectral_norm_makes_d_blind_to_the_scale_of_its_kernels():
  def scores(spectral_norm, factor):
    d = models.Discriminator(
      channels=(4,), hidden=8, dropout=0.0, arch="ali", spectral_norm=spectral_norm
    )
    x = jax.random.normal(jax.random.key(1), (2, 8, 8))
    z = jax.random.normal(jax.random.key(2), (2, 3))
    variables = d.init(jax.random.key(0), x, z, train=False)
    scaled = jax.tree_util.tree_map_with_path(
      lambda path, w: factor * w if "kernel" in str(path[-1]) else w, variables["params"]
    )
    return d.apply({**variables, "params": scaled}, x, z, train=False)["xz"]

  # W / sigma(W) does not change when W is scaled: each layer is normalised.
  np.testing.assert_allclose(scores(True, 10.0), scores(True, 1.0), rtol=1e-4, atol=1e-5)
  assert not np.allclose(scores(False, 10.0), scores(False, 1.0), rtol=1e-2)


@pytest.mark.parametrize(
  "readout, conv, feature_dim",
  # (F after each layer) x channels x {mean, std}: pool the last layer's only,
  # multilevel each layer's (8 x 4 x 2 + 4 x 8 x 2); time convolutions keep one row.
  [
    ("pool", "2d", 4 * 8 * 2),
    ("multilevel", "2d", 8 * 4 * 2 + 4 * 8 * 2),
    ("pool", "time", 1 * 8 * 2),
  ],
)
def test_pooled_readouts_ignore_where_a_segment_starts(readout, conv, feature_dim):
  encoder = models.Encoder(z_dim=6, channels=(4, 8), readout=readout, conv=conv)
  x = jax.random.normal(jax.random.key(0), (2, 16, 32))
  params = encoder.init(jax.random.key(1), x)
  # Rolling by a multiple of the total stride (4) permutes the pooled frames
  # (up to the zero padding at the edges), so mean and std over time barely move;
  # the flattened readout changes with it.
  rolled = jnp.roll(x, 8, axis=2)
  z, features = encoder.apply(params, x, features=True)
  z_rolled = encoder.apply(params, rolled)
  assert features.shape == (2, feature_dim)
  flat = models.Encoder(z_dim=6, channels=(4, 8), readout="flatten")
  flat_params = flat.init(jax.random.key(1), x)
  flat_change = jnp.abs(flat.apply(flat_params, x) - flat.apply(flat_params, rolled)).mean()
  pool_change = jnp.abs(z - z_rolled).mean()
  assert pool_change < 0.3 * flat_change


def test_multilevel_readout_adds_the_earlier_layers_statistics_to_pools():
  x = jax.random.normal(jax.random.key(0), (2, 16, 32))
  multi = models.Encoder(z_dim=6, channels=(4, 8), readout="multilevel")
  params = multi.init(jax.random.key(1), x)
  (_, features), state = multi.apply(
    params, x, features=True, capture_intermediates=True, mutable=["intermediates"]
  )
  # The same convolutions under the last-layer readout (only z's map differs).
  pool = models.Encoder(z_dim=6, channels=(4, 8), readout="pool")
  pool_params = pool.init(jax.random.key(1), x)
  pool_params["params"] = {**params["params"], "z": pool_params["params"]["z"]}
  _, last = pool.apply(pool_params, x, features=True)
  np.testing.assert_allclose(features[:, -last.shape[1] :], last, rtol=1e-5, atol=1e-6)
  # The first layer's part: mean and std over time of its activations (8 rows x 4 channels).
  normed = state["intermediates"]["GroupNorm_0"]["__call__"][0]
  first = models.time_pool(jax.nn.leaky_relu(normed, multi.negative_slope))
  assert first.shape == (2, 8 * 4 * 2)
  np.testing.assert_allclose(features[:, : first.shape[1]], first, rtol=1e-5, atol=1e-6)


def test_pool_stats_choose_the_statistics_the_readout_takes():
  x = jax.random.normal(jax.random.key(0), (2, 16, 32))
  both = models.Encoder(z_dim=6, channels=(4, 8), readout="pool")
  params = both.init(jax.random.key(1), x)
  _, features = both.apply(params, x, features=True)
  per_row = features.reshape((2, 4, 2 * 8))  # [B, F, mean and std of 8 channels]
  for stats, part in [(("mean",), per_row[..., :8]), (("std",), per_row[..., 8:])]:
    one = models.Encoder(z_dim=6, channels=(4, 8), readout="pool", pool_stats=stats)
    one_params = one.init(jax.random.key(1), x)
    one_params["params"] = {**params["params"], "z": one_params["params"]["z"]}
    _, one_features = one.apply(one_params, x, features=True)
    np.testing.assert_allclose(one_features, part.reshape((2, -1)), rtol=1e-6)
  with pytest.raises(ValueError, match="pooled statistics"):
    models.time_pool(jnp.zeros((1, 2, 3, 4)), ("max",))


def test_flux_is_each_features_mean_absolute_change_between_frames():
  h = jnp.asarray([0.0, 2.0, 1.0, 1.0, 4.0]).reshape((1, 1, 5, 1))  # [B, F, T, C]
  mean, std, flux = models.time_pool(h, ("mean", "std", "flux"))[0]
  np.testing.assert_allclose(flux, (2 + 1 + 0 + 3) / 4, rtol=1e-6)
  np.testing.assert_allclose(mean, 8 / 5, rtol=1e-6)
  # Flux reads the order of the frames, which the mean and std do not.
  shuffled = models.time_pool(h[:, :, jnp.asarray([0, 3, 2, 1, 4])], ("mean", "std", "flux"))[0]
  np.testing.assert_allclose(shuffled[:2], (mean, std), rtol=1e-6)
  assert shuffled[2] != flux
  assert models.time_pool(h[:, :, :1], ("flux",))[0, 0] == 0  # One frame: nothing changes.
  x = jax.random.normal(jax.random.key(0), (2, 16, 32))
  encoder = models.Encoder(z_dim=6, channels=(4, 8), readout="multilevel", pool_stats=("flux",))
  _, features = encoder.apply(encoder.init(jax.random.key(1), x), x, features=True)
  assert features.shape == (2, 8 * 4 + 4 * 8)  # Each layer's rows x channels, one statistic.


def test_pool_input_leads_the_readout_with_each_bins_statistics():
  x = jax.random.normal(jax.random.key(0), (2, 16, 32))  # [B, F, T]
  encoder = models.Encoder(z_dim=6, channels=(4, 8), readout="pool", pool_input=True)
  params = encoder.init(jax.random.key(1), x)
  _, features = encoder.apply(params, x, features=True)
  assert features.shape == (2, 16 * 2 + 4 * 8 * 2)
  # The spectral-statistics baseline's numbers (up to the std's small floor).
  np.testing.assert_allclose(features[:, :32], embed.spectral_stats(np.asarray(x)), atol=1e-5)
  # The flattened readout pools nothing, so it says so rather than ignore the switch.
  flat = models.Encoder(z_dim=6, channels=(4, 8), readout="flatten", pool_input=True)
  with pytest.raises(ValueError, match="pool_input"):
    flat.init(jax.random.key(1), x)


def test_time_convolutions_see_each_frames_whole_spectrum():
  x = jax.random.normal(jax.random.key(0), (2, 16, 32))  # [B, F, T]
  encoder = models.Encoder(z_dim=6, channels=(4, 8), readout="pool", conv="time")
  params = encoder.init(jax.random.key(1), x)
  # The first kernel spans 4 frames and all 16 bins; the 2-D one 4 x 4 bins.
  assert params["params"]["Conv_0"]["kernel"].shape == (1, 4, 16, 4)
  _, state = encoder.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
  first = state["intermediates"]["Conv_0"]["__call__"][0]
  assert first.shape == (2, 1, 16, 4)  # One row, frames halved.
  # The highest bin of frame 0 reaches frame 0's first-layer features (a 2-D
  # kernel's receptive field would stop 4 bins short), and no frame past the kernel.
  bumped = x.at[:, -1, 0].add(10.0)
  _, bumped_state = encoder.apply(
    params, bumped, capture_intermediates=True, mutable=["intermediates"]
  )
  change = jnp.abs(bumped_state["intermediates"]["Conv_0"]["__call__"][0] - first)
  assert change[:, 0, 0].min() > 0
  np.testing.assert_array_equal(change[:, 0, 2:], 0)
  with pytest.raises(ValueError, match="encoder conv"):
    models.Encoder(z_dim=6, channels=(4,), conv="3d").init(jax.random.key(1), x)


def test_init_variables_are_a_function_of_the_seed():
  config = ali_lsgan.get_config("cpu")
  a = models.init_variables(config.model, (16, 16), seed=3)
  b = models.init_variables(config.model, (16, 16), seed=3)
  c = models.init_variables(config.model, (16, 16), seed=4)
  leaves = jax.tree.leaves
  assert all(jnp.array_equal(u, v) for u, v in zip(leaves(a), leaves(b), strict=True))
  assert not all(jnp.array_equal(u, v) for u, v in zip(leaves(a), leaves(c), strict=True))


def test_stochastic_encoder_returns_mean_and_log_sigma():
  encoder = models.Encoder(z_dim=8, channels=(4, 8), stochastic=True)
  x = jnp.ones((3, 16, 16))
  mu, log_sigma = encoder.apply(encoder.init(jax.random.key(0), x), x)
  assert mu.shape == log_sigma.shape == (3, 8)


def test_decoder_maps_each_code_on_its_own():
  """train.diagnostics decodes another segment's code as roll(G_x(z)), which needs this."""
  decoder = models.Decoder(shape=(16, 12), channels=(8, 4))
  z = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)), jnp.float32)
  params = decoder.init(jax.random.key(0), z)
  np.testing.assert_allclose(
    decoder.apply(params, jnp.roll(z, 1, axis=0)),
    jnp.roll(decoder.apply(params, z), 1, axis=0),
    rtol=1e-6,
    atol=1e-6,
  )


def test_minibatch_std_reads_each_groups_spread():
  rng = np.random.default_rng(0)
  h = rng.standard_normal((8, 6, 5)).astype(np.float32)
  h[::2] = h[0]  # Group 0 (examples 0, 2, 4, 6 with groups of 4) is one point.
  spread = np.asarray(models.minibatch_std(jnp.asarray(h), 4))[:, 0]
  assert spread.shape == (8,)
  np.testing.assert_allclose(spread[::2], 1e-4, rtol=1e-3)  # sqrt(1e-8): collapsed.
  assert np.all(spread[1::2] > 0.5) and np.ptp(spread[1::2]) == 0  # One value per group.
  # A batch that is not a multiple of 4 (the diagnostics' can be any size)
  # is grouped by the largest divisor below: 6 -> groups of 3 (0, 2, 4 and 1, 3, 5).
  six = np.asarray(models.minibatch_std(jnp.asarray(h[:6]), 4))[:, 0]
  np.testing.assert_allclose(six[::2], 1e-4, rtol=1e-3)
  assert np.all(six[1::2] > 0.5)


def test_minibatch_std_lets_d_score_a_pair_by_its_group():
  d = models.Discriminator(channels=(4,), hidden=8, dropout=0.0, minibatch_std_group=2)
  rng = np.random.default_rng(0)
  x, z = jnp.asarray(rng.standard_normal((4, 8, 8))), jnp.ones((4, 3))
  params = d.init(jax.random.key(0), x, z, train=False)
  base = d.apply(params, x, z, train=False)["xz"]
  # Groups of 2 pair example 0 with 2 and 1 with 3: changing example 2 moves
  # example 0's score, not example 1's.
  moved = d.apply(params, x.at[2].set(x[0]), z, train=False)["xz"]
  assert not np.isclose(moved[0], base[0]) and np.isclose(moved[1], base[1])
  without = models.Discriminator(channels=(4,), hidden=8, dropout=0.0)
  alone = without.init(jax.random.key(0), x, z, train=False)
  alone_moved = without.apply(alone, x.at[2].set(x[0]), z, train=False)["xz"]
  assert np.isclose(alone_moved[0], without.apply(alone, x, z, train=False)["xz"][0])


def test_projection_adds_a_bilinear_reading_of_x_and_z_to_the_joint_score():
  d = models.Discriminator(channels=(4,), hidden=8, dropout=0.0, projection=True)
  plain = models.Discriminator(channels=(4,), hidden=8, dropout=0.0)
  rng = np.random.default_rng(0)
  x, z = jnp.asarray(rng.standard_normal((3, 8, 8))), jnp.asarray(rng.standard_normal((3, 5)))
  params = d.init(jax.random.key(0), x, z, train=False)["params"]
  w = params["projection"]["kernel"]
  assert "bias" not in params["projection"] and w.shape[1] == 8  # Into z's feature width.

  def score(factor):
    scaled = {**params, "projection": {"kernel": factor * w}}
    return d.apply({"params": scaled}, x, z, train=False)["xz"]

  # Without its kernel the score is the plain D's on the same weights ...
  rest = {k: v for k, v in params.items() if k != "projection"}
  np.testing.assert_allclose(score(0.0), plain.apply({"params": rest}, x, z, train=False)["xz"])
  # ... and the added term is linear in W, so not a constant shift.
  added = np.asarray(score(1.0) - score(0.0))
  assert np.all(np.abs(added) > 1e-4) and np.ptp(added) > 1e-4
  np.testing.assert_allclose(score(2.0) - score(0.0), 2 * added, rtol=1e-4, atol=1e-6)


def test_discriminator_dropout_only_in_training():
  d = models.Discriminator(channels=(4,), hidden=8, dropout=0.5)
  x, z = jnp.ones((2, 8, 8)), jnp.ones((2, 3))
  params = d.init(jax.random.key(0), x, z, train=False)
  a = d.apply(params, x, z, train=False)["xz"]
  assert jnp.array_equal(a, d.apply(params, x, z, train=False)["xz"])
  b = d.apply(params, x, z, train=True, rngs={"dropout": jax.random.key(1)})["xz"]
  c = d.apply(params, x, z, train=True, rngs={"dropout": jax.random.key(2)})["xz"]
  assert not jnp.allclose(b, c)


def test_time_strides_keep_frames_for_the_pooled_readout():
  x = jax.random.normal(jax.random.key(0), (2, 16, 32))  # [B, F, T]
  kept = models.Encoder(z_dim=6, channels=(4, 8), readout="pool", time_strides=(2, 1))
  params = kept.init(jax.random.key(1), x)
  _, state = kept.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
  # Frequency halves at each layer; time only at the first, so the readout
  # pools over 16 frames, not 8.
  assert state["intermediates"]["Conv_1"]["__call__"][0].shape == (2, 4, 16, 8)
  # Same parameters as the default encoder: only the strides differ, and the
  # same weights then give other codes.
  default = models.Encoder(z_dim=6, channels=(4, 8), readout="pool")
  assert jax.tree.map(jnp.shape, default.init(jax.random.key(1), x)) == jax.tree.map(
    jnp.shape, params
  )
  assert not np.allclose(default.apply(params, x), kept.apply(params, x))
  config = ali_lsgan.get_config("cpu")
  assert models.make_models(config.model, (16, 16))[0].time_strides == ()
  config.model.encoder_time_strides = (2, 1, 1, 1)
  assert models.make_models(config.model, (16, 16))[0].time_strides == (2, 1, 1, 1)
  for bad in [(2,), (2, 0)]:
    with pytest.raises(ValueError, match="time strides"):
      models.Encoder(z_dim=6, channels=(4, 8), time_strides=bad).init(jax.random.key(1), x)


def test_the_configs_architecture_numbers_reach_the_networks():
  """Kernel sizes, z-branch depth and GroupNorm groups come from config.model."""
  config = ali_lsgan.get_config("cpu")
  config.model.conv_kernel = 5
  config.model.decoder_kernel = 1
  config.model.d_z_layers = 3
  config.model.norm_groups = 2
  variables = jax.eval_shape(lambda: models.init_variables(config.model, (16, 16), seed=0))
  enc = variables["encoder"]["params"]
  assert enc["Conv_0"]["kernel"].shape[:2] == (5, 5)
  assert variables["decoder"]["params"]["out"]["kernel"].shape[:2] == (1, 1)
  assert variables["discriminator"]["params"]["Conv_0"]["kernel"].shape[:2] == (5, 5)
  d_dense = [k for k in variables["discriminator"]["params"] if k.startswith("Dense_")]
  config.model.d_minibatch_std_group = 4
  config.model.d_projection = True
  assert models.make_models(config.model, (16, 16))[2].minibatch_std_group == 4
  assert models.make_models(config.model, (16, 16))[2].projection
  config.model.d_z_layers = 2
  fewer = jax.eval_shape(lambda: models.init_variables(config.model, (16, 16), seed=0))
  assert len(d_dense) == 1 + len([k for k in fewer["discriminator"]["params"] if "Dense_" in k])
  x = jnp.ones((1, 16, 16))
  grouped = [models.Encoder(z_dim=4, channels=(4,), norm_groups=g, kernel=5) for g in (1, 4)]
  params = grouped[0].init(jax.random.key(0), x)  # GroupNorm's scale/bias: same shapes.
  assert not np.allclose(grouped[0].apply(params, x), grouped[1].apply(params, x))
