"""Shared generative pieces: 2-D sources, denoisers, diffusion utilities (grids, losses, samplers, EMA),
sample-quality metrics and the evaluation-parameters seam of the loop."""

import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax import diffusion
from paperjax.data import points2d, sources
from paperjax.evals import generative
from paperjax.models import denoisers


def test_ring_and_moons_sources():
  ring = sources.records("synthetic:ring", "train")
  assert len(ring) == 20_000 and ring[0]["features"].shape == (2,)
  centres, std = points2d.modes("synthetic:ring")
  x, label = points2d.points("ring", "", "validation")
  assert np.abs(np.linalg.norm(x - centres[label], axis=1)).mean() < 2 * std * math.sqrt(2)
  assert points2d.modes("synthetic:ring/5")[0].shape == (5, 2) and points2d.modes("synthetic:moons") is None
  np.testing.assert_array_equal(sources.records("synthetic:moons", "train")[7]["features"],
                                sources.records("synthetic:moons", "train")[7]["features"])
  with pytest.raises(ValueError, match="number of modes"):
    sources.records("synthetic:ring/x", "train")


@pytest.mark.parametrize("kind,shape", [("mlp", (2,)), ("unet", (8, 8, 1))])
def test_denoisers_shapes_and_zero_init_output(kind, shape):
  model = denoisers.build(dict(kind=kind, hidden=16, layers=2, channels=8, channel_mult=(1, 2), emb_dim=16,
                               num_classes=3), shape)
  x = jnp.ones((4,) + shape)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x, jnp.zeros(4), jnp.array([0, 1, 2, 3])))
  out = jax.jit(model.apply)(params, x, jnp.arange(4.0), jnp.array([0, 1, 2, 3]))
  assert out.shape == x.shape
  np.testing.assert_array_equal(out, 0.0)   # the zero-initialised output layer


def test_karras_grid_and_scalings():
  s = diffusion.karras_sigmas(11)
  np.testing.assert_allclose([s[0], s[-1]], [0.002, 80.0], rtol=1e-5)
  lo, hi = 0.002 ** (1 / 7), 80 ** (1 / 7)
  np.testing.assert_allclose(s[3], (lo + 0.3 * (hi - lo)) ** 7, rtol=1e-5)
  c_skip, c_out, _ = diffusion.consistency_scalings(jnp.float32(0.002))
  assert float(c_skip) == 1.0 and float(c_out) == 0.0


def test_pseudo_huber_limits():
  a, b, c = jnp.zeros((2, 3)), jnp.array([[1e-4, 0, 0], [30.0, 40.0, 0]]), 0.03
  d = diffusion.pseudo_huber(a, b, c)
  np.testing.assert_allclose(d, np.sqrt(np.array([1e-8, 2500.0]) + c * c) - c, rtol=1e-5)
  np.testing.assert_allclose(d[0], 1e-8 / (2 * c), rtol=1e-3)        # ≈ ‖a−b‖²/(2c) for small residuals
  np.testing.assert_allclose(d[1], 50.0 - c, rtol=1e-5)               # ≈ ‖a−b‖ − c for large ones


def test_flow_matching_loss_and_euler_sampler():
  x0 = jnp.array([[1.0, -2.0], [0.5, 0.5]])
  rng = jax.random.PRNGKey(3)
  t_rng, e_rng = jax.random.split(rng)
  t = jax.random.uniform(t_rng, (2,))
  eps = jax.random.normal(e_rng, x0.shape)
  v_fn = lambda x, t: 2 * x
  xt = (1 - t[:, None]) * x0 + t[:, None] * eps
  np.testing.assert_allclose(diffusion.flow_matching_loss(v_fn, x0, rng),
                             ((2 * xt - (eps - x0)) ** 2).sum(1) / 2, rtol=1e-5)
  # The exact flow of a point mass at a: v(x, t) = (x − a)/t, so Euler lands on a from any x₁.
  a = jnp.array([[0.3, -0.7]])
  out = diffusion.euler_flow_sample(lambda x, t: (x - a) / t[:, None], jnp.array([[5.0, 2.0]]), steps=4)
  np.testing.assert_allclose(out, a, atol=1e-5)


def test_consistency_sampler_one_and_two_steps():
  f = lambda x, s: x / (1 + s[:, None])
  z, rng = jnp.ones((3, 2)), jax.random.PRNGKey(0)
  np.testing.assert_allclose(diffusion.consistency_sample(f, z, rng, [80.0]), 80 / 81 * z, rtol=1e-6)
  two = diffusion.consistency_sample(f, z, rng, [80.0, 0.821])
  noise = jax.random.normal(jax.random.fold_in(rng, 0), z.shape)
  np.testing.assert_allclose(two, (80 / 81 * z + math.sqrt(0.821 ** 2 - 0.002 ** 2) * noise) / 1.821, rtol=1e-5)


def test_energy_distance_mmd_modes_frechet():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
  assert abs(generative.energy_distance(x, y)) < 0.05 and generative.energy_distance(x, y + 2) > 1.0
  assert abs(generative.mmd_rbf(x, y)) < 0.02 and generative.mmd_rbf(x, y + 2) > 0.5
  np.testing.assert_allclose(generative.energy_distance(x, x), 0.0, atol=1e-9)
  centres = np.array([[0.0, 0.0], [5.0, 5.0]])
  cov = generative.mode_coverage(np.concatenate([rng.normal(size=(90, 2)) * 0.1, [[9.0, 9.0]] * 10]), centres, 0.1)
  assert cov == {"modes_covered": 1.0, "within_3std": pytest.approx(0.9, abs=0.05)}
  f = rng.normal(size=(500, 4))
  assert abs(generative.frechet_distance(f, f)) < 1e-6
  np.testing.assert_allclose(generative.frechet_distance(f, f + 1), 4.0, rtol=1e-6)


