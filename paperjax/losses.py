"""Losses shared by every paper: masked token cross-entropy, full and chunked.

All return *sums* (loss sum, weight sum) so that callers can average across devices, micro-batches
and evaluation batches exactly: mean = sum(loss) / sum(weight), never a mean of means.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def token_cross_entropy(logits_BLV, targets_BL, mask_BL, z_loss: float = 0.0):
  """Masked softmax cross-entropy in fp32. Returns (loss_sum, weight_sum, per-token loss [B,L])."""
  logits = logits_BLV.astype(jnp.float32)
  lse = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets_BL[..., None], axis=-1)[..., 0]
  nll = lse - target_logit
  if z_loss:
    nll = nll + z_loss * lse ** 2   # PaLM's auxiliary z-loss keeps the softmax normaliser near 1
  mask = mask_BL.astype(jnp.float32)
  per_token = nll * mask
  return per_token.sum(), mask.sum(), per_token


def chunked_token_cross_entropy(logits_fn: Callable, h_BLD, targets_BL, mask_BL, chunk: int,
                                z_loss: float = 0.0):
  """Cross-entropy that never holds the full [B, L, V] logits: a rematerialised scan over
  sequence chunks of `chunk` positions. With a 50K vocabulary this is the difference between
  B·L·V·4 bytes of fp32 logits (plus their gradient) and B·chunk·V. Same results as the full
  version up to summation order. Returns (loss_sum, weight_sum)."""
  B, L, D = h_BLD.shape
  if L % chunk:
    raise ValueError(f"sequence length {L} is not a multiple of loss_chunk={chunk}; pick a divisor of {L}.")
  n = L // chunk
  h = h_BLD.reshape(B, n, chunk, D).swapaxes(0, 1)
  t = targets_BL.reshape(B, n, chunk).swapaxes(0, 1)
  m = mask_BL.reshape(B, n, chunk).swapaxes(0, 1)

  @jax.checkpoint
  def one(carry, xs):
    hc, tc, mc = xs
    s, w, _ = token_cross_entropy(logits_fn(hc), tc, mc, z_loss)
    return (carry[0] + s, carry[1] + w), None

  (loss_sum, weight_sum), _ = jax.lax.scan(one, (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)), (h, t, m))
  return loss_sum, weight_sum
