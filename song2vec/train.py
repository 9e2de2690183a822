"""ALI training: one state pytree, separate pure D and G steps, a resumable loop.

`d_step(setup, state, batch)` and `g_step(setup, state, batch)` are pure
functions of the whole `TrainState`. `compile_steps` wraps them once: `jax.jit`
on one device, `jax.pmap` with `lax.pmean` of gradients and metrics across
several. Per-example randomness (prior z, reparameterisation noise, instance
noise, smoothed labels) is drawn from keys folded with each example's global
index, so a step over N devices equals the single-device step on the same
global batch; only dropout masks are drawn per device.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from song2vec import augment, losses, models, plots
from song2vec.metric_writers import MetricWriter, NullWriter, read_jsonl
from song2vec.progress import progress_bar


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # Completed steps (D and G steps both count).
  g_params: Any  # {"encoder": ..., "decoder": ...} (and "projector" where the config has one)
  d_params: Any  # {"params": ...}
  d_stats: Any  # D's spectral-norm power-iteration vectors ({} without it).
  g_opt_state: Any
  d_opt_state: Any
  ema_encoder: Any  # Moving average of the encoder's weights, used for embedding.
  rng: jax.Array  # Raw uint32 key data, so checkpoints hold plain arrays.


class Setup(NamedTuple):
  """Everything static a step needs: modules, optimizers, loss settings."""

  encoder: models.Encoder
  decoder: models.Decoder
  discriminator: models.Discriminator
  g_opt: optax.GradientTransformation
  d_opt: optax.GradientTransformation
  loss: ml_collections.ConfigDict
  model: ml_collections.ConfigDict
  ema_decay: float
  projector: models.Projector | None = None  # The contrastive term's head, if any.


AXIS = "batch"  # The pmapped device axis.
DIAG_STREAM = 0x7FFFFFFF  # fold_in value of the diagnostics' key, apart from every step's.
AUGMENT_STREAM = 0x7FFFFFFE  # fold_in value of D's augmentation keys within a step's key.
ENCODER_AUGMENT_STREAM = 0x7FFFFFFD  # ... and of the encoder consistency term's.
CONTRASTIVE_STREAM = 0x7FFFFFFC  # ... and of the contrastive term's crops.


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss; the message names the step."""


def make_setup(config: ml_collections.ConfigDict, shape: tuple[int, int]) -> Setup:
  encoder, decoder, discriminator = models.make_models(config.model, shape)
  t = config.train
  return Setup(
    encoder=encoder,
    decoder=decoder,
    discriminator=discriminator,
    g_opt=g_optimizer(t),
    d_opt=optax.adam(t.d_learning_rate, b1=t.adam_b1, b2=t.adam_b2),
    loss=config.loss,
    model=config.model,
    ema_decay=t.ema_decay,
    projector=models.make_projector(config.model),
  )


