"""Fira: the rule against hand computations (full rank = Adam, the scaling factor, the limiter, the
projector refresh), the routing to kernels, and a smoke run of the tiny config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paperjax import optim, train
from paperjax.papers.fira import claim as claim_lib
from paperjax.papers.fira import method as fira
from tests.conftest import shrink

B1, B2, EPS = 0.9, 0.999, 1e-8


def _run(tx, grads):
  state = tx.init({"w": jnp.zeros_like(grads[0])})
  outs, states = [], []
  for g in grads:
    u, state = tx.update({"w": g}, state)
    outs.append(np.asarray(u["w"]))
    states.append(state)
  return outs, states


@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4)])
def test_full_rank_fira_is_adam_and_galore(shape):
  """r = min(m, n), α = 1: the residual G − PR vanishes (Fira = GaLore), and with a first gradient whose
  singular vectors are the coordinate axes the projector is a signed permutation, under which Adam is
  equivariant: Fira's update equals Adam's on every later (arbitrary) gradient."""
  rng = np.random.default_rng(0)
  m, n = shape
  g0 = np.zeros(shape, np.float32)
  for i in range(min(m, n)):
    g0[i, i] = 1.0 + 0.5 * (min(m, n) - i)   # distinct singular values → a unique basis up to signs
  grads = [jnp.asarray(g0)] + [jnp.asarray(rng.normal(size=shape).astype(np.float32)) for _ in range(5)]
  kw = dict(rank=min(m, n), update_proj_gap=1000, alpha=1.0, b1=B1, b2=B2, eps=EPS)
  f, _ = _run(fira.scale_by_fira(**kw), grads)
  g, _ = _run(fira.scale_by_fira(**kw, residual=False), grads)
  a, _ = _run(optax.scale_by_adam(b1=B1, b2=B2, eps=EPS), grads)
  for t in range(len(grads)):
    np.testing.assert_allclose(f[t], g[t], atol=1e-5)
    np.testing.assert_allclose(f[t], a[t], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(5, 8), (8, 5)])
def test_one_step_matches_hand_computation(shape):
  """φ_i = ‖ψ(R)_{:,i}‖ / ‖R_{:,i}‖ along the rank side, S = φ ⊙ (G − αPR), update = bc·(αPψ + S)."""
  rng = np.random.default_rng(1)
  G = rng.normal(size=shape).astype(np.float64)
  r, alpha, eps = 2, 0.25, 1e-6
  U, _, Vh = np.linalg.svd(G, full_matrices=False)
  left = shape[0] < shape[1]
  P = U[:, :r] if left else Vh[:r]
  R = P.T @ G if left else G @ P.T
  psi = ((1 - B1) * R) / (np.sqrt((1 - B2) * R * R) + eps)
  back = (lambda X: P @ X) if left else (lambda X: X @ P)
  axis = 0 if psi.shape[0] < psi.shape[1] else 1
  phi = np.linalg.norm(psi, axis=axis, keepdims=True) / (np.linalg.norm(R, axis=axis, keepdims=True) + 1e-8)
  assert phi.size == max(shape)   # one factor per column (left) / per row (right) of the full matrix
  S = phi * (G - alpha * back(R))
  bc = np.sqrt(1 - B2) / (1 - B1)
  want = bc * (alpha * back(psi) + S)
  got, states = _run(fira.scale_by_fira(rank=r, alpha=alpha, b1=B1, b2=B2, eps=eps), [jnp.asarray(G, jnp.float32)])
  np.testing.assert_allclose(got[0], want, rtol=2e-4, atol=2e-5)
  assert float(states[0].prev_norm["w"]) == pytest.approx(np.linalg.norm(S), rel=1e-4)
  galore, _ = _run(fira.scale_by_fira(rank=r, alpha=alpha, b1=B1, b2=B2, eps=eps, residual=False),
                   [jnp.asarray(G, jnp.float32)])
  np.testing.assert_allclose(galore[0], bc * alpha * back(psi), rtol=2e-4, atol=2e-5)


def test_limiter_caps_norm_growth_at_gamma():
  rng = np.random.default_rng(2)
  G = jnp.asarray(rng.normal(size=(6, 9)).astype(np.float32))
  kw = dict(rank=2, update_proj_gap=1000, b1=B1, b2=B2, gamma=1.01)
  norms = lambda states: [float(s.prev_norm["w"]) for s in states]
  # A 10× jump of the gradient: ‖S_2‖/‖S_1‖ would be ≈ 1.09 without the limiter; it is capped at exactly γ.
  _, free = _run(fira.scale_by_fira(**kw, limiter=False), [G, 10 * G])
  _, capped = _run(fira.scale_by_fira(**kw), [G, 10 * G])
  assert norms(free)[1] / norms(free)[0] > 1.05
  assert norms(capped)[1] / norms(capped)[0] == pytest.approx(1.01, rel=1e-5)
  # The update changes by exactly the residual's rescaling; the low-rank part is untouched.
  u_free, _ = _run(fira.scale_by_fira(**kw, limiter=False), [G, 10 * G])
  u_cap, _ = _run(fira.scale_by_fira(**kw), [G, 10 * G])
  u_low, _ = _run(fira.scale_by_fira(**kw, residual=False), [G, 10 * G])
  s_free, s_cap = u_free[1] - u_low[1], u_cap[1] - u_low[1]
  np.testing.assert_allclose(s_cap, s_free * (1.01 * norms(free)[0] / norms(free)[1]), rtol=1e-4, atol=1e-6)
  # Growth below γ (a shrinking gradient) passes unchanged.
  _, free = _run(fira.scale_by_fira(**kw, limiter=False), [G, 0.1 * G])
  _, capped = _run(fira.scale_by_fira(**kw), [G, 0.1 * G])
  assert norms(capped) == pytest.approx(norms(free), rel=1e-6)


def test_projector_refreshes_every_T_steps():
  rng = np.random.default_rng(3)
  grads = [jnp.asarray(rng.normal(size=(5, 8)).astype(np.float32)) for _ in range(7)]
  _, states = _run(fira.scale_by_fira(rank=2, update_proj_gap=3), grads)
  P = [np.asarray(s.proj["w"]) for s in states]
  changed = [not np.allclose(P[t], P[t - 1]) for t in range(1, 7)]
  assert changed == [False, False, True, False, False, True]   # refreshed at t = 3 and 6 (and 0)
  U, _, _ = np.linalg.svd(np.asarray(grads[3]), full_matrices=False)
  np.testing.assert_allclose(np.abs(P[3]), np.abs(U[:, :2]), atol=1e-5)


def test_routing_and_state_bytes():
  params = {"attn": {"query": {"kernel": jnp.zeros((64, 4, 16))}}, "mlp": {"kernel": jnp.zeros((64, 192))},
            "norm": {"scale": jnp.zeros((64,))}, "embed": {"embedding": jnp.zeros((259, 64))}}
  labels = optim.matrix_labels(params)
  assert labels == {"attn": {"query": {"kernel": "matrix"}}, "mlp": {"kernel": "matrix"},
                    "norm": {"scale": "other"}, "embed": {"embedding": "other"}}
  assert optim.as_matrix_shape((64, 4, 16)) == (64, 64) and optim.as_matrix_shape((4, 16, 64)) == (64, 64)
  from configs import fira as cfg
  opt = cfg.get_config("tiny").optimizer
  tx, _ = optim.build(opt, 100)   # named by import path
  state = tx.init(params)
  u, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  assert jax.tree.map(jnp.shape, u) == jax.tree.map(jnp.shape, params)
  bad = type(opt)(dict(opt.to_dict(), name=f"{fira.__name__}:firaa"))
  with pytest.raises(ValueError, match="cannot be imported"):
    optim.build(bad, 100)
  by = fira.state_bytes_by_group(opt, params)
  adam = fira.state_bytes_by_group(cfg.get_config("tiny,variant=adam").optimizer, params)
  # Fira on a 64×64 kernel (r=16): P 64×16 + m, v 16×64 = 3·1024 floats vs Adam's 2·4096.
  # (+ one float ‖S_{t−1}‖ per kernel and the int32 step count)
  assert by["matrix"] == 4 * (3 * 64 * 16 + 64 * 16 + 2 * 16 * 192) + 4 * 2 + 4
  assert adam["matrix"] == 4 * 2 * (64 * 64 + 64 * 192) + 4
  assert by["other"] == adam["other"]


def test_claim_judge_by_hand():
  base = {"val_loss": [2.00, 2.02], "matrix_bytes": [100.0, 100.0], "total_bytes": [300.0, 300.0]}
  res = {"adam": dict(base), "adam_lr0.01": {**base, "val_loss": [2.10, 2.10]},
         "galore": {**base, "val_loss": [2.10, 2.12], "matrix_bytes": [30.0, 30.0]},
         "fira": {**base, "val_loss": [2.02, 2.03], "matrix_bytes": [30.0, 30.0]},
         "fira_no_scaling": {**base, "val_loss": [2.06, 2.06], "matrix_bytes": [30.0, 30.0]}}
  out = claim_lib.judge(res)
  assert out["passed"] and out["metrics"]["checks"]["fira_within_0.02_of_adam"]   # 2.025 vs best Adam 2.01
  assert out["metrics"]["checks"]["matrix_state_le_35pct_of_adam"]
  res["fira"]["val_loss"] = [2.09, 2.09]   # no longer 0.03 better than GaLore nor within 0.02 of Adam
  out = claim_lib.judge(res)
  assert not out["passed"] and not out["metrics"]["checks"]["fira_beats_galore_by_0.03"]


def test_tiny_config_smoke(tmp_path):
  from configs import fira as cfg
  c = shrink(cfg.get_config(), steps=3)
  c.optimizer.rank = 8
  s = train.run(c, str(tmp_path))
  assert s["step"] == 3 and np.isfinite(s["train"]["loss"]) and s["opt_state_bytes"] > 0


def test_routed_optimizer_state_takes_parameter_shardings():
  """optax cannot pair multi_transform's masked states with the params; step.state_specs pairs them by
  path: moments shaped like their kernel take its spec, Fira's low-rank leaves are replicated."""
  import flax.linen as nn
  from jax.sharding import PartitionSpec as P
  from configs import fira as cfg
  from paperjax import step as step_lib
  from paperjax.state import TrainState
  opt = cfg.get_config().optimizer
  tx, _ = optim.build(opt, 10)
  params = {"k": {"kernel": nn.LogicallyPartitioned(jnp.zeros((64, 192)), ("embed", "mlp"))},
            "n": {"scale": nn.LogicallyPartitioned(jnp.zeros((64,)), ("embed",))}}
  specs = step_lib.state_specs(jax.eval_shape(lambda r: TrainState.create(params, tx, r), jax.random.PRNGKey(0)), tx)
  routed = specs.opt_state[0].inner_states
  assert routed["other"].inner_state.mu["n"]["scale"] == P("embed")
  assert routed["matrix"].inner_state.mu["k"]["kernel"] == P()   # 16×192 low-rank moment: replicated
