"""The cross-entropy's log-sum-exp and its logits gradient in one kernel: a row of logits read twice from
one program (the second time from L2), the gradient written once (Pallas on Triton).

Why: in `losses.fused_linear_cross_entropy` each chunk's logits (cuBLAS's GEMM output, in the compute
dtype) are read by two XLA kernels: the log-sum-exp's row reduction, then the element-wise pass that
writes dL/dlogits = softmax·coef − onehot for the two gradient GEMMs. On GPT-2 (50,304-way, 32,768 rows a
step) the read the reduction makes is 1.12 ms of the H100 floor and the element-wise pass 2.21 ms
(notes/perf.md, 2026-11-29, eighth session). Here one program owns a row: it reads the row's tiles once
for the running (max, Σexp) pair, then again to write the gradient. A row of 50,304 bf16 logits is 100 KB;
a fixed grid of `PROGRAMS` programs (two per SM of an H100 or H200), each walking its rows in turn, keeps
~26 MB of rows in flight, so the second read is meant to hit the 50 MB L2 and HBM sees one read and one
write. That is the design's bet, untimed on a card: `model.xent_impl` is opt-in, and the floor
(`paperjax.roofline`) prices the kernel by its operands and results, i.e. assumes the bet holds.

Semantics: the XLA path's (`reference`): logits cast to fp32; lse = log Σ exp; coef = mask·(1 + 2·z·lse)
(PaLM's z-loss: d(z·lse²)/dlogit = 2·z·lse·softmax); dlogits = exp(logit − lse)·coef − onehot(target)·mask,
rounded once to `out_dtype`; and the target's logit, picked out in the first read (so that the logits have
no other use, and the gradient is written over them in place). The log-sum-exp is accumulated tile by tile
in another order than XLA's reduction, so the two agree to fp32 rounding. Masked rows (mask 0) get a zero
gradient row.

The kernel has no gradient of its own (the fused loss writes its gradients by hand: this *is* part of
one). `impl` as in `pallas_dispatch.run`; chunks of 2³¹ elements or more (Triton's int32 offsets) take the
reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from paperjax.models import pallas_dispatch

PROGRAMS = 264  # two per SM of an H100 / H200 (132 SMs): the rows in flight (×100 KB at V=50K) stay in L2
TILE = 8192     # logits a program holds per step (16 KB of bf16; 16 per thread at 16 warps)
WARPS = 16


def parse_tiles(text: str) -> tuple[int, int, int]:
  """"tile,programs,warps" (e.g. "8192,264,16"; "" the defaults) → (tile, programs, warps): the logits a
  program holds per step (a power of two), the grid's programs, Triton's warps a program."""
  if not text:
    return TILE, PROGRAMS, WARPS
  try:
    tile, programs, warps = (int(v) for v in text.split(","))
  except ValueError:
    tile = programs = warps = 0
  if tile <= 0 or tile & (tile - 1) or programs <= 0 or warps <= 0 or warps & (warps - 1):
    raise ValueError(f"xent tiles {text!r} are not 'tile,programs,warps' with tile and warps powers of two "
                     "(e.g. '8192,264,16').")
  return tile, programs, warps


def reference(logits_cV, targets_c, mask_c, z_loss: float, out_dtype):
  """(lse [c], the target's logit [c], both fp32; dlogits [c, V] in out_dtype) in plain JAX: the fused loss's
  own formula."""
  from paperjax import losses  # pylint: disable=g-import-not-at-top  (losses dispatches here)
  logits = logits_cV.astype(jnp.float32)
  lse = losses.online_logsumexp(logits, axis=-1)
  target = jnp.take_along_axis(logits, targets_c[:, None], axis=-1)[:, 0]
  m = mask_c.astype(jnp.float32)
  p = jnp.exp(logits - lse[:, None]) * (m * (1.0 + 2.0 * z_loss * lse))[:, None]
  onehot = jax.nn.one_hot(targets_c, logits.shape[-1], dtype=jnp.float32) * m[:, None]
  return lse, target, (p - onehot).astype(out_dtype)


def _kernel(l_ref, t_ref, m_ref, lse_ref, tl_ref, d_ref, *, c, v, tile, programs, steps, z_loss):
  """d_ref may be l_ref's buffer (written in place): a row is read whole before its program writes it, and
  no other program reads it (the spare steps' reads of row c−1 write nothing)."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  p = pl.program_id(0)
  cols = jnp.arange(tile)[None, :]
  zero = jnp.zeros((1, 1), jnp.int32)
  tiles = pl.cdiv(v, tile)
  lowest = jnp.finfo(jnp.float32).min  # a finite start: exp(lowest − max) is 0, never NaN

  def row(i, _):
    r_raw = p + i * programs
    valid = r_raw < c
    r = jnp.full((1, 1), jnp.minimum(r_raw, c - 1), jnp.int32)  # the last programs' spare steps redo row c−1
    t = plgpu.load(t_ref.at[r, zero])
    m = plgpu.load(m_ref.at[r, zero]).astype(jnp.float32)

    def stats(j, carry):
      mx, s, target = carry
      cj = j * tile + cols
      x = plgpu.load(l_ref.at[r, cj], mask=cj < v, other=-jnp.inf).astype(jnp.float32)
      new = jnp.maximum(mx, jnp.max(x, axis=1, keepdims=True))
      target = target + jnp.sum(jnp.where(cj == t, x, 0.0), axis=1, keepdims=True)
      return new, s * jnp.exp(mx - new) + jnp.sum(jnp.exp(x - new), axis=1, keepdims=True), target

    zero32 = jnp.zeros((1, 1), jnp.float32)
    mx, s, target = jax.lax.fori_loop(0, tiles, stats, (jnp.full((1, 1), lowest, jnp.float32), zero32, zero32))
    lse = mx + jnp.log(s)
    coef = m * (1.0 + 2.0 * z_loss * lse)

    def grad(j, _):
      cj = j * tile + cols
      x = plgpu.load(l_ref.at[r, cj], mask=cj < v, other=0.0).astype(jnp.float32)
      g = jnp.exp(x - lse) * coef - jnp.where(cj == t, m, 0.0)
      plgpu.store(d_ref.at[r, cj], g.astype(d_ref.dtype), mask=(cj < v) & valid)
      return 0

    jax.lax.fori_loop(0, tiles, grad, 0)
    plgpu.store(lse_ref.at[r, zero], lse, mask=jnp.full((1, 1), valid))
    plgpu.store(tl_ref.at[r, zero], target, mask=jnp.full((1, 1), valid))
    return 0

  jax.lax.fori_loop(0, steps, row, 0)


def _pallas(logits, targets2, mask2, z_loss, out_dtype, interpret, tile=TILE, programs=PROGRAMS, warps=WARPS):
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  c, v = logits.shape
  tile = min(tile, 1 << max(0, v - 1).bit_length())
  programs = min(programs, c)
  steps = pl.cdiv(c, programs)
  kernel = functools.partial(_kernel, c=c, v=v, tile=tile, programs=programs, steps=steps, z_loss=float(z_loss))
  row = jax.ShapeDtypeStruct((c, 1), jnp.float32)
  return pl.pallas_call(
      kernel, grid=(programs,), out_shape=(row, row, jax.ShapeDtypeStruct((c, v), out_dtype)),
      # the gradient over the logits, in place: the chunk's logits have no other use (the step holds one
      # [c, V] buffer, as XLA's element-wise pass does)
      input_output_aliases={0: 2} if jnp.dtype(out_dtype) == logits.dtype else {},
      compiler_params=plgpu.CompilerParams(num_warps=max(1, min(warps, tile // 512))),
      interpret=interpret, name="xent_rows")(logits, targets2, mask2)


def xent_rows(logits_cV, targets_c, mask_c, z_loss: float = 0.0, out_dtype=None, impl: str = "xla",
              interpret: bool | None = None, row_spec=None, tiles: str = ""):
  """(lse [c] fp32, the target's logit [c] fp32, dL/dlogits [c, V] in `out_dtype`, default the logits' dtype:
  then the kernel writes it over the logits' buffer, which XLA copies first only if the logits have another
  use) of the masked softmax
  cross-entropy Σ mask·(lse − logit[target] + z·lse²), for logits [c, V], int targets [c], mask [c].
  impl "xla" | "pallas" | "auto" as in `pallas_dispatch.run`; `row_spec`: the logits' PartitionSpec under
  a mesh of several devices (rows split, each device's rows through the kernel; the vocabulary axis must
  be whole on a device); `tiles`: the kernel's "tile,programs,warps" (`parse_tiles`)."""
  out_dtype = jnp.dtype(out_dtype or logits_cV.dtype)
  c, v = logits_cV.shape
  if c * v >= 2 ** 31 and impl != "xla":  # Triton's offsets are int32
    impl = "xla"
  z_loss = float(z_loss)
  t2 = targets_c.astype(jnp.int32).reshape(c, 1)
  m2 = mask_c.astype(jnp.float32).reshape(c, 1)

  def ref(logits, t2, m2):
    lse, target, d = reference(logits, t2[:, 0], m2[:, 0], z_loss, out_dtype)
    return lse[:, None], target[:, None], d

  tile, programs, warps = parse_tiles(tiles)
  kernel = lambda interp: lambda logits, t2, m2: _pallas(logits, t2, m2, z_loss, out_dtype, interp, tile, programs,
                                                         warps)
  lse, target, d = pallas_dispatch.run(ref, kernel, (logits_cV, t2, m2), impl=impl, interpret=interpret,
                                       row_spec=row_spec, row_args=(True, True, True), outs=3, name="xent_rows")
  return lse[:, 0], target[:, 0], d
