"""DDM: the ensemble of exact per-cluster flows under the exact posterior is the global marginal flow,
top-k routing, no collective (and no cross-expert dependence) in the experts' step, the two stages
end to end, and the claim's judge."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import enable_x64

from configs import ddm as ddm_config
from paperjax import diffusion, optim, selection, sharding, train
from paperjax.data import points2d
from paperjax.method import Context
from paperjax.papers.ddm import claim, method
from paperjax.state import TrainState
from tests.conftest import shrink
from tests.papers.test_btm import COLLECTIVES, _primitives


def test_router_weighted_cluster_flows_equal_the_global_marginal_flow():
  x_all, _ = points2d.points("ring", "", "validation")
  data = np.asarray(x_all[:200], np.float64)
  _, assign = selection.kmeans(data, 4, seed=0)
  rng = np.random.default_rng(0)
  with enable_x64():
    d = jnp.asarray(data)
    for t in (0.05, 0.3, 0.7, 0.95):
      x = jnp.asarray(rng.normal(size=(64, 2)) * 1.2)
      logp = diffusion.conditional_log_density(x, t, d)                       # [B, N]
      # Exact posterior p(k | x_t) = Σ_{n ∈ k} N(x; (1−t)x₀ₙ, t²) / Σ_n N(...)
      post = jnp.stack([jax.nn.logsumexp(jnp.where(assign[None] == k, logp, -jnp.inf), axis=1) for k in range(4)], 1)
      post = jnp.exp(post - jax.nn.logsumexp(logp, axis=1, keepdims=True))
      np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-12)
      flows = jnp.stack([diffusion.marginal_flow(x, t, d, jnp.asarray(assign == k)) for k in range(4)])
      ens = method.ensemble_velocity(post, flows)
      glob = diffusion.marginal_flow(x, t, d)
      np.testing.assert_allclose(ens, glob, atol=1e-6)
      # …and a wrong router (uniform weights) does not give the global flow: the test can fail.
      assert float(jnp.abs(method.ensemble_velocity(jnp.full_like(post, 0.25), flows) - glob).max()) > 1e-2


def test_top_k_weights():
  w = jnp.array([[0.1, 0.5, 0.3, 0.1], [0.7, 0.1, 0.15, 0.05]])
  np.testing.assert_allclose(method.top_k_weights(w, 1), [[0, 1, 0, 0], [1, 0, 0, 0]])
  np.testing.assert_allclose(method.top_k_weights(w, 2), [[0, 0.625, 0.375, 0], [0.7 / 0.85, 0, 0.15 / 0.85, 0]], rtol=1e-6)
  np.testing.assert_allclose(method.top_k_weights(w, 4), w)
  v = jnp.arange(4 * 2 * 3, dtype=jnp.float32).reshape(4, 2, 3)
  np.testing.assert_allclose(method.ensemble_velocity(method.top_k_weights(w, 1), v), v[jnp.array([1, 0]), jnp.arange(2)])


def _experts_method():
  c = shrink(ddm_config.get_config())
  c.stages = ()
  mesh = sharding.make_mesh(tuple(c.mesh.axes), tuple(c.mesh.shape))
  ctx = Context(config=c, mesh=mesh, abstract=True)
  ctx.tx, ctx.lr_schedule = optim.build(c.optimizer, 10)
  return c, method.make(c, ctx), ctx


def test_experts_step_has_no_collective_and_experts_do_not_interact():
  c, m, ctx = _experts_method()
  K, H, B = int(c.ddm.experts), int(c.population.local_steps), int(c.population.batch_size)
  params = jax.tree.map(lambda x: x.value if hasattr(x, "value") else x, m.init(jax.random.PRNGKey(0), None),
                        is_leaf=lambda x: hasattr(x, "value"))
  extras = jax.tree.map(lambda x: x.value if hasattr(x, "value") else x, m.init_extras(jax.random.PRNGKey(1), params),
                        is_leaf=lambda x: hasattr(x, "value"))
  state = TrainState.create(params, ctx.tx, rng=jax.random.PRNGKey(2), extras=extras)
  x = np.random.default_rng(0).normal(size=(K, H, B, 2)).astype(np.float32)
  batch = {"features": x, "client": np.arange(K, dtype=np.int32), "num_examples": np.ones(K, np.float32)}
  step = lambda s, b: m.step(s, b, ctx)
  prims = _primitives(jax.make_jaxpr(step)(state, batch).jaxpr)
  assert "shard_map" in prims and not prims & set(COLLECTIVES), prims & set(COLLECTIVES)
  new, _ = jax.jit(step)(state, batch)
  x2 = x.copy()
  x2[2] += 5.0                       # change only expert 2's data
  new2, _ = jax.jit(step)(state, dict(batch, features=x2))
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(new2.params)):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(np.delete(a, 2, axis=0), np.delete(b, 2, axis=0))
  assert any(not np.array_equal(np.asarray(a)[2], np.asarray(b)[2])
             for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(new2.params)))


def test_partition_is_kmeans_and_router_labels_match_it():
  c = ddm_config.get_config()
  cl = method.clusters(c)
  assert sorted(np.unique(cl["assign"])) == [0, 1, 2, 3]
  np.testing.assert_array_equal(cl["assign"], method.nearest(cl["x"], cl["centroids"]))
  # On the ring, each of the 4 clusters holds 2 of the 8 modes (k-means of 8 symmetric blobs).
  _, label = points2d.points("ring", "", "train")
  per_cluster = [len(np.unique(label[cl["assign"] == k])) for k in range(4)]
  assert all(2 <= n <= 3 for n in per_cluster)


def test_two_stages_run_and_write_sample_grids(tmp_path):
  c = shrink(ddm_config.get_config(), steps=3)
  c.eval.num_samples = 256
  c.ddm.sample_steps = 4
  s = train.run(c, str(tmp_path))
  assert list(s["stages"]) == ["experts", "router"]
  for mode in ("ensemble", "top1", "top2"):
    assert os.path.exists(s["eval"][f"{mode}_png"]) and np.isfinite(s["eval"][f"{mode}_energy_distance"])
  assert 0 <= s["eval"]["router_acc_t0.05"] <= 1


def test_judge():
  row = {f"{m}_{k}": 0.1 for m in claim.MODES for k in ("energy_distance", "mmd", "modes_covered")}
  row.update({f"monolith_{k}": 0.1 for k in ("energy_distance", "mmd", "modes_covered")})
  row.update({"router_acc_t0.05": 0.95, "router_acc_t0.5": 0.6, "router_acc_t0.95": 0.3, "router_chance": 0.26})
  assert claim.judge([dict(row, ensemble_energy_distance=0.109)] * 3)["passed"]
  assert not claim.judge([dict(row, ensemble_energy_distance=0.111)] * 3)["passed"]
  assert claim.judge([row] * 3)["metrics"]["checks"]["ii_router_near_chance_near_noise"]
