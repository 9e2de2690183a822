"""A trained run's encoder as a tool: audio in, song embedding out.

    encoder = song2vec.load_encoder("runs/ali_lsgan")
    v = encoder.embed_file("song.mp3")        # [64] float32
    v = encoder.embed_audio(y, sr)            # the same from a waveform

Features are computed exactly as the run's dataset computed them (sample
rate, FFT, mel bands, segment length, and the train split's per-bin
normalisation, all read from the dataset's metadata.json), but a song is
covered by consecutive segments from its start instead of random ones: at most
`max_segments` of them, spread evenly over the song when it holds more. The
song's embedding is the mean of its segments' embeddings, as the evaluation's
song level takes it, with the readout the evaluation uses (`model.embedding`,
and the EMA weights when the run keeps them).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from data_prep import audio
from data_prep.config import build_config_from_dict
from song2vec import embed, input_pipeline


class RunError(Exception):
  """The folder is not a usable run (no config, no dataset metadata, no checkpoint)."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What a library needs to know about the run that embeds it."""

  workdir: str  # Absolute.
  step: int  # The checkpoint's.
  embedding: str  # model.embedding: "z" or "features".
  ema: bool
  dim: int
  features: dict  # The dataset's feature settings, as in its metadata.json.
  dataset_dir: str
  normalization_mean: np.ndarray
  normalization_std: np.ndarray


class Encoder:
  """A run's encoder with its feature settings; see the module docstring."""

  def __init__(self, workdir: str, max_segments: int = 10, batch_size: int = 256):
    """Loads the run's config, its dataset's metadata and the latest checkpoint.

    Args:
      workdir: a folder written by launch.py.
      max_segments: segments per song at most (0: every full segment).
      batch_size: segments per encoder call.

    Raises:
      RunError: the folder lacks config.json, its dataset's metadata.json or a
        checkpoint; the message names what is missing.
    """
    try:
      self.config = embed.load_run_config(workdir)
    except FileNotFoundError as e:
      raise RunError(str(e)) from None
    self.dataset_dir = build_config_from_dict(self.config.data.to_dict()).dataset_dir
    try:
      self.dataset = input_pipeline.load_info(self.dataset_dir)
    except FileNotFoundError as e:
      raise RunError(
        f"the run's dataset metadata is missing ({e}); it holds the feature settings and "
        "the normalisation the encoder was trained with"
      ) from None
    self.features = build_config_from_dict(self.dataset.metadata["build_config"]).features
    ema = self.config.train.get("ema_decay", 0.0) > 0
    try:
      params, self.step = embed.trained_encoder_params(workdir, ema=ema)
    except FileNotFoundError as e:
      raise RunError(str(e)) from None
    self.max_segments = max_segments
    self.batch_size = batch_size
    kind = self.config.model.get("embedding", "z")
    self._params = params
    self._apply = embed.encoder_apply(self.config.model, self.dataset.shape)
    self._mean = self.dataset.mean[None, :, None]
    self._inv_std = (1.0 / self.dataset.std)[None, :, None]
    self.info = RunInfo(
      workdir=os.path.abspath(workdir),
      step=int(self.step),
      embedding=kind,
      ema=ema,
      dim=int(self.embed_segments(np.zeros((0, *self.dataset.shape), np.float32)).shape[-1]),
      features=dict(self.dataset.metadata["features"]),
      dataset_dir=self.dataset_dir,
      normalization_mean=self.dataset.mean,
      normalization_std=self.dataset.std,
    )

  @property
  def dim(self) -> int:
    return self.info.dim

  def normalise(self, specs: np.ndarray) -> np.ndarray:
    """Log-magnitude spectrograms -> the model's input (the train split's per-bin z-score)."""
    return ((specs - self._mean) * self._inv_std).astype(np.float32)

  def embed_segments(self, x: np.ndarray) -> np.ndarray:
    """[n, bins, frames] normalised spectrograms -> [n, dim] float32 segment embeddings.

    Each call of the encoder holds at most batch_size segments.
    """
    return embed.encode_in_batches(self._apply, self._params, x, self.batch_size)

  def segments_of_audio(self, y: np.ndarray, sr: int) -> np.ndarray:
    """Normalised spectrograms of a waveform (mono or [samples, channels])."""
    y = np.asarray(y, np.float32)
    if y.ndim == 2:
      y = y.mean(axis=1)
    if sr != self.features.sample_rate:
      import librosa

      y = librosa.resample(y, orig_sr=sr, target_sr=self.features.sample_rate, res_type="soxr_hq")
    return self.normalise(audio.consecutive_spectrograms(y, self.features, self.max_segments))

  def embed_audio(self, y: np.ndarray, sr: int) -> np.ndarray:
    """A waveform's song embedding: [dim] float32, the mean over its segments."""
    return self.embed_segments(self.segments_of_audio(y, sr)).mean(axis=0)

  def embed_file(self, path: str) -> np.ndarray:
    """An audio file's song embedding: [dim] float32.

    Raises:
      audio.SongError: the file is missing, undecodable, truncated, silent or
        too short; the message starts with the path.
    """
    try:
      y = audio.load_audio(path, self.features.sample_rate, self.features.max_song_seconds)
      return self.embed_audio(y, self.features.sample_rate)
    except audio.SongError as e:
      raise audio.SongError(f"{path}: {e}") from None


def load_encoder(workdir: str, max_segments: int = 10) -> Encoder:
  """The encoder of the latest checkpoint in a launch.py run folder."""
  return Encoder(workdir, max_segments=max_segments)