def g_optimizer(t: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam for E+G; the decoder at its own rate when `decoder_learning_rate` is set.

  A projector (the contrastive term's head) learns at the encoder's rate.
  """
  adam = functools.partial(optax.adam, b1=t.adam_b1, b2=t.adam_b2)
  decoder_lr = t.get("decoder_learning_rate", 0.0)
  if not decoder_lr:
    return adam(t.g_learning_rate)
  return optax.multi_transform(
    {"encoder": adam(t.g_learning_rate), "decoder": adam(decoder_lr)},
    lambda g_params: {name: "decoder" if name == "decoder" else "encoder" for name in g_params},
  )


def init_state(setup: Setup, shape: tuple[int, int], seed: int) -> TrainState:
  variables = models.init_variables(setup.model, shape, seed)
  g_params = {"encoder": variables["encoder"], "decoder": variables["decoder"]}
  if "projector" in variables:
    g_params["projector"] = variables["projector"]
  d_vars = dict(variables["discriminator"])
  d_params = {"params": d_vars.pop("params")}
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_params,
    d_params=d_params,
    d_stats=d_vars,
    g_opt_state=setup.g_opt.init(g_params),
    d_opt_state=setup.d_opt.init(d_params),
    ema_encoder=jax.tree.map(jnp.copy, variables["encoder"]),  # Own buffers: both are donated.
    rng=jax.random.key_data(models.train_key(seed)),
  )


def _global_index(batch_size: int, axis_name: str | None) -> jax.Array:
  index = jnp.arange(batch_size)
  if axis_name is not None:
    index += jax.lax.axis_index(axis_name) * batch_size
  return index


def _code(setup: Setup, encoded, eps=None):
  """z from the encoder's output: mu (+ sigma * eps when sampling) if stochastic."""
  if not setup.encoder.stochastic:
    return encoded
  mu, log_sigma = encoded
  return mu if eps is None else mu + jnp.exp(log_sigma) * eps


def target_mean(loss: ml_collections.ConfigDict) -> float:
  """D's mean positive label: the midpoint of its range."""
  lo, hi = loss.positive_label_range
  return 0.5 * (lo + hi)


def _example_keys(root, index):
  """One key of `root` per example, by its index in the global batch (so N devices draw as 1)."""
  return jax.vmap(lambda i: jax.random.fold_in(root, i))(index)


def _augmented(loss: ml_collections.ConfigDict, x, policy, root, index):
  """x through `policy`, each example (by its index in the global batch) its own draw of `root`."""
  keys = _example_keys(root, index)
  options = {
    "translation_ratio": loss.d_augment_translation,
    "cutout_ratio": loss.d_augment_cutout,
  }
  if "eq" in policy:
    options.update(eq_std=loss.augment_eq_std, eq_terms=loss.augment_eq_terms)
  return augment.augment(x, keys, policy, **options)


CONTRASTIVE_POSITIVES = ("segment", "song")


def _contrastive(setup: Setup, g_params, x, key, index, axis_name):
  """NT-Xent between the codes of two random crops, over the global batch.

  With `loss.contrastive_positives="segment"` the two crops are of each
  segment; with "song" (CLMR's and COLA's positives: two moments of a track)
  the first is of segment 2i and the second of segment 2i + 1, two segments
  of one song (the input pipeline's `song_pairs`). With
  `model.projector_features` the term compares the codes after SimCLR's
  projection head, not the codes themselves. The crops keep
  `loss.contrastive_crop` of the frames, then each passes through
  `loss.contrastive_augment` (a policy of augment.POLICIES; none by default)
  with its own draw; the encoder codes them as it codes a whole segment (its
  pooled readouts take any length). The stochastic encoder's mean is the
  code, as for embedding.

  With `loss.contrastive_variant_dims` = v > 0 (LooC, Xiao et al. 2021) the
  code splits in two spaces and the term is their mean: its first dims
  compare the two views as above, so they learn to ignore the chain; its
  last v compare the first view with the second crop through the first
  view's own draw, so they may keep what the chain changes (for the filter:
  a recording's colour).

  Returns {"contrastive": the term}, and with the split each space's NT-Xent.
  """
  loss = setup.loss
  if setup.encoder.readout == "flatten":
    raise ValueError(
      "loss.contrastive_weight needs an encoder that codes shorter crops: "
      "set model.encoder_readout to 'pool' or 'multilevel', not 'flatten'"
    )
  positives = loss.get("contrastive_positives", "segment")
  if positives not in CONTRASTIVE_POSITIVES:
    raise ValueError(
      f"loss.contrastive_positives must be one of {CONTRASTIVE_POSITIVES}, got {positives!r}"
    )
  if positives == "song":  # Rows 2i and 2i + 1 are one song's (input_pipeline's song_pairs).
    sources = [(x[0::2], index[0::2]), (x[1::2], index[1::2])]
  else:
    sources = [(x, index), (x, index)]
  frames = max(1, int(round(x.shape[-1] * loss.contrastive_crop)))
  policy = augment.parse_policy(loss.get("contrastive_augment", ""))
  variant = loss.get("contrastive_variant_dims", 0)
  if variant and not (policy and setup.projector is None and 0 < variant < setup.encoder.z_dim):
    raise ValueError(
      "loss.contrastive_variant_dims compares the code's last dims across views that share "
      "one draw of loss.contrastive_augment: it needs a policy, no model.projector_features "
      f"and 0 < dims < {setup.encoder.z_dim}, got {variant}"
    )
  root = jax.random.fold_in(key, CONTRASTIVE_STREAM)

  def code(view_x):
    z = _code(setup, setup.encoder.apply(g_params["encoder"], view_x))
    if setup.projector is not None:  # SimCLR's head: the term compares g(z).
      z = setup.projector.apply(g_params["projector"], z)
    return z

  crops, codes = [], []
  for view, (segments, rows) in enumerate(sources):
    crops.append(
      augment.crops(segments, _example_keys(jax.random.fold_in(root, view), rows), frames)
    )
    # CLMR's chain after the crop, each view its own draw (an empty policy passes x through).
    codes.append(
      code(_augmented(loss, crops[-1], policy, jax.random.fold_in(root, 2 + view), rows))
    )
  if variant:  # LooC's key that shares the query's draw: crop 2 through view 1's chain.
    codes.append(
      code(_augmented(loss, crops[1], policy, jax.random.fold_in(root, 2), sources[0][1]))
    )
  if axis_name is not None:  # As for the MMD: negatives from every device's share.
    codes = jax.lax.all_gather(codes, axis_name, tiled=True)
  temperature = loss.contrastive_temperature
  if not variant:
    return {"contrastive": losses.nt_xent(codes[0], codes[1], temperature)}
  split = setup.encoder.z_dim - variant
  parts = {
    "contrastive_invariant": losses.nt_xent(codes[0][:, :split], codes[1][:, :split], temperature),
    "contrastive_variant": losses.nt_xent(codes[0][:, split:], codes[2][:, split:], temperature),
  }
  return {
    "contrastive": 0.5 * (parts["contrastive_invariant"] + parts["contrastive_variant"]),
    **parts,
  }


def d_inputs(loss: ml_collections.ConfigDict, x, x_dec, key, index):
  """D's two spectrogram inputs after DiffAugment (`loss.d_augment`; none by default).

  Each pair kind and each example gets its own draw, from a stream of `key`
  that no other draw of the step uses.
  """
  policy = augment.parse_policy(loss.get("d_augment", ""))
  if not policy:
    return x, x_dec
  root = jax.random.fold_in(key, AUGMENT_STREAM)
  return (
    _augmented(loss, x, policy, jax.random.fold_in(root, 0), index),
    _augmented(loss, x_dec, policy, jax.random.fold_in(root, 1), index),
  )


def _forward(
  setup: Setup, state: TrainState, g_params, d_params, x, key, axis_name, *, d_step: bool
):
  """Samples both joint distributions, scores them with D, adds the E+G terms.

  Returns (parts, new D statistics); the D statistics change only in D's own
  step (its spectral norms' power iteration).
  """
  loss = setup.loss
  z_dim = setup.encoder.z_dim
  example_root, dropout_root = jax.random.split(key)
  lo, hi = loss.positive_label_range

  def draws(i):
    k = jax.random.split(jax.random.fold_in(example_root, i), 5)
    return (
      jax.random.normal(k[0], (z_dim,)),
      jax.random.normal(k[1], (z_dim,)),
      jax.random.normal(k[2], x.shape[1:]),
      jax.random.normal(k[3], x.shape[1:]),
      jax.random.uniform(k[4], (), minval=lo, maxval=hi),
    )

  index = _global_index(x.shape[0], axis_name)
  z_prior, eps, noise_enc, noise_dec, dec_target = jax.vmap(draws)(index)
  z_enc = _code(setup, setup.encoder.apply(g_params["encoder"], x), eps)
  x_dec = setup.decoder.apply(g_params["decoder"], z_prior)
  if d_step:
    z_enc, x_dec = jax.lax.stop_gradient((z_enc, x_dec))
  if axis_name is not None:
    dropout_root = jax.random.fold_in(dropout_root, jax.lax.axis_index(axis_name))
  k_enc, k_dec = jax.random.split(dropout_root)
  std = loss.instance_noise_std
  d = setup.discriminator
  stats = state.d_stats

  def score(x_in, z_in, k):
    variables = {**d_params, **stats}
    if not stats:
      return d.apply(variables, x_in, z_in, train=True, rngs={"dropout": k}), stats
    out, new = d.apply(
      variables,
      x_in,
      z_in,
      train=True,
      update_stats=d_step,
      rngs={"dropout": k},
      mutable=["batch_stats"],
    )
    return out, dict(new)

  x_enc_in, x_dec_in = d_inputs(loss, x, x_dec, key, index)
  d_enc, stats = score(x_enc_in + std * noise_enc, z_enc, k_enc)
  d_dec, stats = score(x_dec_in + std * noise_dec, z_prior, k_dec)
  parts = losses.ali_game(
    loss.objective,
    d_enc,
    d_dec,
    dec_target,
    swap_labels=loss.swap_labels,
    target_mean=target_mean(loss),
    unary_weight=loss.unary_weight,
  )
  if not d_step:
    # An ablation, not a remedy: at 0 E and G ignore D, which still trains.
    parts["g_loss"] = loss.get("adversarial_weight", 1.0) * parts["g_loss"]
    # ALICE (Li et al., 2017): cycle terms that make E and G invert each other.
    if loss.cycle_x_weight:
      x_rec = setup.decoder.apply(g_params["decoder"], z_enc)
      views = losses.cycle_x_views(x, x_rec, loss.get("cycle_x_on", "x"))
      parts["cycle_x"] = losses.cycle(*views, loss.cycle_norm)
      parts["g_loss"] = parts["g_loss"] + loss.cycle_x_weight * parts["cycle_x"]
    if loss.cycle_z_weight:
      z_rec = _code(setup, setup.encoder.apply(g_params["encoder"], x_dec))
      parts["cycle_z"] = losses.cycle(z_prior, z_rec, loss.cycle_norm)
      parts["g_loss"] = parts["g_loss"] + loss.cycle_z_weight * parts["cycle_z"]
    # Ours, after CLMR (Spijkervet & Burgoyne 2021): E codes a segment and a
    # copy with another gain and equaliser alike, so z cannot carry what a
    # recording's mix or the embedded corpus' instruments set.
    if loss.get("encoder_consistency_weight", 0.0):
      policy = augment.parse_policy(loss.encoder_augment)
      root = jax.random.fold_in(key, ENCODER_AUGMENT_STREAM)
      x_aug = _augmented(loss, x, policy, root, index)
      z_aug = _code(setup, setup.encoder.apply(g_params["encoder"], x_aug), eps)
      parts["consistency"] = losses.cycle(z_enc, z_aug, "l2")  # Mean squared difference.
      parts["g_loss"] = parts["g_loss"] + loss.encoder_consistency_weight * parts["consistency"]
    # CLMR (Spijkervet & Burgoyne, 2021) and COLA (Saeed et al., 2021): two
    # crops of a segment code alike and unlike the batch's other segments.
    if loss.get("contrastive_weight", 0.0):
      parts.update(_contrastive(setup, g_params, x, key, index, axis_name))
      parts["g_loss"] = parts["g_loss"] + loss.contrastive_weight * parts["contrastive"]
    # WAE-MMD (Tolstikhin et al., 2018): pull the codes' marginal towards the
    # prior directly, over the global batch (all_gather's gradient sums every
    # device's share back, so 1 and N devices take the same step).
    if loss.prior_mmd_weight:
      z_all, prior_all = z_enc, z_prior
      if axis_name is not None:
        z_all, prior_all = jax.lax.all_gather((z_enc, z_prior), axis_name, tiled=True)
      parts["prior_mmd"] = losses.prior_mmd(z_all, prior_all, tuple(loss.prior_mmd_scales))
      parts["g_loss"] = parts["g_loss"] + loss.prior_mmd_weight * parts["prior_mmd"]
  return parts, stats


def _step_key(state: TrainState) -> jax.Array:
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def _sync(tree, axis_name):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _update(opt, params, opt_state, loss_fn, axis_name):
  """Gradient of loss_fn, averaged across devices, applied by `opt`."""
  grads, aux = jax.grad(loss_fn, has_aux=True)(params)
  grads, aux = _sync((grads, aux), axis_name)
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, aux


def d_step(setup: Setup, state: TrainState, batch: dict, axis_name: str | None = None):
  """One discriminator update on `batch`; returns (new state, metrics)."""
  x = batch["spectrogram"]

  def loss_fn(d_params):
    parts, stats = _forward(
      setup, state, state.g_params, d_params, x, _step_key(state), axis_name, d_step=True
    )
    l2 = losses.kernel_l2(d_params)
    parts["d_kernel_l2"] = l2
    parts["d_l2_penalty"] = setup.loss.d_kernel_l2 * l2
    return parts["d_loss"] + parts["d_l2_penalty"], (parts, stats)

  d_params, d_opt_state, (metrics, stats) = _update(
    setup.d_opt, state.d_params, state.d_opt_state, loss_fn, axis_name
  )
  state = state.replace(
    step=state.step + 1, d_params=d_params, d_stats=stats, d_opt_state=d_opt_state
  )
  return state, metrics


def ema_decay_at(decay: float, step: jax.Array) -> jax.Array:
  """The moving average's decay at `step`: min(decay, (1 + step) / (10 + step)).

  TensorFlow's ExponentialMovingAverage with num_updates: early on the average
  forgets the initial weights quickly. Without it, decay 0.999 over the 1,200
  E+G updates of a 1,500-step run at the report's 4:1 ratio would leave
  0.999^1200 = 30 % of the untrained encoder in the embedding.
  """
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def g_step(setup: Setup, state: TrainState, batch: dict, axis_name: str | None = None):
  """One encoder-and-decoder update on `batch`; returns (new state, metrics)."""
  x = batch["spectrogram"]

  def loss_fn(g_params):
    parts, _ = _forward(
      setup, state, g_params, state.d_params, x, _step_key(state), axis_name, d_step=False
    )
    return parts["g_loss"], parts

  g_params, g_opt_state, metrics = _update(
    setup.g_opt, state.g_params, state.g_opt_state, loss_fn, axis_name
  )
  decay = ema_decay_at(setup.ema_decay, state.step)
  ema = jax.tree.map(
    lambda e, p: decay * e + (1.0 - decay) * p, state.ema_encoder, g_params["encoder"]
  )
  state = state.replace(
    step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state, ema_encoder=ema
  )
  return state, metrics


def effective_dimension(z: jax.Array) -> jax.Array:
  """Participation ratio (sum l)^2 / sum l^2 of the eigenvalues l of z's covariance.

  d for codes spread evenly over d directions, 1 for codes on a line. It needs
  no eigendecomposition: sum l = trace(C) and sum l^2 = ||C||_F^2.
  """
  zc = z - jnp.mean(z, axis=0)
  cov = zc.T @ zc / z.shape[0]
  return jnp.square(jnp.trace(cov)) / jnp.maximum(jnp.sum(jnp.square(cov)), 1e-20)


def diagnostics(setup: Setup, state: TrainState, x: jax.Array, key: jax.Array) -> dict:
  """Whether the game is alive, on a fixed batch of held-out segments.

  Codes against the prior N(0, I): mean norm (prior 0), per-dimension std
  (prior 1), effective dimension (and the prior's on as many samples, its
  reference); reconstructions relative to trivial predictors: x through
  G_x(G_z(x)) against predicting the batch mean (1 = no better), z through
  G_z(G_x(z)) against predicting 0, and x again from another segment's code
  (the batch's codes rolled by one: equal to x's own when G_x ignores its
  code, as a decoder that has collapsed to one output does); D's accuracy and output gap at the
  midpoint of its targets, on instance-noised (and augmented) inputs as in
  training, without dropout. Nothing here changes the state.
  """
  loss = setup.loss
  enc, dec, d = setup.encoder, setup.decoder, setup.discriminator
  k_prior, k_noise = jax.random.split(key)
  z = _code(setup, enc.apply(state.g_params["encoder"], x))
  z_prior = jax.random.normal(k_prior, z.shape)
  x_rec = dec.apply(state.g_params["decoder"], z)
  # G_x(roll(z)) without a second pass: G_x maps each code on its own (its
  # GroupNorm has no batch statistics), so it equals roll(G_x(z)).
  x_other = jnp.roll(x_rec, 1, axis=0)
  x_dec = dec.apply(state.g_params["decoder"], z_prior)
  z_rec = _code(setup, enc.apply(state.g_params["encoder"], x_dec))
  variables = {**state.d_params, **state.d_stats}
  noise = loss.instance_noise_std * jax.random.normal(k_noise, (2, *x.shape))
  x_enc_in, x_dec_in = d_inputs(loss, x, x_dec, key, jnp.arange(x.shape[0]))
  s_enc = d.apply(variables, x_enc_in + noise[0], z, train=False)["xz"]
  s_dec = d.apply(variables, x_dec_in + noise[1], z_prior, train=False)["xz"]
  if loss.objective == "sigmoid":
    s_enc, s_dec = jax.nn.sigmoid(s_enc), jax.nn.sigmoid(s_dec)
  decision = losses.decision_metrics(s_enc, s_dec, target_mean(loss))
  x_var = jnp.mean(jnp.square(x - jnp.mean(x, axis=0)))  # The batch-mean predictor's error.
  return {
    "z_mean_norm": jnp.linalg.norm(jnp.mean(z, axis=0)),
    "z_std": jnp.mean(jnp.std(z, axis=0)),
    "z_eff_dim": effective_dimension(z),
    "z_eff_dim_prior": effective_dimension(z_prior),
    "x_recon_rel": jnp.mean(jnp.square(x - x_rec)) / x_var,
    "x_recon_other_rel": jnp.mean(jnp.square(x - x_other)) / x_var,
    "z_recon_rel": jnp.mean(jnp.square(z_prior - z_rec)) / jnp.mean(jnp.square(z_prior)),
    "val_d_accuracy": decision["d_accuracy"],
    "val_d_gap": decision["d_gap"],
    "val_d_calls_dec": decision["d_calls_dec"],
  }


def data_parallel(num_devices: int) -> bool:
  """Whether steps are pmapped: several local devices, or several processes
  (whose gradients meet in the pmap's collectives, across hosts)."""
  return num_devices > 1 or jax.process_count() > 1


def compile_steps(setup: Setup, num_devices: int):
  """(d_step, g_step) compiled for `num_devices` local devices.

  The one place that knows about device parallelism: jit on one device of one
  process; otherwise pmap over the leading batch axis, with gradients pmean'd
  over every device of every process (`jax.distributed`).
  """
  steps = []
  for fn in (d_step, g_step):
    if data_parallel(num_devices):
      step = functools.partial(fn, setup, axis_name=AXIS)
      steps.append(jax.pmap(step, axis_name=AXIS, donate_argnums=0))
    else:
      steps.append(jax.jit(functools.partial(fn, setup), donate_argnums=0))
  return tuple(steps)


def resolve_devices(num_devices: int) -> int:
  """0 means every local device."""
  available = jax.local_device_count()
  if num_devices > available:
    raise ValueError(f"train.num_devices={num_devices} but only {available} local device(s)")
  return num_devices or available


def is_d_step(step: int, g_steps_per_d_step: int) -> bool:
  """D trains on one batch, then G on `g_steps_per_d_step` batches (report: 4)."""
  return step % (g_steps_per_d_step + 1) == 0


def replicate(tree, num_devices: int):
  """Copies of `tree` on the first `num_devices` local devices, laid out as
  pmap's own outputs are, so the first step's call does not compile again."""
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:num_devices]), (AXIS,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
  return jax.tree.map(
    lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (num_devices, *np.shape(x))), sharding),
    tree,
  )


