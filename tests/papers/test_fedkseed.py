"""FedKSeed's rule: the two-point estimate, seed-determined perturbations, replay = FedAvg of the
clients' models, Pro's probabilities by hand, and 4K + 8τ bytes whatever the model size."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from paperjax import comm, population, sharding
from paperjax.method import Context
from paperjax.papers.fedkseed import method as fk
from paperjax.state import TrainState
from tests.conftest import run_python

import optax


def _loss(p, b, rng):
  return jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2), {}


def _batches(S, tau, D=3, seed=0):
  r = np.random.default_rng(seed)
  return {"x": jnp.asarray(r.normal(size=(S, tau, 4, D)), jnp.float32), "y": jnp.asarray(r.normal(size=(S, tau, 4)), jnp.float32)}


def test_two_point_estimate_is_the_directional_derivative_of_a_quadratic():
  A = jnp.asarray(np.random.default_rng(1).normal(size=(5, 5)), jnp.float32)
  loss = lambda p, b, r: (0.5 * p["w"] @ (A @ A.T) @ p["w"], {})
  p = {"w": jnp.arange(5.0)}
  z = fk.perturbation(p, 123)
  g, _ = fk.zo_grad(loss, p, None, z, 0.1)   # central differences are exact on a quadratic for any ε
  exact = jax.grad(lambda q: loss(q, None, None)[0])(p)["w"] @ z["w"]
  assert abs(float(g) - float(exact)) < 1e-3 * abs(float(exact))


def test_the_same_seed_gives_the_same_perturbation_in_another_process():
  z = fk.perturbation({"a": jnp.zeros((3, 4)), "b": jnp.zeros(5)}, 2024)
  r = run_python("import jax.numpy as jnp\nfrom paperjax.papers.fedkseed import method as fk\n"
                 "z = fk.perturbation({'a': jnp.zeros((3, 4)), 'b': jnp.zeros(5)}, 2024)\n"
                 "print(repr([float(v) for v in z['a'].ravel()] + [float(v) for v in z['b']]))")
  assert r.returncode == 0, r.stderr[-2000:]
  assert eval(r.stdout.strip().splitlines()[-1]) == [float(v) for v in z["a"].ravel()] + [float(v) for v in z["b"]]


def test_server_replay_reproduces_a_client_and_fedavg_of_clients():
  seeds = jnp.asarray(fk.candidate_seeds(16, 0))
  p0 = {"w": jnp.array([0.1, -0.2, 0.3]), "b": jnp.array(0.05)}
  run = fk.local_zo(_loss, seeds, lr=0.05, eps=1e-3)
  data = _batches(2, 12)
  probs = jnp.full(16, 1 / 16)
  clients = [run(p0, jax.tree.map(lambda x: x[c], data), probs, jax.random.PRNGKey(c)) for c in range(2)]
  # One client: its (seed, g) pairs replayed from θ0 give its parameters.
  p1, idx, g, _ = clients[0]
  G = jnp.zeros(16).at[idx].add(g)
  for a, b in zip(jax.tree.leaves(fk.replay(p0, seeds, G, 0.05)), jax.tree.leaves(p1)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Two clients weighted 1:3: replay of the weighted per-seed sums = weighted mean of their models.
  w = np.array([1.0, 3.0])
  G2 = sum(wi * jnp.zeros(16).at[c[1]].add(c[2]) for wi, c in zip(w, clients)) / w.sum()
  want = jax.tree.map(lambda a, b: (w[0] * a + w[1] * b) / w.sum(), clients[0][0], clients[1][0])
  for a, b in zip(jax.tree.leaves(fk.replay(p0, seeds, G2, 0.05)), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pro_probabilities_by_hand():
  abs_sum = jnp.array([2.0, 0.0, 9.0, 1.0])
  count = jnp.array([2.0, 0.0, 3.0, 1.0])            # means 1, (unused → mean of used = 5/3), 3, 1
  a = np.array([1.0, 5 / 3, 3.0, 1.0])
  norm = (a - a.min()) / (a.max() - a.min())
  want = np.exp(norm) / np.exp(norm).sum()
  np.testing.assert_allclose(fk.pro_probabilities(abs_sum, count), want, rtol=1e-6)


def _round(K, tau, D, pro=False):
  cfg = ml_collections.ConfigDict({"fedkseed": {"K": K, "lr": 0.01, "eps": 1e-3, "pro": pro, "pro_clip": 10.0},
                                   "population": {"weighting": "examples"}})
  mesh = sharding.make_mesh((population.AXIS, "data", "fsdp", "tensor"), (-1, 1, 1, 1))
  params = {"w": jnp.zeros(D), "b": jnp.zeros(())}
  extras = {"seeds": jnp.asarray(fk.candidate_seeds(K, 0)), "abs_sum": jnp.zeros(K), "count": jnp.zeros(K),
            "comm": comm.init_totals()}
  state = TrainState.create(params, optax.sgd(0.0), rng=jax.random.PRNGKey(0), extras=extras)
  batch = {**_batches(2, tau, D), "client": jnp.array([3, 7], jnp.int32), "num_examples": jnp.array([10.0, 30.0])}
  step = fk.fedkseed_step(_loss, cfg)
  return jax.jit(lambda s, b: step(s, b, Context(config=cfg, mesh=mesh)))(state, batch)


def test_bytes_per_client_per_round_are_4k_plus_8tau_whatever_the_model():
  assert fk.message_bytes(4096, 200) == (1600, 16384)
  small, big = _round(4096, 200, 3)[1], _round(4096, 200, 300)[1]
  for m in (small, big):
    per_client = float(m["comm/up_bytes_per_client"] + m["comm/down_bytes_per_client"])
    assert per_client == 4 * 4096 + 8 * 200 == 17_984 <= 18_000
    assert float(m["comm/bytes"]) == 2 * 17_984
  fedavg_bytes = 4 * (300 + 1)
  assert fedavg_bytes > 0  # the FedAvg comparison at toy scale is in the claim (4·|θ| per direction)


def test_pro_history_counts_every_uploaded_pair():
  state, m = _round(64, 10, 3, pro=True)
  assert float(state.extras["count"].sum()) == 2 * 10
  assert float(m["participants"]) == 2 and np.isfinite(float(m["loss"]))
