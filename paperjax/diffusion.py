"""Shared pieces of diffusion, flow-matching and consistency models (pure jnp; no model code).

Noise grids
  karras_sigma(i, n)         σ_i = (σ_min^{1/ρ} + i/(n−1)·(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ, i = 0..n−1 ascending
                             (EDM, Karras et al. 2022, eq. 5); `n` may be traced (curricula change it
                             inside one jitted step without recompiling)
  edm_scalings(σ, σ_d)       c_skip, c_out, c_in of the EDM denoiser D(x,σ) = c_skip x + c_out F(c_in x, c_noise)
  consistency_scalings       the same with the boundary condition of consistency models: c_skip(σ_min) = 1,
                             c_out(σ_min) = 0 (Song et al. 2023, App. C), so f(x, σ_min) = x exactly
  c_noise(σ)                 the noise level the network sees: 1000·¼·ln σ (the consistency-models code)
Losses
  pseudo_huber(a, b, c)      √(‖a−b‖² + c²) − c per example (iCT §3.3)
  flow_matching_loss         x_t = (1−t)x₀ + tε, ‖v(x_t, t) − (ε − x₀)‖² (rectified flow / CFM, t ~ U(0,1))
  eps_prediction_loss        x_σ = x₀ + σε, ‖ε̂(x_σ, σ) − ε‖² with ln σ ~ N(P_mean, P_std²)
DDPM (discrete time, ε-prediction; Ho et al. 2020)
  ddpm_schedule(T)           linear β from 1e-4 to 0.02 → ᾱ_t = Π_{s≤t}(1 − β_s)
  ddpm_loss                  ‖ε − ε_θ(√ᾱ_t z + √(1−ᾱ_t) ε, t)‖² per example, t ~ U{0..T−1}
  ddpm_sample                ancestral sampling z_{t−1} = (z_t − β_t/√(1−ᾱ_t) ε_θ)/√(1−β_t) + √β_t·n
Exact marginal flows of an empirical dataset (for mechanism tests of flow-matching methods)
  conditional_log_density    log N(x; (1−t)x₀ₙ, t²I) for every data point n
  marginal_flow(x, t, data)  u_t(x) = Σₙ wₙ(x)·(x − x₀ₙ)/t, wₙ ∝ N(x; (1−t)x₀ₙ, t²I) (optionally restricted
                             to a subset: a cluster's own marginal flow)
Samplers
  euler_flow_sample          dx/dt = v(x, t) from t = 1 (noise) to 0 (data) in `steps` Euler steps
  consistency_sample         x ← f(σ₀z, σ₀); for σ in the rest: x ← f(x + √(σ² − σ_min²) z, σ) (CM Alg. 1)
Data
  data_field(source)         which field a generative model learns ("image" or "features") and its shape
  scalers(field)             data ↔ model space: images [0, 1] ↔ [−1, 1]; points unchanged
EMA of parameters for evaluation
  ema_update(ema, params, μ) μ·ema + (1−μ)·params
  with_ema(step, decay)      wraps a `Method.step` so that `state.extras["ema"]` follows the parameters
                             (checkpointed with the state); `eval_ema` makes evaluators read it
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp


# --------------------------------------------------------------------------- noise grids


def karras_sigma(i, n, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
  lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
  frac = jnp.asarray(i, jnp.float32) / jnp.maximum(jnp.asarray(n, jnp.float32) - 1, 1)
  return (lo + frac * (hi - lo)) ** rho


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
  """The n-point grid, ascending (σ_min … σ_max)."""
  return karras_sigma(jnp.arange(n), n, sigma_min, sigma_max, rho)


def edm_scalings(sigma, sigma_data: float = 0.5):
  s2, d2 = sigma ** 2, sigma_data ** 2
  return d2 / (s2 + d2), sigma * sigma_data / jnp.sqrt(s2 + d2), 1 / jnp.sqrt(s2 + d2)


def consistency_scalings(sigma, sigma_data: float = 0.5, sigma_min: float = 0.002):
  d2 = sigma_data ** 2
  c_skip = d2 / ((sigma - sigma_min) ** 2 + d2)
  c_out = sigma_data * (sigma - sigma_min) / jnp.sqrt(sigma_data ** 2 + sigma ** 2)
  return c_skip, c_out, 1 / jnp.sqrt(sigma ** 2 + d2)


def c_noise(sigma):
  return 250.0 * jnp.log(sigma + 1e-44)


def bcast(v_B, x):
  """[B] → broadcastable against x [B, ...]."""
  return jnp.reshape(v_B, (-1,) + (1,) * (x.ndim - 1))


# --------------------------------------------------------------------------- losses


def pseudo_huber(a, b, c: float):
  """√(‖a−b‖² + c²) − c per example (sum over all but the leading axis)."""
  sq = jnp.sum(jnp.reshape((a - b) ** 2, (a.shape[0], -1)), -1)
  return sq / (jnp.sqrt(sq + c ** 2) + c)   # = √(sq + c²) − c without float32 cancellation at small sq


def squared_l2(a, b):
  return jnp.sum(jnp.reshape((a - b) ** 2, (a.shape[0], -1)), -1)


def flow_matching_loss(v_fn: Callable, x0, rng):
  """Per-example ‖v(x_t, t) − (ε − x₀)‖² / D, x_t = (1−t)x₀ + tε, t ~ U(0,1). v_fn(x_t, t) → x-shaped."""
  t_rng, e_rng = jax.random.split(rng)
  t = jax.random.uniform(t_rng, (x0.shape[0],))
  eps = jax.random.normal(e_rng, x0.shape, x0.dtype)
  xt = (1 - bcast(t, x0)) * x0 + bcast(t, x0) * eps
  return squared_l2(v_fn(xt, t), eps - x0) / math.prod(x0.shape[1:])


def eps_prediction_loss(eps_fn: Callable, x0, rng, p_mean: float = -1.2, p_std: float = 1.2):
  """Per-example ‖ε̂(x₀ + σε, σ) − ε‖² / D with ln σ ~ N(p_mean, p_std²) (EDM's training noise levels)."""
  s_rng, e_rng = jax.random.split(rng)
  sigma = jnp.exp(p_mean + p_std * jax.random.normal(s_rng, (x0.shape[0],)))
  eps = jax.random.normal(e_rng, x0.shape, x0.dtype)
  return squared_l2(eps_fn(x0 + bcast(sigma, x0) * eps, sigma), eps) / math.prod(x0.shape[1:])


# --------------------------------------------------------------------------- DDPM


def ddpm_schedule(T: int, beta_min: float = 1e-4, beta_max: float = 0.02):
  """(β [T], ᾱ [T]) of the linear schedule, scaled so T steps span the same noise as DDPM's 1000."""
  # Capped below 1: for T < ~20 the rescaled β would exceed 1 (and ᾱ turn negative).
  beta = jnp.minimum(jnp.linspace(beta_min * 1000 / T, beta_max * 1000 / T, T), 0.999)
  return beta, jnp.cumprod(1 - beta)


def ddpm_loss(eps_fn: Callable, z0, rng, T: int):
  """Per-example ‖ε − ε_θ(√ᾱ_t z₀ + √(1−ᾱ_t) ε, t)‖² / D; eps_fn(z_t, t int[B]) → z-shaped."""
  _, abar = ddpm_schedule(T)
  t_rng, e_rng = jax.random.split(rng)
  t = jax.random.randint(t_rng, (z0.shape[0],), 0, T)
  eps = jax.random.normal(e_rng, z0.shape, z0.dtype)
  a = bcast(abar[t], z0)
  return squared_l2(eps_fn(jnp.sqrt(a) * z0 + jnp.sqrt(1 - a) * eps, t), eps) / math.prod(z0.shape[1:])


def ddpm_sample(eps_fn: Callable, shape, rng, T: int):
  """Ancestral sampling from z_T ~ N(0, I) down to z₀ (no noise added at the last step)."""
  beta, abar = ddpm_schedule(T)
  z_rng, n_rng = jax.random.split(rng)
  z = jax.random.normal(z_rng, shape)

  def body(z, t):
    eps = eps_fn(z, jnp.full((shape[0],), t))
    mean = (z - beta[t] / jnp.sqrt(1 - abar[t]) * eps) / jnp.sqrt(1 - beta[t])
    noise = jax.random.normal(jax.random.fold_in(n_rng, t), shape)
    return mean + jnp.where(t > 0, jnp.sqrt(beta[t]), 0.0) * noise, None

  z, _ = jax.lax.scan(body, z, jnp.arange(T - 1, -1, -1))
  return z


# --------------------------------------------------------------------------- exact marginal flows


def conditional_log_density(x_BD, t, data_ND):
  """[B, N] log N(x_b; (1−t)x₀ₙ, t²I) (up to the constant shared by all n)."""
  d2 = jnp.sum((x_BD[:, None, :] - (1 - t) * data_ND[None]) ** 2, -1)
  return -d2 / (2 * t ** 2)


def marginal_flow(x_BD, t, data_ND, mask_N=None):
  """The exact marginal velocity of x_t = (1−t)x₀ + tε for x₀ uniform over `data` (or over the rows
  with `mask`): Σₙ wₙ (x − x₀ₙ)/t with wₙ the posterior of x₀ₙ given x_t = x."""
  logp = conditional_log_density(x_BD, t, data_ND)
  if mask_N is not None:
    logp = jnp.where(mask_N[None], logp, -jnp.inf)
  w = jax.nn.softmax(logp, axis=-1)
  return (x_BD - w @ data_ND) / t


# --------------------------------------------------------------------------- samplers


def euler_flow_sample(v_fn: Callable, x1, steps: int):
  """Integrates dx/dt = v(x, t) from t = 1 to t = 0 with `steps` uniform Euler steps; returns x₀."""
  ts = jnp.linspace(1.0, 0.0, steps + 1)

  def body(x, i):
    t, t_next = ts[i], ts[i + 1]
    return x + (t_next - t) * v_fn(x, jnp.full((x.shape[0],), t)), None

  x, _ = jax.lax.scan(body, x1, jnp.arange(steps))
  return x


def consistency_sample(f_fn: Callable, z, rng, sigmas, sigma_min: float = 0.002):
  """Multistep consistency sampling (CM Alg. 1). `sigmas` descending, sigmas[0] = σ_max; one entry is
  one-step sampling x = f(σ_max z, σ_max). f_fn(x, σ[B]) → x-shaped."""
  B = z.shape[0]
  x = f_fn(sigmas[0] * z, jnp.full((B,), sigmas[0]))
  for k, s in enumerate(list(sigmas)[1:]):
    noise = jax.random.normal(jax.random.fold_in(rng, k), z.shape, z.dtype)
    x = f_fn(x + jnp.sqrt(s ** 2 - sigma_min ** 2) * noise, jnp.full((B,), s))
  return x


# --------------------------------------------------------------------------- EMA


def ema_update(ema, params, decay):
  return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)


