r"""The field's remedies for a collapsed ALI, one at a time and together, on validation.

    python launch.py --sweep=experiments/remedies.py                    # embedded corpus
    python launch.py --sweep=experiments/remedies.py --arg=game_music \
        --root=runs/remedies-game_music                                 # real recordings
    python launch.py --sweep=experiments/remedies.py --arg=game_music_large \
        --root=runs/remedies-game_music_large                           # more of them
    python launch.py --sweep=experiments/remedies.py --index=3          # one point

The game-music set is built first by `python -m data_prep.game_music
--out=data/game_music` (Debian's game soundtracks, label = soundtrack; the
larger one with `--larger --out=data/game_music_large`). Every
point runs the CPU preset with each seed in SEEDS and is scored on the
validation split only (the sweep runner enforces it): this is where the
recipe of experiments/song2vec.py was chosen.

Points: the report's recipe; each remedy added to it alone; then the
combinations that healthy diagnostics suggested (see docs/remedies_cpu.md).
The whole sweep is 42 points x 3 seeds, about 9 minutes a run on 2 CPU cores
(some 19 hours a set): docs/remedies_cpu.md says which points have run.
"""

import ml_collections

from experiments import ali_lsgan

SEEDS = (0, 1, 2)
ARGS = ("cpu", "game_music", "game_music_large")


def get_config(arg: str = "cpu") -> ml_collections.ConfigDict:
  if arg not in ARGS:
    raise ValueError(f"unknown arg {arg!r}; choose one of {ARGS}")
  config = ali_lsgan.get_config(arg)
  config.eval.splits = ("validation",)
  # The report's recipe as it stood when these points ran (docs/remedies_cpu.md):
  # E+G at DCGAN's 2e-4. ali_lsgan.py now uses the slow_eg remedy's rate.
  config.train.g_learning_rate = 2e-4
  config.train.num_steps = 1500  # ali_lsgan.py's CPU length then; it now trains 500.
  return config


