"""Losses shared by every paper: masked token cross-entropy, full and chunked.

All return *sums* (loss sum, weight sum) so that callers can average across devices, micro-batches
and evaluation batches exactly: mean = sum(loss) / sum(weight), never a mean of means.
"""

from __future__ import annotations

import functools
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


def fused_linear_cross_entropy(h_ND, w_VD, targets_N, mask_N, chunk: int, z_loss: float = 0.0,
                               xent_impl: str = "xla", row_spec=None, xent_tiles: str = ""):
  """Cross-entropy of `logits = h @ w.T` that never holds the [N, V] logits, and pays no recompute.

  The "fused linear cross-entropy" (as in Liger-Kernel / Cut-Cross-Entropy, here in plain XLA):
  rows are taken `chunk` at a time; each chunk's logits (in h's dtype, like the unfused
  `Transformer.logits` before its fp32 cast), their fp32 log-sum-exp, the loss *and* the gradients
  dL/dh and dL/dw are computed while the chunk is live, so the backward pass only scales them by
  the incoming cotangent. Peak memory is chunk·V instead of N·V (fp32, plus its gradient), and the
  unembedding matmuls run three times as in the unfused step (forward, dh, dw), where the
  rematerialised `chunked_token_cross_entropy` runs the forward one twice (+2·D·V FLOPs a token).

  h_ND [..., D] and w_VD [V, D] in the compute dtype (scale h beforehand if the model does, e.g.
  by 1/sqrt(D) for tied embeddings); targets/mask shaped like h without D. dw is accumulated in
  fp32 over the chunks. Returns (loss_sum, weight_sum), equal to `token_cross_entropy` on the full
  logits up to summation order; differentiable in h and w (not twice).

  `xent_impl`: how a chunk's log-sum-exp and dL/dlogits are computed from its logits — "xla", XLA's
  reduction then an element-wise pass (each reads the logits); "pallas" / "auto", one kernel that reads
  each row twice from one program (`models/fused_xent.py`). `row_spec`: the logits' PartitionSpec under a
  mesh of several devices (rows, vocabulary), for that kernel; `xent_tiles` its "tile,programs,warps".
  """
  D = h_ND.shape[-1]
  h = h_ND.reshape(-1, D)
  t = targets_N.reshape(-1).astype(jnp.int32)
  m = mask_N.reshape(-1).astype(jnp.float32)
  n = h.shape[0]
  chunk = max(1, min(int(chunk), n))
  pad = -n % chunk
  if pad:  # padded rows carry mask 0, so they add nothing to the loss or the gradients
    h = jnp.pad(h, ((0, pad), (0, 0)))
    t = jnp.pad(t, (0, pad))
    m = jnp.pad(m, (0, pad))
  return _flce(h, w_VD, t, m, chunk, float(z_loss), (xent_impl, row_spec, xent_tiles)), m.sum()


def online_logsumexp(x, axis: int = -1):
  """log Σ exp(x) along `axis` in one pass over x: a variadic reduction of (running max, sum of
  exp(x − running max)) pairs, combined as in online softmax. `jax.nn.logsumexp` reads x twice (the
  max, then the sum); this reads it once, which is what the fused cross-entropy's logits chunks (the
  largest tensors of an LM step) want. Not differentiable (a general `lax.reduce`): for use where
  the gradient is written by hand, as in `fused_linear_cross_entropy`. Finite inputs assumed."""
  x = jnp.asarray(x, jnp.float32)
  axis = axis % x.ndim
  lowest = jnp.finfo(jnp.float32).min  # a finite start: exp(lowest − lowest) = 1 times a sum of 0, never NaN

  def combine(a, b):  # one exponential per combine: the smaller max's sum is rescaled to the larger
    a_larger = a[0] >= b[0]
    d = jnp.exp(-jnp.abs(a[0] - b[0]))
    return jnp.maximum(a[0], b[0]), jnp.where(a_larger, a[1] + b[1] * d, a[1] * d + b[1])

  m, s = jax.lax.reduce((x, jnp.ones_like(x)), (lowest, jnp.float32(0.0)), combine, (axis,))
  return m + jnp.log(s)


def _chunk_loss(h_cD, w_VD, t_c, m_c, z_loss, with_grads, xent=("xla", None, "")):
  logits = jnp.einsum("cd,vd->cv", h_cD, w_VD)  # in h's dtype, as cuBLAS writes it
  if with_grads:
    # d nll / d logits = softmax·(1 + 2·z·lse) − onehot(target), times the row's mask.
    from paperjax.models import fused_xent  # pylint: disable=g-import-not-at-top  (its reference uses this module)
    impl, row_spec, tiles = xent
    lse, target_logit, dlogits = fused_xent.xent_rows(logits, t_c, m_c, z_loss, h_cD.dtype, impl=impl,
                                                      row_spec=row_spec, tiles=tiles)
  else:
    logits = logits.astype(jnp.float32)
    lse = online_logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, t_c[:, None], axis=-1)[:, 0]
  nll = lse - target_logit
  if z_loss:
    nll = nll + z_loss * lse ** 2
  loss = (nll * m_c).sum()
  if not with_grads:
    return loss, None, None
  dh = jnp.einsum("cv,vd->cd", dlogits, w_VD, preferred_element_type=jnp.float32).astype(h_cD.dtype)
  dw = jnp.einsum("cv,cd->vd", dlogits, h_cD, preferred_element_type=jnp.float32)
  return loss, dh, dw


def _flce_scan(h, w, t, m, chunk, z_loss, with_grads, xent=("xla", None, "")):
  split = lambda x: x.reshape((-1, chunk) + x.shape[1:])

  def body(carry, xs):
    loss, dw = carry
    hc, tc, mc = xs
    l, dh_c, dw_c = _chunk_loss(hc, w, tc, mc, z_loss, with_grads, xent)
    return (loss + l, dw if dw_c is None else dw + dw_c), dh_c

  dw0 = jnp.zeros(w.shape, jnp.float32) if with_grads else None
  (loss, dw), dh = jax.lax.scan(body, (jnp.zeros((), jnp.float32), dw0), (split(h), split(t), split(m)))
  return loss, (None if dh is None else dh.reshape(h.shape)), dw


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _flce(h, w, t, m, chunk, z_loss, xent):  # xent: (impl, row_spec, tiles) of the gradient's kernel
  return _flce_scan(h, w, t, m, chunk, z_loss, with_grads=False)[0]


def _flce_fwd(h, w, t, m, chunk, z_loss, xent):
  loss, dh, dw = _flce_scan(h, w, t, m, chunk, z_loss, True, xent)
  # w's dtype travels as a zero-size array: residuals must be arrays.
  return loss, (dh, dw, jnp.zeros((0,), w.dtype))


def _flce_bwd(chunk, z_loss, xent, res, g):
  del chunk, z_loss, xent
  dh, dw, w_proto = res
  return dh * g.astype(dh.dtype), (dw * g).astype(w_proto.dtype), None, None


_flce.defvjp(_flce_fwd, _flce_bwd)
