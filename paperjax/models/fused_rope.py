"""Rotary positions inside the query / key projection's GEMM: q = rotary(x·Wq) from one Pallas (Triton)
kernel, so the rotation is not a pass of its own.

Why: XLA's GPU program writes x·Wq with cuBLAS, whose epilogues cannot rotate, and then a fusion reads it
and writes the rotated q: a read and a write of every query and key, in every self-attention layer. On
T5-base UL2 at B=256 (packed rows, the MLP kernels, XLA's dot merger off) those forward passes are 4.46 ms
of the H100 floor (notes/perf.md, 2026-11-29). Here the kernel accumulates a tile of x·W in fp32 and
rotates it in registers before its only write.

The head layout. `transformer.rotary` pairs dim j of a head with dim j + K/2. This op writes each head's
dims *interleaved* instead — the pair (j, j + K/2) at (2j, 2j + 1) — so that a tile of whole heads comes
from two accumulators (the pairs' first and second elements, read from the weight's two halves) and one
interleave in registers. Attention sees q and k only through q·k, which one permutation of the head dims
applied to both leaves unchanged: queries and keys both from this op give the unfused model's attention
(v and the output projection are untouched). So it is the same function, with the same parameters; only
q and k as tensors (never seen outside attention) are permuted. The weight [D, H, K] is reordered for the
kernel each step ([first halves | second halves] per tile of heads: a copy of the small weight).

Semantics: as the XLA path, x·W is rounded to the compute dtype before the rotation (computed in fp32) and
the result rounded once. Backward: two GEMM kernels (dx = dq·Wᵀ, dW = xᵀ·dq) that load the interleaved
cotangent's even and odd columns and apply the rotation's transpose in registers, so it is no pass of its own
(`bwd_kernels=False`: XLA's — the transpose as a pass, then cuBLAS's GEMMs); dq is rounded to the compute
dtype before the dots, as XLA's path rounds it.

`impl` as in `pallas_dispatch.run` ("auto": the kernel in programs compiled for CUDA, the reference — the
same interleaved layout — elsewhere). Shapes whose rows or heads do not tile, odd head dims, or half head
dims under 16 (Triton's smallest dot) take the reference. Triton only (no Mosaic GPU version yet). Untimed
on a card: `model.rope_impl` is opt-in.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from paperjax.models import fused_mlp, pallas_dispatch

TILES = fused_mlp.Tiles(bm=128, bn=128, bk=64, warps=4, stages=4)  # two [128, 64] fp32 accumulators
MAX_ELEMENTS = fused_mlp.MAX_ELEMENTS


def _interleave(a, b):
  """[..., h] and [..., h] → [..., 2h] with a at the even positions and b at the odd ones."""
  return jnp.stack([a, b], axis=-1).reshape(*a.shape[:-1], 2 * a.shape[-1])


def rotate(a, b, sin, cos):
  """Rotary's rotation of the pairs (a, b) by the angles whose sines and cosines are given (Su et al.
  2021); the one formula for `transformer.rotary`, this op's reference and its kernel."""
  return a * cos - b * sin, b * cos + a * sin


def reference(x2, w, sin, cos):
  """rotary(x·w) with each head's dims interleaved: x [N, D], w [D, H, K], sin / cos [N, K/2] → [N, H·K]."""
  half = w.shape[-1] // 2
  q = jnp.einsum("nd,dhk->nhk", x2, w).astype(x2.dtype).astype(jnp.float32)  # x·W in the compute dtype first
  ra, rb = rotate(q[..., :half], q[..., half:], sin[:, None, :], cos[:, None, :])
  return _interleave(ra, rb).reshape(x2.shape[0], -1).astype(x2.dtype)


def standard_layout(q_BLHK):
  """This op's interleaved heads back in `transformer.rotary`'s layout (for tests and inspection)."""
  return jnp.concatenate([q_BLHK[..., 0::2], q_BLHK[..., 1::2]], axis=-1)


