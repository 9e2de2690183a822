"""Train steps across devices, compile-once, checkpoint resume, NaN and SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import ali_lsgan
from song2vec import health, losses, models, train
from song2vec.metric_writers import read_jsonl

SHAPE = (16, 12)
BATCH = 8


def tiny_config(**train_overrides):
  config = ali_lsgan.get_config("cpu")
  config.model.z_dim = 8
  config.model.encoder_channels = (4, 8)
  config.model.d_channels = (4,)
  config.model.d_hidden = 8
  config.train.batch_size = BATCH
  config.train.num_devices = 1
  config.train.log_every = 2
  config.train.checkpoint_every = 4
  for k, v in train_overrides.items():
    config.train[k] = v
  return config


def batch_for(step: int, num_devices: int = 0) -> dict:
  x = np.random.default_rng(step).standard_normal((BATCH, *SHAPE)).astype(np.float32)
  if num_devices:
    x = x.reshape(num_devices, BATCH // num_devices, *SHAPE)
  return {"spectrogram": x}


def batches_from(start: int, num_devices: int = 0):
  step = start
  while True:
    yield batch_for(step, num_devices)
    step += 1


def test_four_devices_match_one_device_on_the_same_global_batch():
  assert jax.local_device_count() >= 4, "conftest sets 4 host devices"
  config = tiny_config()
  config.model.d_dropout = 0.0  # Dropout masks are drawn per device by design.
  setup = train.make_setup(config, SHAPE)
  single = train.init_state(setup, SHAPE, seed=0)
  multi = train.replicate(train.init_state(setup, SHAPE, seed=0), 4)
  one = train.compile_steps(setup, 1)
  four = train.compile_steps(setup, 4)
  for step in range(3):  # One D step, two G steps.
    kind = 0 if train.is_d_step(step, 4) else 1
    single, m1 = one[kind](single, batch_for(step))
    multi, m4 = four[kind](multi, batch_for(step, 4))
    m4 = train.unreplicate(m4)
    for k in m1:
      np.testing.assert_allclose(m4[k], m1[k], rtol=2e-4, atol=1e-5, err_msg=k)
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(train.unreplicate(multi)), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)


def test_unreplicate_reads_device_zero_without_running_anything(caplog):
  tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.float32(7.0)}}
  replicated = train.replicate(tree, 4)
  with jax.log_compiles(), caplog.at_level(logging.DEBUG):
    caplog.clear()
    host = train.unreplicate(replicated)
    on_device = train.first_replica(replicated)
  # An eager x[0] per leaf would compile a gather each; reading shards compiles nothing.
  assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
  assert isinstance(host["a"], np.ndarray) and host["a"].shape == (2, 3)
  np.testing.assert_array_equal(host["a"], tree["a"])
  assert float(host["b"]["c"]) == 7.0
  assert on_device["a"].shape == (1, 2, 3) and on_device["a"].devices() == {jax.local_devices()[0]}


@pytest.mark.parametrize("num_devices", [1, 4])
def test_each_step_compiles_once(monkeypatch, num_devices):
  traces = []
  real = train._forward
  monkeypatch.setattr(train, "_forward", lambda *a, **k: traces.append(1) or real(*a, **k))
  setup = train.make_setup(tiny_config(), SHAPE)
  state = train.init_state(setup, SHAPE, seed=0)
  if num_devices > 1:
    state = train.replicate(state, num_devices)
  d_fn, g_fn = train.compile_steps(setup, num_devices)
  for step in range(4):
    state, _ = d_fn(state, batch_for(step, num_devices if num_devices > 1 else 0))
  assert len(traces) == 1
  for step in range(4):
    state, _ = g_fn(state, batch_for(step, num_devices if num_devices > 1 else 0))
  assert len(traces) == 2


def _history(workdir):
  return [
    {k: v for k, v in r.items() if k != "steps_per_s"}
    for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  ]


def test_an_unreadable_checkpoint_falls_back_to_the_newest_readable_one(
  tmp_path, caplog, monkeypatch
):
  # (The resumed run equals a straight one: see the next-but-one tests.)
  train.train(tiny_config(num_steps=8), str(tmp_path / "b"), SHAPE, batches_from)
  ckpts = tmp_path / "b" / "checkpoints"
  # As a disk that filled up during the save would leave it: array data cut short.
  data = [p for p in (ckpts / "8").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert data
  for p in data:
    with open(p, "r+b") as f:
      f.truncate(p.stat().st_size // 2)
  escaped = []  # Unraisable exceptions that reach the hook in place before training.
  monkeypatch.setattr(sys, "unraisablehook", escaped.append)
  with caplog.at_level(logging.WARNING):
    resumed = train.train(tiny_config(num_steps=12), str(tmp_path / "b"), SHAPE, batches_from)
  assert sys.unraisablehook == escaped.append  # Put back.
  assert not escaped, [str(u.exc_value) for u in escaped]
  assert "step(s) 8" in caplog.text and "resuming from step 4" in caplog.text
  assert (ckpts / "unreadable-8").is_dir()  # Kept aside, not deleted.
  assert int(resumed.step) == 12
  assert [r["step"] for r in _history(tmp_path / "b")] == [2, 4, 6, 8, 10, 12]  # None twice.
  # A checkpoint that reads but holds another model keeps its own message.
  other = tiny_config(num_steps=16)
  other.model.z_dim = 4
  with pytest.raises(train.CheckpointMismatchError, match="step 12 .* does not fit this config"):
    train.train(other, str(tmp_path / "b"), SHAPE, batches_from)
  assert (ckpts / "12").is_dir()


def _unraisable(fn):
  """What Python hands sys.unraisablehook when `fn` raises in a callback."""
  try:
    fn()
  except Exception as e:
    return types.SimpleNamespace(exc_type=type(e), exc_value=e, exc_traceback=e.__traceback__)


def test_only_reads_calling_back_into_a_closed_loop_are_quieted(monkeypatch):
  loop = asyncio.new_event_loop()
  loop.close()
  orphaned = _unraisable(lambda: loop.call_soon_threadsafe(print))
  other = _unraisable(lambda: 1 / 0)
  elsewhere = _unraisable(lambda: (_ for _ in ()).throw(RuntimeError("Event loop is closed")))
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)
  with train.quiet_orphaned_reads():
    for unraisable in (orphaned, other, elsewhere):
      sys.unraisablehook(unraisable)
  assert seen == [other, elsewhere]
  assert sys.unraisablehook == seen.append


def test_pmapped_training_loop_runs_and_logs(tmp_path):
  config = tiny_config(num_steps=5, num_devices=4)
  state = train.train(config, str(tmp_path), SHAPE, lambda s: batches_from(s, 4))
  assert int(state.step) == 5 and np.asarray(state.step).shape == ()
  record = read_jsonl(str(tmp_path / "metrics.jsonl"))[-1]
  for key in ("d_loss", "g_loss", "d_out_enc", "d_out_dec", "steps_per_s", *health.DIAGNOSTICS):
    assert np.isfinite(record[key]), key


@pytest.mark.parametrize("log_every", [2, 8])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, log_every):
  # log_every=8: the metrics of steps 5..8 are fetched together at step 8 (a
  # checkpoint step); the stop still names step 6 and step 8 is never saved.
  def poisoned(start):
    for step, batch in enumerate(batches_from(start), start=start):
      if step == 5:
        batch["spectrogram"][:] = np.nan
      yield batch

  with pytest.raises(
    train.NonFiniteLossError, match=r"non-finite loss at step 6.*Last good checkpoint: step 4"
  ):
    train.train(tiny_config(num_steps=8, log_every=log_every), str(tmp_path), SHAPE, poisoned)
  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"))
  assert manager.all_steps() == [4]
  restored = manager.restore(4)
  assert all(
    np.all(np.isfinite(x)) for x in jax.tree.leaves(restored) if np.asarray(x).dtype.kind == "f"
  )


def test_sigterm_saves_the_current_step_before_exiting(tmp_path):
  def interrupted(start):
    for step, batch in enumerate(batches_from(start), start=start):
      if step == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  with pytest.raises(SystemExit) as info:
    train.train(tiny_config(num_steps=8, checkpoint_every=100), str(tmp_path), SHAPE, interrupted)
  assert info.value.code == 128 + signal.SIGTERM
  assert ocp.CheckpointManager(str(tmp_path / "checkpoints")).all_steps() == [4]
  resumed = train.train(
    tiny_config(num_steps=8, checkpoint_every=100), str(tmp_path), SHAPE, batches_from
  )
  assert int(resumed.step) == 8


def test_stochastic_encoder_trains_with_reparameterisation():
  config = tiny_config()
  config.model.stochastic_encoder = True
  setup = train.make_setup(config, SHAPE)
  state = train.init_state(setup, SHAPE, seed=0)
  d_fn, g_fn = train.compile_steps(setup, 1)
  state, d_metrics = d_fn(state, batch_for(0))
  before = jax.tree.map(np.asarray, state.g_params)
  state, g_metrics = g_fn(state, batch_for(1))
  assert np.isfinite(float(d_metrics["d_loss"])) and np.isfinite(float(g_metrics["g_loss"]))
  moved = jax.tree.map(lambda a, b: not np.allclose(a, np.asarray(b)), before, state.g_params)
  assert moved["encoder"]["params"]["log_sigma"]["kernel"]  # Gradient reaches sigma.


def test_bfloat16_compute_trains_with_float32_parameters():
  config = tiny_config()
  config.model.compute_dtype = "bfloat16"
  assert models.compute_dtype("auto") == jnp.float32  # The tests run on CPU.
  setup = train.make_setup(config, SHAPE)
  state = train.init_state(setup, SHAPE, seed=0)
  d_fn, g_fn = train.compile_steps(setup, 1)
  for step in range(5):
    fn = d_fn if train.is_d_step(step, 4) else g_fn
    state, metrics = fn(state, batch_for(step))
    assert all(np.isfinite(float(v)) for v in metrics.values())
  leaves = jax.tree.leaves((state.g_params, state.d_params, state.g_opt_state, state.d_opt_state))
  assert {np.asarray(x).dtype for x in leaves if np.asarray(x).dtype.kind == "f"} == {
    np.dtype("float32")
  }
  # The switch acts: the same weights compute a slightly different code in bfloat16.
  x = jnp.asarray(batch_for(0)["spectrogram"])
  params = state.g_params["encoder"]
  config.model.compute_dtype = "float32"
  z32 = models.make_models(config.model, SHAPE)[0].apply(params, x)
  config.model.compute_dtype = "bfloat16"
  z16 = models.make_models(config.model, SHAPE)[0].apply(params, x)
  assert z16.dtype == jnp.float32
  assert 0 < float(jnp.max(jnp.abs(z16 - z32))) < 0.1 * float(jnp.max(jnp.abs(z32)))


def test_effective_dimension_by_hand():
  rng = np.random.default_rng(0)
  # Codes spread evenly over 3 of 8 directions, and codes on a line.
  even = np.zeros((3000, 8), np.float32)
  even[:, :3] = rng.standard_normal((3000, 3))
  assert float(train.effective_dimension(even)) == pytest.approx(3.0, rel=0.05)
  line = np.outer(rng.standard_normal(500), rng.standard_normal(8)).astype(np.float32)
  assert float(train.effective_dimension(line)) == pytest.approx(1.0, rel=1e-3)


def test_diagnostics_flag_collapsed_codes_a_dead_discriminator_and_no_inversion():
  config = tiny_config()
  setup = train.make_setup(config, SHAPE)
  state = train.init_state(setup, SHAPE, seed=0)
  x = batch_for(0)["spectrogram"]
  key = jax.random.key(0)
  alive = train.diagnostics(setup, state, x, key)
  assert alive["z_eff_dim"] > 0.25 * alive["z_eff_dim_prior"]
  # An encoder whose readout ignores x puts every code on one point.
  params = jax.tree.map(np.asarray, state.g_params)
  params["encoder"]["params"]["z"]["kernel"] = np.zeros_like(
    params["encoder"]["params"]["z"]["kernel"]
  )
  params["encoder"]["params"]["z"]["bias"] = np.full(8, 3.0, np.float32)
  # A D with a zero output layer scores every pair the same.
  d_params = jax.tree.map(np.asarray, state.d_params)
  d_params["params"]["out"]["kernel"] = np.zeros_like(d_params["params"]["out"]["kernel"])
  dead = train.diagnostics(setup, state.replace(g_params=params, d_params=d_params), x, key)
  assert float(dead["z_std"]) == pytest.approx(0.0, abs=1e-6)
  assert float(dead["z_mean_norm"]) == pytest.approx(3.0 * np.sqrt(8), rel=1e-5)
  assert float(dead["val_d_gap"]) == 0.0
  summary = {k: float(v) for k, v in dead.items()}
  flags = health.flags(summary)
  assert flags["codes_collapsed"] and flags["d_dead"] and not flags["d_wins"]
  assert "the codes collapsed" in health.describe(summary)
  # One code for every segment: G_x cannot tell them apart, so x reconstructs
  # exactly as well from another segment's code, and the flag says so.
  assert float(dead["x_recon_other_rel"]) == float(dead["x_recon_rel"])
  assert flags["no_inversion"] and "G_x ignores its code" in health.describe(summary)
  # A decoder that reconstructs from its own code far better than from another's inverts E.
  assert not health.flags({**summary, "x_recon_rel": 0.6, "x_recon_other_rel": 1.6})["no_inversion"]
  # A run from before the other-code number was logged: no flag, no number, no "nan".
  older = {k: v for k, v in summary.items() if k != "x_recon_other_rel"}
  assert health.flags(older)["no_inversion"] is None
  assert "another segment's code" not in health.describe(older)
  assert "nan" not in health.describe(older)


@pytest.mark.parametrize(
  "model, loss",
  [
    (
      {"d_arch": "ali", "d_unary_scores": True, "d_spectral_norm": True, "d_projection": True},
      {"unary_weight": 1.0},
    ),
    (
      {"encoder_readout": "pool", "stochastic_encoder": True},
      {"cycle_x_weight": 1.0, "cycle_z_weight": 1.0, "prior_mmd_weight": 10.0},
    ),
    ({}, {"d_augment": "color,translation,cutout"}),  # Drawn by global index.
    ({"encoder_readout": "pool"}, {"encoder_consistency_weight": 1.0}),  # So is E's view.
    ({"encoder_readout": "multilevel"}, {"contrastive_weight": 1.0}),  # Crops; gathered batch.
    (  # Song positives: each device's rows 2i, 2i + 1, the negatives gathered; each
      # view's gain and filter drawn by global index, and LooC's third view through
      # the first's draw.
      {"encoder_readout": "multilevel"},
      {
        "contrastive_weight": 1.0,
        "contrastive_positives": "song",
        "contrastive_augment": "color,eq",
        "contrastive_variant_dims": 2,
      },
    ),
  ],
)
def test_remedies_train_on_one_and_four_devices_alike(model, loss):
  config = tiny_config()
  config.model.update(model)
  config.loss.update(loss)
  config.model.d_dropout = 0.0  # Dropout masks are drawn per device by design.
  setup = train.make_setup(config, SHAPE)
  single = train.init_state(setup, SHAPE, seed=0)
  multi = train.replicate(train.init_state(setup, SHAPE, seed=0), 4)
  one, four = train.compile_steps(setup, 1), train.compile_steps(setup, 4)
  for step in range(2):  # One D step, one G step.
    single, m1 = one[step](single, batch_for(step))
    multi, m4 = four[step](multi, batch_for(step, 4))
    m4 = train.unreplicate(m4)
    for k in m1:
      assert np.isfinite(m1[k]), k
      np.testing.assert_allclose(m4[k], m1[k], rtol=2e-4, atol=1e-5, err_msg=k)
  # The G step's gradients (cycles, MMD over the gathered batch) agree too.
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5),
    jax.device_get(single.g_params),
    jax.device_get(train.unreplicate(multi).g_params),
  )
  if loss.get("cycle_x_weight"):
    assert "cycle_x" in m1 and "cycle_z" in m1
  if loss.get("prior_mmd_weight"):  # Over the global batch on four devices too.
    assert "prior_mmd" in m1
  if model.get("d_unary_scores"):
    assert "d_loss_x" in m1 and "d_loss_z" in m1
  if loss.get("encoder_consistency_weight"):
    assert m1["consistency"] > 0
  if loss.get("contrastive_weight"):
    assert m1["contrastive"] > 0
  if model.get("d_spectral_norm"):  # D's power-iteration vectors moved in its step.
    before = train.init_state(setup, SHAPE, seed=0).d_stats
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), before, jax.device_get(single.d_stats))
    assert any(jax.tree.leaves(moved))


def test_diffaugment_changes_only_what_d_sees():
  config = tiny_config()
  config.loss.update({"cycle_x_weight": 1.0, "cycle_z_weight": 1.0})
  augmented = tiny_config()
  augmented.loss.update({**config.loss, "d_augment": "color,translation,cutout"})
  x, key = batch_for(0)["spectrogram"], jax.random.key(0)
  runs = {}
  for name, c in (("plain", config), ("augmented", augmented)):
    setup = train.make_setup(c, SHAPE)
    state = train.init_state(setup, SHAPE, seed=0)
    _, d_metrics = train.d_step(setup, state, batch_for(0))
    _, g_metrics = train.g_step(setup, state, batch_for(1))
    runs[name] = (train.diagnostics(setup, state, x, key), d_metrics, g_metrics)
  (diag, d_plain, g_plain), (diag_aug, d_aug, g_aug) = runs["plain"], runs["augmented"]
  # E, G_x and the cycle terms see x untouched ...
  for k in ("z_eff_dim", "x_recon_rel", "z_recon_rel"):
    np.testing.assert_array_equal(diag_aug[k], diag[k], err_msg=k)
  for k in ("cycle_x", "cycle_z"):
    np.testing.assert_array_equal(g_aug[k], g_plain[k], err_msg=k)
  # ... while D scores augmented segments, in its step, in E+G's and in the diagnostics.
  assert not np.isclose(d_aug["d_loss"], d_plain["d_loss"])
  assert not np.isclose(g_aug["g_loss"], g_plain["g_loss"])
  assert not np.isclose(diag_aug["val_d_gap"], diag["val_d_gap"])


def test_encoder_consistency_adds_its_weighted_term_and_is_zero_for_an_identity_view():
  base = tiny_config()
  g = {}
  for name, loss in {
    "off": {},
    "identity": {"encoder_consistency_weight": 2.0, "encoder_augment": "eq", "augment_eq_std": 0.0},
    "on": {"encoder_consistency_weight": 2.0},
  }.items():
    config = tiny_config()
    config.loss.update(loss)
    setup = train.make_setup(config, SHAPE)
    _, g[name] = train.g_step(setup, train.init_state(setup, SHAPE, seed=0), batch_for(1))
  assert "consistency" not in g["off"] and base.loss.encoder_consistency_weight == 0
  assert float(g["identity"]["consistency"]) == 0.0
  np.testing.assert_allclose(g["identity"]["g_loss"], g["off"]["g_loss"], rtol=1e-6)
  assert g["on"]["consistency"] > 0
  np.testing.assert_allclose(
    g["on"]["g_loss"], g["off"]["g_loss"] + 2.0 * g["on"]["consistency"], rtol=1e-5
  )


def test_the_decoder_can_learn_at_its_own_rate():
  params = jax.eval_shape(lambda: models.init_variables(tiny_config().model, SHAPE, seed=0))
  g_params = {net: jax.tree.map(jnp.zeros_like, params[net]) for net in ("encoder", "decoder")}
  grads = jax.tree.map(jnp.ones_like, g_params)

  def first_step(**rates):  # Adam's first step moves each weight by its learning rate.
    opt = train.make_setup(tiny_config(**rates), SHAPE).g_opt
    updates, _ = opt.update(grads, opt.init(g_params), g_params)
    return {
      net: np.concatenate([np.ravel(u) for u in jax.tree.leaves(updates[net])]) for net in updates
    }

  same = first_step(g_learning_rate=1e-3)
  np.testing.assert_allclose(same["encoder"], -1e-3, rtol=1e-3)
  np.testing.assert_allclose(same["decoder"], -1e-3, rtol=1e-3)
  split = first_step(g_learning_rate=1e-3, decoder_learning_rate=1e-2)
  np.testing.assert_allclose(split["encoder"], -1e-3, rtol=1e-3)
  np.testing.assert_allclose(split["decoder"], -1e-2, rtol=1e-3)


def test_encoder_moving_average_follows_the_encoder():
  config = tiny_config(ema_decay=0.5)
  setup = train.make_setup(config, SHAPE)
  state = train.init_state(setup, SHAPE, seed=0)
  _, g_fn = train.compile_steps(setup, 1)
  # At step 0 the warm-up's decay (1/10) is below the configured 0.5; later the 0.5.
  for step, decay in ((0, 0.1), (20, 0.5)):
    state = state.replace(step=jnp.asarray(step, state.step.dtype))
    start = jax.tree.map(np.asarray, state.ema_encoder)
    state, _ = g_fn(state, batch_for(0))
    new = state.g_params["encoder"]
    for e, a, b in zip(
      jax.tree.leaves(state.ema_encoder), jax.tree.leaves(start), jax.tree.leaves(new), strict=True
    ):
      np.testing.assert_allclose(
        np.asarray(e), decay * a + (1 - decay) * np.asarray(b), rtol=1e-5, atol=1e-7
      )


def test_moving_average_warms_up_then_keeps_its_decay():
  decays = [float(train.ema_decay_at(0.999, s)) for s in (0, 90, 1200, 100_000)]
  assert decays[0] == pytest.approx(0.1) and decays[1] == pytest.approx(0.91)
  assert decays[2] < 0.999 and decays[3] == pytest.approx(0.999)
  # What is left of the initial weights after the CPU preset's 1,200 updates.
  left = np.prod([float(train.ema_decay_at(0.999, s)) for s in range(1200)])
  assert left < 1e-6


def test_a_seed_reproduces_a_run_and_a_resumed_run_equals_a_straight_one(genre_tree, tmp_path):
  """Through the real input pipeline: the data order is part of what resumes."""
  from test_build import make_config

  from data_prep import builder
  from song2vec import experiment, input_pipeline

  out = str(tmp_path / "ds")
  builder.build(make_config(genre_tree, out))
  shape = input_pipeline.load_info(out).shape
  config = tiny_config(num_steps=8, batch_size=4, shuffle_buffer=16)

  def run(name, steps):
    config.train.num_steps = steps
    batches = experiment.make_batch_fn(config, out)
    return train.train(config, str(tmp_path / name), shape, batches)

  straight = run("a", 8)
  again = run("b", 8)  # Same seed, new folder.
  run("c", 4)
  resumed = run("c", 8)  # Restores step 4 and reads batches 4..7.
  for a, b, c in zip(*(jax.tree.leaves(s) for s in (straight, again, resumed)), strict=True):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-5, atol=1e-6)
  assert _history(tmp_path / "c") == _history(tmp_path / "a")  # Records past step 4 redone once.
  assert [r["step"] for r in _history(tmp_path / "a")] == [2, 4, 6, 8]
  for name in ("loss_curves.png", "tensorboard"):
    assert os.path.exists(tmp_path / "a" / name)


def test_contrastive_term_adds_its_weighted_nt_xent_and_needs_a_pooled_readout():
  g = {}
  for name, weight in (("off", 0.0), ("on", 3.0)):
    config = tiny_config()
    config.model.encoder_readout = "pool"
    config.loss.contrastive_weight = weight
    setup = train.make_setup(config, SHAPE)
    _, g[name] = train.g_step(setup, train.init_state(setup, SHAPE, seed=0), batch_for(1))
  assert "contrastive" not in g["off"] and tiny_config().loss.contrastive_weight == 0
  assert np.isfinite(g["on"]["contrastive"]) and g["on"]["contrastive"] > 0
  np.testing.assert_allclose(
    g["on"]["g_loss"], g["off"]["g_loss"] + 3.0 * g["on"]["contrastive"], rtol=1e-5
  )
  config = tiny_config()  # The flattened readout cannot code a shorter crop.
  config.loss.contrastive_weight = 1.0
  setup = train.make_setup(config, SHAPE)
  with pytest.raises(ValueError, match="encoder_readout"):
    train.g_step(setup, train.init_state(setup, SHAPE, seed=0), batch_for(1))


def test_contrastive_views_each_draw_their_own_gain_and_filter():
  """Whole-segment crops: without the chain the two views are one, with it they differ."""
  got = {}
  for policy in ("", "color,eq"):
    config = tiny_config()
    config.model.encoder_readout = "pool"
    config.loss.update(
      {"contrastive_weight": 1.0, "contrastive_crop": 1.0, "contrastive_augment": policy}
    )
    setup = train.make_setup(config, SHAPE)
    state = train.init_state(setup, SHAPE, seed=0)
    got[policy] = train.g_step(setup, state, batch_for(1))[1]["contrastive"]
    if not policy:
      codes = setup.encoder.apply(state.g_params["encoder"], batch_for(1)["spectrogram"])
      np.testing.assert_allclose(
        got[policy], losses.nt_xent(codes, codes, config.loss.contrastive_temperature), rtol=1e-5
      )
  assert got["color,eq"] > got[""] + 1e-3  # The positives no longer match exactly.
  config.loss.contrastive_augment = "color,reverb"
  setup = train.make_setup(config, SHAPE)
  with pytest.raises(ValueError, match="reverb"):
    train.g_step(setup, train.init_state(setup, SHAPE, seed=0), batch_for(1))


def test_variant_dims_compare_the_codes_last_dims_across_a_shared_draw():
  """LooC: the first dims see each view's own filter, the last dims one shared filter."""
  config = tiny_config()
  config.model.encoder_readout = "pool"
  config.loss.update(
    {
      "contrastive_weight": 1.0,
      "contrastive_crop": 1.0,  # Whole segments: the views differ only by their filters.
      "contrastive_augment": "eq",
      "augment_eq_std": 2.0,
      "contrastive_variant_dims": 2,
    }
  )
  setup = train.make_setup(config, SHAPE)
  params = train.init_state(setup, SHAPE, seed=0).g_params
  x, index, key = batch_for(1)["spectrogram"], jnp.arange(BATCH), jax.random.PRNGKey(3)
  got = train._contrastive(setup, params, x, key, index, None)
  root = jax.random.fold_in(key, train.CONTRASTIVE_STREAM)
  own = [
    setup.encoder.apply(
      params["encoder"],
      train._augmented(config.loss, x, ("eq",), jax.random.fold_in(root, 2 + view), index),
    )
    for view in (0, 1)
  ]
  split = setup.encoder.z_dim - 2
  t = config.loss.contrastive_temperature
  want_invariant = losses.nt_xent(own[0][:, :split], own[1][:, :split], t)
  want_variant = losses.nt_xent(own[0][:, split:], own[0][:, split:], t)  # One draw: one view.
  np.testing.assert_allclose(got["contrastive_invariant"], want_invariant, rtol=1e-5)
  np.testing.assert_allclose(got["contrastive_variant"], want_variant, rtol=1e-5)
  np.testing.assert_allclose(got["contrastive"], 0.5 * (want_invariant + want_variant), rtol=1e-5)
  metrics = train.g_step(setup, train.init_state(setup, SHAPE, seed=0), batch_for(1))[1]
  assert {"contrastive_invariant", "contrastive_variant"} <= set(metrics)
  for bad in ({"contrastive_augment": ""}, {"contrastive_variant_dims": setup.encoder.z_dim}):
    config.loss.update({"contrastive_augment": "eq", "contrastive_variant_dims": 2, **bad})
    setup = train.make_setup(config, SHAPE)
    with pytest.raises(ValueError, match="contrastive_variant_dims"):
      train.g_step(setup, train.init_state(setup, SHAPE, seed=0), batch_for(1))


