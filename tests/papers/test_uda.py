"""UDA: the loss against its formula (KL, sharpening, confidence mask, TSA), the two-stream batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import uda as uda_config
from paperjax.data import sources, subsets
from paperjax.papers.uda import claim, method
from tests.conftest import shrink

R = np.random.default_rng(0)
SUP, Y = jnp.asarray(R.normal(size=(4, 3))), jnp.asarray([0, 1, 2, 1])
ORIG, AUG = jnp.asarray(R.normal(size=(6, 3)) * 2), jnp.asarray(R.normal(size=(6, 3)))


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _ce(logits, y):
  return -np.log(_softmax(np.asarray(logits))[np.arange(len(y)), np.asarray(y)])


def test_consistency_is_zero_for_identity_augmentation():
  loss, m = method.uda_loss(SUP, Y, ORIG, ORIG, step=0, total_steps=10)
  np.testing.assert_allclose(m["unsup_loss"], 0.0, atol=1e-6)
  np.testing.assert_allclose(loss, _ce(SUP, Y).mean(), rtol=1e-5)


def test_sharpened_masked_kl_against_the_formula_and_no_target_gradient():
  T, beta = 0.4, 0.6
  _, m = method.uda_loss(SUP, Y, ORIG, AUG, step=0, total_steps=10, temperature=T, confidence=beta)
  p = _softmax(np.asarray(ORIG) / T)
  q = _softmax(np.asarray(AUG))
  mask = _softmax(np.asarray(ORIG)).max(-1) > beta          # confidence of the *unsharpened* prediction
  kl = (p * np.log(p / q)).sum(-1) * mask
  np.testing.assert_allclose(m["unsup_loss"], kl.mean(), rtol=1e-4)     # mean over all u, as the official code
  np.testing.assert_allclose(m["unsup_mask_ratio"], mask.mean())
  g = jax.grad(lambda o: method.uda_loss(SUP, Y, o, AUG, step=0, total_steps=10, temperature=T)[0])(ORIG)
  assert np.all(np.asarray(g) == 0)


def test_tsa_thresholds_and_kept_average():
  K, T = 10, 100
  np.testing.assert_allclose(method.tsa_threshold("linear", 0, T, K), 1 / K)
  np.testing.assert_allclose(method.tsa_threshold("linear", T, T, K), 1.0)
  np.testing.assert_allclose(method.tsa_threshold("exp", T, T, K), 1.0)
  np.testing.assert_allclose(method.tsa_threshold("log", 0, T, K), 1 / K)
  np.testing.assert_allclose(method.tsa_threshold("linear", 50, T, K), 0.5 * 0.9 + 0.1, rtol=1e-6)
  loss, m = method.uda_loss(SUP, Y, None, None, step=5, total_steps=10, tsa="linear")
  eta = 0.5 * (1 - 1 / 3) + 1 / 3
  pc = _softmax(np.asarray(SUP))[np.arange(4), np.asarray(Y)]
  keep = pc <= eta
  np.testing.assert_allclose(loss, (_ce(SUP, Y) * keep).sum() / max(keep.sum(), 1), rtol=1e-5)
  with pytest.raises(ValueError, match="uda.tsa"):
    method.tsa_threshold("cosine", 0, 10, 3)


def test_two_stream_examples():
  c = shrink(uda_config.get_config())
  src = subsets.apply(sources.records("builtin:digits", "train"), c.data.subset)
  assert len(src) == -(-(1437 - 50) // 5)
  ex = method.example_fn_for(c)(src[3], np.random.default_rng(0))
  assert ex["unlabeled_orig"].shape == (5, 8, 8, 1) and ex["unlabeled_aug"].shape == (5, 8, 8, 1)
  np.testing.assert_array_equal(ex["unlabeled_orig"], src[3]["unlabeled_image"])   # the clean target
  assert not np.array_equal(ex["unlabeled_orig"], ex["unlabeled_aug"])
  c.uda.mode = "noise"
  ex = method.example_fn_for(c)(src[3], np.random.default_rng(0))
  assert 0.01 < np.std(ex["unlabeled_aug"] - ex["unlabeled_orig"]) < 0.2     # Gaussian noise, std 0.1 (clipped)
  c.uda.mode = "supervised"
  assert "unlabeled_orig" not in method.example_fn_for(c)(src[3], np.random.default_rng(0))


def test_judge():
  rows = [{"supervised": 0.85, "uda": 0.9, "noise": 0.86, "supervised_labeled_train": 1.0, "uda_labeled_train": 1.0,
           "noise_labeled_train": 1.0}] * 3
  assert claim.judge(rows)["passed"]
  assert not claim.judge([dict(r, noise=0.89) for r in rows])["passed"]
  assert not claim.judge([dict(r, uda=0.86) for r in rows])["passed"]
