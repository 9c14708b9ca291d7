"""The gated MLP `act(x·W0) ⊙ (x·W1) · W2` with its element-wise work inside its GEMMs: two Pallas
GPU kernels, one each way, written twice: for Pallas's Triton backend (the default: any CUDA GPU) and
for its Mosaic GPU backend (tiles "mgpu:…": Hopper only — wgmma from TMA-fed shared memory, the path
JAX keeps now that 0.11 deprecates Triton's).

Why: XLA's GPU program runs the gate as passes of its own over the largest activations of the model,
[rows, d_ff] each. Forward, cuBLASLt writes act(h0) and h0 (its GELU_AUX epilogue) and h1, then a
fusion reads act(h0) and h1 and writes y: six tensor passes. Backward, the down-projection's dgrad
GEMM writes g = dy·W2ᵀ and a fusion reads g, h0, h1 and writes dh0, dh1: six more. Here the forward
kernel computes both up-projections of a tile (x read once) and writes h0, h1 and y from registers
(three passes), and the backward kernel computes g's tile and writes dh0, dh1 from it (reading h0,
h1: four passes). On T5-base at B=256 that is ~2.7 GB less traffic per encoder layer and step (five
[131072, 2048] bf16 tensors); `paperjax.roofline` prices the whole program (notes/perf.md).

What stays XLA's: the down-projection forward (y·W2), the weight gradients (xᵀ·dh, yᵀ·dy) and dx =
dh·Wᵀ, all single GEMMs on cuBLAS. The up-projection's weights are taken as one [D, 2F] matrix
(`fused_projections`' layout; separate W0, W1 are joined first, a 2·D·F copy), so h = [h0 | h1] is one
[rows, 2F] tensor and its two backward GEMMs are one each.

Semantics: the XLA path's function. Each kernel accumulates in fp32 and rounds h0, h1 to the compute
dtype before the gate, as the unfused program does; the gate and its derivative are computed in fp32
from those rounded values and the result rounded once (the unfused program rounds g to the compute
dtype first: the kernel's dh is, if anything, the more accurate). Residuals: x, h, y — what the XLA
path saves too (h0 and h1 for the rematerialised gate, y for W2's gradient).

`impl`: "xla" the plain JAX reference; "pallas" the kernels (on GPUs; their interpreter elsewhere, for
tests); "auto" the kernels in programs lowered for CUDA and the reference elsewhere. Shapes whose
rows, D or F do not split into the kernels' power-of-two tiles (≥ 16; Mosaic GPU: rows by ≥ 64, F by
≥ 64, and bf16/f16 only), or whose [rows, 2F] is past 32-bit offsets, take the reference.

The Mosaic GPU kernels (`_up_mgpu`, `_down_bwd_mgpu`): one warpgroup per block of [bm, bn] outputs;
`plgpu.emit_pipeline` streams the K steps' tiles into swizzled shared memory by TMA, `stages` deep, each
step one wgmma per accumulator (fp32, in registers) left running into the next step (its tiles released
a step late); the epilogue rounds and gates in registers, 64 columns at a time, and writes through
shared memory by TMA. The backward kernel takes W2ᵀ ([D, F], a copy of the small weight) so both
operands are row-major tiles, and loads its h tiles by TMA while the K loop runs. The activation's
derivative is written out (`act_and_grad`): autodiff's add_any has no Mosaic GPU lowering. Untimed on a
card (notes/perf.md); `bench --check_mlp` measures both backends' settings side by side.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from paperjax.models import pallas_dispatch

ACTIVATIONS = {"gelu": functools.partial(nn.gelu, approximate=True), "silu": nn.silu, "relu": nn.relu}


@dataclasses.dataclass(frozen=True)
class Tiles:
  """A kernel's tile [bm rows, bn of F] and its K step bk, with Triton's warps and pipeline stages.
  The defaults are Triton's usual Hopper bf16 GEMM tiles, untimed on a card (notes/perf.md).
  `xla=True` ("xla"): no kernel on that side — XLA's GEMM and element-wise passes, as the reference.
  `backend="mgpu"` ("mgpu:bm,bn,bk,stages"): the Mosaic GPU kernel (Hopper), one warpgroup a block,
  `stages` tiles in flight (warps unused)."""
  bm: int = 128
  bn: int = 128
  bk: int = 64
  warps: int = 8
  stages: int = 3
  xla: bool = False
  backend: str = "triton"

  @classmethod
  def parse(cls, text: str) -> "Tiles":
    """"bm,bn,bk,warps,stages" (e.g. "128,64,64,4,4"); "mgpu:bm,bn,bk,stages" (e.g. "mgpu:128,64,64,4");
    "" is the default; "xla" no kernel."""
    if not text:
      return cls()
    if text == "xla":
      return cls(xla=True)
    mgpu = text.startswith("mgpu:")
    form, example = (("'mgpu:' and four integers bm,bn,bk,stages", "'mgpu:128,64,64,4'") if mgpu else
                     ("five integers bm,bn,bk,warps,stages", "'128,128,64,8,3'"))
    try:
      vals = [int(v) for v in text.removeprefix("mgpu:").split(",")]
      if len(vals) != (4 if mgpu else 5):
        raise ValueError
      tiles = cls(*vals[:3], 4, vals[3], backend="mgpu") if mgpu else cls(*vals)
    except ValueError:
      raise ValueError(f"MLP kernel tiles {text!r} are not {form} (e.g. {example}).") from None
    if any(v < 1 or v & (v - 1) for v in vals[:3]) or any(v < 16 for v in vals[:3]):
      raise ValueError(f"MLP kernel tiles {text!r}: bm, bn and bk must be powers of two of at least 16.")
    if mgpu and (tiles.bm < 64 or tiles.bn < 64 or tiles.bn > 256 or tiles.stages < 2):
      raise ValueError(f"MLP kernel tiles {text!r}: the Mosaic GPU kernels need bm ≥ 64, 64 ≤ bn ≤ 256 (wgmma) and "
                       "stages ≥ 2 (one step's tiles stay while the next step's wgmma runs).")
    return tiles

  @classmethod
  def parse_pair(cls, text: str) -> tuple["Tiles", "Tiles"]:
    """(up kernel's, backward kernel's) tiles from "tiles" (both) or "up|down" (e.g. "xla|128,128,64,8,3":
    the forward through XLA, the backward kernel with those tiles)."""
    up, _, down = text.partition("|")
    return cls.parse(up), cls.parse(down if "|" in text else up)


# The kernels index their arrays with 32-bit offsets: a [rows, 2F] array past 2³¹ elements takes the reference.
MAX_ELEMENTS = 2 ** 31 - 1

UP_TILES = Tiles()
DOWN_TILES = Tiles()


def _fit(tile: int, dim: int, least: int = 16) -> int | None:
  """The largest power of two ≤ tile dividing dim, if it is at least `least` (Triton's smallest dot: 16;
  wgmma's rows and a 128-byte-swizzled bf16 tile: 64)."""
  t = tile
  while t >= least and dim % t:
    t //= 2
  return t if t >= least else None


def _tiles_for(tiles: Tiles, n: int, d: int, f: int, dtype) -> Tiles | None:
  if tiles.xla:
    return tiles
  mgpu = tiles.backend == "mgpu"
  if mgpu and jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
    return None  # wgmma's 16-bit inputs (f32 would be tf32: not the reference's arithmetic)
  bm, bn, bk = _fit(tiles.bm, n, 64 if mgpu else 16), _fit(tiles.bn, f, 64 if mgpu else 16), _fit(tiles.bk, d)
  if None in (bm, bn, bk):
    return None
  return dataclasses.replace(tiles, bm=bm, bn=bn, bk=bk)


def _gate(h0, h1, act):
  return ACTIVATIONS[act](h0) * h1


def act_and_grad(name: str, x, grad: bool = True):
  """(act(x), act'(x)) written out, or act(x) alone with grad=False — ACTIVATIONS' functions and their
  derivatives in plain operations (tested against them and autodiff): the Mosaic GPU kernels' epilogues,
  whose lowering has no rule for autodiff's add_any or for jax.nn.relu's custom_jvp."""
  if name == "gelu":  # 0.5·x·(1 + tanh(u)), u = c·(x + 0.044715·x³)
    c = (2 / jnp.pi) ** 0.5
    t = jnp.tanh(c * (x + 0.044715 * (x * x * x)))
    a = 0.5 * x * (1 + t)
    return (a, 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * (x * x))) if grad else a
  if name == "silu":  # x·σ(x)
    sig = jax.nn.sigmoid(x)
    return (x * sig, sig * (1 + x * (1 - sig))) if grad else x * sig
  if name == "relu":  # jax.nn.relu's derivative is 0 at 0
    pos = x > 0
    return (jnp.where(pos, x, 0.0), jnp.where(pos, 1.0, 0.0)) if grad else jnp.where(pos, x, 0.0)
  raise ValueError(f"activation {name!r} is not one of {sorted(ACTIVATIONS)}.")


