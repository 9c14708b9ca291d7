"""Branch-Train-Merge: the posterior ensemble by hand, posterior concentration, parameter averaging,
and no collective in the branch step (on its jaxpr; the same walker finds FedAvg's psum)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from paperjax import comm, population, sharding
from paperjax.method import Context
from paperjax.papers.btm import method as btm
from paperjax.state import TrainState

COLLECTIVES = ("psum", "all_gather", "ppermute", "all_to_all", "pmax", "pmin", "reduce_scatter", "psum_scatter")


def test_ensemble_matches_hand_computation():
  lp = jnp.log(jnp.array([[[0.5, 0.2, 0.4]], [[0.1, 0.6, 0.3]]]))   # K=2 experts, B=1, T=3
  ens, post = btm.ensemble_logprobs(lp)
  p = np.exp(np.asarray(lp))[:, 0]
  w0 = np.array([0.5, 0.5])
  w1 = w0 * p[:, 0] / (w0 * p[:, 0]).sum()
  w2 = w0 * p[:, 0] * p[:, 1] / (w0 * p[:, 0] * p[:, 1]).sum()
  want = np.log([(w0 * p[:, 0]).sum(), (w1 * p[:, 1]).sum(), (w2 * p[:, 2]).sum()])
  np.testing.assert_allclose(ens[0], want, rtol=1e-6)
  np.testing.assert_allclose(post[:, 0, 2], w2, rtol=1e-6)


def test_posterior_concentrates_on_the_better_expert():
  r = np.random.default_rng(0)
  base = np.log(r.uniform(0.05, 0.5, size=(1, 4, 100)))
  lp = jnp.asarray(np.concatenate([base - 0.1, base, base - 0.2]))   # expert 1 is 0.1 nats/token better
  _, post = btm.ensemble_logprobs(lp)
  assert float(post[1, :, 64].min()) > 0.9 and np.allclose(post[:, :, 0], 1 / 3)


def test_parameter_average():
  p = {"w": jnp.arange(6.0).reshape(2, 3)}
  same = jax.tree.map(lambda x: jnp.stack([x, x, x]), p)
  np.testing.assert_array_equal(population.average(same)["w"], p["w"])
  two = {"w": jnp.stack([jnp.zeros(3), jnp.full(3, 4.0)])}
  np.testing.assert_allclose(population.average(two, [1.0, 3.0])["w"], np.full(3, 3.0))


def _primitives(jaxpr, out=None):
  out = set() if out is None else out
  for eqn in jaxpr.eqns:
    out.add(eqn.primitive.name)
    for v in eqn.params.values():
      for sub in (v if isinstance(v, (list, tuple)) else [v]):
        if hasattr(sub, "jaxpr"):
          _primitives(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr, out)
        elif hasattr(sub, "eqns"):
          _primitives(sub, out)
  return out


def test_branch_step_has_no_collectives_but_fedavg_does():
  loss = lambda p, b, r: (jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), {})
  K, H = 4, 3
  params = {"w": jnp.zeros((K, 2))}
  tx = optax.adam(0.1)
  state = TrainState.create(params, optax.sgd(0.0), rng=jax.random.PRNGKey(0), extras={"opt": jax.vmap(tx.init)(params)})
  batch = {"x": jnp.ones((K, H, 5, 2)), "y": jnp.ones((K, H, 5)), "client": jnp.arange(K, dtype=jnp.int32),
           "num_examples": jnp.ones(K)}
  mesh = sharding.make_mesh((population.AXIS, "data", "fsdp", "tensor"), (-1, 1, 1, 1))
  ctx = Context(config=None, mesh=mesh)
  step = population.independent_step(loss, tx)
  prims = _primitives(jax.make_jaxpr(lambda s, b: step(s, b, ctx))(state, batch).jaxpr)
  assert "shard_map" in prims and not prims & set(COLLECTIVES), prims & set(COLLECTIVES)
  new, m = jax.jit(lambda s, b: step(s, b, ctx))(state, batch)
  assert new.params["w"].shape == (K, 2) and float(m["loss"]) > 0
  cfg = ml_collections.ConfigDict({"population": {"weighting": "uniform", "clients": K, "clients_per_round": 0}})
  fed = population.fedopt_step(loss, tx, cfg, keep_inner_state=False)
  st = TrainState.create({"w": jnp.zeros(2)}, optax.sgd(1.0), rng=jax.random.PRNGKey(0), extras={"comm": comm.init_totals()})
  fprims = _primitives(jax.make_jaxpr(lambda s, b: fed(s, b, Context(config=cfg, mesh=mesh, tx=optax.sgd(1.0))))(st, batch).jaxpr)
  assert "psum" in fprims
