"""models/fused_norm: the fused residual-add + RMSNorm kernels (run by Pallas's interpreter on CPU)
against the formula by hand, and a model with norm_impl="pallas" against the plain one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax.models import fused_norm as F
from paperjax.models.transformer import Transformer, TransformerConfig
from tests.conftest import needs_cuda_plugin, run_for_h100


def _by_hand(x, delta, scale, eps=F.EPS):
  h = x + delta
  y = h / np.sqrt((h * h).mean(-1, keepdims=True) + eps) * scale
  return h, y


@pytest.mark.parametrize("shape", [(3, 37, 96), (1200, 96)])  # D not a power of 2; (1200, 96): several backward programs
def test_kernels_match_the_formula_and_its_gradient(shape):
  rng = np.random.default_rng(0)
  x, delta, gh, gy = (rng.normal(size=shape).astype(np.float32) for _ in range(4))
  scale = (1 + 0.1 * rng.normal(size=shape[-1])).astype(np.float32)
  h, y = F.add_rmsnorm(jnp.asarray(x), jnp.asarray(delta), jnp.asarray(scale), impl="pallas", interpret=True)
  hh, yy = _by_hand(x.astype(np.float64), delta, scale)
  np.testing.assert_allclose(h, hh, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(y, yy, rtol=1e-5, atol=1e-5)

  def loss(impl):
    def f(x, d, s):
      h, y = F.add_rmsnorm(x, d, s, impl=impl, interpret=True)
      return (h * gh).sum() + (y * gy).sum()
    return jax.grad(f, (0, 1, 2))
  args = (jnp.asarray(x), jnp.asarray(delta), jnp.asarray(scale))
  ours, plain = loss("pallas")(*args), loss("xla")(*args)
  np.testing.assert_allclose(ours[0], ours[1])  # the sum's gradient reaches x and delta alike
  for a, b in zip(ours, plain):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)


def test_bf16_rounds_like_the_unfused_add_then_norm():
  rng = np.random.default_rng(1)
  x, delta = (jnp.asarray(rng.normal(size=(64, 80)), jnp.bfloat16) for _ in range(2))
  scale = jnp.ones((80,), jnp.float32)
  h, y = F.add_rmsnorm(x, delta, scale, impl="pallas", interpret=True)
  h0, y0 = F.add_rmsnorm(x, delta, scale, impl="xla")
  assert h.dtype == y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(h, np.float32), np.asarray(h0, np.float32))  # x + delta rounded once
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y0, np.float32), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("kind,scan,remat", [  # the interpreted kernels compile slowly: two variants are `slow`
    ("decoder", False, "none"), pytest.param("encdec", False, "none", marks=pytest.mark.slow),
    pytest.param("decoder", True, "full", marks=pytest.mark.slow)])
def test_model_with_fused_norm_is_the_same_function(kind, scan, remat):
  """Same loss, gradients and parameter tree; with norm_impl="pallas" each block hands its MLP
  output unadded to the next block's first norm (a (x, pending) carry, zeros before a scan's first)."""
  batch = ({"tokens": np.arange(24).reshape(2, 12) % 50 + 2} if kind == "decoder"
           else {"inputs": np.arange(24).reshape(2, 12) % 50 + 2, "targets": np.arange(16).reshape(2, 8) % 50 + 2})
  out, texts = [], {}
  for impl in ("xla", "pallas", "auto"):
    m = Transformer(TransformerConfig(vocab_size=64, d_model=48, num_heads=2, head_dim=16, d_ff=64, num_layers=2,
                                      num_encoder_layers=1, kind=kind, norm_impl=impl, scan_layers=scan, remat=remat))
    p = m.init(jax.random.PRNGKey(0), batch)["params"]
    f = jax.jit(jax.value_and_grad(lambda p: m.apply({"params": p}, batch).sum()))
    texts[impl] = f.lower(p).compile().as_text()
    out.append((p, f(p)))
  (p0, (l0, g0)), *fused = out
  for p1, (l1, g1) in fused:  # "pallas" (its interpreter here) and "auto" (plain JAX here, the kernels on GPUs)
    assert jax.tree.structure(p0) == jax.tree.structure(p1)  # same parameters: checkpoints load either way
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # off GPUs "auto" runs no interpreted kernel: none of the interpreter's grid loops, a program the
  # size of the plain one
  loops = {impl: text.count(" while(") for impl, text in texts.items()}
  assert loops["auto"] == loops["xla"] < loops["pallas"], loops
  assert len(texts["auto"]) < 1.2 * len(texts["xla"]) < len(texts["pallas"])


def test_copies_sum_their_gradients_in_the_kernel():
  rng = np.random.default_rng(2)
  x, delta, g1, g2, gh = (jnp.asarray(rng.normal(size=(40, 96)), jnp.float32) for _ in range(5))
  scale = jnp.asarray(1 + 0.1 * rng.normal(size=96), jnp.float32)

  def loss(impl, copies):
    def f(x, d, s):
      h, *ys = F.add_rmsnorm(x, d, s, impl=impl, interpret=True, copies=copies)
      return (h * gh).sum() + sum((y * g).sum() for y, g in zip(ys, (g1, g2) if copies == 2 else (g1 + g2,)))
    return jax.grad(f, (0, 1, 2))(x, delta, scale)
  for a, b in zip(loss("pallas", 2), loss("xla", 1)):  # two uses' gradients == one use of their sum
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)


def test_kernel_blocks_are_powers_of_two():  # Triton's rule; Pallas's interpreter does not check it
  for d in (1, 7, 64, 96, 768, 2048, 5000, 20000):
    for inputs in (2, 3, 4, 5):
      dp, rows = F._geometry(d, inputs)
      assert dp >= d and dp & (dp - 1) == 0 and rows >= 1 and rows & (rows - 1) == 0


def test_unknown_norm_impl_is_one_clear_sentence():
  with pytest.raises(ValueError, match="norm_impl='triton' is not 'xla', 'pallas' .* or 'auto'"):
    TransformerConfig(vocab_size=8, norm_impl="triton")


# Under a batch-sharded mesh (and refused / fallen back with feature-sharded activations): tests/test_fused_mlp.py,
# `test_fused_kernels_under_a_sharded_mesh`, one test for both fused ops (models/pallas_dispatch.py).


@pytest.mark.parametrize("copies", [1, 2])
def test_the_sum_given_the_kernel_reads_it_and_writes_y_only(copies):
  """delta None (`residual_add="gemm"`: the add done by XLA, in the GEMM before): (x, y, ...) with y the
  formula of x, x handed on as it came, and the gradient — the backward kernel's, the residual's own
  cotangent included — equal to plain JAX's."""
  rng = np.random.default_rng(3)
  x, gh, g1, g2 = (rng.normal(size=(1200, 96)).astype(np.float32) for _ in range(4))
  scale = (1 + 0.1 * rng.normal(size=96)).astype(np.float32)
  out = F.add_rmsnorm(jnp.asarray(x), None, jnp.asarray(scale), impl="pallas", interpret=True, copies=copies)
  assert len(out) == 1 + copies
  np.testing.assert_array_equal(out[0], x)
  for y in out[1:]:
    np.testing.assert_allclose(y, _by_hand(x.astype(np.float64), 0.0, scale)[1], rtol=1e-5, atol=1e-5)

  def grad(impl):
    def f(x, s):
      h, *ys = F.add_rmsnorm(x, None, s, impl=impl, interpret=True, copies=copies)
      return (h * gh).sum() + sum((y * g).sum() for y, g in zip(ys, (g1, g2)))
    return jax.grad(f, (0, 1))(jnp.asarray(x), jnp.asarray(scale))
  for a, b in zip(grad("pallas"), grad("xla")):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)


