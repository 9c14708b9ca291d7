"""Just One Byte's rule: shared-seed perturbations, the SPSA estimate, the update every replica applies
(by hand), the 1-byte quantiser and its shared scale, bitwise-equal replicas through leave/join, bytes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from paperjax import comm, population, sharding
from paperjax.method import Context
from paperjax.papers.justonebyte import method as job
from paperjax.state import TrainState


def _loss(p, b, rng):
  return jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2), {}


def _cfg(M=2, k=1, quant="none", lr=0.1, eps=1e-3):
  return ml_collections.ConfigDict({"justonebyte": {"samples": k, "lr": lr, "eps": eps, "quantization": quant},
                                    "population": {"clients": M}})


P0 = {"w": jnp.array([0.5, -1.0, 0.25]), "b": jnp.array(0.1)}


def _state(M):
  extras = {"replicas": jax.tree.map(lambda x: jnp.broadcast_to(x, (M,) + x.shape), P0), "was_active": jnp.ones(M, bool),
            "scale": jnp.asarray(1.0), "base_key": jax.random.PRNGKey(7), "comm": comm.init_totals()}
  return TrainState.create(P0, optax.sgd(0.0), rng=jax.random.PRNGKey(0), extras=extras)


def _batch(M, T, r, client=None):
  g = np.random.default_rng(r)
  return {"x": jnp.asarray(g.normal(size=(M, T, 8, 3)), jnp.float32), "y": jnp.asarray(g.normal(size=(M, T, 8)), jnp.float32),
          "client": jnp.asarray(np.arange(M) if client is None else client, jnp.int32), "num_examples": jnp.ones(M)}


def _step(cfg):
  mesh = sharding.make_mesh((population.AXIS, "data", "fsdp", "tensor"), (-1, 1, 1, 1))
  f = job.job_step(_loss, cfg)
  return jax.jit(lambda s, b: f(s, b, Context(config=cfg, mesh=mesh)))


def test_shared_seed_gives_the_same_perturbation_everywhere():
  base = jax.random.PRNGKey(3)
  a = job.perturbation(P0, job.seed_key(base, 5, 2, 1))
  b = jax.jit(lambda: job.perturbation(P0, job.seed_key(base, 5, 2, 1)))()
  c = jax.vmap(lambda m: job.perturbation(P0, job.seed_key(base, 5, m, 1)))(jnp.arange(4))
  for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
    np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(x, z[2])
  d = job.perturbation(P0, job.seed_key(base, 5, 3, 1))
  assert not np.allclose(d["w"], a["w"])


def test_spsa_estimates_point_along_the_gradient():
  A = jnp.asarray(np.random.default_rng(0).normal(size=(6, 6)), jnp.float32)
  f = lambda p: 0.5 * p @ (A @ A.T) @ p
  p = jnp.linspace(-1, 1, 6)
  def est(key):
    z = jax.random.normal(key, (6,))
    return (f(p + 1e-2 * z) - f(p - 1e-2 * z)) / 2e-2 * z
  mean = jax.vmap(est)(jax.random.split(jax.random.PRNGKey(0), 4096)).mean(0)
  true = jax.grad(f)(p)
  assert float(mean @ true / jnp.linalg.norm(mean) / jnp.linalg.norm(true)) > 0.95


def test_update_matches_hand_computation():
  cfg = _cfg(M=2, k=1, quant="none", lr=0.1, eps=0.1)  # the loss is quadratic: central differences are exact
  b = _batch(2, 1, 0)
  new, m = _step(cfg)(_state(2), b)
  key = jax.random.PRNGKey(7)
  want = P0
  gs = []
  for mach in range(2):
    z = job.perturbation(P0, job.seed_key(key, 0, mach, 0))
    bb = {"x": b["x"][mach, 0], "y": b["y"][mach, 0]}
    plus = _loss(jax.tree.map(lambda a, c: a + 0.1 * c, P0, z), bb, None)[0]
    minus = _loss(jax.tree.map(lambda a, c: a - 0.1 * c, P0, z), bb, None)[0]
    gs.append(((plus - minus) / 0.2, z))
  want = jax.tree.map(lambda p, z0, z1: p - 0.1 / 2 * (gs[0][0] * z0 + gs[1][0] * z1), P0, gs[0][1], gs[1][1])
  for a, e in zip(jax.tree.leaves(new.params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
  assert float(m["replica_spread"]) == 0.0
  assert float(m["comm/up_bytes_per_client"]) == 4   # one fp32 scalar


def test_one_byte_quantiser_and_its_shared_scale():
  g = jnp.array([0.3, -2.0, 0.001, 5.0])
  q = job.quantize(g, 1.0)
  assert q.dtype == jnp.int8 and list(np.asarray(q)) == [38, -127, 0, 127]
  np.testing.assert_allclose(job.dequantize(q, 1.0), [38 / 127, -1.0, 0.0, 1.0])
  assert abs(float(job.dequantize(job.quantize(jnp.array(0.3), 1.0), 1.0)) - 0.3) <= 1 / 254
  # A saturated byte raises the scale towards 2·max; small values lower it.
  np.testing.assert_allclose(float(job.next_scale(1.0, jnp.array([1.0, -0.2]), jnp.array([True, True]))), 0.9 + 0.1 * 2.0,
                             rtol=1e-6)
  assert float(job.next_scale(1.0, jnp.array([0.1]), jnp.array([True]))) < 1.0


def test_replicas_stay_bitwise_equal_through_leave_and_join():
  cfg = _cfg(M=3, k=2, quant="int8", lr=0.05)
  step = _step(cfg)
  s = _state(3)
  schedule = [[0, 1, 2], [0, -1, 2], [0, -1, 2], [0, 1, 2]]   # machine 1 leaves for two rounds, then rejoins
  for r, clients in enumerate(schedule):
    s, m = step(s, _batch(3, 4, r, clients))
    assert float(m["replica_spread"]) == 0.0
    assert float(m["machines"]) == sum(c >= 0 for c in clients)
    assert float(m["comm/up_bytes_per_client"]) == 4 * 2           # T·k bytes
    if r in (1, 2):   # the absent machine is stale
      assert not np.array_equal(s.extras["replicas"]["w"][1], s.extras["replicas"]["w"][0])
  for leaf in jax.tree.leaves(s.extras["replicas"]):  # after rejoining: identical again
    np.testing.assert_array_equal(leaf[1], leaf[0])
    np.testing.assert_array_equal(leaf[2], leaf[0])
