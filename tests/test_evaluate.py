"""Clustering scores, retrieval, embeddings and the report of a tiny run."""

from __future__ import annotations

import csv
import dataclasses
import os

import jax
import numpy as np
import pytest
from sklearn import metrics as skm
from test_build import make_config
from test_train import tiny_config

from conftest import TINY
from data_prep import builder
from experiments import ali_lsgan
from song2vec import embed, evaluate, input_pipeline, report, train


def test_scores_match_scikit_learn_on_known_partitions():
  labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
  clusters = np.array([1, 1, 0, 0, 0, 0, 2, 2, 2])
  s = evaluate.score(labels, clusters)
  assert s["v_measure"] == pytest.approx(skm.v_measure_score(labels, clusters))
  assert s["ami"] == pytest.approx(skm.adjusted_mutual_info_score(labels, clusters))
  assert s["nmi"] == pytest.approx(skm.normalized_mutual_info_score(labels, clusters))
  assert s["ari"] == pytest.approx(skm.adjusted_rand_score(labels, clusters))
  perfect = evaluate.score(labels, np.array([5, 5, 5, 3, 3, 3, 4, 4, 4]))  # Relabelled.
  assert all(v == pytest.approx(1.0) for v in perfect.values())


@pytest.mark.parametrize("algorithm", ["kmeans", "gmm"])
def test_separable_embedding_scores_one_and_random_scores_zero(algorithm):
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), 40)
  centres = 20 * rng.standard_normal((4, 8))
  separable = centres[labels] + rng.standard_normal((160, 8))
  options = ali_lsgan.get_config().eval.clustering
  s = evaluate.clustering_scores(separable, labels, algorithm, 3, options)
  assert s["v_measure"][0] > 0.95 and s["ami"][0] > 0.95
  assert abs(s["chance_ami"]) < 0.05
  noise = evaluate.clustering_scores(rng.standard_normal((160, 8)), labels, algorithm, 3, options)
  assert abs(noise["ami"][0]) < 0.05 and noise["v_measure"][0] < 0.1


def test_knn_precision_never_counts_the_querys_own_song():
  # Two songs per label, three segments each; a song's segments are identical.
  emb = np.repeat(np.array([[0.0], [0.1], [10.0], [10.1]]), 3, axis=0)
  labels = np.repeat(np.array([0, 0, 1, 1]), 3)
  songs = np.repeat(np.array(["a", "b", "c", "d"]), 3)
  # k=3: the 3 nearest other-song segments are the other song of the same label.
  assert evaluate.knn_precision(emb, labels, songs, k=3) == 1.0
  # Here each song's nearest other song has the other label: precision 0,
  # although each query's own (same-label) segments are nearer still.
  mixed = np.repeat(np.array([[0.0], [10.0], [0.1], [10.1]]), 3, axis=0)
  assert evaluate.knn_precision(mixed, labels, songs, k=3) == 0.0


def test_song_means_average_segments():
  emb = np.array([[1.0], [3.0], [10.0]], np.float32)
  means, labels, songs = embed.song_means(emb, np.array(["x", "x", "y"]), np.array([2, 2, 5]))
  assert list(songs) == ["x", "y"] and list(labels) == [2, 5]
  np.testing.assert_allclose(means[:, 0], [2.0, 10.0])


