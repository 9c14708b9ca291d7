"""Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint? (Chen et al., 2024).
https://arxiv.org/abs/2410.01623 — official code https://github.com/xichen-fy/Fira (optimizer_torch/fira_adamw.py).

Rule, per weight matrix G_t ∈ R^{m×n} (an optax transformation routed to kernels; the rest gets Adam):
  P_t      top-r singular vectors of G_t, refreshed every T steps (t % T == 0), else kept: left P ∈ R^{m×r}
           when m < n (R = PᵀG, r×n), right P ∈ R^{r×n} otherwise (R = GPᵀ, m×r)       — GaLore's projector
  m, v     Adam moments of R only (the low-rank constraint: optimizer state is r×n, not m×n)
  ψ(R)     = m_t / (√v_t + ε);   low-rank update  U = α · P ψ(R)   (projected back)
  φ_i      = ‖ψ(R)_{:,i}‖ / (‖R_{:,i}‖ + 1e-8), one factor per column of R along its larger side
           (per row when projected from the right)                                    — norm-based scaling
  S_t      = φ ⊙ (G_t − α · P R)         the residual outside the subspace, scaled like Adam would scale it
  limiter  if ‖S_t‖ / ‖S_{t−1}‖ > γ:  S_t ← S_t · γ ‖S_{t−1}‖ / ‖S_t‖  (γ = 1.01; the stored norm is the
           limited one; the first step is not limited)                                — norm-growth limiter
  W       ← W − η_t √(1−β₂ᵗ)/(1−β₁ᵗ) · (U + S_t), then decoupled weight decay W ← W − η_t λ W
GaLore (Zhao et al., 2024) is the same transformation with the residual dropped (S ≡ 0): `galore`.
Defaults from the paper's pre-training scripts (LLaMA-60M): rank d/4, T = 200, α = 0.25, γ = 1.01, lr 0.01,
β = (0.9, 0.999), ε = 1e-6, no weight decay. Embeddings, norm scales and biases use plain Adam with the
same learning rate, as in the official scripts.

Deviations: attention kernels ([d, heads, head_dim] in the shared transformer) are viewed as matrices by
splitting their axes where the view is closest to square (`optim.as_matrix_shape`); the bias correction is
folded into the step size exactly as the official code does (ψ uses uncorrected moments).
Ablations (`fira.residual`, `fira.scaling`, `fira.limiter`): no residual = GaLore, φ ≡ 1, no limiter.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from paperjax import optim
from paperjax.method import Method, PaperInfo
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="fira", title="Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint?",
                  authors="Chen et al.", year=2024, url="https://arxiv.org/abs/2410.01623",
                  family="memory-efficient optimizer")


class FiraState(NamedTuple):
  """Per-kernel trees shaped like the params (so optax.tree_map_params and the sharding rules see them)."""
  count: jax.Array
  proj: optax.Params       # P: m×r (left) or r×n (right)
  mu: optax.Params         # Adam first moment of R
  nu: optax.Params         # Adam second moment of R
  prev_norm: optax.Params  # ‖S_{t−1}‖ after limiting (the limiter's memory)


def _plan(shape, rank: int):
  m, n = optim.as_matrix_shape(tuple(shape))
  left = m < n   # the official projector: right when m ≥ n
  r = min(rank, m, n)
  return m, n, left, r


def projector(G: jax.Array, r: int, left: bool) -> jax.Array:
  """GaLore's projector: the top-r left (m×r) or right (r×n) singular vectors of G."""
  U, _, Vh = jnp.linalg.svd(G.astype(jnp.float32), full_matrices=False)
  return U[:, :r] if left else Vh[:r, :]


