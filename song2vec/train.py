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

import functools
import math
import os
import signal
import time
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

from data_prep.parallel import progress_bar
from song2vec import losses, models, plots
from song2vec.metric_writers import MetricWriter, read_jsonl


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # Completed steps (D and G steps both count).
  g_params: Any  # {"encoder": ..., "decoder": ...}
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  rng: jax.Array  # Raw uint32 key data, so checkpoints hold plain arrays.


class Setup(NamedTuple):
  """Everything static a step needs: modules, optimizers, loss settings."""

  encoder: models.Encoder
  decoder: models.Decoder
  discriminator: models.Discriminator
  g_opt: optax.GradientTransformation
  d_opt: optax.GradientTransformation
  loss: ml_collections.ConfigDict


AXIS = "batch"  # The pmapped device axis.


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss; the message names the step."""


def make_setup(config: ml_collections.ConfigDict, shape: tuple[int, int]) -> Setup:
  encoder, decoder, discriminator = models.make_models(config.model, shape)
  t = config.train
  return Setup(
    encoder=encoder,
    decoder=decoder,
    discriminator=discriminator,
    g_opt=optax.adam(t.g_learning_rate, b1=t.adam_b1, b2=t.adam_b2),
    d_opt=optax.adam(t.d_learning_rate, b1=t.adam_b1, b2=t.adam_b2),
    loss=config.loss,
  )


def init_state(setup: Setup, shape: tuple[int, int], seed: int) -> TrainState:
  key = jax.random.key(seed)
  k_enc, k_dec, k_d, k_train = jax.random.split(key, 4)
  x = jnp.zeros((1, *shape), jnp.float32)
  z = jnp.zeros((1, setup.encoder.z_dim), jnp.float32)
  g_params = {
    "encoder": setup.encoder.init(k_enc, x),
    "decoder": setup.decoder.init(k_dec, z),
  }
  d_params = setup.discriminator.init(k_d, x, z, train=False)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_params,
    d_params=d_params,
    g_opt_state=setup.g_opt.init(g_params),
    d_opt_state=setup.d_opt.init(d_params),
    rng=jax.random.key_data(k_train),
  )


def _global_index(batch_size: int, axis_name: str | None) -> jax.Array:
  index = jnp.arange(batch_size)
  if axis_name is not None:
    index += jax.lax.axis_index(axis_name) * batch_size
  return index


def _forward(setup: Setup, g_params, d_params, x, key, axis_name, *, stop_generators: bool):
  """Samples both joint distributions and scores them with D."""
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

  z_prior, eps, noise_enc, noise_dec, dec_target = jax.vmap(draws)(
    _global_index(x.shape[0], axis_name)
  )
  encoded = setup.encoder.apply(g_params["encoder"], x)
  if setup.encoder.stochastic:
    mu, log_sigma = encoded
    z_enc = mu + jnp.exp(log_sigma) * eps
  else:
    z_enc = encoded
  x_dec = setup.decoder.apply(g_params["decoder"], z_prior)
  if stop_generators:
    z_enc, x_dec = jax.lax.stop_gradient((z_enc, x_dec))
  if axis_name is not None:
    dropout_root = jax.random.fold_in(dropout_root, jax.lax.axis_index(axis_name))
  k_enc, k_dec = jax.random.split(dropout_root)
  std = loss.instance_noise_std
  d = setup.discriminator
  d_enc = d.apply(d_params, x + std * noise_enc, z_enc, train=True, rngs={"dropout": k_enc})
  d_dec = d.apply(d_params, x_dec + std * noise_dec, z_prior, train=True, rngs={"dropout": k_dec})
  objective = losses.OBJECTIVES[loss.objective]
  return objective(d_enc, d_dec, dec_target, swap_labels=loss.swap_labels)


def _step_key(state: TrainState) -> jax.Array:
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def _sync(tree, axis_name):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _update(opt, params, opt_state, loss_fn, axis_name):
  """Gradient of loss_fn, averaged across devices, applied by `opt`."""
  grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
  grads, metrics = _sync((grads, metrics), axis_name)
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, metrics


def d_step(setup: Setup, state: TrainState, batch: dict, axis_name: str | None = None):
  """One discriminator update on `batch`; returns (new state, metrics)."""
  x = batch["spectrogram"]

  def loss_fn(d_params):
    parts = _forward(
      setup, state.g_params, d_params, x, _step_key(state), axis_name, stop_generators=True
    )
    l2 = losses.kernel_l2(d_params)
    parts["d_kernel_l2"] = l2
    return parts["d_loss"] + setup.loss.d_kernel_l2 * l2, parts

  d_params, d_opt_state, metrics = _update(
    setup.d_opt, state.d_params, state.d_opt_state, loss_fn, axis_name
  )
  return state.replace(step=state.step + 1, d_params=d_params, d_opt_state=d_opt_state), metrics


def g_step(setup: Setup, state: TrainState, batch: dict, axis_name: str | None = None):
  """One encoder-and-decoder update on `batch`; returns (new state, metrics)."""
  x = batch["spectrogram"]

  def loss_fn(g_params):
    parts = _forward(
      setup, g_params, state.d_params, x, _step_key(state), axis_name, stop_generators=False
    )
    return parts["g_loss"], parts

  g_params, g_opt_state, metrics = _update(
    setup.g_opt, state.g_params, state.g_opt_state, loss_fn, axis_name
  )
  return state.replace(step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state), metrics


def diagnostics(setup: Setup, g_params, x: jax.Array) -> dict[str, jax.Array]:
  """z statistics and reconstruction error ||x - G_x(G_z(x))||^2 (diagnostic only)."""
  encoded = setup.encoder.apply(g_params["encoder"], x)
  z = encoded[0] if setup.encoder.stochastic else encoded
  x_rec = setup.decoder.apply(g_params["decoder"], z)
  return {
    "recon_mse": jnp.mean(jnp.square(x - x_rec)),
    "z_mean": jnp.mean(z),
    "z_std": jnp.mean(jnp.std(z, axis=0)),
    "z_norm": jnp.mean(jnp.linalg.norm(z, axis=-1)),
  }


def compile_steps(setup: Setup, num_devices: int):
  """(d_step, g_step) compiled for `num_devices` local devices.

  The one place that knows about device parallelism: jit on one device,
  pmap over the leading batch axis with pmean'd gradients on several.
  """
  steps = []
  for fn in (d_step, g_step):
    if num_devices > 1:
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


def unreplicate(tree):
  return jax.tree.map(lambda x: x[0], tree)


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


def train(
  config: ml_collections.ConfigDict,
  workdir: str,
  shape: tuple[int, int],
  make_batches: Callable[[int], Iterator[dict]],
) -> TrainState:
  """Trains (or resumes) to `config.train.num_steps`; returns the final state.

  Args:
    config: the experiment config (model, loss, train, seed).
    workdir: checkpoints/, metrics.jsonl, tensorboard/ and loss_curves.png go here.
    shape: (bins, frames) of the spectrograms.
    make_batches: start_step -> iterator of batches, each {"spectrogram": ...}
      shaped (devices, per-device batch, bins, frames) when there are several
      local devices, else (batch, bins, frames).

  Raises:
    NonFiniteLossError: a loss became NaN or infinite; nothing of that step
      was saved, the last checkpoint is the last good state.
    SystemExit: on SIGTERM, after saving a checkpoint of the current step.
  """
  t = config.train
  num_devices = resolve_devices(t.num_devices)
  setup = make_setup(config, shape)
  d_fn, g_fn = compile_steps(setup, num_devices)
  diag_fn = jax.jit(functools.partial(diagnostics, setup))

  ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
  manager = ocp.CheckpointManager(
    ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=t.keep_checkpoints, create=True)
  )
  state = init_state(setup, shape, config.seed)
  start = manager.latest_step() or 0
  if start:
    try:
      state = manager.restore(start, args=ocp.args.StandardRestore(jax.device_get(state)))
    except ValueError as e:  # Orbax's word for a tree that does not match.
      first = str(e).splitlines()[0]
      raise ValueError(
        f"the checkpoint at step {start} in {ckpt_dir} does not fit this config's model "
        f"({first[:200]}); resume with the config that wrote it, or use a new --workdir"
      ) from None
    logging.info("resumed from step %d in %s", start, ckpt_dir)
  writer = MetricWriter(workdir, resume_step=start)

  def save(step, host_state):
    manager.save(step, args=ocp.args.StandardSave(host_state), force=True)

  if num_devices > 1:
    state = replicate(state, num_devices)
  # Device 0's copy of anything the pmapped steps return or take; identity on one device.
  local = unreplicate if num_devices > 1 else (lambda tree: tree)
  batches = make_batches(start)
  window: list[dict] = []
  window_start = time.perf_counter()
  host_state = None
  bar = progress_bar(total=t.num_steps, initial=start, desc="train", unit="step")
  try:
    with _Terminate() as term:
      for step in range(start, t.num_steps):
        if term.requested:
          save(step, jax.device_get(local(state)))
          manager.wait_until_finished()
          logging.warning("SIGTERM: saved step %d in %s, exiting", step, ckpt_dir)
          raise SystemExit(128 + signal.SIGTERM)
        batch = next(batches)
        fn = d_fn if is_d_step(step, t.g_steps_per_d_step) else g_fn
        state, metrics = fn(state, batch)
        metrics = jax.device_get(local(metrics))
        bad = {k: float(metrics[k]) for k in ("d_loss", "g_loss") if not math.isfinite(metrics[k])}
        if bad:
          manager.wait_until_finished()
          raise NonFiniteLossError(
            f"non-finite loss at step {step + 1}: {bad}; stopped without saving it. "
            f"Last good checkpoint: step {manager.latest_step()} in {ckpt_dir}"
          )
        window.append(metrics)
        bar.update(1)
        done = step + 1
        if done % t.log_every == 0 or done == t.num_steps:
          # D-only metrics (d_kernel_l2) average over the window's D steps.
          keys = sorted(set().union(*window))
          scalars = {k: float(np.mean([m[k] for m in window if k in m])) for k in keys}
          diag = diag_fn(local(state.g_params), local(batch["spectrogram"]))
          scalars.update({k: float(v) for k, v in diag.items()})
          scalars["steps_per_s"] = len(window) / (time.perf_counter() - window_start)
          writer.write(done, scalars)
          bar.set_postfix(d_loss=f"{scalars['d_loss']:.3f}", g_loss=f"{scalars['g_loss']:.3f}")
          window, window_start = [], time.perf_counter()
        if done % t.checkpoint_every == 0 or done == t.num_steps:
          # A host copy: safe to save while the next step donates the device state.
          host_state = jax.device_get(local(state))
          save(done, host_state)
  finally:
    bar.close()
    manager.wait_until_finished()
    manager.close()
    writer.close()
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  if records:
    plots.loss_curves(records, os.path.join(workdir, "loss_curves.png"), title=config.name)
  return host_state if host_state is not None else jax.device_get(local(state))
