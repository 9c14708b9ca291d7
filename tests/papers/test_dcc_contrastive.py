"""DCC's matching loss against DC's and hand computations: C = 1 reduces to DC, only DCC couples
the classes' synthetic images, D is DC's per-output-unit cosine distance."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax.papers.dcc_contrastive import method as dcc


def _net(d_in=6, C=3, seed=0):
  rng = np.random.default_rng(seed)
  params = {"w1": jnp.asarray(rng.normal(size=(d_in, 5)), jnp.float32), "b1": jnp.zeros(5),
            "w2": jnp.asarray(rng.normal(size=(5, C)), jnp.float32)}

  def ce(p, x, y):
    logits = jnp.tanh(x.reshape(len(x), -1) @ p["w1"] + p["b1"]) @ p["w2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)
  return params, ce


def test_layer_distance_is_dc_cosine_distance_per_output_unit():
  a = {"b": jnp.ones(3), "w": jnp.asarray([[1.0, 0.0], [0.0, 2.0]])}
  assert float(dcc.layer_distance(a, a)) < 1e-5                                  # identical: 0
  np.testing.assert_allclose(float(dcc.layer_distance(a, jax.tree.map(lambda t: -t, a))), 4.0, rtol=1e-5)  # 2 units × 2
  b = {"b": -jnp.ones(3), "w": jnp.asarray([[0.0, 1.0], [1.0, 2.0]])}            # bias ignored
  # output unit 0: (1,0) vs (0,1), cos 0; unit 1: (0,2) vs (1,2), cos = 4/(2√5)
  want = (1 - 0.0) + (1 - 4 / (2 * np.sqrt(5)))
  np.testing.assert_allclose(float(dcc.layer_distance(a, b)), want, rtol=1e-5)


def test_class_grads_are_the_class_wise_mean_loss_gradients():
  p, ce = _net()
  rng = np.random.default_rng(1)
  x, y = jnp.asarray(rng.normal(size=(12, 6)), jnp.float32), jnp.asarray(rng.integers(0, 3, 12))
  g = jax.jit(lambda q: dcc.class_grads(ce, q, x, y, 3))(p)
  grad_mean = jax.jit(jax.grad(lambda q, xc, yc: ce(q, xc, yc).mean()))
  for c in range(3):
    want = grad_mean(p, x[y == c], y[y == c])
    for k in p:
      np.testing.assert_allclose(g[k][c], want[k], rtol=1e-4, atol=1e-6)


def test_with_one_class_dcc_equals_dc():
  p, ce = _net(C=1)
  rng = np.random.default_rng(2)
  syn = jnp.asarray(rng.normal(size=(1, 4, 6)), jnp.float32)
  ys = jnp.zeros((1, 4), jnp.int32)
  real = jax.jit(lambda q: dcc.class_grads(ce, q, jnp.asarray(rng.normal(size=(9, 6)), jnp.float32),
                                           jnp.zeros(9, jnp.int32), 1))(p)
  both = jax.jit(lambda s: (dcc.dcc_loss(ce, p, s, ys, real), dcc.dc_loss(ce, p, s, ys, real)))(syn)
  np.testing.assert_allclose(float(both[0]), float(both[1]), rtol=1e-6)


def test_only_dcc_couples_the_classes_synthetic_images():
  p, ce = _net()
  rng = np.random.default_rng(3)
  syn = jnp.asarray(rng.normal(size=(3, 2, 6)), jnp.float32)
  ys = jnp.repeat(jnp.arange(3)[:, None], 2, axis=1)
  xr, yr = jnp.asarray(rng.normal(size=(30, 6)), jnp.float32), jnp.asarray(np.repeat(np.arange(3), 10))
  real = jax.jit(lambda q: dcc.class_grads(ce, q, xr, yr, 3))(p)
  moved = syn.at[1].add(0.5)  # perturb only class 1's synthetic images

  for loss, coupled in ((dcc.dc_loss, False), (dcc.dcc_loss, True)):
    grad = jax.jit(jax.grad(lambda s: loss(ce, p, s, ys, real)))
    g0, g1 = grad(syn)[0], grad(moved)[0]
    changed = float(jnp.max(jnp.abs(g0 - g1)))
    assert (changed > 1e-4) == coupled, (loss.__name__, changed)  # ∂L/∂S_0 depends on S_1 only under DCC


def test_distractor_is_class_independent_and_dominant():
  x = np.zeros((50, 8, 8, 1), np.float32)
  d = dcc.distract(x, 0.6, seed=0)
  assert d.shape == x.shape and d.std() > 0.1 and d.max() <= 0.6 + 1e-6
  np.testing.assert_array_equal(dcc.distract(x, 0.6, seed=0), d)