def test_report_renders_from_a_tiny_run(genre_tree, tmp_path, monkeypatch, capsys):
  # A CSV source with years, so the Figure 8 plot is drawn too.
  files = sorted(p for p in genre_tree.rglob("*.*"))
  rows = [f"{p},{p.parent.name},,,,{1990 + i}" for i, p in enumerate(files)]
  (tmp_path / "songs.csv").write_text(
    "path,genre,song_id,artist,album,year\n" + "\n".join(rows) + "\n"
  )
  out = tmp_path / "ds"
  builder.build(make_config(tmp_path / "songs.csv", out, source="csv"))
  config = tiny_config(num_steps=3, log_every=3)
  config.eval.tests = {"all_labels": (), "two": ("low", "high"), "absent": ("jazz", "low")}
  config.eval.seeds = 2
  config.eval.pca_components = 4
  config.data.out_dir = str(out)
  workdir = str(tmp_path / "run")
  from song2vec import input_pipeline

  info = input_pipeline.load_info(str(out))
  train.train(
    config,
    workdir,
    info.shape,
    lambda s: input_pipeline.train_iterator(str(out), 4, keys=("spectrogram",)),
  )
  rows = evaluate.evaluate(config, workdir, str(out))
  names = {r["embedding"] for r in rows}
  assert names == {
    "Raw",
    "PCA-4",
    "MFCC stats",
    "Spectral stats",
    "Spectral flux",
    "Untrained encoder",
    "ALI",
  }
  assert {r["test"] for r in rows} == {"all_labels", "two"}
  assert {r["level"] for r in rows} == {"segment", "song"}
  folder = os.path.join(workdir, "report")
  for name in (
    "report.md",
    "clustering.csv",
    "clustering_segment.md",
    "clustering_bars.png",
    "tsne_two.png",
    "pca_year.png",
  ):
    assert os.path.getsize(os.path.join(folder, name)) > 0
  text = open(os.path.join(folder, "report.md")).read()
  assert "**On this data, ALI" in text and "| ALI |" in text
  assert "## Training health" in text and "effective dimension" in text
  assert "## Where each embedding's variance lies" in text
  assert all(0.0 <= r["probe_accuracy"] <= 1.0 for r in rows)
  assert all(r["var_label"] + r["var_song"] + r["var_segment"] == pytest.approx(1) for r in rows)
  assert "test absent skipped: labels ['jazz'] are not in this dataset" in text
  # Re-running evaluation alone from the run folder.
  config_json = os.path.join(workdir, "config.json")
  with open(config_json, "w") as f:
    f.write(config.to_json_best_effort())
  assert evaluate.main([f"--workdir={workdir}"]) == 0
  # A kept checkpoint by its step, reported in its own folder; a step not kept is named.
  assert evaluate.main([f"--workdir={workdir}", "--step=3"]) == 0
  assert {r["checkpoint_step"] for r in report.read_scores(workdir, step=3)} == {"3"}
  assert os.path.exists(os.path.join(workdir, "report-step3", "report.md"))
  capsys.readouterr()
  assert evaluate.main([f"--workdir={workdir}", "--step=2"]) == 2
  assert "no checkpoint of step 2" in capsys.readouterr().err
  # The transfer case: this run's encoder on another dataset with its features.
  other = tmp_path / "other"
  builder.build(make_config(genre_tree, other))
  assert evaluate.main([f"--workdir={workdir}", f"--dataset={other}", "--split=test"]) == 0
  assert os.path.exists(report.scores_path(workdir, "test", on="other"))
  assert "**On this data, ALI" in open(os.path.join(workdir, "report-on-other", "report.md")).read()
  finer = tmp_path / "finer"
  builder.build(make_config(genre_tree, finer, features=dataclasses.replace(TINY, n_mels=8)))
  assert evaluate.main([f"--workdir={workdir}", f"--dataset={finer}"]) == 2
  # A run written before an evaluation setting existed is told how to re-evaluate.
  older = config.copy_and_resolve_references()
  del older.eval["probe"]
  with open(config_json, "w") as f:
    f.write(older.to_json_best_effort())
  capsys.readouterr()
  assert evaluate.main([f"--workdir={workdir}"]) == 2
  err = capsys.readouterr().err
  assert "lacks eval.probe" in err and f"--workdir={workdir}" in err
  assert evaluate.main([f"--workdir={tmp_path / 'nope'}"]) == 2  # Not a run folder.
  assert "not a launch.py run folder" in capsys.readouterr().err
  with open(config_json, "w") as f:
    f.write(config.to_json_best_effort())
  combined = report.aggregate([workdir, workdir])
  assert combined.startswith("2 runs, test split, segment level")
  assert "| ALI |" in combined and "± 0.000" in combined  # Same run twice: no spread.
  assert "Shares of the segments' variance" in combined
  # An evaluation that dies while drawing leaves no scores file, so a sweep
  # re-runs the point instead of taking it as finished.
  os.remove(report.scores_path(workdir))

  def broken(*args, **kwargs):
    raise RuntimeError("plotting failed")

  monkeypatch.setattr(report.plots, "tsne_pair", broken)
  with pytest.raises(RuntimeError, match="plotting failed"):
    evaluate.evaluate(config, workdir, str(out))
  assert not os.path.exists(report.scores_path(workdir))


def test_load_segments_subsamples_while_reading(genre_tree, tmp_path):
  out = tmp_path / "ds"
  meta = builder.build(make_config(genre_tree, out))
  everything = embed.load_segments(str(out), "train")
  assert len(everything.x) == meta["splits"]["train"]["examples"]
  some = embed.load_segments(str(out), "train", max_examples=10, seed=1)
  assert len(some.x) <= 10 and set(some.song_ids) <= set(everything.song_ids)
  again = embed.load_segments(str(out), "train", max_examples=10, seed=1)
  np.testing.assert_array_equal(some.x, again.x)