@functools.lru_cache(maxsize=None)
def gated_activation(name: str):
  """`act(h0) * h1`, differentiated by recomputing `act` from h0 in the backward pass.

  Plain autodiff of the tanh GELU saves tanh(...) as an extra [B, L, F] residual: XLA's GPU fusion
  will not duplicate a transcendental, so the forward kernel writes it and the backward kernel reads
  it back — two extra passes over the largest activation per layer (4 + 6 tensor passes instead of
  3 + 5; seen in the H100 program by `paperjax.roofline`). Rematerialised, the backward kernel reads
  h0, h1 and the incoming gradient and recomputes the activation in registers. Values and gradients
  are the same computation. (The XLA path of the gated MLP; `mlp`'s kernels do this inside GEMMs.)"""
  return jax.checkpoint(functools.partial(_gate, act=name))


@functools.lru_cache(maxsize=None)
def rematted_activation(name: str):
  """`act(h)`, its derivative recomputed from h in the backward pass: h is the only residual, so
  XLA's GPU GEMM rewriter can take the forward as one cuBLASLt GEMM with a GELU epilogue that also
  writes h (plain autodiff of the tanh GELU saves tanh(...) too, and the pattern no longer matches)."""
  return jax.checkpoint(ACTIVATIONS[name])


def reference(x, w, wo, activation: str, gated: bool = True):
  """The XLA path: gated, w [D, 2F] (W0 then W1) and `gated_activation`; dense, w [D, F] and
  `rematted_activation` (what `transformer.GatedMLP` / `DenseMLP` run with mlp_impl="xla")."""
  f = wo.shape[0]
  h = x @ w
  y = gated_activation(activation)(h[..., :f], h[..., f:]) if gated else rematted_activation(activation)(h)
  return y @ wo


