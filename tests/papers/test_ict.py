"""iCT: the curriculum N(k), the lognormal index distribution, pseudo-Huber with c = 0.00054·√D, the
1/Δσ-weighted loss with a stop-gradient teacher θ⁻ = θ (vs CT's EMA teacher), the boundary condition
f(x, σ_min) = x, one-/two-step sampling, and the claim's judge."""

import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from configs import ict as ict_config
from paperjax import diffusion, optim, train
from paperjax.method import Context
from paperjax.models import denoisers
from paperjax.papers.ict import claim, method
from paperjax.state import TrainState
from tests.conftest import shrink


def test_ict_curriculum_doubles_from_11_to_1281():
  K = 800   # K' = ⌊800 / (log2⌊1280/10⌋ + 1)⌋ = ⌊800 / 8⌋ = 100
  n = lambda k: int(method.ict_discretization(k, K))
  assert [n(0), n(99), n(100), n(199), n(200), n(600), n(699), n(700), n(799)] == [11, 11, 21, 21, 41, 641, 641, 1281, 1281]


def test_ct_curriculum_and_teacher_decay():
  K = 1000
  n = lambda k: int(method.ct_discretization(k, K))
  assert n(0) == 2 and n(K) == 151
  assert n(500) == math.ceil(math.sqrt(0.5 * (151 ** 2 - 4) + 4) - 1) + 1
  np.testing.assert_allclose(method.ct_teacher_decay(2), 0.9, rtol=1e-6)                 # μ0 at N = s0
  np.testing.assert_allclose(method.ct_teacher_decay(151), math.exp(2 * math.log(0.9) / 151), rtol=1e-6)


def test_lognormal_index_distribution_matches_erf_formula_and_peaks_near_e_minus_1_1():
  n, max_pairs = 1281, 1281
  logits, lo, hi = method.index_distribution(n, max_pairs, "lognormal", 0.002, 80.0, 7.0)
  p = np.asarray(jax.nn.softmax(logits), np.float64)
  assert p.shape == (max_pairs,) and p[n - 1:].sum() == 0
  np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)
  s = np.asarray(diffusion.karras_sigmas(n), np.float64)
  cdf = erf((np.log(s) + 1.1) / (math.sqrt(2) * 2.0))
  want = np.diff(cdf) / np.diff(cdf).sum()
  np.testing.assert_allclose(p[:n - 1], want, rtol=2e-3, atol=1e-9)
  # The density of ln σ peaks at P_mean = −1.1: per unit ln σ, p(i)/Δln σ is largest near σ = e^{−1.1}.
  density = p[:n - 1] / np.diff(np.log(s))
  assert abs(np.log(s[np.argmax(density)]) + 1.1) < 0.05


def test_index_draws_follow_the_distribution_and_stay_on_the_grid(tmp_path):
  c = shrink(ict_config.get_config())
  c.data.batch_size = 4096
  m, ctx = _make(c)
  n = 11
  logits, lo, hi = method.index_distribution(n, 1281, "lognormal", 0.002, 80.0, 7.0)
  cdf = jnp.cumsum(jax.nn.softmax(logits))
  i = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(jax.random.PRNGKey(0), (20_000,)) * cdf[-1]), n - 2)
  hist = np.bincount(np.asarray(i), minlength=n - 1) / 20_000
  np.testing.assert_allclose(hist, np.asarray(jax.nn.softmax(logits))[:n - 1], atol=0.01)
  del m, ctx


def _model_and_params(shape=(2,), seed=0):
  model = denoisers.build(dict(kind="mlp", hidden=16, layers=2, emb_dim=16, fourier_scale=0.02), shape)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + shape), jnp.zeros((1,))))["params"]
  # Non-zero output layer, so F ≠ 0 and the boundary condition is really tested.
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 1), p.shape), params)
  return model, params


def test_boundary_condition_is_exact():
  model, params = _model_and_params()
  f = method.consistency_function(model, 0.5, 0.002)
  x = jax.random.normal(jax.random.PRNGKey(2), (16, 2)) * 3
  out = f(params, x, jnp.full((16,), 0.002))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
  assert not np.allclose(f(params, x, jnp.full((16,), 0.5)), x)


