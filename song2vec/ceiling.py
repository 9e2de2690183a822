r"""A supervised ceiling: the recipe's encoder trained on the train split's labels.

    python -m song2vec.ceiling --config=experiments/song2vec.py --seeds=0,1,2
    python -m song2vec.ceiling --config=experiments/song2vec.py:game_music --seeds=0,1,2

Not a candidate embedding: it reads the labels. It measures how much of the
label this encoder, this much training data and a 64-d code can carry to songs
it never saw, scored as every embedding is (z standardised with the train
statistics; k-means and Gaussian-mixture AMI and the linear probe on the
validation split, at segment and at song level). Where the ceiling sits near
MFCC statistics, no unsupervised objective for this encoder will beat them by
much; where it sits far above, the objective is what holds ALI back.

The encoder is the config's (its readout, its input centering), with a linear
map from z to the labels; the two are trained with softmax cross-entropy and
Adam for `config.train.num_steps` minibatches of `config.train.batch_size`,
drawn from the train segments the evaluation uses (at most
`config.eval.pca_fit_max_segments`). Prints a table; --out writes it as JSON.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

from song2vec import embed, evaluate, experiment, input_pipeline, models, progress

_CONFIG = config_flags.DEFINE_config_file("config", None, "an experiments/*.py config")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "training seeds")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam's rate (Kingma & Ba's default)")
_OUT = flags.DEFINE_string("out", "", "write the scores here as JSON")


def train_classifier(
  config: ml_collections.ConfigDict, train: embed.Segments, seed: int, learning_rate: float
) -> dict:
  """The config's encoder and a linear head on z, fitted to train's labels; the encoder params."""
  shape = train.x.shape[1:]
  encoder, _, _ = models.make_models(config.model, shape)
  num_labels = len(train.label_names)
  params = {
    "encoder": embed.untrained_encoder_params(config.model, shape, seed),
    "head": {
      "w": jnp.zeros((config.model.z_dim, num_labels)),
      "b": jnp.zeros((num_labels,)),
    },
  }
  centering = config.model.get("input_centering", "none")
  opt = optax.adam(learning_rate)

  def loss_fn(p, x, labels):
    z = encoder.apply(p["encoder"], input_pipeline.center(x, centering))
    z = z[0] if encoder.stochastic else z
    logits = z @ p["head"]["w"] + p["head"]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(p, opt_state, x, labels):
    loss, grads = jax.value_and_grad(loss_fn)(p, x, labels)
    updates, opt_state = opt.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = opt.init(params)
  rng = np.random.default_rng(seed)
  batch = config.train.batch_size
  bar = progress.progress_bar(total=config.train.num_steps, desc=f"ceiling seed {seed}")
  for i in range(config.train.num_steps):
    idx = rng.choice(len(train.x), batch, replace=False)
    params, opt_state, loss = step(params, opt_state, train.x[idx], train.labels[idx])
    loss = float(loss)  # One transfer from the device a step.
    if not np.isfinite(loss):
      raise FloatingPointError(f"the ceiling's loss is {loss} at step {i}")
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
  bar.close()
  return params["encoder"]


def scores(
  config: ml_collections.ConfigDict,
  encoder_params,
  train: embed.Segments,
  target: embed.Segments,
) -> dict[str, float]:
  """The encoder's z scored as every embedding is, on `target`.

  z is standardised with train's statistics. AMI (k-means and GMM, each the
  mean over config.eval.seeds clusterings) and the linear probe's accuracy,
  at segment and at song level; plus the probe's accuracy on train itself
  (how far the classifier fitted its training songs).
  """
  shape = train.x.shape[1:]
  tr, te = embed.standardize(
    *(embed.encode(config.model, shape, encoder_params, s.x) for s in (train, target))
  )
  out = {}
  for level in evaluate.LEVELS:
    e, labels, _, tr_e, tr_labels = evaluate.at_level(
      level, te, target.labels, target.song_ids, tr, train.labels, train.song_ids
    )
    for algorithm in evaluate.ALGORITHMS:
      s = evaluate.clustering_scores(
        e, labels, algorithm, config.eval.seeds, config.eval.clustering
      )
      out[f"{level}_{algorithm}_ami"] = s["ami"][0]
    out[f"{level}_probe"] = evaluate.linear_probe(tr_e, tr_labels, e, labels, config.eval.probe)
  out["train_probe"] = evaluate.linear_probe(tr, train.labels, tr, train.labels, config.eval.probe)
  return out


def main(argv: list[str]) -> None:
  del argv
  config = _CONFIG.value
  dataset_dir = experiment.ensure_dataset(config.data)
  # The train segments the evaluation standardises and fits its probe with.
  train = embed.load_segments(
    dataset_dir, "train", max_examples=config.eval.pca_fit_max_segments, seed=config.seed
  )
  target = embed.load_segments(dataset_dir, "validation")
  rows = {}
  for seed in (int(s) for s in _SEEDS.value):
    params = train_classifier(config, train, seed, _LEARNING_RATE.value)
    rows[seed] = scores(config, params, train, target)
  keys = list(next(iter(rows.values())))
  print(f"supervised ceiling of {config.name}, {dataset_dir}, validation split")
  print("| seed | " + " | ".join(keys) + " |")
  print("|---" * (len(keys) + 1) + "|")
  for seed, r in rows.items():
    print(f"| {seed} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
  values = np.array([[r[k] for k in keys] for r in rows.values()])
  mean, std = values.mean(0), values.std(0)
  cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std, strict=True)]
  print("| mean ± std | " + " | ".join(cells) + " |")
  if _OUT.value:
    with open(_OUT.value + ".tmp", "w") as f:  # Renamed once whole.
      json.dump({"config": config.name, "dataset": dataset_dir, "seeds": rows}, f, indent=1)
    os.replace(_OUT.value + ".tmp", _OUT.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  sys.exit(app.run(main))