def _up_kernel(x_ref, w_ref, h_ref, y_ref, *, t: Tiles, f: int, k_steps: int, cols: int, act: str):
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  p = pl.program_id(0)
  i, j = p // cols, p % cols  # consecutive programs share x's row tile (read once from HBM)
  rows, c0, c1 = pl.ds(i * t.bm, t.bm), pl.ds(j * t.bn, t.bn), pl.ds(f + j * t.bn, t.bn)

  def body(k, accs):
    ks = pl.ds(k * t.bk, t.bk)
    x = x_ref[rows, ks]
    return accs[0] + plgpu.dot(x, w_ref[ks, c0]), accs[1] + plgpu.dot(x, w_ref[ks, c1])

  zero = jnp.zeros((t.bm, t.bn), jnp.float32)
  a0, a1 = jax.lax.fori_loop(0, k_steps, body, (zero, zero))
  h0, h1 = a0.astype(h_ref.dtype), a1.astype(h_ref.dtype)
  h_ref[rows, c0] = h0
  h_ref[rows, c1] = h1
  y_ref[rows, c0] = _gate(h0.astype(jnp.float32), h1.astype(jnp.float32), act).astype(y_ref.dtype)


def _down_bwd_kernel(dy_ref, wo_ref, h_ref, dh_ref, *, t: Tiles, f: int, k_steps: int, cols: int, act: str,
                     gated: bool):
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
  p = pl.program_id(0)
  i, j = p // cols, p % cols
  rows, c0, c1 = pl.ds(i * t.bm, t.bm), pl.ds(j * t.bn, t.bn), pl.ds(f + j * t.bn, t.bn)

  def body(k, acc):
    ks = pl.ds(k * t.bk, t.bk)
    return acc + plgpu.dot(dy_ref[rows, ks], wo_ref[c0, ks], trans_b=True)

  g = jax.lax.fori_loop(0, k_steps, body, jnp.zeros((t.bm, t.bn), jnp.float32))
  h0 = h_ref[rows, c0].astype(jnp.float32)
  a, act_vjp = jax.vjp(ACTIVATIONS[act], h0)
  if not gated:  # dh = g · act'(h): cuBLASLt's DGELU epilogue, which XLA does not emit
    dh_ref[rows, c0] = act_vjp(g)[0].astype(dh_ref.dtype)
    return
  h1 = h_ref[rows, c1].astype(jnp.float32)
  dh_ref[rows, c0] = act_vjp(g * h1)[0].astype(dh_ref.dtype)
  dh_ref[rows, c1] = (g * a).astype(dh_ref.dtype)


