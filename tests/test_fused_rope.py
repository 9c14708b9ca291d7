"""models/fused_rope.py: rotary positions inside the q/k projection's GEMM kernel, checked against the
formula by hand, against the model's own rotary path, and compiled for an H100 without one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax.models import fused_mlp, fused_rope as R
from paperjax.models import transformer as T
from tests.conftest import needs_cuda_plugin, run_for_h100, same_model_with

SMALL = fused_mlp.Tiles(bm=32, bn=64, bk=32, warps=4, stages=2)  # two heads of 32 a tile; 2×2 blocks, K loop of 2


def _data(dtype=jnp.bfloat16, b=2, l=32, d=64, h=4, k=32):
  ks = jax.random.split(jax.random.key(0), 2)
  x = jax.random.normal(ks[0], (b, l, d), jnp.float32).astype(dtype)
  w = (jax.random.normal(ks[1], (d, h, k), jnp.float32) / np.sqrt(d)).astype(dtype)
  positions = jnp.arange(l)[None] * 3 + jnp.arange(b)[:, None] * 5  # distinct per row, as packed rows have
  return x, w, positions


def _by_hand(x, w, positions, theta=10_000.0):
  """Each head's pair (j, j + K/2) of x·W (rounded to bf16, as the GEMM writes it) rotated by
  positions · θ^(−j/(K/2)), in float64, written at (2j, 2j + 1)."""
  q = np.asarray(jnp.einsum("bld,dhk->blhk", x, w).astype(x.dtype), np.float64)
  half = q.shape[-1] // 2
  angle = np.asarray(positions, np.float64)[:, :, None, None] * theta ** (-np.arange(half) / half)
  a, b = q[..., :half], q[..., half:]
  out = np.empty_like(q)
  out[..., 0::2] = a * np.cos(angle) - b * np.sin(angle)
  out[..., 1::2] = b * np.cos(angle) + a * np.sin(angle)
  return out


def test_the_rotation_by_hand_and_the_models_rotary_permuted():
  x, w, pos = _data()
  sc = T.rope_tables(pos, w.shape[-1], 10_000.0)
  ref = R.rope_projection(x, w, sc, impl="xla")
  want = _by_hand(x, w, pos)
  np.testing.assert_allclose(np.asarray(ref, np.float64), want, rtol=2 ** -7, atol=2 ** -7 * np.abs(want).max())
  # the model's own rotary, its heads' dims in rotary's order: the same numbers exactly
  std = T.rotary(jnp.einsum("bld,dhk->blhk", x, w), sc)
  np.testing.assert_array_equal(R.standard_layout(ref), std)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_the_kernel_is_the_formula(dtype):
  """The Triton kernel (Pallas's interpreter): 2 × 2 blocks of two heads each, a K loop of two steps."""
  x, w, pos = _data(dtype)
  sc = T.rope_tables(pos, w.shape[-1], 10_000.0)
  got = R.rope_projection(x, w, sc, impl="pallas", interpret=True, tiles=SMALL)
  assert "pallas_call" in str(jax.make_jaxpr(lambda: R.rope_projection(x, w, sc, impl="pallas", interpret=True,
                                                                         tiles=SMALL))())
  want = _by_hand(x, w, pos) if dtype == jnp.bfloat16 else None
  if want is not None:
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2 ** -7, atol=2 ** -7 * np.abs(want).max())
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(R.rope_projection(x, w, sc, impl="xla"), np.float32),
                             rtol=1e-2 if dtype == jnp.bfloat16 else 1e-5, atol=1e-2 if dtype == jnp.bfloat16 else 1e-5)


