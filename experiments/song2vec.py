r"""song2vec's recipe: the report's ALI with the remedies chosen on validation.

    python launch.py --config=experiments/song2vec.py            # CPU preset
    python launch.py --config=experiments/song2vec.py:paper      # the report's scale
    python launch.py --config=experiments/song2vec.py:game_music # CPU preset, real-audio dev set
    python launch.py --config=experiments/song2vec.py:game_music_large  # its larger version

The report's objective and stabilisers stay (least squares, swapped labels,
positive labels from U[0.7, 0.9], instance noise, L2 on D's kernels, 64-d z);
what changes was chosen on the validation splits of the embedded corpus and
of the real-audio dev set (data_prep.game_music), never on a test split. Each
change names its source; the screening runs behind it are in
docs/remedies_cpu.md.
"""

import ml_collections

from experiments import ali_lsgan


def get_config(arg: str = "cpu") -> ml_collections.ConfigDict:
  config = ali_lsgan.get_config(arg)
  config.name = config.name.replace(
    "ALI least squares", "song2vec: ALI + unary + cycles + multilevel + song contrastive"
  )
  # The ALI paper: one D update per E+G update. With the report's 4, D stayed
  # dead (held-out gap ~0) on both dev sets.
  config.train.g_steps_per_d_step = 1
  # DCGAN's Adam rate for E+G as for D: the rate this recipe was chosen with
  # (ali_lsgan.py's slower E+G was screened with the 4:1 schedule only).
  config.train.g_learning_rate = 2e-4
  # BigBiGAN (Donahue & Simonyan, 2019): unary scores s_x(x), s_z(z) beside s_xz.
  config.model.d_unary_scores = True
  config.loss.unary_weight = 1.0
  # ALICE (Li et al., 2017): |x - G_x(G_z(x))| and |z - G_z(G_x(z))| in the E+G
  # loss. Ours: weight 10, not ALICE's 1; at 1 the codes still collapsed
  # (effective dimension 1.5-2.5 of 64) and G_x(G_z(x)) was no better than the
  # mean on the embedded corpus.
  config.loss.cycle_x_weight = 10.0
  config.loss.cycle_z_weight = 10.0
  # Lee & Nam 2017's multi-level aggregation: each layer's mean and std over
  # time, concatenated, before the map to z (stop 18 of docs/remedies_cpu.md;
  # stops 16-31 pooled the last layer only). A segment's code does not depend
  # on where in the song it starts, and the encoder codes a crop of any length.
  config.model.encoder_readout = "multilevel"
  # CLMR (Spijkervet & Burgoyne 2021) / COLA (Saeed et al. 2021): NT-Xent
  # between the codes of two random half-length crops of each segment, the
  # batch's other segments as negatives. Weight 10 of {1, 10}, chosen on the
  # larger dev set's validation split (stop 32).
  config.loss.contrastive_weight = 10.0
  # CLMR / COLA again: the term's two crops come from two segments of one song,
  # not from one segment (stop 34; adopted at stop 35 on seeds 3-5 of both
  # real-audio dev sets' validation splits, by a rule written before they ran;
  # level on the embedded corpus).
  config.loss.contrastive_positives = "song"
  # Ours, on validation (docs/remedies_cpu.md, "Training length"): 1500 steps,
  # not the report recipe's 500. At 500 it clusters better on the embedded
  # corpus and worse on the real-audio dev set, and its codes are still
  # spreading out (effective dimension 3 at 500 steps, 11 at 1500).
  if arg != "paper":
    config.train.num_steps = 1500
  return config