def first_replica(tree):
  """Device 0's shard of each leaf of a replicated tree, [1, ...] on that device.

  Reads the shard in place: nothing runs on the devices. (An eager `x[0]` on a
  sharded array compiles and runs a gather for every leaf, every step.)
  """
  return jax.tree.map(lambda x: x.addressable_shards[0].data, tree)


def unreplicate(tree):
  """Device 0's copy of a replicated tree, on the host (numpy), in one transfer."""
  return jax.tree.map(lambda x: x[0], jax.device_get(first_replica(tree)))


class _Terminate:
  """Remembers a SIGTERM so the loop can save before exiting."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread: no handler, nothing to restore.
      self._previous = None
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class CheckpointMismatchError(ValueError):
  """A checkpoint that reads but holds another model than the config's."""


def _names(path) -> tuple[str, ...]:
  """A tree path as plain names, whether it walks dataclass fields or dict keys."""
  return tuple(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)


def _fits(metadata, state) -> str | None:
  """Why a checkpoint's metadata tree does not fit `state`; None if it does."""
  is_leaf = lambda x: hasattr(x, "shape") and hasattr(x, "dtype")  # noqa: E731
  ours = [(_names(p), v) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]]
  try:
    flat = jax.tree_util.tree_flatten_with_path(metadata, is_leaf=is_leaf)[0]
  except Exception:  # An unexpected metadata shape: let the restore decide.
    return None
  theirs = {_names(p): v for p, v in flat}
  for path, leaf in ours:
    meta = theirs.get(path)
    if meta is None:
      return f"{'/'.join(path)} is not in the checkpoint"
    shape = getattr(meta, "shape", None)
    if shape is not None and tuple(shape) != tuple(np.shape(leaf)):
      return f"{'/'.join(path)} has shape {tuple(shape)}, the model {tuple(np.shape(leaf))}"
  if len(theirs) != len(ours):
    return f"the checkpoint holds {len(theirs)} arrays, the model {len(ours)}"
  return None