def scale_by_fira(rank: int, update_proj_gap: int = 200, alpha: float = 0.25, b1: float = 0.9, b2: float = 0.999,
                  eps: float = 1e-6, gamma: float = 1.01, residual: bool = True, scaling: bool = True,
                  limiter: bool = True) -> optax.GradientTransformation:
  """Fira's direction for every leaf it receives (route it to kernels with `optim.route_matrices`).
  `residual=False` is GaLore. Updates come out as descent directions (scale by −lr afterwards)."""
  T = int(update_proj_gap)

  def init(params):
    def one(p):
      m, n, left, r = _plan(p.shape, rank)
      low = (r, n) if left else (m, r)
      return (jnp.zeros((m, r) if left else (r, n), jnp.float32), jnp.zeros(low, jnp.float32),
              jnp.zeros(low, jnp.float32), jnp.zeros((), jnp.float32))
    return _split(jnp.zeros((), jnp.int32), params, jax.tree.map(one, params))

  def update(updates, state, params=None):
    del params
    t = state.count
    bc = jnp.sqrt(1.0 - b2 ** (t + 1).astype(jnp.float32)) / (1.0 - b1 ** (t + 1).astype(jnp.float32))

    def one(g, proj, mu, nu, prev):
      m, n, left, r = _plan(g.shape, rank)
      G = g.reshape(m, n).astype(jnp.float32)
      P = jax.lax.cond(t % T == 0, lambda: projector(G, r, left), lambda: proj)
      down = (lambda X: P.T @ X) if left else (lambda X: X @ P.T)
      back = (lambda X: P @ X) if left else (lambda X: X @ P)
      R = down(G)
      mu = b1 * mu + (1 - b1) * R
      nu = b2 * nu + (1 - b2) * R * R
      psi = mu / (jnp.sqrt(nu) + eps)
      out = alpha * back(psi)
      if residual:
        resid = G - alpha * back(R)
        if scaling:
          axis = 0 if psi.shape[0] < psi.shape[1] else 1   # norms along the smaller (rank) side
          phi = jnp.linalg.norm(psi, axis=axis, keepdims=True) / (jnp.linalg.norm(R, axis=axis, keepdims=True) + 1e-8)
          resid = resid * phi
        norm = jnp.linalg.norm(resid)
        ratio = jnp.where(t > 0, jnp.maximum(norm / (prev + 1e-8), gamma) / gamma, 1.0) if limiter else 1.0
        resid = resid / ratio
        prev = norm / ratio   # kept without the limiter too (what the limiter would compare against)
        out = out + resid
      return (bc * out).reshape(g.shape).astype(g.dtype), (P, mu, nu, prev)

    pairs = jax.tree.map(one, updates, state.proj, state.mu, state.nu, state.prev_norm)
    outer = jax.tree.structure(updates)
    flat = outer.flatten_up_to(pairs)
    return outer.unflatten([u for u, _ in flat]), _split(t + 1, updates, outer.unflatten([s for _, s in flat]))

  return optax.GradientTransformation(init, update)


def _split(count, like, per_leaf) -> FiraState:
  """Per-leaf (proj, mu, nu, prev_norm) tuples → a FiraState of four params-shaped trees."""
  outer = jax.tree.structure(like)
  flat = outer.flatten_up_to(per_leaf)
  return FiraState(count, *(outer.unflatten([x[i] for x in flat]) for i in range(4)))


def _fira_block(opt) -> dict:
  return dict(rank=int(opt.get("rank", 128)), update_proj_gap=int(opt.get("update_proj_gap", 200)),
              alpha=float(opt.get("alpha", 0.25)), b1=float(opt.get("b1", 0.9)), b2=float(opt.get("b2", 0.999)),
              eps=float(opt.get("eps", 1e-6)), gamma=float(opt.get("gamma", 1.01)))


def _optimizer(lr, opt, **flags) -> optax.GradientTransformation:
  k = _fira_block(opt)
  matrix = scale_by_fira(**k, **flags)
  other = optax.scale_by_adam(b1=k["b1"], b2=k["b2"], eps=k["eps"])
  wd = float(opt.get("weight_decay", 0.0))
  parts = [optim.route_matrices(matrix, other)]
  if wd:
    parts.append(optax.add_decayed_weights(wd, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)))
  parts.append(optax.scale_by_learning_rate(lr))
  return optax.chain(*parts)


def fira(lr, opt) -> optax.GradientTransformation:
  """`optimizer.name="paperjax.papers.fira.method:fira"`: Fira on kernels, Adam elsewhere. Ablations via
  optimizer.residual / scaling / limiter (booleans, default on)."""
  return _optimizer(lr, opt, residual=bool(opt.get("residual", True)), scaling=bool(opt.get("scaling", True)),
                    limiter=bool(opt.get("limiter", True)))


def galore(lr, opt) -> optax.GradientTransformation:
  """`optimizer.name="paperjax.papers.fira.method:galore"`: GaLore (the residual dropped), the baseline."""
  return _optimizer(lr, opt, residual=False)


def make(config, ctx) -> Method:
  """The shared decoder LM on text; what Fira changes is only the optimizer named in config.optimizer."""
  t = task_lib.build(config, ctx)
  return Method(init=t.init, loss=t.loss, example_fn=t.example_fn, evaluators=t.evaluators, model=t.model,
                summary_keys=("val_loss",))


def state_bytes_by_group(opt, params) -> dict[str, int]:
  """Optimizer-state bytes on the kernels ("matrix") and on the rest ("other") for `opt` (a config
  optimizer block: Fira/GaLore by import path, or full-rank Adam, whose state on a kernel is 2 × its size)."""
  name = str(opt.name)
  k = _fira_block(opt)
  if name.endswith(":fira") or name.endswith(":galore"):
    matrix = scale_by_fira(**k, residual=name.endswith(":fira"))
  else:
    matrix = optax.scale_by_adam(b1=k["b1"], b2=k["b2"], eps=k["eps"])
  labels = optim.matrix_labels(params)
  out = {}
  for group, tx in (("matrix", matrix), ("other", optax.scale_by_adam())):
    sub = jax.tree.map(lambda p, l, g=group: p if l == g else None, params, labels)
    out[group] = optim.state_bytes(jax.eval_shape(tx.init, sub))
  return out
