"""Contrastive, distillation and consistency losses shared by the vision papers (one implementation each).

  info_nce(q, k, scale)            CE(scale · q kᵀ, arange): row i's positive is column i (CPC, CLIP's halves)
  clip_loss(img, txt, scale)       ½[info_nce(img, txt) + info_nce(txt, img)]               (CLIP)
  nt_xent(z1, z2, tau)             SimCLR's NT-Xent over 2N views, self-similarity excluded
  soft_target_cross_entropy(s, t)  −Σ softmax(t/τ) log softmax(s/τ), no gradient to the teacher (distillation)
  kl_consistency(target, pred)     KL(softmax(sg(target)/T) ‖ softmax(pred)) per example     (UDA)

Inputs are unnormalised embeddings or logits; embeddings are L2-normalised inside. Every contrastive
loss takes `axis_name`: inside `jax.shard_map` the keys are `all_gather`ed over those mesh axes and
each device scores its own rows against the global batch (memory B_local × B_global, the SimCLR /
big_vision layout), then the mean is taken over devices — equal to the single-device loss on the
global batch (tests/test_losses_contrastive.py checks it on 8 fake devices). `sharded(loss, mesh,
axes)` wraps a loss that way for callers under plain `jax.jit`.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

_NEG = -1e9   # "minus infinity" that stays finite in fp32 (masked self-similarities)


def l2_normalize(x, axis: int = -1, eps: float = 1e-12):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps))


def _gather(x, axis_name):
  """(global keys, offset of this device's rows in them)."""
  if axis_name is None:
    return x, 0
  keys = jax.lax.all_gather(x, axis_name, tiled=True)
  return keys, jax.lax.axis_index(axis_name) * x.shape[0]


def _mean(x, axis_name):
  m = jnp.mean(x)
  return m if axis_name is None else jax.lax.pmean(m, axis_name)


def info_nce(q_ND, k_ND, scale, axis_name=None, normalize: bool = True):
  """Mean over rows i of −log softmax_j(scale · q_i·k_j)[i]: row i's positive is key i."""
  q = l2_normalize(q_ND) if normalize else q_ND.astype(jnp.float32)
  k = l2_normalize(k_ND) if normalize else k_ND.astype(jnp.float32)
  keys, offset = _gather(k, axis_name)
  logits = scale * q @ keys.T                                     # N_local × N_global
  labels = offset + jnp.arange(q.shape[0])
  nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  return _mean(nll, axis_name)


def clip_loss(img_ND, txt_ND, scale, axis_name=None):
  """CLIP's symmetric InfoNCE: ½[CE(logits, arange) + CE(logitsᵀ, arange)] with logits = scale·I·Tᵀ."""
  return 0.5 * (info_nce(img_ND, txt_ND, scale, axis_name) + info_nce(txt_ND, img_ND, scale, axis_name))


def nt_xent(z1_ND, z2_ND, temperature: float, axis_name=None):
  """SimCLR's NT-Xent: anchor view a_i, positive b_i, negatives every other view of the (global)
  batch except a_i itself; averaged over the 2N anchors (the paper's 1/2N Σ[ℓ(2k−1,2k)+ℓ(2k,2k−1)])."""
  a, b = l2_normalize(z1_ND), l2_normalize(z2_ND)
  a_all, offset = _gather(a, axis_name)
  b_all, _ = _gather(b, axis_name)
  n = a.shape[0]
  labels = offset + jnp.arange(n)
  self_mask = jax.nn.one_hot(labels, a_all.shape[0], dtype=jnp.float32) * _NEG

  def one_side(x, x_all, y_all):
    logits = jnp.concatenate([x @ y_all.T / temperature, x @ x_all.T / temperature + self_mask], axis=1)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]

  nll = jnp.concatenate([one_side(a, a_all, b_all), one_side(b, b_all, a_all)])
  return _mean(nll, axis_name)


def soft_target_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
  """Per-example −Σ_y P_T(y|x; τ) log P_S(y|x; τ) (SimCLRv2 eq. 2); the teacher gets no gradient."""
  t = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / temperature, axis=-1)
  return -jnp.sum(t * jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1), axis=-1)


def kl_consistency(target_logits, pred_logits, target_temperature: float = 1.0):
  """Per-example KL(softmax(sg(target)/T) ‖ softmax(pred)) — UDA's consistency term, targets
  sharpened by T < 1 (T = 1: plain), no gradient through the targets."""
  t_logits = jax.lax.stop_gradient(target_logits).astype(jnp.float32) / target_temperature
  p = jax.nn.softmax(t_logits, axis=-1)
  return jnp.sum(p * (jax.nn.log_softmax(t_logits, axis=-1)
                      - jax.nn.log_softmax(pred_logits.astype(jnp.float32), axis=-1)), axis=-1)


def sharded(loss_fn: Callable, mesh, axes: Sequence[str] | str = ("data", "fsdp"), num_batch_args: int = 2):
  """`loss_fn(*batch_args, *rest, axis_name=axes)` under `jax.shard_map`: the first `num_batch_args`
  arguments are split over `axes` on their leading dimension, the rest replicated; returns the
  global mean. Axes of size 1 cost nothing, so the same code runs on one device."""
  axes = (axes,) if isinstance(axes, str) else tuple(a for a in axes if a in mesh.shape)

  def wrapped(*args):
    in_specs = tuple(P(axes) if i < num_batch_args else P() for i in range(len(args)))
    fn = jax.shard_map(functools.partial(loss_fn, axis_name=axes), mesh=mesh, in_specs=in_specs,
                       out_specs=P(), check_vma=False)
    return fn(*args)
  return wrapped