def test_residual_add_in_the_gemm_is_the_same_model():
  """`residual_add="gemm"`: the same loss and gradients as the add inside the norm kernel; no norm kernel
  takes a delta (the carry is the residual sum, no MLP output pending); a bad value is one sentence."""
  from tests.conftest import same_model_with
  cfg = TransformerConfig(vocab_size=64, d_model=48, num_heads=2, head_dim=16, d_ff=64, num_layers=2,
                          kind="decoder", norm_impl="pallas")  # (the encoder-decoder's norms are the same module)
  loss, params = same_model_with(cfg, residual_add="gemm", rtol=1e-4, atol=1e-4)
  text = str(jax.make_jaxpr(loss)(params))
  assert "name=rmsnorm_fwd" in text and "add_rmsnorm_fwd" not in text
  with pytest.raises(ValueError, match="residual_add='kernel' is not"):
    TransformerConfig(vocab_size=8, residual_add="kernel")


@needs_cuda_plugin
def test_residual_add_folds_into_the_gemm_without_a_copy_in_the_h100_program():
  """Compiled for an H100 (deviceless): with `residual_add="gemm"` each block's residual add is the C operand
  of the GEMM before it — written out of place (its own bitcast of C would let XLA write in place over the
  residual and copy it first: `transformer.residual_sum` adds in the GEMM's [rows, D] shape) — the norm's
  forward kernels read the sum once and write the normed rows, and there is no copy of [rows, D]."""
  out = run_for_h100("""
    import flax.linen as nn
    from paperjax.models import lm, transformer as T
    out = {}
    for add in ("norm", "gemm"):
      cfg = T.TransformerConfig(vocab_size=512, d_model=256, num_heads=4, head_dim=64, d_ff=512, num_layers=3,
                                kind="decoder", dtype=jnp.bfloat16, norm_impl="auto", residual_add=add,
                                attention_impl="cudnn")
      m = T.Transformer(cfg)
      batch = {"tokens": spec((4, 256), jnp.int32), "loss_mask": spec((4, 256), jnp.int32)}
      params = jax.eval_shape(lambda: nn.meta.unbox(lm.init(m, jax.random.key(0), jax.tree.map(
          lambda s: jnp.ones(s.shape, s.dtype), batch))))
      text = compiled(jax.grad(lambda p, b: lm.loss_sums(m, p, b)[0]), params, batch)
      out[add] = dict(kernels=kernels(text), beta1=text.count('"beta":1'))
    print(json.dumps(out))
  """)
  rows = 4 * 256 * 256 * 2  # bytes of one [rows, D] bf16 tensor
  for add in ("norm", "gemm"):
    ks = out[add]["kernels"]
    fwd = [k for k in ks if k[0] == "pallas" and "norm_fwd" in k[4]]
    per = {round(k[2] / rows) for k in fwd}
    assert per == ({4} if add == "norm" else {2}), (add, fwd)  # x, delta in, h, y out; or the sum in, y out
  copied = {add: sum(k[2] * k[5] for k in out[add]["kernels"] if k[0] == "copy") for add in out}
  assert copied["gemm"] <= copied["norm"], copied
  assert out["gemm"]["beta1"] > out["norm"]["beta1"]
