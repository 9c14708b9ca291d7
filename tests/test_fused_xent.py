"""models/fused_xent.py: the cross-entropy's log-sum-exp and logits gradient in one kernel, checked against
the formula by hand, inside the fused loss and a model, across devices, and compiled for an H100 without one."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax import losses
from paperjax.models import fused_xent as X
from tests.conftest import needs_cuda_plugin, run_for_h100, same_model_with


def _data(c=12, v=300, dtype=jnp.bfloat16, seed=0):
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(rng.normal(size=(c, v)) * 3, dtype)
  targets = jnp.asarray(rng.integers(0, v, c), jnp.int32)
  mask = jnp.asarray(rng.integers(0, 2, c), jnp.float32).at[0].set(1.0)
  return logits, targets, mask


def _by_hand(logits, targets, mask, z):
  """lse and mask·(softmax·(1 + 2·z·lse) − onehot) in float64."""
  x = np.asarray(logits, np.float64)
  top = x.max(1, keepdims=True)
  lse = np.log(np.exp(x - top).sum(1)) + top[:, 0]
  m = np.asarray(mask, np.float64)
  g = np.exp(x - lse[:, None]) * (m * (1 + 2 * z * lse))[:, None]
  g[np.arange(len(x)), np.asarray(targets)] -= m
  return lse, g


@pytest.mark.parametrize("z", [0.0, 1e-2])
def test_the_reference_is_the_formula(z):
  logits, t, m = _data()
  lse, target, d = X.xent_rows(logits, t, m, z, out_dtype=jnp.float32, impl="xla")
  want_lse, want = _by_hand(logits, t, m, z)
  np.testing.assert_allclose(lse, want_lse, rtol=1e-6)
  np.testing.assert_array_equal(target, np.asarray(logits, np.float32)[np.arange(len(t)), np.asarray(t)])
  np.testing.assert_allclose(d, want, atol=1e-6)
  assert not np.asarray(d)[np.asarray(m) == 0].any()  # a masked row has no gradient


@pytest.mark.parametrize("z", [0.0, 1e-2])
def test_the_kernel_is_the_formula(z):
  """Pallas's interpreter: rows of 300 in tiles of 128 (the last one partial), 5 programs for 12 rows (so
  three steps each, the last programs' spare steps writing nothing)."""
  logits, t, m = _data()
  lse, target, d = X._pallas(logits, t[:, None], m[:, None], z, jnp.float32, True, tile=128, programs=5)
  want_lse, want = _by_hand(logits, t, m, z)
  np.testing.assert_allclose(lse[:, 0], want_lse, rtol=1e-6)
  np.testing.assert_array_equal(target[:, 0], np.asarray(logits, np.float32)[np.arange(len(t)), np.asarray(t)])
  np.testing.assert_allclose(d, want, atol=1e-6)
  # in the logits' dtype, as the loss uses it: the formula rounded once, written over the logits (aliased)
  f = jax.jit(lambda l: X._pallas(l, t[:, None], m[:, None], z, jnp.bfloat16, True, tile=128, programs=5))
  _, _, d16 = f(logits)
  assert d16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(d16, np.float64), want, rtol=2 ** -8, atol=1e-6)
  assert "input_output_aliases=((0, 2),)" in str(jax.make_jaxpr(f)(logits))


def test_xent_rows_dispatch():
  logits, t, m = _data(c=6, v=40)
  jaxpr = lambda impl: str(jax.make_jaxpr(lambda: X.xent_rows(logits, t, m, impl=impl))())
  assert "pallas_call" in jaxpr("pallas") and "pallas_call" not in jaxpr("xla")
  with pytest.raises(ValueError, match=r"xent_rows impl 'fast' is not one of"):
    X.xent_rows(logits, t, m, impl="fast")
  with pytest.raises(ValueError, match=r"model.xent_impl='fast' is not 'xla', 'pallas'"):
    from paperjax.models import transformer as T
    T.TransformerConfig(vocab_size=8, xent_impl="fast")


def test_the_fused_loss_with_the_kernel_is_the_fused_loss():
  """fused_linear_cross_entropy with xent_impl="pallas" (interpreted): the same loss and gradients as with
  XLA's passes and as the full logits' cross-entropy; 39 rows in chunks of 8 (the last padded), z-loss on."""
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  h, w = jax.random.normal(k[0], (3, 13, 16)), jax.random.normal(k[1], (53, 16))
  t = jax.random.randint(k[2], (3, 13), 0, 53)
  m = (jax.random.uniform(k[3], (3, 13)) > 0.3).astype(jnp.int32)

  def fused(impl):
    return lambda h, w: (lambda s, n: s / n)(*losses.fused_linear_cross_entropy(h, w, t, m, 8, 1e-3, xent_impl=impl))

  def full(h, w):
    s, n, _ = losses.token_cross_entropy(jnp.einsum("bld,vd->blv", h, w), t, m, 1e-3)
    return s / n

  vg = lambda f: jax.jit(jax.value_and_grad(f, (0, 1)))(h, w)
  (l0, g0), (l1, g1), (l2, g2) = vg(full), vg(fused("xla")), vg(fused("pallas"))
  np.testing.assert_allclose(l2, l1, rtol=1e-6)
  np.testing.assert_allclose(l2, l0, rtol=1e-6)
  for a, b, c in zip(g2, g1, g0):
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
  assert "pallas_call" in str(jax.make_jaxpr(jax.grad(fused("pallas")))(h, w))


