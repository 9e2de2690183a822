"""Embeddings of segments: Raw, PCA-r, MFCC statistics, untrained encoder, ALI.

Everything here takes arrays of normalised spectrograms (as the input pipeline
yields them) and returns [n, d] float32 embeddings; song-level embeddings are
the mean over a song's segments. No training code is imported: the ALI
encoder is rebuilt from the config and its parameters read from the
checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import librosa
import ml_collections
import numpy as np
from sklearn.decomposition import PCA

from song2vec import input_pipeline, models


@dataclasses.dataclass
class Segments:
  """All examples of one split, in file order."""

  x: np.ndarray  # [n, bins, frames] float32, normalised per bin.
  labels: np.ndarray  # [n] int
  song_ids: np.ndarray  # [n] str
  label_names: tuple[str, ...]
  years: np.ndarray  # [n] int, -1 where unknown.

  def take(self, idx: np.ndarray) -> Segments:
    return Segments(
      self.x[idx], self.labels[idx], self.song_ids[idx], self.label_names, self.years[idx]
    )


def load_segments(dataset_dir: str, split: str, max_examples: int = 0, seed: int = 0) -> Segments:
  """Reads a split in file order.

  With max_examples > 0, keeps a seeded random subset of about that many while
  reading, so memory stays bounded however large the split (a 120,000-segment
  train split at 257 x 430 would be 53 GB).
  """
  info = input_pipeline.load_info(dataset_dir)
  total = info.num_examples[split]
  keep_share = min(1.0, 1.1 * max_examples / max(total, 1)) if max_examples else 1.0
  rng = np.random.default_rng(seed)
  xs, labels, songs, years = [], [], [], []
  for batch in input_pipeline.eval_iterator(
    dataset_dir, 256, split=split, keys=("spectrogram", "label", "song_id", "year")
  ):
    keep = (batch["mask"] > 0) & (rng.random(len(batch["mask"])) < keep_share)
    xs.append(batch["spectrogram"][keep])
    labels.append(batch["label"][keep])
    songs.append(np.array([s.decode() for s in batch["song_id"][keep]]))
    years.append(batch["year"][keep])
  seg = Segments(
    np.concatenate(xs),
    np.concatenate(labels),
    np.concatenate(songs),
    info.labels,
    np.concatenate(years),
  )
  if max_examples and len(seg.x) > max_examples:
    seg = seg.take(np.sort(rng.choice(len(seg.x), max_examples, replace=False)))
  return seg


def raw(x: np.ndarray) -> np.ndarray:
  """The report's Raw embedding: the flattened spectrogram (float32)."""
  return x.reshape(len(x), -1).astype(np.float32, copy=False)


def fit_pca(train_x: np.ndarray, components: int, seed: int) -> PCA:
  """PCA-r fitted on (a subsample of) the train split; randomized SVD keeps
  110,510-dimensional inputs within memory."""
  flat = raw(train_x)
  components = min(components, *flat.shape)  # A tiny train split cannot give more.
  return PCA(components, svd_solver="randomized", random_state=seed).fit(flat)