def _kernel_weight(w, heads_per_tile: int):
  """w [D, H, K] → [D, H·K]: per tile of `heads_per_tile` heads, their first halves then their second halves."""
  d, h, k = w.shape
  halves = w.reshape(d, h // heads_per_tile, heads_per_tile, 2, k // 2)
  return halves.transpose(0, 1, 3, 2, 4).reshape(d, h * k)


def _rope_kernel(x_ref, w_ref, sin_ref, cos_ref, o_ref, *, t: fused_mlp.Tiles, k_steps: int, cols: int, half: int):
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  p = pl.program_id(0)
  i, j = p // cols, p % cols  # consecutive programs share x's row tile
  rows, ca, cb = pl.ds(i * t.bm, t.bm), pl.ds(j * t.bn, t.bn // 2), pl.ds(j * t.bn + t.bn // 2, t.bn // 2)

  def body(k, accs):
    ks = pl.ds(k * t.bk, t.bk)
    x = x_ref[rows, ks]
    return accs[0] + plgpu.dot(x, w_ref[ks, ca]), accs[1] + plgpu.dot(x, w_ref[ks, cb])

  zero = jnp.zeros((t.bm, t.bn // 2), jnp.float32)
  a, b = jax.lax.fori_loop(0, k_steps, body, (zero, zero))
  heads = t.bn // (2 * half)
  shape = (t.bm, heads, half)
  a = a.astype(o_ref.dtype).astype(jnp.float32).reshape(shape)  # rounded as XLA's GEMM output is
  b = b.astype(o_ref.dtype).astype(jnp.float32).reshape(shape)
  sin, cos = sin_ref[rows, :][:, None, :], cos_ref[rows, :][:, None, :]
  ra, rb = rotate(a, b, sin, cos)
  o_ref[rows, pl.ds(j * t.bn, t.bn)] = _interleave(ra, rb).reshape(t.bm, t.bn).astype(o_ref.dtype)


def _tiles_for(tiles: fused_mlp.Tiles, n: int, d: int, h: int, k: int) -> fused_mlp.Tiles | None:
  """Tiles of whole heads: bn = (heads a tile) · K, the heads a power of two dividing H."""
  if k % 2 or k // 2 < 16:
    return None
  heads = max(1, tiles.bn // k)
  while heads > 1 and h % heads:
    heads //= 2
  bm, bk = fused_mlp._fit(tiles.bm, n), fused_mlp._fit(tiles.bk, d)
  if bm is None or bk is None or heads * k // 2 & (heads * k // 2 - 1):  # the accumulators' width: a power of two
    return None
  return dataclasses.replace(tiles, bm=bm, bn=heads * k, bk=bk)


def _project(x2, w, sin, cos, t: fused_mlp.Tiles, interpret: bool):
  from jax.experimental import pallas as pl
  n, d = x2.shape
  _, h, k = w.shape
  cols = h * k // t.bn
  kernel = functools.partial(_rope_kernel, t=t, k_steps=d // t.bk, cols=cols, half=k // 2)
  return pl.pallas_call(
      kernel, grid=((n // t.bm) * cols,), out_shape=jax.ShapeDtypeStruct((n, h * k), x2.dtype),
      compiler_params=fused_mlp._params(t), interpret=interpret,
      name="rope_projection_gemm")(x2, _kernel_weight(w, t.bn // k), sin, cos)


def _standard_weight(wr, h: int, heads_per_tile: int):
  """`_kernel_weight`'s inverse: [D, H·K] in the kernels' order → [D, H, K]."""
  d, hk = wr.shape
  k = hk // h
  return wr.reshape(d, h // heads_per_tile, 2, heads_per_tile, k // 2).transpose(0, 1, 3, 2, 4).reshape(d, h, k)


def _unrotated(d_ref, sin_ref, cos_ref, rows, tile, hh: int, half: int):
  """The rotation's transpose of a tile of the interleaved cotangent: rows `rows` (an index array), the
  tile's `hh` = heads·K/2 pairs from column tile·2·hh on → (da, db) [rows, hh] fp32, head-major, as the
  kernels' weight orders a tile's first and second halves."""
  from jax.experimental.pallas import triton as plgpu
  m = jnp.arange(hh)[None, :]
  r = rows[:, None]
  even = plgpu.load(d_ref.at[r, tile * 2 * hh + 2 * m]).astype(jnp.float32)
  odd = plgpu.load(d_ref.at[r, tile * 2 * hh + 2 * m + 1]).astype(jnp.float32)
  sin = plgpu.load(sin_ref.at[r, m % half])
  cos = plgpu.load(cos_ref.at[r, m % half])
  return even * cos + odd * sin, odd * cos - even * sin


def _dx_kernel(*refs, bm: int, bn: int, cols: int, tiles: tuple[int, ...], hh: int, half: int):
  """dx [N, D] = Σ over the sources, Σ over each one's tiles of heads, of da·Wr_aᵀ + db·Wr_bᵀ (Wrᵀ [H·K, D],
  the kernels' order). refs: (d, sin, cos, Wrᵀ) per source — one projection's cotangent, or the query's and
  the key's of one input (`rope_qk_projection`: their gradients summed in one K loop) — then dx."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  p = pl.program_id(0)
  i, j = p // cols, p % cols
  rows, dc = i * bm + jnp.arange(bm), pl.ds(j * bn, bn)
  acc = jnp.zeros((bm, bn), jnp.float32)
  for s, n_tiles in enumerate(tiles):
    d_ref, sin_ref, cos_ref, wt_ref = refs[4 * s:4 * s + 4]

    def body(tile, acc, d_ref=d_ref, sin_ref=sin_ref, cos_ref=cos_ref, wt_ref=wt_ref):
      da, db = _unrotated(d_ref, sin_ref, cos_ref, rows, tile, hh, half)
      wa, wb = wt_ref[pl.ds(tile * 2 * hh, hh), dc], wt_ref[pl.ds(tile * 2 * hh + hh, hh), dc]
      return acc + plgpu.dot(da.astype(wa.dtype), wa) + plgpu.dot(db.astype(wb.dtype), wb)

    acc = jax.lax.fori_loop(0, n_tiles, body, acc)
  dx_ref = refs[-1]
  dx_ref[pl.ds(i * bm, bm), dc] = acc.astype(dx_ref.dtype)


def _dw_kernel(x_ref, d_ref, sin_ref, cos_ref, dw_ref, *, bm: int, bk: int, tiles: int, splits: int, steps: int,
               hh: int, half: int):
  """dWr [D, H·K] (the kernels' order) = xᵀ·[da | db]: a program a (row block of D, tile of heads, split of N),
  its fp32 partial sum over its `steps` × `bk` rows written to dw_ref [splits, D, H·K] (split-K: the output
  [D, H·K] alone is too few tiles to fill the card)."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  p = pl.program_id(0)
  i, tile, split = p // (tiles * splits), (p // splits) % tiles, p % splits
  dc = pl.ds(i * bm, bm)

  def body(k, accs):
    start = (split * steps + k) * bk
    x = x_ref[pl.ds(start, bk), dc]
    da, db = _unrotated(d_ref, sin_ref, cos_ref, start + jnp.arange(bk), tile, hh, half)
    return (accs[0] + plgpu.dot(x, da.astype(x.dtype), trans_a=True),
            accs[1] + plgpu.dot(x, db.astype(x.dtype), trans_a=True))

  zero = jnp.zeros((bm, hh), jnp.float32)
  a, b = jax.lax.fori_loop(0, steps, body, (zero, zero))
  dw_ref[split, dc, pl.ds(tile * 2 * hh, hh)] = a
  dw_ref[split, dc, pl.ds(tile * 2 * hh + hh, hh)] = b


def _splits(blocks: int, row_steps: int, programs: int = 264) -> int:
  """Split-K ways for a GEMM of `blocks` output tiles: the least power of two giving ≥ `programs` programs
  (two waves of an H100's / H200's 132 SMs), dividing its `row_steps`."""
  s = 1
  while blocks * s < programs and row_steps % (2 * s) == 0:
    s *= 2
  return s


def _bwd_tiles(t: fused_mlp.Tiles, n: int, d: int):
  """(bm, bn) of the dx kernel and (bm, bk) of the dW kernel, or None where the shapes do not tile."""
  dx = fused_mlp._fit(t.bm, n), fused_mlp._fit(t.bn, d)
  dw = fused_mlp._fit(t.bm, d), fused_mlp._fit(t.bk, n)
  return None if None in dx + dw else (dx, dw)


def _backward(x2, ws, tables, douts, t: fused_mlp.Tiles, interpret: bool):
  """(dx, (dW, ...)) of one or more `_project`s of the same x2 (ws [D, H, K] each, tables ((sin, cos), ...)
  and douts theirs) through GEMM kernels that un-rotate each cotangent as they load it (no pass of its own):
  one dx kernel summing every projection's gradient in its K loop, a dW kernel each; None where the shapes
  do not tile."""
  from jax.experimental import pallas as pl
  n, d = x2.shape
  _, h, k = ws[0].shape
  bt = _bwd_tiles(t, n, d)
  if bt is None or n * d > MAX_ELEMENTS:  # Triton's offsets are int32 (the forward checked n·H·K)
    return None
  (bm, bn), (bm_w, bk_w) = bt
  heads = t.bn // k
  hh = heads * k // 2
  common = dict(hh=hh, half=k // 2)
  operands = []
  for w, (sin, cos), dout in zip(ws, tables, douts):
    operands += [dout, sin, cos, _kernel_weight(w, heads).T]
  dx = pl.pallas_call(
      functools.partial(_dx_kernel, bm=bm, bn=bn, cols=d // bn, tiles=tuple(w.shape[1] // heads for w in ws),
                        **common),
      grid=((n // bm) * (d // bn),), out_shape=jax.ShapeDtypeStruct((n, d), x2.dtype),
      compiler_params=fused_mlp._params(t), interpret=interpret, name="rope_dgrad_gemm")(*operands)
  dws = []
  for w, (sin, cos), dout in zip(ws, tables, douts):
    tiles = w.shape[1] // heads
    splits = _splits((d // bm_w) * tiles, n // bk_w)
    partial = pl.pallas_call(
        functools.partial(_dw_kernel, bm=bm_w, bk=bk_w, tiles=tiles, splits=splits, steps=n // bk_w // splits,
                          **common),
        grid=((d // bm_w) * tiles * splits,), out_shape=jax.ShapeDtypeStruct((splits, d, h * k), jnp.float32),
        compiler_params=fused_mlp._params(t), interpret=interpret, name="rope_wgrad_gemm")(x2, dout, sin, cos)
    dws.append(_standard_weight(partial.sum(0).astype(w.dtype), h, heads))
  return dx, tuple(dws)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _rope_pallas(x2, ws, tables, t, interpret, bwd_kernels):
  return tuple(_project(x2, w, sin, cos, t, interpret) for w, (sin, cos) in zip(ws, tables))


def _fwd(x2, ws, tables, t, interpret, bwd_kernels):
  return _rope_pallas(x2, ws, tables, t, interpret, bwd_kernels), (x2, ws, tables)


def _bwd(t, interpret, bwd_kernels, res, douts):
  x2, ws, tables = res
  zeros = jax.tree.map(jnp.zeros_like, tables)
  grads = _backward(x2, ws, tables, douts, t, interpret) if bwd_kernels else None
  if grads is None:
    each = [_reference_bwd(x2, w, sin, cos, dout) for w, (sin, cos), dout in zip(ws, tables, douts)]
    dx = each[0][0]
    for more, _ in each[1:]:
      dx = dx + more
    grads = dx, tuple(dw for _, dw in each)
  return grads + (zeros,)


def _reference_bwd(x2, w, sin, cos, dout):
  """(dx, dW) through XLA: the rotation's transpose of dout as a pass of its own, then cuBLAS's GEMMs."""
  n, (_, h, k) = x2.shape[0], w.shape
  d = dout.reshape(n, h, k // 2, 2).astype(jnp.float32)
  s, c = sin[:, None, :], cos[:, None, :]
  da, db = d[..., 0] * c + d[..., 1] * s, d[..., 1] * c - d[..., 0] * s  # the rotation's transpose
  dq = jnp.concatenate([da, db], axis=-1).astype(x2.dtype)            # [N, H, K] in the weight's own layout
  return jnp.einsum("nhk,dhk->nd", dq, w), jnp.einsum("nd,nhk->dhk", x2, dq)


_rope_pallas.defvjp(_fwd, _bwd)


def rope_projection(x, w, sin_cos, impl: str = "xla", interpret: bool | None = None, row_spec=None,
                    head_spec=None, tiles: fused_mlp.Tiles | None = None, bwd_kernels: bool = True):
  """rotary(x·w) for x [B, L, D] and w [D, H, K], each head's dims interleaved (see the module's note):
  [B, L, H, K]. `sin_cos`: `transformer.rope_tables` of the rows' positions ([B or 1, L, 1, K/2] each).
  `impl`, `interpret`, `row_spec` as in `pallas_dispatch.run`; `head_spec`: the mesh axes of w's heads —
  sharded (tensor parallelism), "auto" takes the reference and "pallas" refuses. `bwd_kernels`: the backward
  through two GEMM kernels that un-rotate the cotangent as they load it (default), or through XLA (the
  rotation's transpose a pass of its own, then cuBLAS)."""
  return _projections(x, (w,), (sin_cos,), impl, interpret, row_spec, head_spec, tiles, bwd_kernels)[0]


def rope_qk_projection(x, wq, wk, q_sin_cos, k_sin_cos, impl: str = "xla", interpret: bool | None = None,
                       row_spec=None, head_spec=None, tiles: fused_mlp.Tiles | None = None, bwd_kernels: bool = True):
  """(rotary(x·wq), rotary(x·wk)): a self-attention's query and key of the same x, as two `rope_projection`s,
  except that the backward's kernels return x's gradient as one sum — one dgrad kernel whose K loop runs over
  both cotangents (`TransformerConfig.qkv_chain`: what reaches the norm before them is then one tensor, with the
  value projection's gradient added by cuBLAS as its GEMM's C operand). The same values and gradients."""
  if wq.shape != wk.shape:
    raise ValueError(f"rope_qk_projection needs the query's and key's weights alike; got {wq.shape} and {wk.shape}.")
  return _projections(x, (wq, wk), (q_sin_cos, k_sin_cos), impl, interpret, row_spec, head_spec, tiles, bwd_kernels)


def _projections(x, ws, sin_coss, impl, interpret, row_spec, head_spec, tiles, bwd_kernels):
  """rotary(x·w) for each w (the same [D, H, K] shape) with its tables: a tuple."""
  b, l, d = x.shape
  for w in ws:
    if w.ndim != 3 or w.shape[0] != d:
      raise ValueError(f"the rotary projection needs w [D, H, K] for x [B, L, D]; got x {x.shape}, w {w.shape}.")
  if pallas_dispatch.mesh_ways(head_spec) > 1 and impl != "xla":
    if impl == "pallas":
      raise ValueError(f"the rotary projection with impl='pallas' needs its weight whole on each device, but its "
                       f"heads are sharded over {head_spec!r}; use rope_impl='xla' or 'auto' with tensor parallelism.")
    impl = "xla"
  _, h, k = ws[0].shape
  tables = [a for sc in sin_coss for a in (jnp.broadcast_to(t.astype(jnp.float32), (b, l, 1, k // 2)).reshape(b, l, k // 2)
                                           for t in sc)]
  x = x.astype(ws[0].dtype)
  m = len(ws)

  def pairs(tables, n):
    return tuple((tables[2 * i].reshape(n, k // 2), tables[2 * i + 1].reshape(n, k // 2)) for i in range(m))

  def ref(x, *args):
    ws, n = args[:m], x.shape[0] * x.shape[1]
    return tuple(reference(x.reshape(n, d), w, sin, cos).reshape(*x.shape[:2], h, k)
                 for w, (sin, cos) in zip(ws, pairs(args[m:], n)))

  def kernel(interp):
    def fn(x, *args):  # per device
      n = x.shape[0] * x.shape[1]
      t = _tiles_for(tiles or TILES, n, d, h, k)
      if t is None or n * h * k > MAX_ELEMENTS:
        return ref(x, *args)
      outs = _rope_pallas(x.reshape(n, d), tuple(args[:m]), pairs(args[m:], n), t, interp, bool(bwd_kernels))
      return tuple(o.reshape(*x.shape[:2], h, k) for o in outs)
    return fn

  return pallas_dispatch.run(ref, kernel, (x, *ws, *tables), impl=impl, interpret=interpret, row_spec=row_spec,
                             row_args=(True,) + (False,) * m + (True,) * (2 * m), outs=m, name="rotary projection",
                             needs=["triton"])
