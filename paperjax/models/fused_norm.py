"""Residual add fused with the RMSNorm that follows it: `h = x + delta; y = rmsnorm(h) * scale`, as
one GPU kernel each way (Pallas on Triton), the "fused add + norm" of Apex / flash-attention.

Why: in a pre-norm block, XLA runs the residual add and the norm after it as separate passes over
the [rows, D] activations — forward: the add (in the previous GEMM's epilogue, plus a copy of the
residual it overwrites), the norm's row reduction, the normalisation; backward: the row reduction
of the incoming gradient, then the gradient with the residual's own gradient added. That is ~6
tensor passes each way where one kernel holding a row needs 4 (read x, delta; write h, y) and 4
(read h, dy, dh; write dx). `paperjax.roofline` on the H100 program counts what this saves per step.

Semantics: exactly the unfused `x + delta` (rounded to x's dtype) followed by `RMSNorm` (fp32 math,
output in `out_dtype`). The backward recomputes each row's rsqrt (the row is in registers), returns
the same dx for x and delta (the sum's gradient), and dscale from per-program partial sums.

Or, with the add done already (`delta=None`; the model's `residual_add="gemm"`, where XLA folds the add into
the GEMM before as its C operand): the forward kernel reads the sum and writes y (two passes), the backward is
the same kernel.

`impl="xla"` is the same function in plain JAX (the reference); `impl="pallas"` runs the kernels on
GPUs and their interpreter elsewhere (CPU tests).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from paperjax.models import pallas_dispatch

EPS = 1e-6
_BLOCK_ELEMENTS = 8192  # elements of one input a forward program holds (rows × padded D; fewer rows with more inputs)


def rmsnorm(x, scale, out_dtype, eps: float = EPS):
  """RMSNorm in plain JAX: fp32 math, the result in `out_dtype` (the model's `RMSNorm`)."""
  x32 = x.astype(jnp.float32)
  x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return (x32 * scale.astype(jnp.float32)).astype(out_dtype)


def add_rmsnorm_reference(x, delta, scale, out_dtype, eps: float = EPS):
  h = x + delta
  return h, rmsnorm(h, scale, out_dtype, eps)


def _geometry(d: int, inputs: int = 2) -> tuple[int, int]:
  """(padded row length, rows per block) for rows of `d` features and `inputs` row-sized inputs in
  flight; Triton needs both to be powers of two."""
  dp = 1 << max(0, d - 1).bit_length()
  rows = max(1, (_BLOCK_ELEMENTS // dp) * 2 // inputs)
  return dp, 1 << (rows.bit_length() - 1)


def _fwd_kernel(*refs, n, d, dp, rows, eps, add: bool):
  """refs: x, delta, scale, then the outputs h and y (add); or x, scale, then y (the add done already: h = x)."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  if add:
    x_ref, d_ref, s_ref, h_ref, y_ref = refs
  else:
    x_ref, s_ref, y_ref = refs
  r = pl.program_id(0) * rows + jnp.arange(rows)
  c = jnp.arange(dp)
  mask = (r < n)[:, None] & (c < d)[None, :]
  at = (r[:, None], c[None, :])
  h = plgpu.load(x_ref.at[at], mask=mask, other=0.0)
  if add:
    delta = plgpu.load(d_ref.at[at], mask=mask, other=0.0)
    h = (h.astype(jnp.float32) + delta.astype(jnp.float32)).astype(h_ref.dtype)
    plgpu.store(h_ref.at[at], h, mask=mask)
  h32 = h.astype(jnp.float32)
  rstd = jax.lax.rsqrt(jnp.sum(h32 * h32, axis=1) / d + eps)
  scale = plgpu.load(s_ref.at[c], mask=c < d, other=0.0).astype(jnp.float32)
  plgpu.store(y_ref.at[at], (h32 * rstd[:, None] * scale[None, :]).astype(y_ref.dtype), mask=mask)


def _bwd_kernel(h_ref, s_ref, dh_ref, *refs, n, d, dp, rows, steps, eps):
  """refs: the gradients of y's uses (summed here), then the outputs dx and the dscale partials."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  *dy_refs, dx_ref, ds_ref = refs
  p = pl.program_id(0)
  c = jnp.arange(dp)
  scale = plgpu.load(s_ref.at[c], mask=c < d, other=0.0).astype(jnp.float32)

  def body(i, dscale):
    r = (p * steps + i) * rows + jnp.arange(rows)
    mask = (r < n)[:, None] & (c < d)[None, :]
    at = (r[:, None], c[None, :])
    h = plgpu.load(h_ref.at[at], mask=mask, other=0.0).astype(jnp.float32)
    dh = plgpu.load(dh_ref.at[at], mask=mask, other=0.0).astype(jnp.float32)
    dy = sum(plgpu.load(ref.at[at], mask=mask, other=0.0).astype(jnp.float32) for ref in dy_refs)
    rstd = jax.lax.rsqrt(jnp.sum(h * h, axis=1) / d + eps)
    xhat = h * rstd[:, None]
    g = dy * scale[None, :]
    mean_gx = jnp.sum(g * xhat, axis=1) / d
    dx = dh + rstd[:, None] * (g - xhat * mean_gx[:, None])
    plgpu.store(dx_ref.at[at], dx.astype(dx_ref.dtype), mask=mask)
    return dscale + jnp.sum(dy * xhat, axis=0)

  dscale = jax.lax.fori_loop(0, steps, body, jnp.zeros((dp,), jnp.float32))
  plgpu.store(ds_ref.at[p, c], dscale, mask=c < d)


def _pallas_fwd(x2, delta2, scale, out_dtype, eps, interpret):
  """(h, y); with delta2 None, (y,) of h = x2."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  n, d = x2.shape
  add = delta2 is not None
  dp, rows = _geometry(d, inputs=2 if add else 1)
  kernel = functools.partial(_fwd_kernel, n=n, d=d, dp=dp, rows=rows, eps=eps, add=add)
  y = jax.ShapeDtypeStruct((n, d), out_dtype)
  return pl.pallas_call(
      kernel, grid=(pl.cdiv(n, rows),),
      out_shape=(jax.ShapeDtypeStruct((n, d), x2.dtype), y) if add else (y,),
      compiler_params=plgpu.CompilerParams(num_warps=min(8, max(1, rows * dp // 1024))),
      interpret=interpret, name="add_rmsnorm_fwd" if add else "rmsnorm_fwd")(
          *((x2, delta2, scale) if add else (x2, scale)))


def _pallas_bwd(h2, scale, dh2, dys2, eps, interpret):
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  n, d = h2.shape
  dp, rows = _geometry(d, inputs=2 + len(dys2))
  steps = 8  # row groups per program (≥ 7 programs per SM on the 1B shape); dscale partials are [n / (rows · steps), d]
  programs = pl.cdiv(n, rows * steps)
  kernel = functools.partial(_bwd_kernel, n=n, d=d, dp=dp, rows=rows, steps=steps, eps=eps)
  dx, dscale = pl.pallas_call(
      kernel, grid=(programs,),
      out_shape=(jax.ShapeDtypeStruct((n, d), h2.dtype), jax.ShapeDtypeStruct((programs, d), jnp.float32)),
      compiler_params=plgpu.CompilerParams(num_warps=min(8, max(1, rows * dp // 1024))),
      interpret=interpret, name="add_rmsnorm_bwd")(h2, scale, dh2, *dys2)
  return dx, dscale.sum(0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _add_rmsnorm_pallas(x, delta, scale, out_dtype, eps, interpret, copies):
  d = x.shape[-1]
  h, y = _pallas_fwd(x.reshape(-1, d), delta.reshape(-1, d), scale, out_dtype, eps, interpret)
  return (h.reshape(x.shape),) + (y.reshape(x.shape),) * copies


def _vjp_fwd(x, delta, scale, out_dtype, eps, interpret, copies):
  out = _add_rmsnorm_pallas(x, delta, scale, out_dtype, eps, interpret, copies)
  return out, (out[0], scale)


def _vjp_bwd(out_dtype, eps, interpret, copies, res, cotangents):
  h, scale = res
  dh, *dys = cotangents
  d = h.shape[-1]
  dx, dscale = _pallas_bwd(h.reshape(-1, d), scale, dh.reshape(-1, d), [g.reshape(-1, d) for g in dys], eps,
                           interpret)
  dx = dx.reshape(h.shape)
  return dx, dx, dscale.astype(scale.dtype)  # the sum's gradient reaches x and delta alike


_add_rmsnorm_pallas.defvjp(_vjp_fwd, _vjp_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _rmsnorm_pallas(h, scale, out_dtype, eps, interpret, copies):
  """(h, y, ...): h handed on as it came (the residual add done already), y from one read of it."""
  d = h.shape[-1]
  y, = _pallas_fwd(h.reshape(-1, d), None, scale, out_dtype, eps, interpret)
  return (h,) + (y.reshape(h.shape),) * copies


def _rms_vjp_fwd(h, scale, out_dtype, eps, interpret, copies):
  return _rmsnorm_pallas(h, scale, out_dtype, eps, interpret, copies), (h, scale)


def _rms_vjp_bwd(out_dtype, eps, interpret, copies, res, cotangents):
  dx, _, dscale = _vjp_bwd(out_dtype, eps, interpret, copies, res, cotangents)  # the same backward kernel
  return dx, dscale


_rmsnorm_pallas.defvjp(_rms_vjp_fwd, _rms_vjp_bwd)


def add_rmsnorm(x, delta, scale, out_dtype=None, impl: str = "xla", eps: float = EPS, interpret: bool | None = None,
                copies: int = 1, row_spec=None):
  """(h, y) = (x + delta, rmsnorm(x + delta) · scale); x and delta [..., D] of one dtype, scale [D].
  delta None: the add is done already (h = x, handed on as it came; e.g. by XLA, folded into the GEMM that
  wrote delta as its C operand): the forward kernel reads x once and writes y only; the backward is the same.
  `copies` > 1 returns (h, y, y, ...), one y per use (a query and a key/value projection, say): the
  backward kernel then sums their gradients itself, where XLA would first write their sum.
  impl "xla": plain JAX; "pallas": one fused GPU kernel each way; "auto": the kernels in programs
  lowered for CUDA, plain JAX in programs for any other platform (or with feature-sharded rows).
  `interpret` (for "pallas"): True runs the kernels' interpreter (any backend), False the GPU
  kernels; None (default) picks by the platform the program is lowered for — the kernels for CUDA
  (also when compiling for a GPU from a CPU machine), the interpreter elsewhere, so a model with
  `norm_impl="pallas"` still runs (slowly) on CPU.
  `row_spec`: x's PartitionSpec when traced under a mesh of several devices (the kernels are custom
  calls XLA cannot partition: without it a batch-sharded x would be gathered onto every device).
  With it the kernels run per device on its own rows under `shard_map`, and dscale is summed across
  devices by shard_map's transpose; the feature axis must not be sharded (a row is normalised whole)."""
  out_dtype = jnp.dtype(out_dtype or x.dtype)
  if delta is None:
    reference = lambda x, scale: (x,) + (rmsnorm(x, scale, out_dtype, eps),) * copies
    kernel = lambda interp: lambda x, scale: _rmsnorm_pallas(x, scale, out_dtype, float(eps), interp, int(copies))
    return pallas_dispatch.run(reference, kernel, (x, scale), impl=impl, interpret=interpret, row_spec=row_spec,
                               row_args=(True, False), outs=1 + copies, name="rmsnorm")
  reference = lambda x, delta, scale: (lambda h, y: (h,) + (y,) * copies)(
      *add_rmsnorm_reference(x, delta, scale, out_dtype, eps))
  if impl != "xla" and (x.shape != delta.shape or x.dtype != delta.dtype):
    raise ValueError(f"add_rmsnorm needs x and delta of one shape and dtype; got {x.shape} {x.dtype} and "
                     f"{delta.shape} {delta.dtype}.")
  kernel = lambda interp: lambda x, delta, scale: _add_rmsnorm_pallas(x, delta, scale, out_dtype, float(eps), interp,
                                                                     int(copies))
  return pallas_dispatch.run(reference, kernel, (x, delta, scale), impl=impl, interpret=interpret, row_spec=row_spec,
                             row_args=(True, True, False), outs=1 + copies, name="add_rmsnorm")