def test_standardize_uses_the_train_statistics():
  rng = np.random.default_rng(0)
  train = rng.normal(5.0, [1.0, 100.0, 0.0], size=(500, 3)).astype(np.float32)
  other = np.array([[5.0, 105.0, 5.0]], np.float32)
  tr, out = embed.standardize(train, other)
  np.testing.assert_allclose(tr[:, :2].mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(tr[:, :2].std(0), 1.0, atol=1e-4)
  np.testing.assert_allclose(
    out[0],
    [
      (5 - train[:, 0].mean()) / train[:, 0].std(),
      (105 - train[:, 1].mean()) / train[:, 1].std(),
      0.0,
    ],
    rtol=1e-4,
  )


def test_gmm_covariance_is_full_only_where_it_can_be_estimated():
  assert evaluate.gmm_covariance(n=960, k=8, dim=64, full_max_dim=256) == "full"  # 120 a cluster.
  assert evaluate.gmm_covariance(n=96, k=8, dim=64, full_max_dim=256) == "diag"  # 12 songs each.
  assert evaluate.gmm_covariance(n=10**5, k=8, dim=4096, full_max_dim=256) == "diag"  # Too costly.


def test_linear_probe_reads_a_linearly_coded_label():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 300)
  emb = rng.standard_normal((300, 5)).astype(np.float32)
  emb[:, 0] += 4.0 * labels  # The label along one axis.
  probe = ali_lsgan.get_config().eval.probe
  assert evaluate.linear_probe(emb[:200], labels[:200], emb[200:], labels[200:], probe) > 0.9
  noise = rng.standard_normal((300, 5)).astype(np.float32)
  assert evaluate.linear_probe(noise[:200], labels[:200], noise[200:], labels[200:], probe) < 0.6


def test_untrained_control_is_the_runs_own_initial_encoder():
  config = tiny_config()
  setup = train.make_setup(config, (16, 12))
  state = train.init_state(setup, (16, 12), seed=config.seed)
  control = embed.untrained_encoder_params(config.model, (16, 12), config.seed)
  for a, b in zip(
    jax.tree.leaves(state.g_params["encoder"]), jax.tree.leaves(control), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_encoding_in_batches_equals_one_call_and_handles_no_segments():
  config = tiny_config()
  params = embed.untrained_encoder_params(config.model, (16, 12), 0)
  apply = embed.encoder_apply(config.model, (16, 12))
  x = np.random.default_rng(0).standard_normal((11, 16, 12)).astype(np.float32)
  whole = np.asarray(apply(params, x))
  # Batches of 4: two full ones, then 3 segments padded to 4.
  np.testing.assert_allclose(embed.encode_in_batches(apply, params, x, 4), whole, atol=1e-5)
  assert embed.encode_in_batches(apply, params, x[:0], 4).shape == (0, config.model.z_dim)
  config.model.embedding = "bogus"
  with pytest.raises(ValueError, match="model.embedding"):
    embed.encoder_apply(config.model, (16, 12))


@pytest.mark.parametrize("centering, offset_shape", [("level", (4, 1, 1)), ("bins", (4, 16, 1))])
def test_centred_encoder_ignores_what_its_centering_removes(centering, offset_shape):
  config = tiny_config()
  params = embed.untrained_encoder_params(config.model, (16, 12), 0)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((4, 16, 12)).astype(np.float32)
  shifted = x + rng.normal(size=offset_shape).astype(np.float32)  # A level per segment (and bin).
  plain = embed.encoder_apply(config.model, (16, 12))
  assert not np.allclose(plain(params, x), plain(params, shifted), atol=1e-3)
  config.model.input_centering = centering
  centred = embed.encoder_apply(config.model, (16, 12))
  np.testing.assert_allclose(centred(params, x), centred(params, shifted), atol=1e-4)
  np.testing.assert_allclose(
    centred(params, x), plain(params, input_pipeline.center(x, centering)), atol=1e-5
  )
  config.model.input_centering = "bogus"
  with pytest.raises(ValueError, match="input_centering"):
    embed.encoder_apply(config.model, (16, 12))


def test_spectral_stats_are_each_bins_mean_and_std_over_frames():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 5, 8)).astype(np.float32)  # [n, bins, frames]
  x[1] = 2.0 + 0.5 * x[1]
  stats = embed.spectral_stats(x)
  assert stats.shape == (3, 10)
  np.testing.assert_allclose(stats[1, :5], x[1].mean(-1), rtol=1e-6)
  np.testing.assert_allclose(stats[1, 5:], x[1].std(-1), rtol=1e-6)
  # Where a segment starts does not matter: the frames are pooled.
  np.testing.assert_allclose(embed.spectral_stats(np.roll(x, 3, axis=-1)), stats, rtol=1e-5)