def test_digits_classifier_scores_real_digits_well(tmp_path, monkeypatch):
  val = sources.records("builtin:digits", "validation")
  x = np.stack([val[i]["image"] for i in range(len(val))])
  s = generative.digits_scores(x[:180], x[180:])
  assert s["confident"] > 0.8 and s["class_entropy"] > 2.1 and s["fd_digits"] < s_noise(x)


def s_noise(x):
  noise = np.random.default_rng(0).uniform(size=x.shape).astype(np.float32)
  return generative.digits_scores(noise, x)["fd_digits"]


def test_sample_quality_writes_png_and_names_it(tmp_path):
  class Ctx:
    workdir, step, process_index = str(tmp_path), 7, 0
  ref = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
  ev = generative.SampleQuality("one_step", lambda p, rng, n: jax.random.normal(rng, (n, 2)), ref, "points",
                                num_samples=200)
  out = ev(None, Ctx())
  assert out["one_step_png"].endswith("samples/one_step_step7.png") and os.path.exists(out["one_step_png"])
  assert out["one_step_energy_distance"] < 0.1
  img = generative.SampleQuality("grid", lambda p, rng, n: jax.random.uniform(rng, (n, 8, 8, 1)), ref[:, :1], "images",
                                 num_samples=16)(None, Ctx())
  assert os.path.exists(img["grid_png"]) and "Inception" in img["grid_fid_unavailable"]


def test_with_ema_and_eval_params_seam(tmp_path):
  """The loop hands evaluators `Method.eval_params(state)` (here the EMA in extras), with ctx.step set."""
  from configs import ict as ict_config
  from paperjax import train
  from paperjax.papers.ict import method as ict
  seen = {}

  orig = ict.make

  def make(config, ctx):
    m = orig(config, ctx)

    def probe(params, ctx):
      seen["params"], seen["step"] = params, ctx.step
      return {}
    import dataclasses
    return dataclasses.replace(m, evaluators=(probe,))

  from tests.conftest import shrink
  c = shrink(ict_config.get_config(), steps=3)
  c.ict.ema_decay = 0.5
  import unittest.mock as mock
  with mock.patch.object(ict, "make", make):
    s = train.run(c, str(tmp_path))
  assert seen["step"] == 3
  # The EMA after 3 steps at decay 0.5 differs from the final parameters.
  diff = [float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(seen["params"]), jax.tree.leaves(s["final_params"]))]
  assert max(diff) > 0


def test_ddpm_loss_is_zero_for_the_true_noise_and_sampler_shapes():
  T = 50
  _, abar = diffusion.ddpm_schedule(T)
  assert abar.shape == (T,) and float(abar[0]) > 0.99 and float(abar[-1]) < 1e-2
  z0 = jax.random.normal(jax.random.PRNGKey(0), (6, 4))

  def oracle(zt, t):   # ε recovered from z_t and the known z₀
    a = abar[t][:, None]
    return (zt - jnp.sqrt(a) * z0) / jnp.sqrt(1 - a)
  np.testing.assert_allclose(diffusion.ddpm_loss(oracle, z0, jax.random.PRNGKey(1), T), 0.0, atol=1e-6)
  assert float(diffusion.ddpm_loss(lambda zt, t: 0 * zt, z0, jax.random.PRNGKey(1), T).mean()) > 0.5
  assert diffusion.ddpm_sample(lambda zt, t: 0 * zt, (3, 4), jax.random.PRNGKey(2), T).shape == (3, 4)
  # For a point mass at a, the exact ε-prediction is (z − √ᾱ_t a)/√(1−ᾱ_t) and ancestral sampling lands on a.
  a = jnp.array([[0.5, -1.0, 2.0, 0.0]])
  exact = lambda zt, t: (zt - jnp.sqrt(abar[t])[:, None] * a) / jnp.sqrt(1 - abar[t])[:, None]
  np.testing.assert_allclose(diffusion.ddpm_sample(exact, (3, 4), jax.random.PRNGKey(2), T), jnp.tile(a, (3, 1)), atol=1e-4)


def test_vae_loss_matches_hand_computation():
  from paperjax.models import vae as vae_lib
  model = vae_lib.MLPVAE(dim=5, latent=3, hidden=(8,))
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 5))
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(1), x))["params"]
  value, aux = vae_lib.vae_loss(model, params, x, jax.random.PRNGKey(2), beta=0.1)
  mu, logvar = model.apply({"params": params}, x, method=vae_lib.MLPVAE.encode)
  z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.PRNGKey(2), mu.shape)
  recon = np.mean((np.asarray(model.apply({"params": params}, z, method=vae_lib.MLPVAE.decode)) - np.asarray(x)) ** 2)
  kl = np.mean(0.5 * np.sum(np.exp(logvar) + mu ** 2 - 1 - logvar, -1)) / 3
  np.testing.assert_allclose([value, aux["recon"], aux["kl"]], [recon + 0.1 * kl, recon, kl], rtol=1e-5)