def _is_orphaned_read_callback(unraisable) -> bool:
  """Whether an unraisable exception is a read finishing after its restore failed.

  When one array of a checkpoint cannot be read, orbax's restore fails and
  closes its event loop while tensorstore still reads the other arrays; each
  of those reads then calls back into the closed loop, and Python prints the
  resulting "Event loop is closed" as an unraisable exception. Nothing is
  lost (the restore has already failed and been handled), so these, and only
  these, are dropped.
  """
  frames = traceback.extract_tb(unraisable.exc_traceback)
  return (
    unraisable.exc_type is RuntimeError
    and str(unraisable.exc_value) == "Event loop is closed"
    and any(f.name == "call_soon_threadsafe" and "asyncio" in f.filename for f in frames)
  )


@contextlib.contextmanager
def quiet_orphaned_reads():
  """Drops `_is_orphaned_read_callback` exceptions in its scope; others go to the previous hook."""
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _is_orphaned_read_callback(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  finally:
    if sys.unraisablehook is hook:
      sys.unraisablehook = previous


def restore_latest(manager, state, ckpt_dir: str):
  """The newest readable checkpoint restored into `state`'s structure, and its step.

  A checkpoint that cannot be read (files truncated by a full disk, say) is
  moved aside to `checkpoints/unreadable-<step>` with a warning naming it and
  the step resumed instead, so that training carries on from the newest good
  one and can write that step again. A checkpoint that reads but does not fit
  the model is a config mismatch and stops with its own message.

  Returns:
    (state, step); (the given state, 0) when there is no readable checkpoint.

  Raises:
    CheckpointMismatchError: the newest readable checkpoint holds another model.
  """
  template = jax.device_get(state)
  unreadable = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      metadata = manager.item_metadata(step)
    except Exception as e:  # Unreadable metadata: the checkpoint is unreadable.
      metadata, reason = None, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    else:
      reason = None
    if metadata is not None:
      mismatch = _fits(metadata, template)
      if mismatch:
        raise CheckpointMismatchError(
          f"the checkpoint at step {step} in {ckpt_dir} does not fit this config's model "
          f"({mismatch}); resume with the config that wrote it, or use a new --workdir"
        )
      try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(template))
      except Exception as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if reason is None:
      if unreadable:
        logging.warning(
          "the checkpoint(s) at step(s) %s in %s cannot be read (%s); moved aside to "
          "unreadable-<step>/ and resuming from step %d, the newest readable one",
          ", ".join(str(s) for s, _ in unreadable),
          ckpt_dir,
          unreadable[0][1],
          step,
        )
      logging.info("resumed from step %d in %s", step, ckpt_dir)
      return restored, step
    unreadable.append((step, reason))
    aside = os.path.join(ckpt_dir, f"unreadable-{step}")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(os.path.join(ckpt_dir, str(step)), aside)
    manager.reload()
  if unreadable:
    logging.warning(
      "no checkpoint in %s can be read (%s); moved aside to unreadable-<step>/ and "
      "starting from step 0",
      ckpt_dir,
      "; ".join(f"step {s}: {r}" for s, r in unreadable),
    )
  return state, 0


