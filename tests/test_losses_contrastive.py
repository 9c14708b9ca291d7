"""Contrastive / distillation / consistency losses against hand computations, and the all_gather
versions against the single-device ones on 8 fake devices."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from paperjax import losses_contrastive as lc
from tests.conftest import run_python


def _norm(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _logsumexp(x):
  m = x.max()
  return m + np.log(np.exp(x - m).sum())


def test_info_nce_and_clip_loss_match_a_loop():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  s = 3.0
  an, bn = _norm(a), _norm(b)
  ref = np.mean([_logsumexp(s * an[i] @ bn.T) - s * an[i] @ bn[i] for i in range(6)])
  np.testing.assert_allclose(lc.info_nce(jnp.asarray(a), jnp.asarray(b), s), ref, rtol=1e-5)
  sym = 0.5 * (ref + np.mean([_logsumexp(s * bn[i] @ an.T) - s * bn[i] @ an[i] for i in range(6)]))
  np.testing.assert_allclose(lc.clip_loss(jnp.asarray(a), jnp.asarray(b), s), sym, rtol=1e-5)
  # Symmetric in the towers; log B when the scale is 0 (every logit equal).
  np.testing.assert_allclose(lc.clip_loss(jnp.asarray(b), jnp.asarray(a), s), sym, rtol=1e-5)
  np.testing.assert_allclose(lc.clip_loss(jnp.asarray(a), jnp.asarray(b), 0.0), np.log(6), rtol=1e-6)


def test_nt_xent_matches_the_papers_definition():
  """ℓ(i, j) = −log exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ) over the 2N views, averaged over all 2N anchors."""
  rng = np.random.default_rng(1)
  z1, z2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  tau = 0.1
  z = _norm(np.concatenate([z1, z2]))           # views 0..3 = first view, 4..7 = second
  n = 4
  losses = []
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    others = [k for k in range(2 * n) if k != i]
    losses.append(-(z[i] @ z[j] / tau) + _logsumexp(np.array([z[i] @ z[k] / tau for k in others])))
  np.testing.assert_allclose(lc.nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau), np.mean(losses), rtol=1e-5)


def test_soft_target_ce_equals_ce_on_soft_targets_with_no_teacher_gradient():
  rng = np.random.default_rng(2)
  s, t = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
  T = 2.0
  pt = np.exp(t / T) / np.exp(t / T).sum(-1, keepdims=True)
  logps = s / T - np.log(np.exp(s / T).sum(-1, keepdims=True))
  np.testing.assert_allclose(lc.soft_target_cross_entropy(jnp.asarray(s), jnp.asarray(t), T), -(pt * logps).sum(-1),
                             rtol=1e-5)
  g_teacher = jax.grad(lambda tt: lc.soft_target_cross_entropy(jnp.asarray(s), tt, T).sum())(jnp.asarray(t))
  assert np.all(np.asarray(g_teacher) == 0)


def test_kl_consistency_zero_for_identity_sharpened_target_and_no_target_gradient():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 6)))
  np.testing.assert_allclose(lc.kl_consistency(x, x), 0.0, atol=1e-6)
  assert np.all(np.asarray(lc.kl_consistency(x, x, 0.5)) > 0)   # sharpened target ≠ prediction
  g = jax.grad(lambda t: lc.kl_consistency(t, x * 2).sum())(x)
  assert np.all(np.asarray(g) == 0)
  # Against the formula KL(p‖q) with p = softmax(t/T), q = softmax(pred).
  t, q = np.asarray(x), np.asarray(x * 2)
  p = np.exp(t / 0.5) / np.exp(t / 0.5).sum(-1, keepdims=True)
  qq = np.exp(q) / np.exp(q).sum(-1, keepdims=True)
  np.testing.assert_allclose(lc.kl_consistency(x, x * 2, 0.5), (p * np.log(p / qq)).sum(-1), rtol=1e-4)


def test_sharded_losses_equal_single_device_on_8_fake_devices():
  code = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from paperjax import losses_contrastive as lc, sharding
    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    a, b = jnp.asarray(rng.normal(size=(16, 8)), jnp.float32), jnp.asarray(rng.normal(size=(16, 8)), jnp.float32)
    mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (4, 2, 1))   # keys gathered over two axes
    for name, fn, extra in [("clip", lc.clip_loss, (7.0,)), ("nt_xent", lc.nt_xent, (0.1,))]:
      single, g1 = jax.value_and_grad(lambda x: fn(x, b, *extra))(a)
      sharded, g2 = jax.jit(jax.value_and_grad(lambda x: lc.sharded(fn, mesh)(x, b, *extra)))(a)
      assert abs(float(single) - float(sharded)) < 1e-5 * max(1, abs(float(single))), (name, single, sharded)
      assert np.allclose(g1, g2, atol=1e-5), name
    print("OK")
  """)
  r = run_python(code, devices=8, timeout=300)
  assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