@pytest.mark.parametrize("dtype,bwd_kernels", [(jnp.float32, True), (jnp.float32, False), (jnp.bfloat16, True)])
def test_the_kernels_gradients_are_the_references(dtype, bwd_kernels):
  """dx and dW through the backward's two GEMM kernels (interpreted: the cotangent un-rotated as loaded; dx
  a loop over two tiles of heads, dW two row blocks split in two over the rows) or through XLA's pass and
  GEMMs: autodiff of the reference's values. (XLA's backward in bf16 is XLA's business: on CPU its bf16 dots
  accumulate in bf16, differently from one jax to the next.)"""
  x, w, pos = _data(dtype)
  sc = T.rope_tables(pos, w.shape[-1], 10_000.0)
  ct = jax.random.normal(jax.random.key(1), x.shape[:2] + w.shape[1:], jnp.float32)

  def grad(impl):
    f = lambda x, w: (R.rope_projection(x, w, sc, impl=impl, interpret=True, tiles=SMALL,
                                        bwd_kernels=bwd_kernels).astype(jnp.float32) * ct).sum()
    return jax.grad(f, argnums=(0, 1)), f

  (g_ref, _), (g_ours, f_ours) = grad("xla"), grad("pallas")
  if dtype == jnp.float32:
    for a, b in zip(g_ref(x, w), g_ours(x, w)):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
  else:  # bf16: against the float32 gradient of the same inputs, as close as XLA's own bf16 backward is
    exact = g_ref(x.astype(jnp.float32), w.astype(jnp.float32))
    rel = lambda g, e: float(np.linalg.norm(np.asarray(g, np.float32) - e) / np.linalg.norm(e))
    for a, b, e in zip(g_ref(x, w), g_ours(x, w), exact):
      assert rel(b, e) <= 1.5 * rel(a, e) + 1e-3, (rel(b, e), rel(a, e))
  calls = str(jax.make_jaxpr(jax.grad(f_ours, argnums=(0, 1)))(x, w)).count("pallas_call")
  assert calls == (3 if bwd_kernels else 1), calls  # the forward's kernel, and dx's and dW's