def init_ema(params):
  return jax.tree.map(lambda p: p, params)


def with_ema(step: Callable, decay: float) -> Callable:
  """A `Method.step` (state, batch, ctx) → (state, metrics) that also moves `state.extras["ema"]`
  towards the new parameters by `decay` (the evaluation EMA; `init_extras` must create it)."""
  def wrapped(state, batch, ctx):
    new, metrics = step(state, batch, ctx)
    return new.replace(extras={**new.extras, "ema": ema_update(state.extras["ema"], new.params, decay)}), metrics
  return wrapped


def eval_ema(state):
  """`Method.eval_params`: evaluators see the EMA parameters."""
  return state.extras["ema"]


# --------------------------------------------------------------------------- data


def data_field(source: str) -> tuple[str, tuple[int, ...]]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from paperjax.data import sources  # pylint: disable=g-import-not-at-top
  ex = sources.records(source, "train")[0]
  field = "image" if "image" in ex else "features"
  if field not in ex:
    raise ValueError(f"{source} has neither 'image' nor 'features' (it has {sorted(ex)}); a generative config "
                     "needs one of them.")
  return field, tuple(np.asarray(ex[field]).shape)


def scalers(field: str):
  """Data ↔ model space: images in [0, 1] ↔ [−1, 1] (EDM's σ_data = 0.5 convention); points as they are."""
  if field == "image":
    return (lambda x: 2 * x - 1), (lambda x: jnp.clip((x + 1) / 2, 0, 1))
  return (lambda x: x), (lambda x: x)


def to_float_image(ex):
  import numpy as np  # pylint: disable=g-import-not-at-top
  img = np.asarray(ex["image"])
  if img.dtype == np.uint8:
    img = img.astype(np.float32) / 255.0
  return img.astype(np.float32)
