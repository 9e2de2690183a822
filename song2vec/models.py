"""ALI's three networks as Flax Linen modules, used as pure functions.

- `Encoder` G_z: spectrogram x [B, F, T] -> z [B, z_dim] (deterministic, as in
  the report), or (mu, log_sigma) when `stochastic` (the ALI paper's
  reparameterised encoder; sampling happens in the train step). Its readout
  either flattens the last convolution's features (the report's shape), or
  pools them over time (mean and std per frequency row and channel), so that
  z does not depend on where in the song a segment starts, or pools every
  convolution's features over time and concatenates them ("multilevel"); the
  pooled statistics are the mean and std, or either alone, or with the flux
  (each feature's mean absolute change from one frame to the next) (`pool_stats`), and
  with `pool_input` the input's own (each bin's over the frames) lead. With
  `features=True` it also returns the vector the readout maps to z, BigBiGAN's
  alternative embedding. Its convolutions are 2-D over (frequency, time), or
  with `conv="time"` 1-D over time with every frequency bin an input channel
  (Dieleman & Schrauwen 2014), so that the first layer maps each frame's whole
  spectrum to a few features as MFCCs do. `time_strides` sets each
  convolution's stride over time (default 2, as over frequency); a 1 keeps the
  frames, so a pooled readout takes its statistics over more of them.
- `Decoder` G_x: z -> x [B, F, T].
- `Discriminator` D(x, z): scores a pair. `arch="report"`: a convolutional
  x-branch, an MLP z-branch, one joint layer. `arch="ali"`: the ALI paper's
  shape, x and z each embedded to the same width, a two-layer joint MLP,
  dropout on every layer's input. Optionally spectral normalisation on every
  layer, BigBiGAN's unary scores s_x(x) and s_z(z) beside the joint score,
  ProGAN's minibatch standard deviation of the x and z features as two more
  inputs to the joint layer (a decoder or encoder that puts out one point for
  every input then shows as a spread near 0), and the projection
  discriminator's inner product (Miyato & Koyama 2018) of x's and z's
  features added to the joint score, a direct reading of how x and z go
  together where the concatenated MLP must first learn products.

Any (F, T) works: stride-2 'SAME' convolutions round up (257 -> 129 -> 65 ...),
and the decoder upsamples to exactly the encoder's recorded shapes (resize then
convolve), so nothing is cropped or padded by hand.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

READOUTS = ("flatten", "pool", "multilevel")
ENCODER_CONVS = ("2d", "time")
D_ARCHS = ("report", "ali")


def feature_shapes(shape: tuple[int, int], num_layers: int) -> list[tuple[int, int]]:
  """(F, T) after each stride-2 'SAME' conv: [input, layer 1, ..., layer n]."""
  shapes = [tuple(shape)]
  for _ in range(num_layers):
    f, t = shapes[-1]
    shapes.append((math.ceil(f / 2), math.ceil(t / 2)))
  return shapes


def _act(h: jax.Array, negative_slope: float) -> jax.Array:
  return nn.leaky_relu(h, negative_slope)


def minibatch_std(h: jax.Array, group_size: int) -> jax.Array:
  """ProGAN's minibatch standard deviation (Karras et al. 2018), one feature per example.

  The batch is split into groups of G examples (example i with i + B/G, ...,
  as in the reference code); each feature's std over its group, averaged over
  the features, is given to every member of the group. G is `group_size`, or
  the largest divisor of B below it when B is not a multiple (the reference
  code requires one; the diagnostics' held-out batch can be any size, e.g.
  250 segments -> groups of 2). Under pmap the groups are formed within each
  device's share of the batch.

  Args:
    h: [B, ...] features.
    group_size: examples per group at most.

  Returns:
    [B, 1] float32.
  """
  b = h.shape[0]
  g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
  y = h.astype(jnp.float32).reshape((g, b // g, -1))
  spread = jnp.mean(jnp.sqrt(jnp.var(y, axis=0) + 1e-8), axis=-1)  # [B/G]
  return jnp.tile(spread, g)[:, None]


def _norm(channels: int, groups: int, dtype=jnp.float32) -> nn.Module:
  # Convolutions before it have no bias: the normalisation removes it, its
  # gradient is zero up to rounding, and Adam would amplify that rounding.
  # GroupNorm is per example: no batch statistics to sync across devices, so
  # a pmapped step equals the single-device step on the same global batch.
  return nn.GroupNorm(num_groups=min(groups, channels), dtype=dtype)


POOL_STATS = ("mean", "std")  # The default, as MFCC statistics pool.
# Every statistic a pooled readout can take. "flux": the mean absolute change
# between consecutive frames, spectral flux's per-band form (the rate at which
# a band's notes come and go); 0 for a single frame.
POOL_STAT_NAMES = ("mean", "std", "flux")


def time_pool(h: jax.Array, stats: Sequence[str] = POOL_STATS) -> jax.Array:
  """[B, F, T, C] -> [B, F * C * len(stats)]: `stats` over time (the frames axis).

  The std is taken with a small floor inside the root so that its gradient is
  finite where a feature does not vary over time.
  """
  if not stats or any(s not in POOL_STAT_NAMES for s in stats):
    raise ValueError(f"pooled statistics must be some of {POOL_STAT_NAMES}, got {stats!r}")
  # Under jit an unused statistic is never computed.
  pooled = {
    "mean": jnp.mean(h, axis=2),
    "std": jnp.sqrt(jnp.var(h, axis=2) + 1e-6),
    "flux": (
      jnp.mean(jnp.abs(jnp.diff(h, axis=2)), axis=2)
      if h.shape[2] > 1
      else jnp.zeros_like(h[:, :, 0])
    ),
  }
  return jnp.concatenate([pooled[s] for s in stats], axis=-1).reshape((h.shape[0], -1))


class Encoder(nn.Module):
  """G_z(x)."""

  z_dim: int
  channels: Sequence[int]
  stochastic: bool = False
  readout: str = "flatten"  # One of READOUTS.
  conv: str = "2d"  # One of ENCODER_CONVS.
  pool_stats: Sequence[str] = POOL_STATS  # What the pooled readouts take over time.
  pool_input: bool = False  # The pooled readouts also take the input's own statistics.
  kernel: int = 4  # Side of each convolution's kernel.
  # Each convolution's stride over time; () strides every one by 2, as over
  # frequency. A 1 keeps the frames, so the pooled readouts take their
  # statistics over more of them.
  time_strides: Sequence[int] = ()
  negative_slope: float = 0.2  # Leaky ReLU's.
  norm_groups: int = 8  # GroupNorm's groups (at most the channels).
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, x: jax.Array, *, features: bool = False):
    time_strides = tuple(self.time_strides) or (2,) * len(self.channels)
    if len(time_strides) != len(self.channels) or any(s < 1 for s in time_strides):
      raise ValueError(
        f"encoder time strides must be one positive stride per convolution "
        f"({len(self.channels)}), got {tuple(self.time_strides)!r}"
      )
    frames = jnp.swapaxes(x, 1, 2)[:, None]  # [B, 1, T, F]: one row, the bins as channels.
    if self.conv == "2d":  # [B, F, T, 1]
      h = x[..., None].astype(self.dtype)
      k, freq_stride = (self.kernel, self.kernel), 2
    elif self.conv == "time":
      h = frames.astype(self.dtype)
      k, freq_stride = (1, self.kernel), 1
    else:
      raise ValueError(f"encoder conv must be one of {ENCODER_CONVS}, got {self.conv!r}")
    layers = []  # Each convolution's activations, [B, F', T', C].
    for c, t_stride in zip(self.channels, time_strides, strict=True):
      strides = (freq_stride, t_stride)
      h = nn.Conv(c, k, strides=strides, padding="SAME", use_bias=False, dtype=self.dtype)(h)
      h = _act(_norm(c, self.norm_groups, self.dtype)(h), self.negative_slope)
      layers.append(h)
    if self.readout in ("pool", "multilevel"):
      pooled = layers[-1:] if self.readout == "pool" else layers
      if self.pool_input:  # Each bin's statistics over frames, before any layer.
        pooled = [frames, *pooled]
      stats = [time_pool(a.astype(jnp.float32), self.pool_stats) for a in pooled]
      h = jnp.concatenate(stats, axis=-1).astype(self.dtype)
    elif self.readout == "flatten":
      if self.pool_input:
        raise ValueError("model.pool_input needs a pooled encoder readout ('pool' or 'multilevel')")
      h = h.reshape((h.shape[0], -1))
    else:
      raise ValueError(f"encoder readout must be one of {READOUTS}, got {self.readout!r}")
    # Codes and features leave in float32, whatever the compute dtype.
    if self.stochastic:
      mu = nn.Dense(self.z_dim, name="mu", dtype=self.dtype)(h).astype(jnp.float32)
      log_sigma = nn.Dense(self.z_dim, name="log_sigma", dtype=self.dtype)(h)
      out = (mu, jnp.clip(log_sigma.astype(jnp.float32), -10.0, 5.0))
    else:
      out = nn.Dense(self.z_dim, name="z", dtype=self.dtype)(h).astype(jnp.float32)
    return (out, h.astype(jnp.float32)) if features else out


class Decoder(nn.Module):
  """G_x(z), mirroring an encoder with `len(channels)` stride-2 layers."""

  shape: tuple[int, int]
  channels: Sequence[int]  # Deepest first.
  kernel: int = 3  # Side of the kernel of the convolution after each upsampling.
  negative_slope: float = 0.2
  norm_groups: int = 8
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    act = functools.partial(_act, negative_slope=self.negative_slope)
    k = (self.kernel, self.kernel)
    shapes = feature_shapes(self.shape, len(self.channels))[::-1]  # Smallest first.
    f, t = shapes[0]
    h = nn.Dense(f * t * self.channels[0], dtype=self.dtype)(z.astype(self.dtype))
    h = act(h.reshape((z.shape[0], f, t, self.channels[0])))
    for (f, t), c in zip(shapes[1:], list(self.channels[1:]) + [self.channels[-1]], strict=True):
      h = jax.image.resize(h, (h.shape[0], f, t, h.shape[-1]), method="nearest")
      h = nn.Conv(c, k, padding="SAME", use_bias=False, dtype=self.dtype)(h)
      h = act(_norm(c, self.norm_groups, self.dtype)(h))
    # Linear output: spectrograms are normalised to ~N(0, 1) per bin.
    out = nn.Conv(1, k, padding="SAME", name="out", dtype=self.dtype)(h)[..., 0]
    return out.astype(jnp.float32)


class Discriminator(nn.Module):
  """D(x, z) -> {"xz": joint score[, "x": s_x, "z": s_z]}, unbounded, one per pair."""

  channels: Sequence[int]
  hidden: int
  dropout: float
  arch: str = "report"  # One of D_ARCHS.
  spectral_norm: bool = False
  unary: bool = False  # BigBiGAN's s_x and s_z beside the joint score.
  kernel: int = 4
  z_layers: int = 2  # Dense layers of the z branch.
  minibatch_std_group: int = 0  # ProGAN's minibatch std of x's and z's features; 0: off.
  projection: bool = False  # Miyato & Koyama's <W phi(x), psi(z)> added to the joint score.
  negative_slope: float = 0.2
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(
    self, x: jax.Array, z: jax.Array, *, train: bool, update_stats: bool = False
  ) -> dict[str, jax.Array]:
    if self.arch not in D_ARCHS:
      raise ValueError(f"discriminator arch must be one of {D_ARCHS}, got {self.arch!r}")
    drop = nn.Dropout(self.dropout, deterministic=not train)
    act = functools.partial(_act, negative_slope=self.negative_slope)

    def layer(module: nn.Module, h: jax.Array) -> jax.Array:
      if self.spectral_norm:
        return nn.SpectralNorm(module)(h, update_stats=update_stats)
      return module(h)

    ali = self.arch == "ali"
    # The ALI paper drops each layer's input, the data and the code included;
    # the report's shape drops each hidden layer's output.
    pre = drop if ali else (lambda h: h)
    post = (lambda h: h) if ali else drop
    dense = functools.partial(nn.Dense, dtype=self.dtype)
    h = x[..., None].astype(self.dtype)
    for c in self.channels:
      conv = nn.Conv(
        c, (self.kernel, self.kernel), strides=(2, 2), padding="SAME", dtype=self.dtype
      )
      h = post(act(layer(conv, pre(h))))
    hx = h.reshape((h.shape[0], -1))
    if ali:  # x embedded to the z branch's width.
      hx = act(layer(dense(self.hidden), pre(hx)))
    hz = z.astype(self.dtype)
    for _ in range(self.z_layers):
      hz = post(act(layer(dense(self.hidden), pre(hz))))
    joint = [hx, hz]
    if self.minibatch_std_group:
      joint += [minibatch_std(f, self.minibatch_std_group).astype(self.dtype) for f in (hx, hz)]
    h = jnp.concatenate(joint, axis=-1)
    for _ in range(2 if ali else 1):
      h = post(act(layer(dense(2 * self.hidden), pre(h))))
    scores = {"xz": layer(dense(1, name="out"), pre(h))[:, 0]}
    if self.projection:
      # The projection discriminator's class embedding y^T V phi(x) with the
      # code's features psi(z) in place of a one-hot class: a bilinear term
      # whose gradient for G_x(z) depends on z from D's first update on.
      wx = layer(dense(hz.shape[-1], use_bias=False, name="projection"), pre(hx))
      scores["xz"] = scores["xz"] + jnp.sum(wx * hz, axis=-1)
    if self.unary:
      scores["x"] = layer(dense(1, name="out_x"), pre(hx))[:, 0]
      scores["z"] = layer(dense(1, name="out_z"), pre(hz))[:, 0]
    # Scores leave in float32: the losses are computed in float32.
    return {k: v.astype(jnp.float32) for k, v in scores.items()}


class Projector(nn.Module):
  """SimCLR's projection head g(z) (Chen et al. 2020): Dense layers, ReLU between.

  The contrastive term compares g(z), not z, so that the invariances it asks
  for can be met in g's output without folding z itself onto a few directions
  (Jing et al. 2022's dimensional collapse). `features` are the layers' widths.
  """

  features: Sequence[int]
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z.astype(self.dtype)
    for i, width in enumerate(self.features):
      if i:
        h = nn.relu(h)
      h = nn.Dense(width, dtype=self.dtype, name=f"dense_{i}")(h)
    return h.astype(jnp.float32)


COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


def compute_dtype(name: str) -> jnp.dtype:
  """`model.compute_dtype` as a dtype: "auto" is bfloat16 on an accelerator, float32 on CPU."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"model.compute_dtype must be one of {COMPUTE_DTYPES}, got {name!r}")
  if name == "auto":
    name = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  return jnp.dtype(name)


def make_models(model_config, shape: tuple[int, int]) -> tuple[Encoder, Decoder, Discriminator]:
  """The three modules sized by `config.model` for spectrograms of `shape`."""
  dtype = compute_dtype(model_config.get("compute_dtype", "float32"))
  encoder = Encoder(
    z_dim=model_config.z_dim,
    channels=tuple(model_config.encoder_channels),
    stochastic=model_config.stochastic_encoder,
    readout=model_config.encoder_readout,
    conv=model_config.get("encoder_conv", "2d"),
    pool_stats=tuple(model_config.get("pool_stats", POOL_STATS)),
    pool_input=model_config.get("pool_input", False),
    kernel=model_config.conv_kernel,
    time_strides=tuple(model_config.get("encoder_time_strides", ())),
    negative_slope=model_config.negative_slope,
    norm_groups=model_config.norm_groups,
    dtype=dtype,
  )
  decoder = Decoder(
    shape=tuple(shape),
    channels=tuple(reversed(model_config.encoder_channels)),
    kernel=model_config.decoder_kernel,
    negative_slope=model_config.negative_slope,
    norm_groups=model_config.norm_groups,
    dtype=dtype,
  )
  discriminator = Discriminator(
    channels=tuple(model_config.d_channels),
    hidden=model_config.d_hidden,
    dropout=model_config.d_dropout,
    arch=model_config.d_arch,
    spectral_norm=model_config.d_spectral_norm,
    unary=model_config.d_unary_scores,
    kernel=model_config.conv_kernel,
    z_layers=model_config.d_z_layers,
    minibatch_std_group=model_config.get("d_minibatch_std_group", 0),
    projection=model_config.get("d_projection", False),
    negative_slope=model_config.negative_slope,
    dtype=dtype,
  )
  return encoder, decoder, discriminator


def make_projector(model_config) -> Projector | None:
  """The contrastive term's projection head, or None where `model.projector_features` is ()."""
  features = tuple(model_config.get("projector_features", ()))
  if not features:
    return None
  return Projector(features, dtype=compute_dtype(model_config.get("compute_dtype", "float32")))


def init_variables(model_config, shape: tuple[int, int], seed: int) -> dict:
  """Initial variables of all three networks for a run's seed.

  The one derivation of initial weights from a seed: training starts from
  these, and the evaluation's untrained control is the same run's encoder at
  step 0.

  Returns:
    {"encoder": ..., "decoder": ..., "discriminator": ...}, and "projector"
    where the config has one; the discriminator's holds "params" and, with
    spectral normalisation, "batch_stats" (its power-iteration vectors).
  """
  config_json = json.dumps(model_config.to_dict(), sort_keys=True)
  return _compiled_init(config_json, tuple(shape))(jax.random.key(seed))


@functools.lru_cache(maxsize=8)
def _compiled_init(model_config_json: str, shape: tuple[int, int]):
  """init_variables' program for one model config and shape, compiled once per process.

  Run eagerly, every initializer op compiles on its own (about 30 s on a
  2-core CPU at the CPU preset); jitted, it is one program, which training
  and each evaluated split then share.
  """
  model_config = ml_collections.ConfigDict(json.loads(model_config_json))
  return jax.jit(init_program(model_config, shape))


PROJECTOR_STREAM = 0x50524F4A  # fold_in value of the projector's initial key ("PROJ").


def init_program(model_config, shape: tuple[int, int]):
  """key -> the three networks' initial variables, uncompiled (init_variables jits it)."""
  encoder, decoder, discriminator = make_models(model_config, shape)
  projector = make_projector(model_config)

  def init(key):
    k_enc, k_dec, k_d, _ = jax.random.split(key, 4)
    x = jnp.zeros((1, *shape), jnp.float32)
    z = jnp.zeros((1, encoder.z_dim), jnp.float32)
    variables = {
      "encoder": encoder.init(k_enc, x),
      "decoder": decoder.init(k_dec, z),
      "discriminator": discriminator.init(k_d, x, z, train=False),
    }
    if projector is not None:  # Its own key: the three networks' stay as without it.
      variables["projector"] = projector.init(jax.random.fold_in(key, PROJECTOR_STREAM), z)
    return variables

  return init


def train_key(seed: int) -> jax.Array:
  """The root key of a run's training randomness (the fourth split of its seed)."""
  return jax.random.split(jax.random.key(seed), 4)[3]