def _song_term_config():
  """A tiny config whose contrastive term pairs rows 2i and 2i + 1 on whole segments."""
  config = tiny_config()
  config.model.encoder_readout = "pool"
  config.loss.update(
    {"contrastive_weight": 1.0, "contrastive_crop": 1.0, "contrastive_positives": "song"}
  )
  return config


def test_song_positives_pair_rows_two_by_two():
  """Whole-segment crops: the song term is NT-Xent of rows 2i against rows 2i + 1."""
  config = _song_term_config()
  setup = train.make_setup(config, SHAPE)
  state = train.init_state(setup, SHAPE, seed=0)
  got = train.g_step(setup, state, batch_for(1))[1]["contrastive"]
  codes = setup.encoder.apply(state.g_params["encoder"], batch_for(1)["spectrogram"])
  want = losses.nt_xent(codes[0::2], codes[1::2], config.loss.contrastive_temperature)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  config.loss.contrastive_positives = "album"
  setup = train.make_setup(config, SHAPE)
  with pytest.raises(ValueError, match="contrastive_positives"):
    train.g_step(setup, train.init_state(setup, SHAPE, seed=0), batch_for(1))


def test_projector_is_what_the_contrastive_term_compares_and_leaves_the_rest_alone():
  """SimCLR's head: the term is NT-Xent of g(z); E, G_x and D start as without it."""
  config = _song_term_config()
  plain = train.make_setup(config, SHAPE)
  plain_state = train.init_state(plain, SHAPE, seed=0)
  config.model.projector_features = (16, 4)
  config.train.decoder_learning_rate = 1e-3  # The multi-rate optimizer takes the head too.
  setup = train.make_setup(config, SHAPE)
  state = train.init_state(setup, SHAPE, seed=0)
  assert set(state.g_params) == {"encoder", "decoder", "projector"}
  for name in ("encoder", "decoder"):
    jax.tree.map(np.testing.assert_array_equal, state.g_params[name], plain_state.g_params[name])
  jax.tree.map(np.testing.assert_array_equal, state.d_params, plain_state.d_params)
  x = batch_for(1)["spectrogram"]
  projected = setup.projector.apply(
    state.g_params["projector"], setup.encoder.apply(state.g_params["encoder"], x)
  )
  assert projected.shape == (BATCH, 4)
  new_state, metrics = train.g_step(setup, state, batch_for(1))
  want = losses.nt_xent(projected[0::2], projected[1::2], config.loss.contrastive_temperature)
  np.testing.assert_allclose(metrics["contrastive"], want, rtol=1e-5)
  moved = jax.tree.map(
    lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
    new_state.g_params["projector"],
    state.g_params["projector"],
  )
  assert all(jax.tree.leaves(moved)), "every projector weight learns"


def test_adversarial_weight_scales_only_the_games_part_of_the_e_g_loss():
  g, d = {}, {}
  for weight in (1.0, 0.0, 2.0):
    config = tiny_config()
    config.loss.update({"adversarial_weight": weight, "cycle_x_weight": 1.0})
    setup = train.make_setup(config, SHAPE)
    state = train.init_state(setup, SHAPE, seed=0)
    _, g[weight] = train.g_step(setup, state, batch_for(1))
    _, d[weight] = train.d_step(setup, state, batch_for(0))
  game = g[1.0]["g_loss"] - g[1.0]["cycle_x"]
  assert game > 0
  np.testing.assert_allclose(g[0.0]["g_loss"], g[1.0]["cycle_x"], rtol=1e-5)
  np.testing.assert_allclose(g[2.0]["g_loss"], 2 * game + g[1.0]["cycle_x"], rtol=1e-5)
  np.testing.assert_allclose(d[0.0]["d_loss"], d[1.0]["d_loss"], rtol=1e-6)  # D's own game stays.
