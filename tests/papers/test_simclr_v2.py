"""SimCLRv2: fine-tuning starts from the projection head's first layer, distillation trains the
student only, and the claim's judge."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import simclr_v2 as simclr_config
from paperjax import train
from paperjax.method import Context
from paperjax.papers.simclr_v2 import claim, method
from paperjax.state import TrainState
from tests.conftest import shrink

X = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 8, 8, 1)), jnp.float32)


def _stage_config(stage, **over):
  c = shrink(simclr_config.get_config())
  c.stages = ()
  c.simclr.stage = stage
  c.data.subset.view = "labeled" if stage == "finetune" else "images"
  c.model.channels = (4, 8)           # the wiring, not the capacity, is under test
  for k, v in over.items():
    train_key = k.split("__")
    node = c
    for p in train_key[:-1]:
      node = node[p]
    node[train_key[-1]] = v
  return c


def _make(c):
  c.optimizer.warmup_steps = 0   # a non-zero learning rate at step 0
  ctx = Context(config=c)
  tx, sched = __import__("paperjax.optim", fromlist=["build"]).build(c.optimizer, 10)
  ctx.tx, ctx.lr_schedule = tx, sched
  return method.make(c, ctx), ctx


def test_finetune_starts_from_head_layer_one():
  pre_c, ft_c = _stage_config("pretrain"), _stage_config("finetune")
  pre, ft, _ = method._models(ft_c)
  p_pre = nn.meta.unbox(jax.jit(pre.init)(jax.random.PRNGKey(1), X))["params"]
  p_ft = nn.meta.unbox(jax.jit(ft.init)(jax.random.PRNGKey(2), X))["params"]
  m, _ = _make(ft_c)
  mapped, extras = m.from_previous(p_pre, p_ft, {})
  assert set(mapped["proj"]) == {"layer0", "norm0"}               # only the first head layer is kept
  np.testing.assert_array_equal(mapped["classifier"]["dense"]["kernel"], p_ft["classifier"]["dense"]["kernel"])
  # The fine-tune model's features are relu(norm0(layer0(f(x)))) of the *pretrained* network.
  feats = jax.jit(lambda p: ft.apply({"params": p}, X, method=method.FinetuneModel.features))(mapped)
  h = jax.jit(lambda p: pre.apply({"params": p}, X, method=method.PretrainModel.features))(p_pre)
  w = p_pre["proj"]["layer0"]["kernel"]
  ln = nn.LayerNorm().apply({"params": p_pre["proj"]["norm0"]}, h @ w)
  np.testing.assert_allclose(feats, jax.nn.relu(ln), rtol=1e-5, atol=1e-6)
  del pre_c


def test_distillation_step_moves_only_the_student_and_matches_soft_ce():
  c = _stage_config("distill", model__width=1.0, simclr__teacher_width=2.0)
  m, ctx = _make(c)
  _, student, teacher = method._models(c)
  params = nn.meta.unbox(jax.jit(student.init)(jax.random.PRNGKey(0), X))["params"]
  extras = nn.meta.unbox(jax.jit(m.init_extras)(jax.random.PRNGKey(1), params))
  state = TrainState.create(params, ctx.tx, rng=jax.random.PRNGKey(2), extras=extras)
  batch = {"image": X}
  new, metrics = jax.jit(lambda st, b: m.step(st, b, ctx))(state, batch)
  jax.tree.map(np.testing.assert_array_equal, new.extras["teacher"], state.extras["teacher"])
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(params)))
  t = jax.nn.softmax(jax.jit(teacher.apply)({"params": extras["teacher"]}, X))
  s = jax.nn.log_softmax(jax.jit(student.apply)({"params": params}, X))
  np.testing.assert_allclose(metrics["loss"], -(t * s).sum(-1).mean(), rtol=1e-5)


@pytest.mark.slow
def test_stages_hand_over_parameters(tmp_path):
  c = shrink(simclr_config.get_config(), steps=2)
  s = train.run(c, str(tmp_path))
  assert list(s["stages"]) == ["pretrain", "finetune_0.05", "distill_0.05_w1"]
  assert np.isfinite(s["eval"]["accuracy"])


def test_judge():
  row = dict(big_ssl_ft_5=0.9, big_supervised_5=0.7, small_ssl_ft_5=0.8, small_supervised_5=0.6, big_ssl_ft_50=0.97,
             small_ssl_ft_50=0.95, distilled_small_5=0.88, big_linear_probe=0.9, small_linear_probe=0.8)
  out = claim.judge([row] * 3)
  assert out["passed"] and out["metrics"]["checks"]["ii_distilled_within_3pts_of_teacher"]
  assert not claim.judge([dict(row, big_ssl_ft_50=1.1)] * 3)["passed"]      # gap larger at 50%
  assert not claim.judge([dict(row, big_supervised_5=0.85)] * 3)["passed"]