def test_loss_is_weighted_pseudo_huber_with_stop_gradient_teacher():
  model, params = _model_and_params()
  f = method.consistency_function(model, 0.5, 0.002)
  x = jax.random.normal(jax.random.PRNGKey(3), (8, 2))
  z = jax.random.normal(jax.random.PRNGKey(4), (8, 2))
  s = diffusion.karras_sigmas(11)
  i = jnp.array([0, 1, 2, 3, 4, 5, 8, 9])
  lo, hi = s[i], s[i + 1]
  c = 0.00054 * math.sqrt(2)
  value, _ = method.consistency_training_loss(f, params, params, x, z, lo, hi, "pseudo_huber", "inverse_gap", c)
  a, b = f(params, x + hi[:, None] * z, hi), f(params, x + lo[:, None] * z, lo)
  d = np.sqrt(np.sum((np.asarray(a) - np.asarray(b)) ** 2, 1) + c * c) - c
  np.testing.assert_allclose(value, np.mean(d / np.asarray(hi - lo)), rtol=1e-4)
  # The gradient flows through the student only: the teacher is a constant.
  teacher = jax.lax.stop_gradient(b)
  g_ref = jax.grad(lambda p: jnp.mean(diffusion.pseudo_huber(f(p, x + hi[:, None] * z, hi), teacher, c) / (hi - lo)))(params)
  g = jax.grad(lambda p: method.consistency_training_loss(f, p, p, x, z, lo, hi, "pseudo_huber", "inverse_gap", c)[0])(params)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6), g, g_ref)
  # CT's squared L2 with λ = 1.
  v2, _ = method.consistency_training_loss(f, params, params, x, z, lo, hi, "l2", "uniform", c)
  np.testing.assert_allclose(v2, np.mean(np.sum((np.asarray(a) - np.asarray(b)) ** 2, 1)), rtol=1e-4)


def _make(c):
  ctx = Context(config=c, abstract=True)
  tx, sched = optim.build(c.optimizer, int(c.train.steps))
  ctx.tx, ctx.lr_schedule = tx, sched
  return method.make(c, ctx), ctx


@pytest.mark.parametrize("variant", ["ict", "ct"])
def test_step_teacher_and_eval_ema(variant):
  c = shrink(ict_config.get_config(f"tiny,variant={variant}"))
  c.optimizer.warmup_steps = 0
  m, ctx = _make(c)
  params = nn.meta.unbox(m.init(jax.random.PRNGKey(0), None))
  state = TrainState.create(params, ctx.tx, rng=jax.random.PRNGKey(1), extras=m.init_extras(jax.random.PRNGKey(2), params))
  batch = {"features": np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)}
  new, metrics = jax.jit(lambda st, b: m.step(st, b, ctx))(state, batch)
  mix = lambda old, p, mu: jax.tree.map(lambda o, q: mu * o + (1 - mu) * q, old, p)
  close = lambda u, v: jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), u, v)
  close(new.extras["ema"], mix(state.extras["ema"], new.params, c.ict.ema_decay))
  if variant == "ct":   # EMA teacher with μ(N(0) = 2) = μ0 = 0.9
    np.testing.assert_allclose(metrics["teacher_decay"], 0.9, rtol=1e-6)
    close(new.extras["teacher"], mix(state.extras["teacher"], new.params, 0.9))
    assert int(metrics["num_scales"]) == 2
  else:                 # no teacher copy at all: θ⁻ = sg(θ)
    assert "teacher" not in new.extras and int(metrics["num_scales"]) == 11


def test_tiny_config_runs_and_writes_sample_grids(tmp_path):
  c = shrink(ict_config.get_config(), steps=3)
  c.eval.num_samples = 128
  s = train.run(c, str(tmp_path))
  assert s["step"] == 3
  for k in ("one_step_png", "two_step_png"):
    assert os.path.exists(s["eval"][k]) and s["eval"][k].endswith("_step3.png")
  assert np.isfinite(s["eval"]["one_step_energy_distance"])


def test_judge():
  row = {f"{v}/{m}": 0.0 for v in ("ict", "ct") for m in claim.METRICS}
  good = dict(row, **{"ict/one_step_energy_distance": 0.1, "ct/one_step_energy_distance": 0.2,
                      "ict/two_step_energy_distance": 0.01, "ct/two_step_energy_distance": 0.05})
  out = claim.judge([good] * 3)
  assert out["passed"] and out["metrics"]["checks"]["ii_two_step_energy_ict_below_ct"]
  assert not out["metrics"]["checks"]["ii_one_step_ict_covers_7_of_8_modes_80pct_within_3std"]
  assert not claim.judge([dict(good, **{"ict/one_step_energy_distance": 0.3})] * 3)["passed"]