def _params(t: Tiles):
  from jax.experimental.pallas import triton as plgpu
  return plgpu.CompilerParams(num_warps=t.warps, num_stages=t.stages)


_EPI = 64  # the Mosaic GPU epilogue's column chunk (bn is a multiple of it)


def _mgpu_transforms(cols: int, dtype):
  """A [rows, cols] shared-memory tile's layout for TMA and wgmma: (8, swizzle width) tiles, swizzled."""
  from jax.experimental.pallas import mosaic_gpu as plgpu
  swizzle = plgpu.find_swizzle(cols * jnp.dtype(dtype).itemsize * 8)
  return plgpu.TilingTransform((8, swizzle // jnp.dtype(dtype).itemsize)), plgpu.SwizzleTransform(swizzle)


def _mgpu_kernel(body, out_type, t: Tiles, cols: int, n: int, interpret: bool):
  """A Mosaic GPU kernel over blocks (column j of F fastest: consecutive blocks share x's row tile)."""
  from jax.experimental.pallas import mosaic_gpu as plgpu
  kw = {"interpret": pallas_dispatch.mosaic_gpu_interpret_params()} if interpret else {}
  return plgpu.kernel(body, out_type=out_type, grid=(cols, n // t.bm), grid_names=("n", "m"), **kw)


def _up_mgpu(x2, w, act: str, t: Tiles, interpret: bool):
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import mosaic_gpu as plgpu
  n, d = x2.shape
  f = w.shape[1] // 2
  cols, dt = f // t.bn, x2.dtype
  tin, tout = _mgpu_transforms(t.bk, dt), _mgpu_transforms(t.bn, dt)

  def gated_mlp_up_gemm(x_g, w_g, h_g, y_g):  # the name is the roofline's (PALLAS_GEMMS)
    j, i = jax.lax.axis_index("n"), jax.lax.axis_index("m")
    rows = pl.ds(i * t.bm, t.bm)

    def accumulate(o_s, acc0, acc1):
      def step(_, x_s, w0_s, w1_s):
        plgpu.wgmma(acc0, x_s, w0_s)
        plgpu.wgmma(acc1, x_s, w1_s)
        plgpu.wgmma_wait(2)  # the previous step's two are done: its slots (released a step late) can refill
      spec = lambda shape, index: plgpu.BlockSpec(shape, index, transforms=tin, delay_release=1)
      plgpu.emit_pipeline(step, grid=(d // t.bk,), max_concurrent_steps=t.stages, in_specs=[
          spec((t.bm, t.bk), lambda k: (i, k)), spec((t.bk, t.bn), lambda k: (k, j)),
          spec((t.bk, t.bn), lambda k: (k, cols + j))])(x_g, w_g, w_g)
      a0, a1 = acc0[...], acc1[...]
      for c in range(0, t.bn, _EPI):  # 64 columns at a time: fewer fp32 temporaries live in registers
        cs = pl.ds(c, _EPI)
        h0, h1 = a0[:, c:c + _EPI].astype(dt), a1[:, c:c + _EPI].astype(dt)
        o_s[0, :, cs] = h0
        o_s[1, :, cs] = h1
        o_s[2, :, cs] = (act_and_grad(act, h0.astype(jnp.float32), grad=False) * h1.astype(jnp.float32)).astype(dt)
      plgpu.commit_smem()
      plgpu.copy_smem_to_gmem(o_s.at[0], h_g.at[rows, pl.ds(j * t.bn, t.bn)])
      plgpu.copy_smem_to_gmem(o_s.at[1], h_g.at[rows, pl.ds(f + j * t.bn, t.bn)])
      plgpu.copy_smem_to_gmem(o_s.at[2], y_g.at[rows, pl.ds(j * t.bn, t.bn)])
      plgpu.wait_smem_to_gmem(0)

    # registers (the accumulators) and shared memory are scoped apart
    pl.run_scoped(lambda o_s: pl.run_scoped(functools.partial(accumulate, o_s), plgpu.ACC((t.bm, t.bn), jnp.float32),
                                            plgpu.ACC((t.bm, t.bn), jnp.float32)),
                  plgpu.SMEM((3, t.bm, t.bn), dt, transforms=tout))

  out = (jax.ShapeDtypeStruct((n, 2 * f), dt), jax.ShapeDtypeStruct((n, f), dt))
  return _mgpu_kernel(gated_mlp_up_gemm, out, t, cols, n, interpret)(x2, w)


def _down_bwd_mgpu(dy2, wo, h, act: str, t: Tiles, interpret: bool):
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import mosaic_gpu as plgpu
  n, d = dy2.shape
  f = wo.shape[0]
  parts = h.shape[1] // f  # 2 gated ([h0 | h1]), 1 dense
  cols, dt = f // t.bn, dy2.dtype
  tin, tout = _mgpu_transforms(t.bk, dt), _mgpu_transforms(t.bn, dt)

  def mlp_dgrad_gemm(dy_g, wot_g, h_g, dh_g):
    j, i = jax.lax.axis_index("n"), jax.lax.axis_index("m")
    rows = pl.ds(i * t.bm, t.bm)
    block = lambda s: pl.ds(s * f + j * t.bn, t.bn)

    def accumulate(h_s, loaded, acc):
      def step(_, dy_s, wot_s):
        plgpu.wgmma(acc, dy_s, wot_s)
        plgpu.wgmma_wait(1)  # the previous step's is done: its slots (released a step late) can refill
      spec = lambda shape, index: plgpu.BlockSpec(shape, index, transforms=tin, delay_release=1)
      plgpu.emit_pipeline(step, grid=(d // t.bk,), max_concurrent_steps=t.stages, in_specs=[
          spec((t.bm, t.bk), lambda k: (i, k)), spec((t.bk, t.bn), lambda k: (k, j))])(dy_g, wot_g)
      g = acc[...]
      for s in range(parts):
        plgpu.barrier_wait(loaded.at[s])
      for c in range(0, t.bn, _EPI):  # 64 columns at a time (swizzled tiles load in the accumulator's layout)
        cs, gc = pl.ds(c, _EPI), g[:, c:c + _EPI]
        a, da = act_and_grad(act, h_s[0, :, cs].astype(jnp.float32))
        if parts == 2:
          h1 = h_s[1, :, cs].astype(jnp.float32)
          h_s[0, :, cs] = (gc * h1 * da).astype(dt)
          h_s[1, :, cs] = (gc * a).astype(dt)
        else:
          h_s[0, :, cs] = (gc * da).astype(dt)
      plgpu.commit_smem()
      for s in range(parts):
        plgpu.copy_smem_to_gmem(h_s.at[s], dh_g.at[rows, block(s)])
      plgpu.wait_smem_to_gmem(0)

    def scope(h_s, loaded):
      for s in range(parts):  # h's tiles arrive while the K loop runs
        plgpu.copy_gmem_to_smem(h_g.at[rows, block(s)], h_s.at[s], loaded.at[s])
      pl.run_scoped(functools.partial(accumulate, h_s, loaded), plgpu.ACC((t.bm, t.bn), jnp.float32))

    pl.run_scoped(scope, plgpu.SMEM((parts, t.bm, t.bn), dt, transforms=tout), plgpu.Barrier(num_barriers=parts))

  mlp_dgrad_gemm.__name__ = "gated_mlp_dgrad_gemm" if parts == 2 else "dense_mlp_dgrad_gemm"
  return _mgpu_kernel(mlp_dgrad_gemm, jax.ShapeDtypeStruct(h.shape, dt), t, cols, n, interpret)(dy2, wo.T, h)


def up(x2, w, act: str, t: Tiles, interpret: bool):
  """(h, y) = (x·w, act(h0)·h1) for x [N, D], w [D, 2F]: one kernel."""
  if t.backend == "mgpu":
    return _up_mgpu(x2, w, act, t, interpret)
  from jax.experimental import pallas as pl
  n, d = x2.shape
  f = w.shape[1] // 2
  cols = f // t.bn
  kernel = functools.partial(_up_kernel, t=t, f=f, k_steps=d // t.bk, cols=cols, act=act)
  return pl.pallas_call(
      kernel, grid=((n // t.bm) * cols,),
      out_shape=(jax.ShapeDtypeStruct((n, 2 * f), x2.dtype), jax.ShapeDtypeStruct((n, f), x2.dtype)),
      compiler_params=_params(t), interpret=interpret, name="gated_mlp_up_gemm")(x2, w)


def down_bwd(dy2, wo, h, act: str, t: Tiles, interpret: bool):
  """dh from g = dy·woᵀ, for dy [N, D], wo [F, D]: gated, h = [h0 | h1] [N, 2F] and dh = [g·h1·act'(h0) |
  g·act(h0)]; dense, h [N, F] and dh = g·act'(h). One kernel."""
  if t.backend == "mgpu":
    return _down_bwd_mgpu(dy2, wo, h, act, t, interpret)
  from jax.experimental import pallas as pl
  n, d = dy2.shape
  f = wo.shape[0]
  gated = h.shape[1] == 2 * f
  cols = f // t.bn
  kernel = functools.partial(_down_bwd_kernel, t=t, f=f, k_steps=d // t.bk, cols=cols, act=act, gated=gated)
  return pl.pallas_call(
      kernel, grid=((n // t.bm) * cols,),
      out_shape=jax.ShapeDtypeStruct(h.shape, h.dtype),
      compiler_params=_params(t), interpret=interpret,
      name="gated_mlp_dgrad_gemm" if gated else "dense_mlp_dgrad_gemm")(dy2, wo, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _mlp_pallas(x, w, wo, act, up_tiles, down_tiles, interpret):
  return _fwd(x, w, wo, act, up_tiles, down_tiles, interpret)[0]


def _act_of_h(h, act: str, f: int):
  """y from h: act(h0)·h1 (gated, h [N, 2F]) or act(h) (dense, h [N, F]); XLA's element-wise pass."""
  return _gate(h[:, :f], h[:, f:], act) if h.shape[1] == 2 * f else ACTIVATIONS[act](h)


def _fwd(x, w, wo, act, up_tiles, down_tiles, interpret):
  d = x.shape[-1]
  x2 = x.reshape(-1, d)
  if w.shape[1] == 2 * wo.shape[0] and not up_tiles.xla:
    h, y = up(x2, w, act, up_tiles, interpret)
  else:  # dense (cuBLASLt's GELU_AUX epilogue writes act(h) and h), or the up kernel off
    h = x2 @ w
    y = _act_of_h(h, act, wo.shape[0])
  return (y @ wo).reshape(x.shape), (x2, w, wo, h, y)


def _bwd(act, up_tiles, down_tiles, interpret, res, dout):
  x2, w, wo, h, y = res
  dy = dout.reshape(-1, dout.shape[-1]).astype(x2.dtype)
  f = wo.shape[0]
  if down_tiles.xla and h.shape[1] == 2 * f:  # the backward kernel off: XLA's dgrad GEMM and gate pass, dh0 and
    # dh1 kept apart (joined, XLA would write them twice)
    dh0, dh1 = jax.vjp(functools.partial(_gate, act=act), h[:, :f], h[:, f:])[1](dy @ wo.T)
    dx = (dh0 @ w[:, :f].T + dh1 @ w[:, f:].T).reshape(dout.shape)
    return dx, jnp.concatenate([x2.T @ dh0, x2.T @ dh1], axis=1), y.T @ dy
  if down_tiles.xla:
    dh = jax.vjp(ACTIVATIONS[act], h)[1](dy @ wo.T)[0]
  else:
    dh = down_bwd(dy, wo, h, act, down_tiles, interpret)
  dx = (dh @ w.T).reshape(dout.shape)
  return dx, x2.T @ dh, y.T @ dy


_mlp_pallas.defvjp(_fwd, _bwd)


def mlp(x, w, wo, activation: str, gated: bool = True, impl: str = "xla", interpret: bool | None = None,
        row_spec=None, f_spec=None, up_tiles: Tiles | None = None, down_tiles: Tiles | None = None):
  """act(x·W0) ⊙ (x·W1) · wo (gated; w = [W0 | W1] as [D, 2F]) or act(x·w) · wo (dense; w [D, F]), for
  x [..., D] and wo [F, D] of one dtype. Gated, both kernels; dense, the backward one (its forward is
  XLA's GEMM with cuBLASLt's activation epilogue already).
  `impl`, `interpret` and `row_spec` as in `pallas_dispatch.run`: under a mesh of several devices the
  kernels run per device on its rows, the weights gathered whole (as FSDP's step gathers them anyway).
  `f_spec`: the mesh axes of the weights' F axis. Sharded (tensor parallelism), or with the rows'
  features sharded, "auto" takes the reference and "pallas" refuses: the kernels need whole weights
  and whole rows."""
  if pallas_dispatch.mesh_ways(f_spec) > 1 and impl != "xla":
    if impl == "pallas":
      raise ValueError(f"the fused MLP with impl='pallas' needs its weights whole on each device, but their "
                       f"d_ff axis is sharded over {f_spec!r}; use mlp_impl='xla' or 'auto' with tensor parallelism.")
    impl = "xla"
  if activation not in ACTIVATIONS:
    raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}.")
  f = wo.shape[0]
  want = (x.shape[-1], (2 if gated else 1) * f)
  if w.ndim != 2 or wo.ndim != 2 or w.shape != want or wo.shape[1] != x.shape[-1]:
    raise ValueError(f"the {'gated' if gated else 'dense'} MLP needs w {list(want)} and wo [F, D] for x [..., D]; "
                     f"got x {x.shape}, w {w.shape}, wo {wo.shape}.")
  ref = lambda x, w, wo: reference(x, w, wo, activation, gated)

  def kernel(interp):
    def fn(x, w, wo):  # shapes here are per device
      n = x.size // x.shape[-1]
      ut = _tiles_for(up_tiles or UP_TILES, n, x.shape[-1], f, x.dtype)
      dt = _tiles_for(down_tiles or DOWN_TILES, n, x.shape[-1], f, x.dtype)
      no_kernel = dt is not None and dt.xla and (ut.xla or not gated)  # dense: the backward is its only kernel
      if ut is None or dt is None or no_kernel or n * w.shape[1] > MAX_ELEMENTS:
        return ref(x, w, wo)
      return _mlp_pallas(x, w, wo, activation, ut, dt, interp)
    return fn

  used = [down_tiles or DOWN_TILES] + ([up_tiles or UP_TILES] if gated else [])  # dense: the backward kernel only
  needs = sorted({t.backend for t in used if not t.xla}) or ["triton"]
  return pallas_dispatch.run(ref, kernel, (x, w, wo), impl=impl, interpret=interpret, row_spec=row_spec,
                             row_args=(True, False, False), name="fused MLP", needs=needs)
