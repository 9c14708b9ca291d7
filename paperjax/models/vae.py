"""A small MLP variational auto-encoder over flat vectors (e.g. flattened network weights).

  encode(x)  → (μ, log σ²) [B, latent]      Dense → SiLU → … → Dense(2·latent)
  decode(z)  → x̂ [B, D]                      Dense → SiLU → … → Dense(D)
  loss       ‖x − x̂‖² / D + β·KL(N(μ, σ²) ‖ N(0, I)) / latent, with z = μ + σ·n (reparameterised)
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from paperjax.models.cnn import dense


class MLPVAE(nn.Module):
  dim: int
  latent: int = 64
  hidden: Sequence[int] = (256,)

  def setup(self):
    self.enc = [dense(h, f"enc{i}") for i, h in enumerate(self.hidden)]
    self.enc_out = dense(2 * self.latent, "enc_out")
    self.dec = [dense(h, f"dec{i}") for i, h in enumerate(reversed(self.hidden))]
    self.dec_out = dense(self.dim, "dec_out")

  def encode(self, x):
    h = x
    for layer in self.enc:
      h = nn.silu(layer(h))
    mu, logvar = jnp.split(self.enc_out(h), 2, axis=-1)
    return mu, jnp.clip(logvar, -12.0, 6.0)

  def decode(self, z):
    h = z
    for layer in self.dec:
      h = nn.silu(layer(h))
    return self.dec_out(h)

  def __call__(self, x):
    return self.decode(self.encode(x)[0])


def vae_loss(model: MLPVAE, params, x, rng, beta: float):
  """(loss, {"recon", "kl"}) of a batch of flat vectors x [B, D]."""
  mu, logvar = model.apply({"params": params}, x, method=MLPVAE.encode)
  z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape)
  recon = jnp.mean((model.apply({"params": params}, z, method=MLPVAE.decode) - x) ** 2)
  kl = jnp.mean(0.5 * jnp.sum(jnp.exp(logvar) + mu ** 2 - 1 - logvar, -1)) / mu.shape[-1]
  return recon + beta * kl, {"recon": recon, "kl": kl}
