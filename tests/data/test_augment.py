"""Augmentations: seeded, shape- and range-preserving, per example or per batch, exact where they can be."""

import numpy as np
import pytest

from paperjax.data import augment

IMG = np.random.default_rng(0).uniform(size=(8, 8, 1)).astype(np.float32)
RGB = np.random.default_rng(1).uniform(size=(4, 6, 6, 3)).astype(np.float32)
OPS = ["shift", "flip", "rotate", "noise", "cutout", "colour", "crop", "randaugment", "simclr", "flip_crop"]


@pytest.mark.parametrize("name", OPS)
def test_seeded_shape_and_range(name):
  fn = augment.named(name)
  for x in (IMG, RGB):
    a = fn(x, np.random.default_rng(5))
    b = fn(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)                     # same generator state → same image
    assert a.shape == x.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_batch_draws_per_example_parameters():
  batch = np.repeat(IMG[None], 16, axis=0)
  out = augment.shift(batch, np.random.default_rng(0), max_shift=2)
  assert len({o.tobytes() for o in out}) > 1                 # not one shift for the whole batch


def test_exact_ops():
  np.testing.assert_array_equal(augment.shift(IMG, np.random.default_rng(0), max_shift=0), IMG)
  np.testing.assert_array_equal(augment.rot90(augment.rot90(IMG, 2), 2), IMG)
  np.testing.assert_array_equal(augment.rot90(IMG, 1), np.rot90(IMG, 1, axes=(0, 1)))
  np.testing.assert_allclose(augment.rotate(IMG, np.random.default_rng(0), max_degrees=0.0), IMG, atol=1e-6)
  np.testing.assert_allclose(augment.apply_op(IMG, "Invert", 5, np.random.default_rng(0)), 1 - IMG)
  shifted = augment.affine(IMG, np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]]))   # read x+1: a left shift
  np.testing.assert_allclose(shifted[:, :-1], IMG[:, 1:], atol=1e-6)
  assert augment.center_crop_resize((RGB[0] * 255).astype(np.uint8), 12).shape == (12, 12, 3)


def test_two_views_differ_and_randaugment_changes_images():
  v1, v2 = augment.two_views(augment.named("simclr"))(IMG, np.random.default_rng(0))
  assert not np.array_equal(v1, v2)
  outs = [augment.randaugment(IMG, np.random.default_rng(s)) for s in range(8)]
  assert sum(not np.allclose(o, IMG) for o in outs) >= 4


def test_unknown_names_are_one_sentence_errors():
  with pytest.raises(ValueError, match="Unknown augmentation"):
    augment.named("shift+blur")
  with pytest.raises(ValueError, match="RandAugment op"):
    augment.apply_op(IMG, "Blur", 3, np.random.default_rng(0))