def test_a_model_with_the_kernel_is_the_same_model():
  """xent_impl="pallas" through lm.loss_sums (chunked, fused, z-loss; an encoder-decoder with masked targets):
  the same loss and gradients (a decoder: the sharded test below)."""
  from paperjax.models import transformer as T
  cfg = T.TransformerConfig(vocab_size=96, d_model=32, num_heads=2, head_dim=16, d_ff=48, num_layers=1,
                            num_encoder_layers=1, kind="encdec", dtype=jnp.float32, param_dtype=jnp.float32)
  loss, params = same_model_with(cfg, xent_impl="pallas", loss_chunk=8, loss_z_loss=1e-3, masked=True, atol=1e-6)
  assert "pallas_call" in str(jax.make_jaxpr(jax.grad(loss))(params))


@needs_cuda_plugin
def test_compiles_for_an_h100_as_one_pass():
  """Compiled for an H100 without one (CUDA plugin), GPT-2's vocabulary: the fused loss's chunk body has one
  kernel of ours reading the logits and writing their gradient, and no XLA reduction or element-wise pass
  over a chunk's [rows, V] logits left; the floor prices it at one read and one write."""
  out = run_for_h100("""
    from paperjax import losses
    out = {}
    for impl in ("xla", "auto"):
      f = lambda h, w, t: jax.grad(lambda h, w: losses.fused_linear_cross_entropy(
          h, w, t, jnp.ones_like(t), 1024, xent_impl=impl)[0], argnums=(0, 1))(h, w)
      out[impl] = kernels(compiled(f, spec((4096, 256)), spec((50304, 256)), spec((4096,), jnp.int32)))
    print(json.dumps(out))
  """)
  chunk = 1024 * 50304
  passes = lambda ks: [k for k in ks if k[0] in ("elementwise", "reduce") and k[2] >= 2 * chunk]  # reads a chunk
  ours = [k for k in out["auto"] if "xent_rows" in k[4] or k[0] == "pallas"]
  assert passes(out["xla"]) and not passes(out["auto"]), (passes(out["xla"]), passes(out["auto"]))
  assert sum(k[5] for k in ours) == 4, ours  # once a chunk (XLA unrolls the loop in two)
  for k in ours:
    assert abs(k[2] - 2 * 2 * chunk) / (4 * chunk) < 0.01, k  # one bf16 read and one write of the chunk


def test_the_loss_kernel_under_a_sharded_mesh():
  """Four devices, batch over data × fsdp: the kernel runs per device on its rows of each chunk (shard_map)
  and loss and gradients equal XLA's. With the vocabulary sharded (tensor parallelism), "pallas" refuses in a
  sentence and "auto" takes XLA's passes, with the same values."""
  from tests.conftest import run_python
  code = """
import numpy as np, jax, jax.numpy as jnp
from paperjax import sharding, step as step_lib
from paperjax.models import lm
from paperjax.models.transformer import Transformer, TransformerConfig
batch = {"tokens": jnp.asarray(np.arange(8 * 16).reshape(8, 16) % 50 + 2), "loss_mask": jnp.ones((8, 16), jnp.int32)}
cfg = dict(vocab_size=64, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_layers=1, kind="decoder")
model = lambda impl: Transformer(TransformerConfig(xent_impl=impl, **cfg))
p = jax.tree.map(lambda a: a.value if hasattr(a, "value") else a, model("xla").init(jax.random.PRNGKey(0), batch)["params"],
                 is_leaf=lambda a: hasattr(a, "value"))
loss = lambda impl: jax.jit(jax.value_and_grad(lambda p, b: lm.loss_sums(model(impl), p, b, chunk=32, z_loss=1e-3)[0]))
out = []
mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (2, 2, 1))
with step_lib.mesh_context(mesh, sharding.DEFAULT_RULES):
  b = jax.device_put(batch, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"))))
  for impl in ("xla", "pallas"):
    out.append(loss(impl)(p, b))
    if impl == "pallas":
      text = loss(impl).lower(p, b).as_text()
      assert "sdy.manual_computation" in text or "shard_map" in text
(l0, g0), (l1, g1) = out
np.testing.assert_allclose(l1, l0, rtol=1e-5)
for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
  np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5)
with step_lib.mesh_context(sharding.make_mesh(("data", "fsdp", "tensor"), (1, 2, 2)), sharding.DEFAULT_RULES):
  try:
    loss("pallas")(p, batch)
  except ValueError as e:
    assert "needs whole rows on each device" in str(e), e
  else:
    raise AssertionError("xent_impl='pallas' accepted a vocabulary sharded across devices")
  l2, _ = loss("auto")(p, batch)
np.testing.assert_allclose(l2, l0, rtol=1e-5)
print("OK")
"""
  r = run_python(code, devices=4)
  assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
