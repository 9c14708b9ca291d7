"""MoDeST's sampling rule (md5 order, same view → same sample, uniform inclusion), failures, the
D-PSGD gossip baseline by hand, and the bytes of each."""

import hashlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import modest as modest_config
from paperjax import comm, population, sharding
from paperjax.method import Context
from paperjax.papers.modest import method as modest
from paperjax.state import TrainState


def test_sample_is_the_md5_order_and_every_node_derives_the_same():
  peers = list(range(40))
  s = modest.md5_sample(peers, 7, 8)
  by_hand = sorted(peers, key=lambda p: hashlib.md5(f"{p}-7".encode()).hexdigest())[:8]
  assert s == by_hand
  assert modest.md5_sample(list(reversed(peers)), 7, 8) == s          # a node's view is a set, not a list
  assert modest.md5_sample([3, 5], 7, 8) in ([3, 5], [5, 3]) and len(modest.md5_sample([3, 5], 7, 8)) == 2
  assert s[:2] == modest.md5_sample(peers, 7, 8)[:2]                  # the aggregators: the first a of the sample


def test_inclusion_frequency_is_uniform():
  counts = np.zeros(40)
  R = 5000
  for r in range(R):
    counts[modest.md5_sample(range(40), r, 8)] += 1
  expected = R * 8 / 40
  chi2 = ((counts - expected) ** 2 / expected).sum()
  assert chi2 < 80   # 39 degrees of freedom: p ≈ 1e-4 at 80


def test_failures_remove_the_fraction_from_the_round_on():
  c = modest_config.get_config()
  assert modest.alive(c, 29).all() and modest.alive(c, 30).sum() == 8 and modest.alive(c, 59).sum() == 8
  s = modest.sampler(c)(45)
  assert (s >= 0).sum() == 8 and set(s[s >= 0]) <= set(np.flatnonzero(modest.alive(c, 45)))
  c.modest.variant = "fedavg"
  f = modest.sampler(c)(45)
  assert (f >= 0).sum() < 8          # the server's uniform sample hits crashed nodes


def test_regular_graph():
  g = modest.regular_graph(40, 4, seed=0)
  assert g.shape == (40, 4)
  for i, nb in enumerate(g):
    assert i not in nb and all(i in g[j] for j in nb)


def test_dpsgd_gossip_by_hand():
  n, H = 4, 1
  loss = lambda p, b, r: (jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), {})
  nbrs = np.array([[1, 3], [0, 2], [1, 3], [2, 0]])                   # a ring (degree 2)
  cfg = ml_collections.ConfigDict({"population": {"clients": n}})
  step = modest.dpsgd_step(loss, optax.sgd(0.0), cfg, nbrs)            # lr 0: only the gossip moves models
  nodes = {"w": jnp.arange(8.0).reshape(4, 2)}
  state = TrainState.create({"w": jnp.zeros(2)}, optax.sgd(0.0), rng=jax.random.PRNGKey(0),
                            extras={"nodes": nodes, "comm": comm.init_totals()})
  batch = {"x": jnp.ones((n, H, 3, 2)), "y": jnp.ones((n, H, 3)), "client": jnp.array([0, 1, -1, 3], jnp.int32),
           "num_examples": jnp.ones(n)}
  mesh = sharding.make_mesh((population.AXIS, "data", "fsdp", "tensor"), (-1, 1, 1, 1))
  new, m = jax.jit(lambda s, b: step(s, b, Context(config=cfg, mesh=mesh)))(state, batch)
  w = np.arange(8.0).reshape(4, 2)
  want = np.stack([(w[0] + w[1] + w[3]) / 3, (w[1] + w[0]) / 2, w[2], (w[3] + w[0]) / 2])  # node 2 is down
  np.testing.assert_allclose(new.extras["nodes"]["w"], want, rtol=1e-6)
  np.testing.assert_allclose(new.params["w"], want[[0, 1, 3]].mean(0), rtol=1e-6)
  assert float(m["comm/up_bytes_per_client"]) == 2 * 8 and float(m["participants"]) == 3