@pytest.mark.parametrize("bwd_kernels", [True, False])
def test_the_query_and_key_together_are_the_two_projections(bwd_kernels):
  """`rope_qk_projection` (the query's and key's own positions) gives what two `rope_projection`s give, and
  the reference's gradients (float32: x's the sum of both); its backward has one dgrad kernel whose K loop runs
  over both cotangents (each un-rotated with its own tables) and a wgrad kernel each."""
  x, wq, pos = _data(jnp.float32)
  wk = jax.random.normal(jax.random.key(2), wq.shape, jnp.float32) / 8
  scq, sck = T.rope_tables(pos, 32, 10_000.0), T.rope_tables(pos * 7 + 1, 32, 10_000.0)
  cts = [jax.random.normal(jax.random.key(3 + i), x.shape[:2] + wq.shape[1:], jnp.float32) for i in range(2)]

  def loss(impl, joint):
    kw = dict(impl=impl, interpret=True, tiles=SMALL, bwd_kernels=bwd_kernels)
    def f(x, wq, wk):
      if joint:
        q, k = R.rope_qk_projection(x, wq, wk, scq, sck, **kw)
      else:
        q, k = R.rope_projection(x, wq, scq, **kw), R.rope_projection(x, wk, sck, **kw)
      return (q * cts[0]).sum() + (k * cts[1]).sum()
    return f

  np.testing.assert_allclose(loss("pallas", True)(x, wq, wk), loss("xla", False)(x, wq, wk), rtol=1e-5)
  g = lambda f: jax.grad(f, argnums=(0, 1, 2))(x, wq, wk)
  for got, want in zip(g(loss("pallas", True)), g(loss("xla", False))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  calls = lambda joint: str(jax.make_jaxpr(lambda *a: g(loss("pallas", joint)))(x, wq, wk)).count("pallas_call")
  # two forward kernels; then one dgrad kernel and a wgrad kernel each (apart: a dgrad kernel each), or XLA's
  assert (calls(True), calls(False)) == ((5, 6) if bwd_kernels else (2, 2))
  with pytest.raises(ValueError, match="the query's and key's weights alike"):
    R.rope_qk_projection(x, wq, wk[:, :2], scq, sck)


@pytest.mark.parametrize("kind", ["decoder", pytest.param("encdec", marks=pytest.mark.slow)])  # encdec: ~11 s cold
def test_attention_sees_the_same_model(kind):
  """A model with rope_impl="pallas" (the kernel, interpreted) is the rotary model: the same loss and
  gradients from the same parameters — q and k are permuted alike, so q·k is unchanged (T5's cross-attention
  has no rotary and keeps XLA's projections)."""
  cfg = T.TransformerConfig(vocab_size=64, d_model=64, num_heads=2, head_dim=32, d_ff=96, num_layers=1,
                            num_encoder_layers=1, kind=kind, dtype=jnp.float32, param_dtype=jnp.float32)
  loss, params = same_model_with(cfg, rope_impl="pallas")
  # q and k in every self-attention layer, each kernel traced twice (the CUDA branch and the interpreter's)
  assert str(jax.make_jaxpr(loss)(params)).count("pallas_call") == 2 * 2 * (cfg.num_layers + (kind == "encdec"))


def test_the_weight_gradient_splits_over_rows_to_fill_the_card():
  """dW's output alone is few tiles ([768, 768]: 6 row blocks × 6 tiles of heads); the rows are split until
  ≥ 264 programs run (two waves of 132 SMs), as far as the row steps divide."""
  assert R._splits(36, 131072 // 64) == 8      # T5-base: 288 programs
  assert R._splits(256, 32768 // 64) == 2      # the 1B: 512
  assert R._splits(4, 2) == 2 and R._splits(300, 8) == 1 and R._splits(1, 1) == 1


def test_bad_settings_are_one_sentence():
  with pytest.raises(ValueError, match=r"model.rope_impl='fast' is not 'xla', 'pallas'"):
    T.TransformerConfig(vocab_size=8, rope_impl="fast")
  with pytest.raises(ValueError, match=r"does not work with model.fused_projections=True"):
    T.TransformerConfig(vocab_size=8, rope_impl="auto", fused_projections=True)
  x, w, pos = _data()
  sc = T.rope_tables(pos, w.shape[-1], 10_000.0)
  with pytest.raises(ValueError, match=r"needs w \[D, H, K\]"):
    R.rope_projection(x, w.reshape(64, -1), sc)


def test_untileable_shapes_take_the_reference():
  """Half head dims under Triton's smallest dot (16), or rows that do not tile: the reference, no kernel."""
  x, w, pos = _data(k=16)
  sc = T.rope_tables(pos, 16, 10_000.0)
  jaxpr = str(jax.make_jaxpr(lambda: R.rope_projection(x, w, sc, impl="pallas", interpret=True))())
  assert "pallas_call" not in jaxpr
  assert R._tiles_for(R.TILES, 4096, 768, 12, 64).bn == 128  # T5-base / GPT-2: two heads a tile
  assert R._tiles_for(R.TILES, 4096, 2048, 16, 128).bn == 128  # the 1B: one head of 128
  assert R._tiles_for(R.TILES, 4096, 768, 3, 64).bn == 64      # three heads: one a tile


@needs_cuda_plugin
def test_compiles_for_an_h100_as_gemm_kernels_both_ways():
  """Compiled for an H100 without one (CUDA plugin): the forward is one Triton kernel per projection and the
  backward two (dx, dW), each priced by the roofline as a GEMM of 2·N·D·H·K; neither way has a pass over
  [N, H·K] of its own (XLA's backward has the rotation's transpose, as the forward has the rotation)."""
  out = run_for_h100("""
    from paperjax.models import fused_rope as R, transformer as T
    out = {}
    args = (spec((8, 512, 256)), spec((256, 4, 64)), spec((8, 512), jnp.int32), spec((8, 512, 4, 64)))
    for impl in ("xla", "pallas"):
      f = lambda x, w, pos: R.rope_projection(x, w, T.rope_tables(pos, 64, 1e4), impl=impl, interpret=False)
      out[impl] = kernels(compiled(f, *args[:3]))
      g = jax.grad(lambda x, w, pos, ct: (f(x, w, pos) * ct).astype(jnp.float32).sum(), argnums=(0, 1))
      out["grad_" + impl] = kernels(compiled(g, *args))
    print(json.dumps(out))
  """)
  n, d, hk = 8 * 512, 256, 4 * 64
  name = lambda op: next(n for n in ("rope_projection_gemm", "rope_dgrad_gemm", "rope_wgrad_gemm") if n in op)
  ours = lambda key: sorted((name(k[4]), k[0], k[1]) for k in out[key] if "pallas_call" in k[4])
  assert ours("pallas") == [("rope_projection_gemm", "gemm", 2.0 * n * d * hk)], out["pallas"]
  assert ours("grad_pallas") == [(name, "gemm", 2.0 * n * d * hk) for name in ("rope_dgrad_gemm", "rope_wgrad_gemm")], \
      out["grad_pallas"]
  from paperjax import roofline
  size = lambda result: max((int(np.prod(dims)) for dims in roofline.shape_dims(result)), default=0)
  passes = lambda ks: [k for k in ks if k[0] == "elementwise" and size(k[3]) == n * hk]  # a pass over all of q
  for way in ("", "grad_"):
    assert passes(out[way + "xla"]) and not passes(out[way + "pallas"]), (passes(out[way + "xla"]),
                                                                          passes(out[way + "pallas"]))
