"""The supervised ceiling: the encoder it trains finds a label the untrained one misses."""

from __future__ import annotations

import numpy as np
from test_train import SHAPE, tiny_config

from song2vec import ceiling, embed, evaluate


def segments(n: int, seed: int) -> embed.Segments:
  """Label = which of two bands carries a faint tone, under a loud random level and tilt."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(rng.integers(0, 2, n // 4), 4)  # Songs of 4 segments, one label each.
  bins = np.arange(SHAPE[0], dtype=np.float32)[None, :, None]
  level = 3.0 * rng.standard_normal((n, 1, 1))
  tilt = 0.3 * rng.standard_normal((n, 1, 1)) * (bins - SHAPE[0] / 2)
  x = 0.3 * rng.standard_normal((n, *SHAPE)) + level + tilt
  x[labels == 0, 3] += 1.0
  x[labels == 1, 11] += 1.0
  songs = np.array([f"s{seed}-{i // 4}" for i in range(n)])
  return embed.Segments(x.astype(np.float32), labels, songs, ("a", "b"), np.full(n, -1))


def test_trained_encoder_clusters_by_the_label_its_untrained_network_misses():
  config = tiny_config()
  config.train.num_steps = 150
  train, target = segments(256, 0), segments(128, 1)
  trained = ceiling.train_classifier(config, train, seed=0, learning_rate=1e-2)
  untrained = embed.untrained_encoder_params(config.model, SHAPE, 0)
  amis = [ceiling.scores(config, params, train, target) for params in (untrained, trained)]
  assert amis[0]["segment_kmeans_ami"] < 0.2
  assert amis[1]["segment_kmeans_ami"] > 0.6
  assert amis[1]["segment_probe"] > 0.9
  assert set(amis[1]) == {
    f"{level}_{kind}"
    for level in ("segment", "song")
    for kind in (*(f"{a}_ami" for a in evaluate.ALGORITHMS), "probe")
  } | {"train_probe"}
