"""Improved Techniques for Training Consistency Models (Song & Dhariwal, ICLR 2024).
https://arxiv.org/abs/2310.14189

A consistency model f_θ(x, σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x, c_noise(σ)) maps any point of a
probability-flow trajectory to its origin; c_skip(σ_min) = 1 and c_out(σ_min) = 0 make f(x, σ_min) = x
exactly (diffusion.consistency_scalings). Consistency *training* (no pre-trained diffusion model):

  L = E_{x, z, i} [ λ(σ_i) · d( f_θ(x + σ_{i+1} z, σ_{i+1}),  sg f_θ⁻(x + σ_i z, σ_i) ) ]        (same z)

over a Karras grid σ_1 < … < σ_N (σ_min 0.002, σ_max 80, ρ = 7). iCT's recipe (`ict.variant="ict"`):
  teacher   θ⁻ = θ (no EMA teacher: the EMA makes CT's objective inconsistent, §3.2)
  distance  pseudo-Huber d(a, b) = √(‖a−b‖² + c²) − c, c = 0.00054·√D (D: data dimension)
  weight    λ(σ_i) = 1 / (σ_{i+1} − σ_i)
  index     p(i) ∝ erf((ln σ_{i+1} − P_mean)/(√2 P_std)) − erf((ln σ_i − P_mean)/(√2 P_std)), P_mean = −1.1,
            P_std = 2.0 (lognormal noise levels)
  N(k)      min(s0·2^⌊k/K'⌋, s1) + 1, s0 = 10, s1 = 1280, K' = ⌊K / (log2⌊s1/s0⌋ + 1)⌋ (K: training steps)
  sampling  one step x = f(σ_max z, σ_max); two steps adds x ← f(x + √(σ_mid² − σ_min²) z', σ_mid),
            σ_mid = 0.821; evaluation uses an EMA of θ (0.99993 in the paper) — `extras["ema"]`.
The original CT recipe (Song et al. 2023; `ict.variant="ct"`): EMA teacher θ⁻ ← μ(k)θ⁻ + (1−μ(k))θ with
μ(k) = exp(s0 ln μ0 / N(k)), μ0 = 0.9; N(k) = ⌈√(k/K·((s1+1)² − s0²) + s0²) − 1⌉ + 1 with s0 = 2,
s1 = 150; i uniform; λ = 1; LPIPS (here squared L2, as the CT paper's ℓ2 runs, since LPIPS needs
ImageNet-trained weights and does not apply to 2-D points).

Defaults: σ_d = 0.5, RAdam lr 1e-4, batch 1024, dropout 0.3 on CIFAR-10 (cifar10 preset); dropout
masks are the same for student and teacher (the paper synchronises their RNGs). The curriculum N(k)
is computed inside the jitted step from the step counter, so the grid changes without recompiling.

Deviations. c_noise = 1000·¼·ln σ (the consistency-models code's rescaling, not stated in the iCT
paper); both variants use iCT's Fourier scale 0.02 so the claim compares the training recipes, not the
embeddings (CT used 16); a small MLP/UNet, not NCSN++; the toy's evaluation EMA decays at 0.999
(0.99993 averages over ~14k steps, longer than the toy runs), the same for both variants.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, erfc

from paperjax import diffusion
from paperjax import step as step_lib
from paperjax.evals import generative
from paperjax.method import Method, PaperInfo
from paperjax.models import denoisers

PAPER = PaperInfo(slug="ict", title="Improved Techniques for Training Consistency Models", authors="Song, Dhariwal",
                  year=2024, url="https://arxiv.org/abs/2310.14189", family="generative")

RECIPES = {
    "ict": dict(teacher="none", distance="pseudo_huber", weighting="inverse_gap", index="lognormal",
                curriculum="ict", s0=10, s1=1280),
    "ct": dict(teacher="ema", distance="l2", weighting="uniform", index="uniform", curriculum="ct", s0=2, s1=150),
}


# --------------------------------------------------------------------------- the paper's rules


def ict_discretization(k, total_steps: int, s0: int = 10, s1: int = 1280):
  """N(k) = min(s0·2^⌊k/K'⌋, s1) + 1, K' = ⌊K / (log2⌊s1/s0⌋ + 1)⌋."""
  kp = max(1, math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1)))
  doublings = jnp.minimum(jnp.asarray(k, jnp.int32) // kp, 30)
  return jnp.minimum(s0 * jnp.left_shift(jnp.int32(1), doublings), s1) + 1


def ct_discretization(k, total_steps: int, s0: int = 2, s1: int = 150):
  """CT's N(k) = ⌈√(k/K·((s1+1)² − s0²) + s0²) − 1⌉ + 1."""
  frac = jnp.asarray(k, jnp.float32) / total_steps
  return (jnp.ceil(jnp.sqrt(frac * ((s1 + 1) ** 2 - s0 ** 2) + s0 ** 2) - 1) + 1).astype(jnp.int32)


def ct_teacher_decay(n, s0: int = 2, mu0: float = 0.9):
  """μ(k) = exp(s0·ln μ0 / N(k))."""
  return jnp.exp(s0 * math.log(mu0) / jnp.asarray(n, jnp.float32))


def lognormal_index_logits(sig_lo, sig_hi, p_mean: float = -1.1, p_std: float = 2.0):
  """log p(i) (unnormalised) for pairs (σ_i, σ_{i+1})."""
  arg = lambda s: (jnp.log(s) - p_mean) / (math.sqrt(2) * p_std)
  a_lo, a_hi = arg(sig_lo), arg(sig_hi)
  # erf(b) − erf(a) = erfc(a) − erfc(b): the upper tail without float32 cancellation near erf → 1.
  diff = jnp.where(a_lo > 0, erfc(a_lo) - erfc(a_hi), erf(a_hi) - erf(a_lo))
  return jnp.log(jnp.maximum(diff, 1e-30))


def index_distribution(n, max_pairs: int, kind: str, sigma_min: float, sigma_max: float, rho: float,
                       p_mean: float = -1.1, p_std: float = 2.0):
  """(logits over i = 0..max_pairs−1 (−inf past the n−1 valid pairs), σ_i, σ_{i+1}) on the n-point grid."""
  idx = jnp.arange(max_pairs)
  lo = diffusion.karras_sigma(idx, n, sigma_min, sigma_max, rho)
  hi = diffusion.karras_sigma(idx + 1, n, sigma_min, sigma_max, rho)
  valid = idx < n - 1
  if kind == "lognormal":
    logits = lognormal_index_logits(jnp.where(valid, lo, 1.0), jnp.where(valid, hi, 2.0), p_mean, p_std)
  elif kind == "uniform":
    logits = jnp.zeros(max_pairs)
  else:
    raise ValueError(f"ict.index={kind!r} is unknown; use 'lognormal' or 'uniform'.")
  return jnp.where(valid, logits, -jnp.inf), lo, hi


def consistency_function(model, sigma_data: float, sigma_min: float, dropout: float = 0.0):
  """f(params, x, σ[B], dropout_rng=None) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))."""
  def f(params, x, sigma, dropout_rng=None):
    c_skip, c_out, c_in = diffusion.consistency_scalings(sigma, sigma_data, sigma_min)
    b = lambda v: diffusion.bcast(v, x)
    det = dropout_rng is None or dropout == 0
    F = model.apply({"params": params}, b(c_in) * x, diffusion.c_noise(sigma), deterministic=det,
                    rngs=None if det else {"dropout": dropout_rng})
    return b(c_skip) * x + b(c_out) * F
  return f


def consistency_training_loss(f, params, teacher_params, x, z, s_lo, s_hi, distance: str, weighting: str,
                              huber_c: float, dropout_rng=None):
  """mean_b λ(σ_i)·d(f_θ(x + σ_{i+1}z, σ_{i+1}), sg f_θ⁻(x + σ_i z, σ_i)) with one z and one dropout mask
  for both; returns (loss, d per example). f(params, x, σ[B], dropout_rng) is the consistency function."""
  b = lambda v: diffusion.bcast(v, x)
  student = f(params, x + b(s_hi) * z, s_hi, dropout_rng)
  teacher = jax.lax.stop_gradient(f(teacher_params, x + b(s_lo) * z, s_lo, dropout_rng))
  if distance == "pseudo_huber":
    d = diffusion.pseudo_huber(student, teacher, huber_c)
  elif distance == "l2":
    d = diffusion.squared_l2(student, teacher)
  else:
    raise ValueError(f"ict.distance={distance!r} is unknown; use 'pseudo_huber' or 'l2'.")
  if weighting == "inverse_gap":
    lam = 1.0 / (s_hi - s_lo)
  elif weighting == "uniform":
    lam = jnp.ones_like(s_hi)
  else:
    raise ValueError(f"ict.weighting={weighting!r} is unknown; use 'inverse_gap' or 'uniform'.")
  return jnp.mean(lam * d), d


def recipe(config) -> dict:
  c = config.ict
  if c.variant not in RECIPES:
    raise ValueError(f"ict.variant={c.variant!r} is unknown; use one of {sorted(RECIPES)}.")
  r = dict(RECIPES[c.variant])
  r.update({k: c[k] for k in ("teacher", "distance", "weighting", "index", "curriculum", "s0", "s1")
            if c.get(k) not in (None, "", 0)})
  return r


# --------------------------------------------------------------------------- method


def make(config, ctx) -> Method:
  c = config.ict
  r = recipe(config)
  field, shape = diffusion.data_field(config.data.source)
  model = denoisers.build(config.model, shape)
  to_model, from_model = diffusion.scalers(field)
  D = int(np.prod(shape))
  huber_c = float(c.huber_c) or 0.00054 * math.sqrt(D)
  K = int(config.train.steps)
  smin, smax, rho, sd = float(c.sigma_min), float(c.sigma_max), float(c.rho), float(c.sigma_data)
  s0, s1 = int(r["s0"]), int(r["s1"])
  max_pairs = s1 + 1
  dropout = float(config.model.get("dropout", 0.0))

  consistency_fn = consistency_function(model, sd, smin, dropout)

  def discretization(k):
    if r["curriculum"] == "ict":
      return ict_discretization(k, K, s0, s1)
    if r["curriculum"] == "ct":
      return ct_discretization(k, K, s0, s1)
    if r["curriculum"] == "fixed":
      return jnp.int32(s1 + 1)
    raise ValueError(f"ict.curriculum={r['curriculum']!r} is unknown; use 'ict', 'ct' or 'fixed'.")

  def loss_fn(params, batch, rng, state):
    raw = batch[field]
    x = to_model(raw.astype(jnp.float32) / (255.0 if raw.dtype == jnp.uint8 else 1.0))
    B = x.shape[0]
    n = discretization(state.step)
    i_rng, z_rng, d_rng = jax.random.split(rng, 3)
    logits, lo, hi = index_distribution(n, max_pairs, r["index"], smin, smax, rho, float(c.p_mean), float(c.p_std))
    # Inverse-CDF draw: B uniforms instead of B × max_pairs Gumbels (jax.random.categorical).
    cdf = jnp.cumsum(jax.nn.softmax(logits))
    i = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(i_rng, (B,)) * cdf[-1]), n - 2)
    s_lo, s_hi = lo[i], hi[i]
    z = jax.random.normal(z_rng, x.shape)
    teacher_params = state.extras["teacher"] if r["teacher"] == "ema" else params
    value, d = consistency_training_loss(consistency_fn, params, teacher_params, x, z, s_lo, s_hi, r["distance"],
                                         r["weighting"], huber_c, d_rng)
    return value, ({"num_scales": n.astype(jnp.float32), "distance": jnp.mean(d), "sigma_mean": jnp.mean(s_hi)}, None)

  base_step = step_lib.stateful_sgd_step(loss_fn)

  def step(state, batch, ctx_):
    new, metrics = base_step(state, batch, ctx_)
    if r["teacher"] == "ema":
      mu = ct_teacher_decay(discretization(state.step), s0, float(c.mu0))
      new = new.replace(extras={**new.extras, "teacher": diffusion.ema_update(state.extras["teacher"], new.params, mu)})
      metrics = {**metrics, "teacher_decay": mu}
    return new, metrics

  def init(rng, ex):
    x = jnp.zeros((1,) + shape)
    return model.init(rng, x, jnp.zeros((1,)))["params"]

  def init_extras(rng, params):
    extras = {"ema": diffusion.init_ema(params)}
    if r["teacher"] == "ema":
      extras["teacher"] = diffusion.init_ema(params)
    return extras

  def sampler(sigmas):
    def sample(params, rng, n):
      z_rng, s_rng = jax.random.split(rng)
      z = jax.random.normal(z_rng, (n,) + shape)
      return from_model(diffusion.consistency_sample(lambda x, s: consistency_fn(params, x, s), z, s_rng, sigmas, smin))
    return jax.jit(sample, static_argnums=2)

  evaluators = () if ctx is None or ctx.abstract else _evaluators(config, sampler, smax, float(c.sigma_mid))
  example_fn = (lambda ex, rng: {"image": diffusion.to_float_image(ex)}) if field == "image" else None
  return Method(init=init, loss=loss_fn, step=diffusion.with_ema(step, float(c.ema_decay)),
                init_extras=init_extras, example_fn=example_fn, evaluators=evaluators,
                eval_params=diffusion.eval_ema if c.eval_ema else None, model=model,
                summary_keys=tuple(f"{s}_{m}" for s in ("one_step", "two_step")
                                   for m in ("energy_distance", "mmd", "modes_covered", "within_3std", "fd_digits",
                                             "confident", "class_entropy", "png")))


def _evaluators(config, sampler, smax, smid):
  ref = generative.reference(config)
  return [generative.SampleQuality("one_step", sampler((smax,)), **ref),
          generative.SampleQuality("two_step", sampler((smax, smid)), **ref)]
