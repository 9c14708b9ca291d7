"""Imbalanced semi/self: the long-tail profiles, rotation labels, a frozen pseudo-labeller, and the
SSP hand-over."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import imbalanced_semi_self as cfg
from paperjax import optim
from paperjax.data import sources, subsets
from paperjax.method import Context
from paperjax.models import vision
from paperjax.papers.imbalanced_semi_self import claim, method
from paperjax.state import TrainState
from tests.conftest import shrink

X = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 8, 8, 1)), jnp.float32)


def _make(stage):
  c = shrink(cfg.get_config())
  c.stages, c.iss.stage = (), stage
  c.optimizer.warmup_steps = 0
  ctx = Context(config=c)
  ctx.tx, ctx.lr_schedule = optim.build(c.optimizer, 10)
  return method.make(c, ctx), ctx, c


def test_long_tail_profiles_of_labelled_and_unlabelled_sets():
  labels = subsets.labels_of(sources.records("builtin:digits", "train"))
  lab, unl = subsets.select(labels, dict(long_tail_n_max=40, long_tail_rho=20, unlabeled="long_tail",
                                         unlabeled_size_factor=2, unlabeled_rho=20))
  want = [int(40 * 20 ** (-c / 9)) for c in range(10)]
  assert np.bincount(labels[lab], minlength=10).tolist() == want == [40, 28, 20, 14, 10, 7, 5, 3, 2, 2]
  total = 2 * sum(want)                               # official: first = total // C, ρ_U profile, rescaled
  raw = [int(total // 10 * (1 / 20) ** (c / 9)) for c in range(10)]
  assert np.bincount(labels[unl], minlength=10).tolist() == [int(n * total / sum(raw)) for n in raw]
  assert not set(lab) & set(unl)


def test_rotation_task_labels():
  x, r = method.rotation_task(X[:2])
  assert r.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
  np.testing.assert_array_equal(x[5], np.rot90(np.asarray(X[1]), 1, axes=(0, 1)))


def test_pseudo_labels_come_from_the_frozen_teacher():
  m, ctx, c = _make("pseudo")
  model = vision.Classifier(dict(c.model), 10)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), X))["params"]
  teacher = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(1), X))["params"]
  _, extras = m.from_previous(teacher, params, jax.jit(m.init_extras)(None, params))
  state = TrainState.create(params, ctx.tx, rng=jax.random.PRNGKey(2), extras=extras)
  labels = jnp.asarray([3, -1, 7, -1])
  t_pred = model.apply({"params": teacher}, X).argmax(-1)
  np.testing.assert_array_equal(method.pseudo_targets(labels, model.apply({"params": teacher}, X)),
                                [3, t_pred[1], 7, t_pred[3]])
  new, _ = jax.jit(lambda st, b: m.step(st, b, ctx))(state, {"image": X, "clean_image": X, "label": labels})
  jax.tree.map(np.testing.assert_array_equal, new.extras["teacher"], teacher)      # f₀ frozen
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(params)))


def test_ssp_hands_over_the_backbone_only():
  m, _, c = _make("train")
  rot = vision.Classifier(dict(c.model), 4)
  prev = nn.meta.unbox(jax.jit(rot.init)(jax.random.PRNGKey(0), X))["params"]
  fresh = nn.meta.unbox(vision.Classifier(dict(c.model), 10).init(jax.random.PRNGKey(1), X))["params"]
  out, _ = m.from_previous(prev, fresh, {})
  jax.tree.map(np.testing.assert_array_equal, out["encoder"], prev["encoder"])
  jax.tree.map(np.testing.assert_array_equal, out["head"], fresh["head"])


def test_judge():
  row = dict(ce=0.70, ce_head=0.9, ce_tail=0.5, pl_rhoU1=0.77, pl_rhoU1_head=0.92, pl_rhoU1_tail=0.62, pl_rhoU20=0.72,
             pl_rhoU20_head=0.9, pl_rhoU20_tail=0.54, ssp=0.74, ssp_head=0.9, ssp_tail=0.58)
  assert claim.judge([row] * 3)["passed"]
  assert not claim.judge([dict(row, pl_rhoU1_head=1.0, pl_rhoU1_tail=0.55)] * 3)["passed"]   # gain mostly on the head
  assert not claim.judge([dict(row, ssp=0.71)] * 3)["passed"]