@quiet_orphaned_reads()  # A failed restore's leftover reads (restore_latest) stay quiet.
def train(
  config: ml_collections.ConfigDict,
  workdir: str,
  shape: tuple[int, int],
  make_batches: Callable[[int], Iterator[dict]],
  diag_x: np.ndarray | None = None,
) -> TrainState:
  """Trains (or resumes) to `config.train.num_steps`; returns the final state.

  Args:
    config: the experiment config (model, loss, train, seed).
    workdir: checkpoints/, metrics.jsonl, tensorboard/ and loss_curves.png go here.
    shape: (bins, frames) of the spectrograms.
    make_batches: start_step -> iterator of batches, each {"spectrogram": ...}
      shaped (local devices, per-device batch, bins, frames) when the steps
      are data-parallel (several local devices or processes), else (batch,
      bins, frames); each process yields its own share of the global batch.
    diag_x: [n, bins, frames] held-out segments (the validation split's) on
      which `diagnostics` are logged every `log_every` steps; None: the first
      training batch, kept fixed.

  Raises:
    NonFiniteLossError: a loss became NaN or infinite; nothing of that step
      was saved, the last checkpoint is the last good state.
    SystemExit: on SIGTERM, after saving a checkpoint of the current step.
  """
  t = config.train
  num_devices = resolve_devices(t.num_devices)
  setup = make_setup(config, shape)
  d_fn, g_fn = compile_steps(setup, num_devices)
  parallel = data_parallel(num_devices)

  def diag_of(state, x, key):
    if parallel:  # `state` is device 0's replica, each leaf [1, ...] (first_replica).
      state = jax.tree.map(lambda a: a[0], state)
    return diagnostics(setup, state, x, key)

  diag_fn = jax.jit(diag_of)
  # Fixed prior samples and noise for the diagnostics, so that their curves
  # move only with the model.
  diag_key = jax.random.fold_in(models.train_key(config.seed), DIAG_STREAM)

  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  manager = ocp.CheckpointManager(
    ckpt_dir,
    options=ocp.CheckpointManagerOptions(max_to_keep=t.keep_checkpoints, create=True),
    # Named, so that a checkpoint's metadata can be read before restoring it.
    item_handlers=ocp.StandardCheckpointHandler(),
  )
  state = init_state(setup, shape, config.seed)
  try:
    state, start = restore_latest(manager, state, ckpt_dir)
  except BaseException:
    manager.close()  # Else orbax's threads die with the interpreter, in tracebacks.
    raise
  # The first process logs and plots; every process saves (orbax writes once).
  primary = jax.process_index() == 0
  writer = MetricWriter(workdir, resume_step=start) if primary else NullWriter()

  def save(step, host_state):
    manager.save(step, args=ocp.args.StandardSave(host_state), force=True)

  if parallel:
    state = replicate(state, num_devices)
  # Device 0's copy of anything the pmapped steps return or take: on the host
  # (`to_host`), or left on device 0 for the diagnostics (`on_device`, whose
  # jitted program drops the replica axis itself); on one device, as it is.
  to_host = unreplicate if parallel else jax.device_get
  on_device = first_replica if parallel else (lambda tree: tree)
  batches = make_batches(start)
  if diag_x is None:
    first = next(make_batches(0))["spectrogram"]
    diag_x = first.reshape((-1, *first.shape[-2:]))
  diag_x = jnp.asarray(diag_x)
  # Metrics stay on the device until a window closes (a log or a checkpoint
  # step): one transfer per window, so the host never waits on a step.
  pending: list[dict] = []
  window: list[dict] = []  # Fetched metrics of the current log window.
  window_start = time.perf_counter()
  host_state = None

  def fetch(step: int) -> None:
    """Fetches the pending steps' metrics and checks their losses; `step` is the last one."""
    fetched = to_host(pending)
    first = step - len(fetched) + 1
    pending.clear()
    for i, metrics in enumerate(fetched):
      bad = {k: float(metrics[k]) for k in ("d_loss", "g_loss") if not math.isfinite(metrics[k])}
      if bad:
        manager.wait_until_finished()
        raise NonFiniteLossError(
          f"non-finite loss at step {first + i}: {bad}; stopped without saving it. "
          f"Last good checkpoint: step {manager.latest_step()} in {ckpt_dir}"
        )
    window.extend(fetched)

  bar = progress_bar(
    total=t.num_steps, initial=start, desc="train", unit="step", disable=not primary
  )
  try:
    with _Terminate() as term:
      for step in range(start, t.num_steps):
        if term.requested:
          fetch(step)
          save(step, to_host(state))
          manager.wait_until_finished()
          logging.warning("SIGTERM: saved step %d in %s, exiting", step, ckpt_dir)
          raise SystemExit(128 + signal.SIGTERM)
        batch = next(batches)
        fn = d_fn if is_d_step(step, t.g_steps_per_d_step) else g_fn
        state, metrics = fn(state, batch)
        pending.append(metrics)
        bar.update(1)
        done = step + 1
        log_now = done % t.log_every == 0 or done == t.num_steps
        save_now = done % t.checkpoint_every == 0 or done == t.num_steps
        if log_now or save_now:
          fetch(done)  # Before any save: a checkpoint never holds a non-finite step.
        if log_now:
          # D-only metrics (d_kernel_l2) average over the window's D steps.
          keys = sorted(set().union(*window))
          scalars = {k: float(np.mean([m[k] for m in window if k in m])) for k in keys}
          diag = diag_fn(on_device(state), diag_x, diag_key)
          scalars.update({k: float(v) for k, v in diag.items()})
          scalars["steps_per_s"] = len(window) / (time.perf_counter() - window_start)
          writer.write(done, scalars)
          bar.set_postfix(d_loss=f"{scalars['d_loss']:.3f}", g_loss=f"{scalars['g_loss']:.3f}")
          window.clear()
          window_start = time.perf_counter()
        if save_now:
          # A host copy: safe to save while the next step donates the device state.
          host_state = to_host(state)
          save(done, host_state)
  finally:
    bar.close()
    manager.wait_until_finished()
    manager.close()
    writer.close()
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl")) if primary else []
  if records:
    plots.loss_curves(records, os.path.join(workdir, "loss_curves.png"), title=config.name)
  return host_state if host_state is not None else to_host(state)
