"""Streaming DiLoCo's rule against DiLoCo, single-worker training, a hand-computed delayed merge,
the E3M0 quantiser and the fragment schedule."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import diloco as diloco_config
from configs import streaming_diloco as sd_config
from paperjax import comm, population, sharding, train
from paperjax.method import Context
from paperjax.papers.streaming_diloco import method as sd
from paperjax.state import TrainState
from tests.conftest import shrink


def _mesh():
  return sharding.make_mesh((population.AXIS, "data", "fsdp", "tensor"), (-1, 1, 1, 1))


def _cfg(P=1, H=4, tau=0, alpha=0.5, quant="none", M=2):
  return ml_collections.ConfigDict({
      "population": {"local_steps": H, "clients": M, "clients_per_round": 0},
      "streaming": {"fragments": P, "overlap": tau, "alpha": alpha, "quantization": quant, "mode": "streaming",
                    "scheme": "strided"}})


PARAMS = {"embed": {"w": jnp.array([0.3, -0.2])}, "layer_0": {"w": jnp.array([1.0, 2.0])},
          "layer_1": {"w": jnp.array([-1.0, 0.5])}}


def _loss(p, b, rng):
  pred = b["x"] @ (p["embed"]["w"] + p["layer_0"]["w"] * p["layer_1"]["w"])
  return jnp.mean((pred - b["y"]) ** 2), {}


def _state(cfg, inner, outer, local=None):
  M = int(cfg.population.clients)
  ids = sd.fragment_of_leaves(PARAMS, int(cfg.streaming.fragments))
  groups = sd._group(jax.tree.leaves(PARAMS), ids, int(cfg.streaming.fragments))
  stacked = local if local is not None else jax.tree.map(lambda x: jnp.broadcast_to(x, (M,) + x.shape), PARAMS)
  extras = {"pop": {"params": stacked, "opt": jax.vmap(inner.init)(stacked)},
            "outer": tuple(outer.init(g) for g in groups), "inflight": groups, "comm": comm.init_totals()}
  return TrainState.create(PARAMS, outer, rng=jax.random.PRNGKey(0), extras=extras), ids


def _batches(M, H, rounds, seed=0):
  r = np.random.default_rng(seed)
  return [{"x": jnp.asarray(r.normal(size=(M, H, 3, 2)), jnp.float32), "y": jnp.asarray(r.normal(size=(M, H, 3)), jnp.float32),
           "client": jnp.arange(M, dtype=jnp.int32), "num_examples": jnp.ones(M)} for _ in range(rounds)]


def _run(cfg, inner, outer, batches, local=None):
  state, ids = _state(cfg, inner, outer, local)
  step = sd.streaming_step(_loss, inner, outer, cfg, ids)
  ctx = Context(config=cfg, mesh=_mesh())
  f = jax.jit(lambda s, b: step(s, b, ctx))
  ms = []
  for b in batches:
    state, m = f(state, b)
    ms.append(m)
  return state, ms


def test_one_worker_with_plain_outer_sgd_is_single_worker_training():
  inner, outer = optax.adam(0.05), optax.sgd(1.0)
  batches = _batches(1, 4, 3)
  state, _ = _run(_cfg(P=1, tau=0, M=1), inner, outer, batches)
  p, o = PARAMS, inner.init(PARAMS)
  for b in batches:
    for h in range(4):
      g = jax.grad(lambda q: _loss(q, {"x": b["x"][0, h], "y": b["y"][0, h]}, None)[0])(p)
      u, o = inner.update(g, o, p)
      p = optax.apply_updates(p, u)
  for a, e in zip(jax.tree.leaves(state.params), jax.tree.leaves(p)):
    np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


def test_delayed_merge_matches_hand_computation():
  """Inner lr 0 (workers never move): at n=H the global takes θ − lr·mean(θ − θ_m); τ steps later
  each worker becomes α θ_m + (1 − α) θ_glob'; before that it is untouched."""
  cfg = _cfg(P=1, H=4, tau=2, alpha=0.25, M=2)
  local = jax.tree.map(lambda x: jnp.stack([x + 1.0, x - 3.0]), PARAMS)
  inner, outer = optax.sgd(0.0), optax.sgd(0.5)
  b = _batches(2, 4, 2)
  after1, _ = _run(cfg, inner, outer, b[:1], local)
  glob = jax.tree.map(lambda x, l: x - 0.5 * (x - l.mean(0)), PARAMS, local)  # mean of (θ − θ_m) = θ − mean θ_m
  for a, e in zip(jax.tree.leaves(after1.params), jax.tree.leaves(glob)):
    np.testing.assert_allclose(a, e, rtol=1e-6)
  for a, e in zip(jax.tree.leaves(after1.extras["pop"]["params"]), jax.tree.leaves(local)):
    np.testing.assert_array_equal(a, e)       # merge not due yet (n=4, τ=2)
  after2, _ = _run(cfg, inner, outer, b[:1] + b[1:2], local)  # n=6: merged
  want = jax.tree.map(lambda l, g: 0.25 * l + 0.75 * g[None], local, glob)
  for a, e in zip(jax.tree.leaves(after2.extras["pop"]["params"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, e, rtol=1e-6)


def test_fragments_are_strided_staggered_and_peak_bytes_fall():
  ids = sd.fragment_of_leaves(PARAMS, 3)
  assert ids == [0, 1, 2]                       # embed → 0, layer_0 → 1, layer_1 → 2
  assert sd.offsets(3, 6) == [2, 4, 0] and sd.offsets(1, 6) == [0]
  many = {f"layer_{i}": {"w": jnp.zeros(1)} for i in range(6)}
  assert sd.fragment_of_leaves(many, 4) == [1, 2, 3, 1, 2, 3]  # strided, in leaf (sorted key) order
  assert sd.fragment_of_leaves(many, 4, "sequential") == [1, 1, 2, 2, 3, 3]
  _, m1 = _run(_cfg(P=1, M=2), optax.adam(0.01), optax.sgd(0.7, momentum=0.9, nesterov=True), _batches(2, 4, 1))
  _, m3 = _run(_cfg(P=3, M=2), optax.adam(0.01), optax.sgd(0.7, momentum=0.9, nesterov=True), _batches(2, 4, 1))
  # Same total bytes per round, but spread over three steps: the peak is the largest fragment.
  assert float(m1[0]["comm/bytes"]) == float(m3[0]["comm/bytes"]) == 2 * 2 * 6 * 4
  assert float(m3[0]["comm/peak_bytes_per_step"]) == 2 * 2 * 2 * 4 < float(m1[0]["comm/peak_bytes_per_step"])
  with pytest.raises(ValueError, match="transformer layers"):
    sd.fragment_of_leaves(PARAMS, 4)


def test_e3m0_is_a_signed_power_of_two_grid_and_idempotent():
  x = jnp.asarray(np.random.default_rng(0).normal(size=1000), jnp.float32)
  q = comm.e3m0(x)
  s = float(jnp.max(jnp.abs(x)))
  k = np.log2(np.abs(np.asarray(q)[np.asarray(q) != 0]) / s)
  np.testing.assert_allclose(k, np.round(k), atol=1e-5)
  assert k.min() >= -6 and k.max() <= 0 and len(np.unique(np.round(k))) <= 7
  np.testing.assert_array_equal(comm.e3m0(q), q)
  assert np.all(np.sign(q) * np.sign(x) >= 0)
  assert comm.e3m0_bytes({"a": x}) == 500 + 4


@pytest.mark.default_codegen
def test_p1_tau0_fp32_is_bitwise_diloco(tmp_path):
  """The whole pipeline: Streaming DiLoCo with one fragment, no overlap, no quantisation against the
  independent FedOpt implementation of DiLoCo (configs/diloco.py) on the same model, data and seed."""
  a = shrink(sd_config.get_config("tiny,variant=diloco"), steps=2)
  b = shrink(diloco_config.get_config(), steps=2)
  for key in ("model", "data"):
    b[key] = a[key]
  b.population.update(clients=a.population.clients, inner_optimizer=a.population.inner_optimizer.to_dict())
  b.optimizer = a.optimizer
  sa, sb = train.run(a, None), train.run(b, None)
  for x, y in zip(jax.tree.leaves(sa["final_params"]), jax.tree.leaves(sb["final_params"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert sa["train"]["comm/total_bytes"] == sb["train"]["comm/total_bytes"]
