"""SLA: with one transformation the loss is plain CE; joint labels, rotations, aggregation and the
self-distillation loss against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax.papers.sla import claim, method

R = np.random.default_rng(0)
X = jnp.asarray(R.uniform(size=(3, 5, 5, 1)), jnp.float32)
Y = jnp.asarray([2, 0, 1])


def test_one_transformation_is_plain_cross_entropy():
  logits = jnp.asarray(R.normal(size=(3, 3)))
  loss, _ = method.sla_losses({"joint": logits}, Y, 1, "sla")
  np.testing.assert_array_equal(loss, optax.softmax_cross_entropy_with_integer_labels(logits, Y).mean())
  np.testing.assert_array_equal(method.rotations(X, 1), X)
  np.testing.assert_array_equal(method.aggregate(logits, 1), logits)


def test_rotations_interleave_and_joint_labels_are_a_bijection():
  r = np.asarray(method.rotations(X, 4))
  for b in range(3):
    for j in range(4):
      np.testing.assert_array_equal(r[b * 4 + j], np.rot90(np.asarray(X[b]), j, axes=(0, 1)))
  lab = np.asarray(method.joint_labels(jnp.arange(10), 4)).reshape(10, 4)
  assert sorted(lab.ravel().tolist()) == list(range(40))
  assert all(lab[y, j] == y * 4 + j for y in range(10) for j in range(4))


def test_aggregation_matches_the_official_loop():
  M, N, B = 4, 3, 2
  z = R.normal(size=(B * M, N * M))
  agg = sum(z[i::M, i::M] / M for i in range(M))          # hankook/SLA: preds[i::n, i::n] / n
  np.testing.assert_allclose(method.aggregate(jnp.asarray(z), M), agg, rtol=1e-6)


def test_self_distillation_loss_by_hand():
  M, N = 2, 3
  joint = R.normal(size=(3 * M, N * M))
  single = R.normal(size=(3 * M, N))
  loss, m = method.sla_losses({"joint": jnp.asarray(joint), "single": jnp.asarray(single)}, Y, M, "sla_sd")
  ce = lambda z, y: -np.log(np.exp(z) / np.exp(z).sum(-1, keepdims=True))[np.arange(len(y)), y]
  joint_ce = ce(joint, np.asarray(method.joint_labels(Y, M))).mean()
  s = single[::M]
  agg = sum(joint[i::M, i::M] / M for i in range(M))
  p = np.exp(agg) / np.exp(agg).sum(-1, keepdims=True)
  q = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
  want = joint_ce + ce(s, np.asarray(Y)).mean() + (p * np.log(p / q)).sum(-1).mean()
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  g = jax.grad(lambda j: method.sla_losses({"joint": j, "single": jnp.asarray(single)}, Y, M, "sla_sd")[1]["distill_kl"])(
      jnp.asarray(joint))
  assert np.all(np.asarray(g) == 0)                          # the aggregate is a fixed target


def test_judge():
  row = dict(ce=0.9, sla_aggregated=0.93, sla_joint_identity=0.85, sla_sd_single=0.915, sla_sd_aggregated=0.92, mt=0.7)
  out = claim.judge([row] * 3)
  assert out["passed"] and "6/9" in out["analysis"]
  assert not claim.judge([dict(row, sla_aggregated=0.91)] * 3)["passed"]
