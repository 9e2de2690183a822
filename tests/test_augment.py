"""DiffAugment on D's inputs and the encoder's consistency and contrastive views."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from song2vec import augment

BINS, FRAMES = 8, 16


def keys(n: int, seed: int = 0) -> jax.Array:
  return jax.random.split(jax.random.key(seed), n)


def test_policy_names_are_checked_and_empty_means_none():
  assert augment.parse_policy("") == ()
  assert augment.parse_policy(" color, cutout ") == ("color", "cutout")
  with pytest.raises(ValueError, match="'flip'"):
    augment.parse_policy("color,flip")
  x = jnp.ones((2, BINS, FRAMES))
  assert augment.augment(x, keys(2), ()) is x


def test_translation_moves_a_note_by_at_most_its_ratio_and_fills_with_zeros():
  x = jnp.zeros((64, BINS, FRAMES)).at[:, 4, 8].set(1.0)
  out = np.asarray(augment.augment(x, keys(64), ("translation",), translation_ratio=0.125))
  moved = set()
  for o in out:
    (where,) = np.argwhere(o)  # One note, still whole, nothing else but zeros.
    assert o.sum() == 1.0
    moved.add((int(where[0]) - 4, int(where[1]) - 8))
  most_bins, most_frames = int(BINS * 0.125 + 0.5), int(FRAMES * 0.125 + 0.5)
  assert all(abs(b) <= most_bins and abs(f) <= most_frames for b, f in moved)
  assert len(moved) > 5  # Each example draws its own shift.
  # A constant segment shifted: the vacated rows and columns are zero.
  ones = augment.augment(jnp.ones((64, BINS, FRAMES)), keys(64, 1), ("translation",))
  assert set(np.unique(np.asarray(ones))) <= {0.0, 1.0}
  assert (np.asarray(ones) == 0).any()


def test_cutout_zeroes_one_rectangle_of_half_each_axis_at_most():
  out = np.asarray(augment.augment(jnp.ones((64, BINS, FRAMES)), keys(64), ("cutout",)))
  full = (BINS // 2) * (FRAMES // 2)
  counts = []
  for o in out:
    rows, cols = np.nonzero(o == 0)
    counts.append(len(rows))
    # The zeros fill their bounding box: one rectangle.
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert len(rows) == box <= full
  assert full in counts and min(counts) < full  # Inside, and cut at an edge.


def test_color_shifts_the_level_and_scales_around_the_mean():
  x = jax.random.normal(jax.random.key(3), (64, BINS, FRAMES))
  out = augment.augment(x, keys(64), ("color",))
  shift = jnp.mean(out, axis=(1, 2)) - jnp.mean(x, axis=(1, 2))
  scale = jnp.std(out, axis=(1, 2)) / jnp.std(x, axis=(1, 2))
  assert float(jnp.max(jnp.abs(shift))) <= 0.5 + 1e-5
  assert 0.5 - 1e-5 <= float(jnp.min(scale)) and float(jnp.max(scale)) <= 1.5 + 1e-5
  # Affine per segment: the correlation with the input is untouched.
  a = (x - x.mean((1, 2), keepdims=True)).reshape(64, -1)
  b = (out - out.mean((1, 2), keepdims=True)).reshape(64, -1)
  corr = jnp.sum(a * b, 1) / jnp.linalg.norm(a, axis=1) / jnp.linalg.norm(b, axis=1)
  np.testing.assert_allclose(corr, 1.0, atol=1e-5)


def test_eq_adds_one_smooth_curve_over_the_bins_to_every_frame():
  x = jax.random.normal(jax.random.key(5), (64, BINS, FRAMES))
  out = augment.augment(x, keys(64), ("eq",), eq_std=1.0, eq_terms=3)
  curve = np.asarray(out - x)
  np.testing.assert_allclose(curve, curve[:, :, :1].repeat(FRAMES, 2), atol=1e-5)
  # Each segment's curve lies in the span of the first 3 cosines over the bins ...
  centres = (np.arange(BINS) + 0.5) / BINS
  basis = np.cos(np.pi * np.arange(1, 4)[:, None] * centres).T  # [bins, 3]
  fit = basis @ np.linalg.lstsq(basis, curve[:, :, 0].T, rcond=None)[0]
  np.testing.assert_allclose(fit.T, curve[:, :, 0], atol=1e-4)
  # ... with amplitudes of about eq_std, and none at std 0.
  assert 0.5 < float(np.std(curve[:, :, 0])) < 1.5
  flat = augment.augment(x, keys(64), ("eq",), eq_std=0.0)
  np.testing.assert_array_equal(np.asarray(flat), np.asarray(x))


def test_every_policy_is_differentiable_and_drawn_per_example():
  x = jax.random.normal(jax.random.key(4), (4, BINS, FRAMES))
  policy = augment.POLICIES
  grad = jax.grad(lambda x: jnp.sum(augment.augment(x, keys(4), policy)))(x)
  assert np.isfinite(np.asarray(grad)).all() and float(jnp.sum(jnp.abs(grad))) > 0
  # The same segment under the same key is augmented the same; other keys differ.
  same = jnp.broadcast_to(x[0], x.shape)
  out = np.asarray(augment.augment(same, jnp.stack([keys(1)[0]] * 2 + list(keys(2, 9))), policy))
  np.testing.assert_array_equal(out[0], out[1])
  assert not np.allclose(out[1], out[2])


def test_crops_are_whole_windows_at_each_examples_own_start():
  x = jnp.broadcast_to(jnp.arange(FRAMES, dtype=jnp.float32), (64, BINS, FRAMES))
  out = np.asarray(augment.crops(x, keys(64), 5))
  assert out.shape == (64, BINS, 5)
  starts = out[:, 0, 0]
  # Consecutive frames from a start where five fit, the same window in every bin.
  want = starts[:, None, None] + np.arange(5)[None, None, :]
  np.testing.assert_array_equal(out, np.broadcast_to(want, out.shape))
  assert starts.min() >= 0 and starts.max() <= FRAMES - 5
  assert len(set(starts.tolist())) > 5
  with pytest.raises(ValueError, match="17 frames"):
    augment.crops(x, keys(64), 17)