def mfcc_stats(x: np.ndarray, info: input_pipeline.DatasetInfo, n_mfcc: int) -> np.ndarray:
  """Mean and std over frames of n_mfcc MFCCs and their deltas: [n, 4 * n_mfcc].

  Computed from the stored spectrograms (undo the normalisation and the log,
  map linear bins to mel bands (128 for 257 bins), then librosa's MFCC), so no audio is needed.
  """
  f = info.metadata["features"]
  log_mag = x * info.std[None, :, None] + info.mean[None, :, None]
  mag = np.exp(log_mag)
  if not f["n_mels"]:
    n_mels = min(128, mag.shape[1] // 2)  # 128 for 257 bins; fewer for tiny FFTs.
    mel_basis = librosa.filters.mel(sr=f["sample_rate"], n_fft=f["n_fft"], n_mels=n_mels)
    mag = np.einsum("mf,nft->nmt", mel_basis, mag)
  log_power = librosa.power_to_db(np.square(mag), ref=1.0)
  mfcc = librosa.feature.mfcc(S=log_power, n_mfcc=n_mfcc)  # [n, n_mfcc, frames]
  frames = mfcc.shape[-1]
  width = min(9, frames if frames % 2 else frames - 1)  # Odd, at most the frame count.
  delta = librosa.feature.delta(mfcc, width=width) if width >= 3 else np.zeros_like(mfcc)
  feats = [mfcc.mean(-1), mfcc.std(-1), delta.mean(-1), delta.std(-1)]
  return np.concatenate(feats, axis=1).astype(np.float32)


def spectral_stats(x: np.ndarray) -> np.ndarray:
  """Mean and std over frames of each (normalised log) frequency bin: [n, 2 * bins].

  The plainest pooled baseline: what a pooled encoder could read off its
  input with no learning at all.
  """
  return np.concatenate([x.mean(-1), x.std(-1)], axis=1).astype(np.float32)


def spectral_flux(x: np.ndarray) -> np.ndarray:
  """Mean absolute change between consecutive frames of each (normalised log) bin: [n, bins].

  Spectral flux per band: how often a band's notes come and go, where the
  spectral statistics read how loud it is and how far it moves. A difference
  of log magnitudes cancels any fixed gain per band. On the validation splits
  it clusters the embedded corpus and the larger dev set better than MFCC
  statistics (docs/remedies_cpu.md, stop 40).
  """
  return np.abs(np.diff(x, axis=-1)).mean(-1).astype(np.float32)


EMBEDDINGS = ("z", "features")
# The baselines' names in every table.
MFCC = "MFCC stats"
SPECTRAL = "Spectral stats"
FLUX = "Spectral flux"
UNTRAINED = "Untrained encoder"  # The run's own encoder at step 0.


def encoder_apply(model_config: ml_collections.ConfigDict, shape):
  """A jitted fn(encoder_params, x) -> the embedding `model_config.embedding` names.

  "z": G_z(x) (mu for a stochastic encoder), the report's; "features": the
  vector the encoder's readout maps to z (BigBiGAN's pooled features).
  """
  kind = model_config.get("embedding", "z")
  if kind not in EMBEDDINGS:
    raise ValueError(f"model.embedding must be one of {EMBEDDINGS}, got {kind!r}")
  encoder, _, _ = models.make_models(model_config, shape)
  centering = model_config.get("input_centering", "none")
  input_pipeline.centering_axes(centering)  # An unknown name fails here, not under jit.

  def apply(p, xb):
    xb = input_pipeline.center(xb, centering)  # As the encoder saw segments in training.
    z, features = encoder.apply(p, xb, features=True)
    if kind == "features":
      return features
    return z[0] if encoder.stochastic else z

  return jax.jit(apply)


def encode_in_batches(apply, encoder_params, x: np.ndarray, batch: int = 256) -> np.ndarray:
  """[n, bins, frames] -> [n, dim] float32 through `apply`, at most `batch` segments a call.

  A short last batch is padded to a power of two (at most `batch`): a handful
  of compiled shapes, whatever the number of segments.
  """
  out = []
  for i in range(0, len(x), batch):
    xb = x[i : i + batch]
    n = len(xb)
    size = min(batch, 1 << max(0, n - 1).bit_length())
    if size > n:
      xb = np.concatenate([xb, np.zeros((size - n, *xb.shape[1:]), xb.dtype)])
    out.append(np.asarray(apply(encoder_params, jnp.asarray(xb)))[:n])
  if not out:
    spec = jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32)
    return np.zeros((0, jax.eval_shape(apply, encoder_params, spec).shape[-1]), np.float32)
  return np.concatenate(out).astype(np.float32)


def encode(
  model_config: ml_collections.ConfigDict,
  shape,
  encoder_params,
  x: np.ndarray,
  batch: int = 256,
) -> np.ndarray:
  """The encoder's embedding of every segment (see encoder_apply)."""
  return encode_in_batches(encoder_apply(model_config, shape), encoder_params, x, batch)


def untrained_encoder_params(model_config: ml_collections.ConfigDict, shape, seed: int):
  """The run's own encoder at step 0: the control for what the architecture alone gives."""
  return models.init_variables(model_config, shape, seed)["encoder"]


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a launch.py run saved as workdir/config.json.

  Raises:
    FileNotFoundError: there is no config.json; the message names the file.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir} is not a launch.py run folder")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def trained_encoder_params(
  workdir: str, *, ema: bool = False, step: int | None = None
) -> tuple[dict, int]:
  """The encoder parameters of a checkpoint in workdir (the latest by default), and its step.

  Args:
    workdir: a run folder.
    ema: the moving average of the encoder's weights instead of the weights.
    step: a kept checkpoint's step; None: the latest.
  """
  import orbax.checkpoint as ocp

  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  # Naming the handler and args restores the saved pytree as is, without orbax's
  # "could not be restored" warning for an unnamed item.
  manager = ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler())
  try:
    kept = manager.all_steps()
    if not kept:
      raise FileNotFoundError(f"no checkpoint in {directory}: train first (python launch.py ...)")
    if step is None:
      step = max(kept)
    elif step not in kept:
      raise FileNotFoundError(f"no checkpoint of step {step} in {directory}; kept: {sorted(kept)}")
    restored = manager.restore(step, args=ocp.args.StandardRestore())
  finally:
    manager.close()
  if ema:
    return restored["ema_encoder"], step
  return restored["g_params"]["encoder"], step


def moments(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-dimension mean and std (float64) of train embeddings; std 1 where constant."""
  std = train.std(axis=0, dtype=np.float64)
  return train.mean(axis=0, dtype=np.float64), np.where(std > 1e-8, std, 1.0)


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
  """Each array z-scored per dimension with the train embeddings' mean and std.

  So that no embedding is judged by the scale of its axes: k-means and the
  Gaussian mixture weigh every dimension alike. Dimensions constant on train
  keep std 1.
  """
  mean, std = moments(train)
  return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def song_means(emb: np.ndarray, song_ids: np.ndarray, labels: np.ndarray):
  """Song-level embeddings: the mean of each song's segments, songs sorted by id."""
  songs, index = np.unique(song_ids, return_inverse=True)
  sums = np.zeros((len(songs), emb.shape[1]), np.float64)
  np.add.at(sums, index, emb)
  counts = np.bincount(index, minlength=len(songs))[:, None]
  song_labels = np.zeros(len(songs), labels.dtype)
  song_labels[index] = labels
  return (sums / counts).astype(np.float32), song_labels, songs