# Each remedy as overrides of the report's recipe, with its source.
REMEDIES = {
  "pool_readout": {"model.encoder_readout": "pool"},  # Time-pooled stats (as MFCC stats).
  # Every layer's time-pooled stats (Lee & Nam 2017's multi-level aggregation).
  "multilevel_readout": {"model.encoder_readout": "multilevel"},
  "g1": {"train.g_steps_per_d_step": 1},  # ALI paper: one D update per E+G update.
  "unary": {"model.d_unary_scores": True, "loss.unary_weight": 1.0},  # BigBiGAN.
  "ali_d": {"model.d_arch": "ali"},  # Dumoulin et al.'s discriminator shape.
  "spectral_norm": {"model.d_spectral_norm": True},  # Miyato et al.
  "cycles": {"loss.cycle_x_weight": 1.0, "loss.cycle_z_weight": 1.0},  # ALICE, L1.
  "cycles10": {"loss.cycle_x_weight": 10.0, "loss.cycle_z_weight": 10.0},  # Ours: ALICE x10.
  "ema": {"train.ema_decay": 0.999},  # BigGAN's generator EMA, here the encoder's.
  "slow_eg": {"train.g_learning_rate": 2e-5},  # TTUR (Heusel et al. 2017): E+G 10x slower.
  "stochastic": {"model.stochastic_encoder": True},  # ALI paper: reparameterised G_z.
  "prior_mmd": {"loss.prior_mmd_weight": 10.0},  # WAE-MMD (Tolstikhin et al. 2018), their lambda.
  "minibatch_std": {"model.d_minibatch_std_group": 4},  # ProGAN (Karras et al. 2018).
  # Dieleman & Schrauwen 2014: E's convolutions 1-D over time, the bins as channels.
  "time_conv": {"model.encoder_conv": "time"},
  # Ours: the pooled readout without the mean over time, the static spectrum
  # that sets one piece apart from the next (docs/remedies_cpu.md, stop 22).
  "pool_std": {"model.encoder_readout": "pool", "model.pool_stats": ("std",)},
  # Ours: the pooled readout also takes each input bin's mean and std over time.
  "pool_input": {"model.encoder_readout": "pool", "model.pool_input": True},
  # Ours: the game is played on segments less their overall level, which the
  # embedded corpus draws at random (docs/remedies_cpu.md, stop 23) ...
  "center_level": {"model.input_centering": "level"},
  # ... or less each bin's mean over time (cepstral mean normalisation).
  "center_bins": {"model.input_centering": "bins"},
  # Ours: cycles10 with the x-cycle on each bin's mean and std over time, not
  # on the spectrogram (a feature-space reconstruction, as Larsen et al. 2016).
  "cycles10_stats": {
    "loss.cycle_x_weight": 10.0,
    "loss.cycle_z_weight": 10.0,
    "loss.cycle_x_on": "stats",
  },
  # DiffAugment (Zhao et al. 2020), the paper's full policy on D's x inputs:
  # D cannot win by memorising a small training set.
  "diffaugment": {"loss.d_augment": "color,translation,cutout"},
  # Projection discriminator (Miyato & Koyama 2018): <W phi(x), psi(z)> in D's
  # joint score, so that G_x's gradient depends on its code.
  "projection": {"model.d_projection": True},
  # Ours (music-tagging CNNs keep time resolution, then pool): E halves time at
  # its first convolution only, so the pooled readout's statistics are over 32
  # frames, not 4 (docs/remedies_cpu.md, stop 28).
  "keep_frames": {"model.encoder_time_strides": (2, 1, 1, 1)},
  # The papers' larger minibatches (ALI 100, DCGAN 128, BigBiGAN 2048; BigGAN,
  # Brock et al. 2019, Table 1): 64, not the CPU preset's 32 (stop 29).
  "batch64": {"train.batch_size": 64},
  # Ours, after CLMR's gain and filter transforms (Spijkervet & Burgoyne 2021):
  # E codes a segment and a copy with another level, contrast and equaliser
  # alike. Weight 100: the term's size at initialisation (0.05-0.07) times 100
  # is about each cycle term's times 10 (stop 30).
  "consistency": {"loss.encoder_consistency_weight": 100.0},
  # CLMR (Spijkervet & Burgoyne 2021) / COLA (Saeed et al. 2021): NT-Xent between
  # two random crops of each segment; weight 10 of {1, 10} (stop 32).
  "contrastive10": {"loss.contrastive_weight": 10.0},
  # CLMR's gain and filter on each contrastive crop (stop 33; EQ 1.0 of {0.5, 1.0}).
  "contrastive_views": {"loss.contrastive_augment": "color,eq", "loss.augment_eq_std": 1.0},
  # NT-Xent's temperature above CLMR's 0.5 (stop 33).
  "temperature1": {"loss.contrastive_temperature": 1.0},
  # CLMR's and COLA's positives: crops of two segments of one song, not of one (stop 34).
  "song_positives": {"loss.contrastive_positives": "song"},
  # SimCLR's best temperature at large batches (Chen et al. 2020); a lower one
  # asks more of the codes' uniformity (Wang & Isola 2020) (stop 35).
  "temperature0.1": {"loss.contrastive_temperature": 0.1},
  # Lower still, where the embedded corpus's codes might clear the collapse
  # flag that 0.1 left raised (stop 36).
  "temperature0.05": {"loss.contrastive_temperature": 0.05},
  # SimCLR (Chen et al. 2020): the term compares g(z), a head with one hidden
  # layer as wide as z and SimCLR's 128-d output, so z need not fold onto the
  # few directions the term rewards (stop 35).
  "projector": {"model.projector_features": (64, 128)},
  # LooC (Xiao et al. 2021): the filter on the views, but only the code's first 32
  # dims must ignore it; its last 32 compare views through one shared draw (stop 40).
  "looc": {
    "loss.contrastive_augment": "eq",
    "loss.augment_eq_std": 1.0,
    "loss.contrastive_variant_dims": 32,
  },
}

# Remedies that act through the contrastive term (they set one of its settings):
# they join it, not the report's recipe. Derived, so a new one cannot be left out.
CONTRASTIVE_SETTINGS = ("loss.contrastive_", "model.projector_")
NEED_CONTRASTIVE = tuple(
  name
  for name, overrides in REMEDIES.items()
  if any(key.startswith(CONTRASTIVE_SETTINGS) for key in overrides)
)


# The point experiments/song2vec.py adopts (stop 35), the one it adopted at
# stops 32-34, and the one at stops 16-31.
CHOSEN_STOP32 = ("g1", "unary", "cycles10", "multilevel_readout", "contrastive10")
CHOSEN = (*CHOSEN_STOP32, "song_positives")
CHOSEN_BEFORE = ("g1", "unary", "cycles10", "pool_readout")


def combined(*names: str) -> dict:
  out = {}
  for name in names:
    out.update(REMEDIES[name])
  return out