def test_spectral_flux_is_each_bins_mean_absolute_change_and_ignores_a_fixed_gain():
  x = np.zeros((2, 2, 5), np.float32)  # [n, bins, frames]
  x[0, 0] = [0, 1, 3, 3, 1]  # Changes 1, 2, 0, 2.
  flux = embed.spectral_flux(x)
  assert flux.shape == (2, 2)
  np.testing.assert_allclose(flux[0], [5 / 4, 0], rtol=1e-6)
  np.testing.assert_allclose(flux[1], 0)
  # A band louder by a fixed amount (a gain in the log domain) changes as often.
  np.testing.assert_allclose(embed.spectral_flux(x + np.float32(4.0)), flux, rtol=1e-6)
  # Unlike the spectral statistics, it reads the order of the frames.
  shuffled = x[..., [0, 2, 1, 3, 4]]
  np.testing.assert_allclose(embed.spectral_stats(shuffled), embed.spectral_stats(x), rtol=1e-6)
  assert not np.allclose(embed.spectral_flux(shuffled), flux)


def test_variance_shares_split_the_variance_by_label_song_and_segment():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 20)  # 3 labels x 4 songs x 5 segments.
  songs = np.repeat(np.arange(12), 5)
  label_part = 3 * rng.standard_normal((3, 8))[labels]
  song_part = rng.standard_normal((12, 8))[songs]
  segment_part = 0.5 * rng.standard_normal((60, 8))
  s = evaluate.variance_shares(label_part + song_part + segment_part, labels, songs)
  assert sum(s.values()) == pytest.approx(1.0)
  assert s["var_label"] > s["var_song"] > s["var_segment"] > 0
  # A song fingerprint: the same code for a song's segments, none shared by a label.
  fingerprint = evaluate.variance_shares(song_part - song_part.mean(0), labels, songs)
  assert fingerprint["var_segment"] == pytest.approx(0.0, abs=1e-9)
  assert fingerprint["var_song"] > 0.5
  # Labels alone: all the variance is between them.
  assert evaluate.variance_shares(label_part, labels, songs)["var_label"] == pytest.approx(1.0)


def _scores(workdir, values, step=None):
  """A clustering.csv whose ALI rows carry `values` in report.COMPARED's order (MFCC's: 9)."""
  path = report.scores_path(str(workdir), "validation", step=step)
  os.makedirs(os.path.dirname(path))
  rows = {}
  for embedding in ("ALI", "MFCC stats"):
    for (level, algorithm, score), value in zip(report.COMPARED, values, strict=True):
      row = rows.setdefault(
        (embedding, level, algorithm),
        {"test": "all_labels", "embedding": embedding, "level": level, "algorithm": algorithm},
      )
      row[score] = value if embedding == "ALI" else 9.0
  with open(path, "w", newline="") as f:
    fields = ["test", "embedding", "level", "algorithm", "ami_mean", "probe_accuracy"]
    writer = csv.DictWriter(f, fieldnames=fields)  # GMM rows leave the probe empty.
    writer.writeheader()
    writer.writerows(rows.values())


def test_compare_pairs_seeds_and_calls_a_change_only_beyond_the_spreads(tmp_path, capsys):
  # Reference seeds differ by 0.02 in segment k-means AMI; the candidate adds
  # 0.1 to it on every seed (beyond the spreads), 0.01 to the segment probe
  # (within them), and takes 0.1 from the song GMM AMI.
  ref = [[0.30, 0.3, 0.5, 0.1, 0.2, 0.5], [0.32, 0.3, 0.52, 0.1, 0.2, 0.5]]
  cand = [[0.40, 0.3, 0.51, 0.1, 0.1, 0.5], [0.42, 0.3, 0.53, 0.1, 0.1, 0.5]]
  for seed, values in enumerate(ref):
    _scores(tmp_path / f"ref{seed}", values, step=1500 if seed else None)
  for seed, values in enumerate(cand):
    _scores(tmp_path / f"cand{seed}", values)
  refs = [str(tmp_path / "ref0"), f"{tmp_path / 'ref1'}@1500"]  # A kept checkpoint's report.
  cands = [str(tmp_path / "cand0"), str(tmp_path / "cand1")]
  table = report.compare(cands, refs)
  lines = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table.splitlines()}
  assert lines["reference (2 runs)"][0] == "0.310 ± 0.010"  # MFCC's 9.0 never leaks in.
  assert lines["difference, by pair"][0] == "+0.100 ± 0.000 (2/2 up)"
  assert [v.strip(" |") for v in lines["verdict"]] == [
    "above", "level", "level", "level", "below", "level"
  ]  # fmt: skip
  assert evaluate.main(["--split=validation", "--compare", *cands, "--against", *refs]) == 0
  assert "difference, by pair" in capsys.readouterr().out
  unpaired = report.compare(cands[:1], refs)  # Unequal counts: no pairs to take.
  assert "difference, by pair" not in unpaired and "candidate (1 runs)" in unpaired
  assert (
    evaluate.main(["--split=validation", "--compare", str(tmp_path / "nope"), "--against", *refs])
    == 2
  )
  assert "clustering.csv" in capsys.readouterr().err