def get_sweep(arg: str = "cpu") -> list[dict]:
  del arg
  points = [("report", {})]
  # The contrastive term's crops need a pooled readout; the report's flattened
  # one cannot code them, so that remedy joins the report's recipe with one.
  # The remedies that shape the term (its views, its temperature) do nothing
  # without it, so they appear only beside the chosen point, which has it.
  points += [
    (f"+{name}", overrides) for name, overrides in REMEDIES.items() if name not in NEED_CONTRASTIVE
  ]
  points += [("+multilevel_readout+contrastive10", combined("multilevel_readout", "contrastive10"))]
  points += [
    ("g1+unary", combined("g1", "unary")),
    ("g1+unary+cycles", combined("g1", "unary", "cycles")),
    ("g1+unary+cycles+pool", combined("g1", "unary", "cycles", "pool_readout")),
    ("g1+unary+cycles10+pool", combined(*CHOSEN_BEFORE)),  # Chosen at stops 16-31.
    ("g1+unary+cycles10+pool+diffaugment", combined(*CHOSEN_BEFORE, "diffaugment")),
    ("g1+unary+cycles10+pool+keep_frames", combined(*CHOSEN_BEFORE, "keep_frames")),
    ("g1+unary+cycles10+pool+batch64", combined(*CHOSEN_BEFORE, "batch64")),
    # Stop 29: with the frames kept, only the std over their 32 frames reaches z.
    (
      "g1+unary+cycles10+pool+keep_frames+pool_std",
      combined(*CHOSEN_BEFORE, "keep_frames", "pool_std"),
    ),
    # Stop 30: the two remedies that each lifted the embedded corpus (stops 27, 28).
    (
      "g1+unary+cycles10+pool+keep_frames+projection",
      combined(*CHOSEN_BEFORE, "keep_frames", "projection"),
    ),
    ("g1+unary+cycles10+pool+consistency", combined(*CHOSEN_BEFORE, "consistency")),
    # Stop 31: the invariance term with WAE-MMD holding the codes' spread, after VICReg.
    (
      "g1+unary+cycles10+pool+consistency+prior_mmd",
      combined(*CHOSEN_BEFORE, "consistency", "prior_mmd"),
    ),
    # Stop 32: the multilevel readout, alone and with the contrastive term.
    ("g1+unary+cycles10+multilevel", combined(*CHOSEN_STOP32[:-1])),
    ("g1+unary+cycles10+multilevel+contrastive10", combined(*CHOSEN_STOP32)),
    # Stop 33: screened on seed 0 against stop 32's point; none adopted.
    (
      "g1+unary+cycles10+multilevel+contrastive10+contrastive_views",
      combined(*CHOSEN_STOP32, "contrastive_views"),
    ),
    (
      "g1+unary+cycles10+multilevel+contrastive10+temperature1",
      combined(*CHOSEN_STOP32, "temperature1"),
    ),
    (
      "g1+unary+cycles10+multilevel+contrastive10+keep_frames+std",  # Multilevel, std only.
      {**combined(*CHOSEN_STOP32, "keep_frames"), "model.pool_stats": ("std",)},
    ),
    # Stop 34: screened against stop 32's point; chosen at stop 35.
    ("g1+unary+cycles10+multilevel+contrastive10+song_positives", combined(*CHOSEN)),
    # Stop 35: screened on seed 0 against the chosen point.
    (
      "g1+unary+cycles10+multilevel+contrastive10+song_positives+projector",
      combined(*CHOSEN, "projector"),
    ),
    (
      "g1+unary+cycles10+multilevel+contrastive10+song_positives+temperature0.1",
      combined(*CHOSEN, "temperature0.1"),
    ),
    (
      "g1+unary+cycles10+multilevel+contrastive10+song_positives+temperature0.05",
      combined(*CHOSEN, "temperature0.05"),
    ),
    # Stops 37-38: seed 0, then seeds 1-3 by a song-level rule; not adopted (the
    # embedded corpus gains, both real sets lose).
    (
      "g1+unary+cycles10+multilevel+contrastive10+song_positives+contrastive_views",
      combined(*CHOSEN, "contrastive_views"),
    ),
    # Stop 39: seed 0, then seeds 1-3 paired with song2vec.py's own seeds by a second
    # rule; not adopted (the embedded segment probe falls on every seed).
    (
      "g1+unary+cycles10+multilevel+contrastive10+song_positives+prior_mmd",
      combined(*CHOSEN, "prior_mmd"),
    ),
    # Stop 40: seed 0; stopped at its first rule (the larger dev set held, the
    # embedded corpus's song-level gain stayed inside the spreads).
    ("g1+unary+cycles10+multilevel+contrastive10+song_positives+looc", combined(*CHOSEN, "looc")),
  ]
  return [
    {"name": f"{name}-seed{seed}", "overrides": {**overrides, "seed": seed}}
    for name, overrides in points
    for seed in SEEDS
  ]
