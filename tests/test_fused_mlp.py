"""models/fused_mlp: the gated MLP's two GEMM kernels (run by Pallas's interpreter on CPU) against the
formula by hand, the model with mlp_impl="pallas" against the plain one, and (CUDA plugin, no GPU) the
H100 program holding them as the roofline prices them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax.models import fused_mlp as M
from paperjax.models.transformer import Transformer, TransformerConfig
from tests.conftest import needs_cuda_plugin, run_for_h100

_GELU = lambda h: 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
_SILU = lambda h: h / (1 + np.exp(-h))
BY_HAND = {"gelu": _GELU, "silu": _SILU, "relu": lambda h: np.maximum(h, 0)}


def _data(n=64, d=32, f=64, seed=0, gated=True):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(2, n // 2, d))
  w = rng.normal(size=(d, (2 if gated else 1) * f)) / np.sqrt(d)
  wo = rng.normal(size=(f, d)) / np.sqrt(f)
  dout = rng.normal(size=(2, n // 2, d))
  return x, w, wo, dout


@pytest.mark.parametrize("act,gated", [("gelu", True), ("silu", True), ("relu", True), ("gelu", False),
                                       ("silu", False)])
def test_kernels_match_the_formula_and_its_gradient_by_hand(act, gated):
  """Forward: y = act(x·W0)·(x·W1) (dense: act(x·W)), out = y·W2. Backward, by hand (float64 numpy,
  the activation's derivative by central differences): g = dout·W2ᵀ; gated, dh = [g·h1·act'(h0) |
  g·act(h0)]; dense, dh = g·act'(h); then dx = dh·Wᵀ, dW = xᵀ·dh, dW2 = yᵀ·dout."""
  x, w, wo, dout = _data(gated=gated)
  f = wo.shape[0]
  out, vjp = jax.vjp(lambda x, w, wo: M.mlp(x, w, wo, act, gated=gated, impl="pallas", interpret=True),
                     *(jnp.asarray(a, jnp.float32) for a in (x, w, wo)))
  dx, dw, dwo = vjp(jnp.asarray(dout, jnp.float32))
  a = BY_HAND[act]
  x2, dy = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
  h = x2 @ w
  h0, h1 = (h[:, :f], h[:, f:]) if gated else (h, 1.0)
  y = a(h0) * h1
  np.testing.assert_allclose(out.reshape(-1, out.shape[-1]), y @ wo, rtol=2e-5, atol=2e-5)
  g = dy @ wo.T
  eps = 1e-5
  da = (a(h0 + eps) - a(h0 - eps)) / (2 * eps)
  dh = np.concatenate([g * h1 * da, g * a(h0)], axis=1) if gated else g * da
  np.testing.assert_allclose(dx.reshape(-1, dx.shape[-1]), dh @ w.T, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dw, x2.T @ dh, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dwo, y.T @ dy, rtol=1e-4, atol=1e-4)


def test_several_tiles_each_way_and_the_tile_loop():
  """Rows, F and D each span several tiles (grid 4 × 2 programs, K loop of 4): the programs' (row,
  column) split and the K accumulation are what the formula says, with the reference's gradients."""
  x, w, wo, dout = _data(n=128, d=64, f=64, seed=3)
  tiles = M.Tiles(bm=32, bn=32, bk=16)
  args = [jnp.asarray(a, jnp.float32) for a in (x, w, wo)]
  ours = jax.vjp(lambda *a: M.mlp(*a, "gelu", impl="pallas", interpret=True, up_tiles=tiles,
                                        down_tiles=tiles), *args)
  ref = jax.vjp(lambda *a: M.reference(*a, "gelu"), *args)
  np.testing.assert_allclose(ours[0], ref[0], rtol=2e-5, atol=2e-5)
  for a, b in zip(ours[1](jnp.asarray(dout, jnp.float32)), ref[1](jnp.asarray(dout, jnp.float32))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tiles", ["xla|32,32,16,4,2", "32,32,16,4,2|xla"])
def test_either_kernel_alone_is_the_same_function(tiles):
  """"xla" on one side (`mlp_tiles="xla|…"`: the forward through XLA, the backward kernel; "…|xla" the
  reverse): the same values and gradients as the reference, and one kernel in the program."""
  x, w, wo, dout = _data(n=128, d=64, f=64, seed=4)
  up, down = M.Tiles.parse_pair(tiles)
  args = [jnp.asarray(a, jnp.float32) for a in (x, w, wo)]
  f = lambda *a: M.mlp(*a, "gelu", impl="pallas", interpret=True, up_tiles=up, down_tiles=down)
  ours, ref = jax.vjp(f, *args), jax.vjp(lambda *a: M.reference(*a, "gelu"), *args)
  np.testing.assert_allclose(ours[0], ref[0], rtol=2e-5, atol=2e-5)
  for a, b in zip(ours[1](jnp.asarray(dout, jnp.float32)), ref[1](jnp.asarray(dout, jnp.float32))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  text = str(jax.make_jaxpr(jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2)))(*args))
  names = {"up": "gated_mlp_up_gemm" in text, "down": "gated_mlp_dgrad_gemm" in text}
  assert names == {"up": up.xla is False, "down": down.xla is False}, names


def test_dense_mlp_without_its_backward_kernel_is_the_reference_program():
  """The dense MLP's only kernel is its backward one: with "…|xla" the program is the reference's (its
  forward GEMM keeps cuBLASLt's GELU epilogue and the backward reads its auxiliary output)."""
  x, w, wo, _ = _data(n=128, d=64, f=64, seed=4, gated=False)
  args = [jnp.asarray(a, jnp.float32) for a in (x, w, wo)]
  up, down = M.Tiles.parse_pair("32,32,16,4,2|xla")
  grad = lambda f: str(jax.make_jaxpr(jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2)))(*args))
  ours = grad(lambda *a: M.mlp(*a, "gelu", gated=False, impl="pallas", interpret=True, up_tiles=up, down_tiles=down))
  assert ours == grad(lambda *a: M.reference(*a, "gelu", gated=False))


def test_bf16_rounds_h_like_the_unfused_program_and_the_gate_once():
  """In bf16 the kernel's h is x·W rounded once (as XLA's GEMM writes it) and its gate is fp32 math on
  that h rounded once: at least as close to the exact gate as the unfused program's bf16 arithmetic."""
  x, w, wo, _ = _data(seed=1)
  xb, wb, wob = (jnp.asarray(a, jnp.bfloat16) for a in (x, w, wo))
  h, y = M.up(xb.reshape(-1, 32), wb, "gelu", M.Tiles(bm=32, bn=32, bk=16), True)
  h_ref = (xb.reshape(-1, 32) @ wb)
  np.testing.assert_array_equal(np.asarray(h, np.float32), np.asarray(h_ref, np.float32))
  hf = np.asarray(h, np.float64)
  exact = _GELU(hf[:, :64]) * hf[:, 64:]
  unfused = np.asarray(M.ACTIVATIONS["gelu"](h_ref[:, :64]) * h_ref[:, 64:], np.float64)
  err = lambda v: np.abs(np.asarray(v, np.float64) - exact).max()
  assert err(y) <= err(unfused) and err(y) <= np.abs(exact).max() * 2 ** -8


def test_shapes_off_the_tiles_take_the_reference(monkeypatch):
  """Rows, D or F that no power-of-two tile of at least 16 divides, or an h past 32-bit offsets: no
  kernel, the plain function."""
  x = jnp.ones((3, 5, 24))  # 15 rows
  w, wo = jnp.ones((24, 96)) / 24, jnp.ones((48, 24)) / 48
  text = jax.jit(lambda x: M.mlp(x, w, wo, "gelu", impl="pallas", interpret=True)).lower(x).as_text()
  assert "pallas" not in text.lower() and " while" not in text
  fits, w2, wo2 = jnp.ones((2, 16, 32)), jnp.ones((32, 96)) / 32, jnp.ones((48, 32)) / 48  # h: 32 × 96 = 3072
  kernels = lambda: "gated_mlp_up_gemm" in str(jax.make_jaxpr(lambda x: M.mlp(
      x, w2, wo2, "gelu", impl="pallas", interpret=True, up_tiles=M.Tiles(16, 16, 16)))(fits))
  assert kernels()
  monkeypatch.setattr(M, "MAX_ELEMENTS", 3071)
  assert not kernels()
  np.testing.assert_allclose(M.mlp(x, w, wo, "gelu", impl="pallas", interpret=True),
                             M.reference(x, w, wo, "gelu"), rtol=1e-6)


@pytest.mark.parametrize("mlp,fused_projections,kind,scan,remat", [
    # The gated encoder-decoder rows are slow (~21 and ~16 s cold): the fast suite keeps the dense encoder-decoder and
    # the gated, scanned, rematerialised decoder.
    pytest.param("gated", False, "encdec", False, "none", marks=pytest.mark.slow),
    pytest.param("gated", True, "encdec", False, "none", marks=pytest.mark.slow),
    ("dense", False, "encdec", False, "none"), ("gated", False, "decoder", True, "full")])
def test_model_with_fused_mlp_is_the_same_function(mlp, fused_projections, kind, scan, remat):
  """Same parameter tree (checkpoints load either way), loss and every gradient, also with scanned,
  rematerialised layers (the kernels' custom VJP recomputed in the backward pass); "auto" runs plain
  JAX off GPUs (no interpreter loops in its program)."""
  batch = ({"inputs": np.arange(32).reshape(2, 16) % 50 + 2, "targets": np.arange(32).reshape(2, 16) % 50 + 2}
           if kind == "encdec" else {"tokens": np.arange(32).reshape(2, 16) % 50 + 2})
  out, texts = [], {}
  for impl in ("xla", "pallas", "auto"):
    m = Transformer(TransformerConfig(vocab_size=64, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_layers=2,
                                      num_encoder_layers=1, kind=kind, mlp=mlp, mlp_impl=impl, scan_layers=scan,
                                      remat=remat, fused_projections=fused_projections, mlp_tiles="16,16,16,4,2"))
    p = m.init(jax.random.PRNGKey(0), batch)["params"]
    f = jax.jit(jax.value_and_grad(lambda p: m.apply({"params": p}, batch).sum()))
    texts[impl] = f.lower(p).as_text()
    out.append((p, f(p)))
  (p0, (l0, g0)), *fused = out
  for p1, (l1, g1) in fused:
    assert jax.tree.structure(p0) == jax.tree.structure(p1)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  loops = {impl: text.count("stablehlo.while") for impl, text in texts.items()}
  assert loops["auto"] == loops["xla"] < loops["pallas"], loops


def test_bad_settings_are_one_clear_sentence():
  with pytest.raises(ValueError, match="mlp_impl='triton' is not 'xla', 'pallas'"):
    TransformerConfig(vocab_size=8, mlp_impl="triton")
  with pytest.raises(ValueError, match="are not five integers"):
    TransformerConfig(vocab_size=8, mlp_impl="pallas", mlp_tiles="128,128")
  with pytest.raises(ValueError, match="powers of two of at least 16"):
    M.Tiles.parse("96,128,64,8,3")
  assert M.Tiles.parse_pair("64,64,32,4,4|128,64,64,8,3") == (M.Tiles(64, 64, 32, 4, 4), M.Tiles(128, 64, 64, 8, 3))
  assert M.Tiles.parse_pair("xla|") == (M.Tiles(xla=True), M.Tiles())


# (field, the rules of a mesh the kernel cannot run under, the refusal's words)
_SHARDED_CASES = (
    ("mlp_impl", "sharding.DEFAULT_RULES", "d_ff axis is sharded"),  # tensor parallelism shards the MLP's d_ff
    ("norm_impl", "tuple((k, 'tensor') if k == 'act_embed' else (k, v) for k, v in sharding.DEFAULT_RULES)",
     "needs whole rows on each device"),  # activations sharded along their features
    ("rope_impl", "sharding.DEFAULT_RULES", "heads are sharded"))


def test_fused_kernels_under_a_sharded_mesh():
  """Four devices, batch over data × fsdp: each kernel (fused MLP, fused add + norm, rotary projection; the
  last with head_dim 32, its smallest) runs per device on its rows (`pallas_dispatch`: shard_map) and the
  weights' gradients are summed across devices: loss and gradients equal the plain model's. Sharded where the
  kernel needs things whole, "pallas" refuses in a sentence and "auto" takes plain JAX (tensor parallelism keeps
  working), with the same values. One process for the three kernels (one plain model, compiled once); a
  failure names its kernel."""
  from tests.conftest import run_python
  cases = "\n".join(f"  ({f!r}, {rules}, {refusal!r})," for f, rules, refusal in _SHARDED_CASES)
  code = """
import numpy as np, jax, jax.numpy as jnp
from paperjax import sharding, step as step_lib
from paperjax.models.transformer import Transformer, TransformerConfig
mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (2, 2, 1))
tp_mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (1, 2, 2))
batch = {"tokens": jnp.asarray(np.arange(8 * 16).reshape(8, 16) % 50 + 2)}
cfg = dict(vocab_size=64, d_model=32, num_heads=2, head_dim=32, d_ff=64, num_layers=2, kind="decoder",
           mlp_tiles="16,16,16,4,2")
loss = lambda m: jax.jit(jax.value_and_grad(lambda p, b: m.apply({"params": p}, b).astype(jnp.float32).sum()))
plain = Transformer(TransformerConfig(**cfg))
p = jax.tree.map(lambda a: a.value if hasattr(a, "value") else a, plain.init(jax.random.PRNGKey(0), batch)["params"],
                 is_leaf=lambda a: hasattr(a, "value"))
with step_lib.mesh_context(mesh, sharding.DEFAULT_RULES):
  b = jax.device_put(batch, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"))))
  l0, g0 = loss(plain)(p, b)
def same(field, what, l, g):
  np.testing.assert_allclose(l, l0, rtol=1e-5, err_msg=f"{field}: {what}: loss")
  for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g)):
    np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-4, err_msg=f"{field}: {what}: gradient")
for field, tp_rules, refusal in [
CASES
]:
  m = Transformer(TransformerConfig(**{field: "pallas"}, **cfg))
  with step_lib.mesh_context(mesh, sharding.DEFAULT_RULES):
    f = loss(m)
    same(field, "pallas on data x fsdp", *f(p, b))
    text = f.lower(p, b).as_text()
    assert "sdy.manual_computation" in text or "shard_map" in text, f"{field}: no shard_map around the kernel"
  with step_lib.mesh_context(tp_mesh, tp_rules):
    try:
      jax.jit(lambda p, b: m.apply({"params": p}, b).sum())(p, batch)
    except ValueError as e:
      assert refusal in str(e), (field, e)
    else:
      raise AssertionError(f"{field}='pallas' accepted a sharding it cannot run under")
    same(field, "auto under tensor parallelism", *loss(Transformer(TransformerConfig(**{field: "auto"}, **cfg)))(p, batch))
  print("OK", field)
""".replace("CASES", cases)
  r = run_python(code, devices=4)
  assert r.returncode == 0, r.stderr[-3000:]
  assert [line for line in r.stdout.splitlines() if line.startswith("OK")] == [f"OK {c[0]}" for c in _SHARDED_CASES]


N_D_F = (4096, 256, 512)


def _h100_programs(cases) -> dict:
  """Compiles `mlp`'s gradient for an H100 without one (CUDA plugin, `tuned` flags), in a subprocess, for
  each (key, gated, impl, tiles, activation) at N_D_F: {key: {kernels: [(category, flops, result, op_name)],
  gelu_aux: cuBLASLt GELU_AUX epilogues, mosaic: Mosaic GPU custom calls}}."""
  import json
  return run_for_h100("""
    from paperjax.models import fused_mlp as M
    (n, d, f), cases = json.loads(sys.argv[1])
    out = {}
    for key, gated, impl, tiles, act in cases:
      up, down = M.Tiles.parse_pair(tiles)
      g = jax.grad(lambda x, w, wo: M.mlp(x, w, wo, act, gated=gated, impl=impl, interpret=False, up_tiles=up,
                                          down_tiles=down).astype(jnp.float32).sum(), argnums=(0, 1, 2))
      text = compiled(g, *(spec(s) for s in ((8, n // 8, d), (d, (2 if gated else 1) * f), (f, d))))
      out[key] = dict(kernels=[(c, fl, res, op) for c, fl, _, res, op, _ in kernels(text)],
                      gelu_aux=text.count('"epilogue":"GELU_AUX"'), mosaic=text.count('custom_call_target="mosaic_gpu'))
    print(json.dumps(out))
  """, json.dumps([N_D_F, cases]))


def _wide_passes(kernels):
  """The element-wise passes over [N, F] (or [8, N/8, F]) of a program's kernels."""
  n, _, f = N_D_F
  return [k for k in kernels if k[0] == "elementwise"
          and any(s in k[2].replace(" ", "") for s in (f"[{n},{f}]", f"[8,{n // 8},{f}]"))]


@needs_cuda_plugin
def test_h100_program_holds_the_kernels_and_no_gate_pass():
  """Compiled for an H100 (deviceless, `tuned` flags). Gated: per MLP one up kernel (FLOPs 2·N·D·2F) and
  one backward kernel (2·N·D·F), priced as GEMMs by the roofline, and no element-wise pass over [N, F]
  left, where the plain program has the gate's multiply as a fusion of its own each way. Dense: the
  backward kernel (2·N·D·F) instead of the GELU-derivative pass, and the forward still one cuBLASLt
  GEMM with the GELU_AUX epilogue."""
  out = _h100_programs([(f"{gated}-{impl}", gated, impl, "", "gelu") for gated in (True, False)
                        for impl in ("xla", "pallas")])
  n, d, f = N_D_F
  up, dgrad = 2.0 * n * d * 2 * f, 2.0 * n * d * f
  ours = lambda key: sorted((k[0], k[1]) for k in out[key]["kernels"] if "pallas_call" in k[3])
  wide = lambda key: _wide_passes(out[key]["kernels"])
  assert ours("True-pallas") == sorted([("gemm", up), ("gemm", dgrad)]) and not ours("True-xla")
  assert wide("True-xla") and not wide("True-pallas"), (wide("True-xla"), wide("True-pallas"))
  assert ours("False-pallas") == [("gemm", dgrad)] and out["False-pallas"]["gelu_aux"] == out["False-xla"]["gelu_aux"] == 1
  assert wide("False-xla") and not wide("False-pallas"), (wide("False-xla"), wide("False-pallas"))


def test_a_jax_without_pallas_triton_takes_the_reference_or_refuses(monkeypatch):
  """JAX 0.11 deprecates Pallas's Triton backend: where it is gone, "auto" is the reference (both fused
  ops) and "pallas" says so in one sentence."""
  from paperjax.models import fused_norm, pallas_dispatch
  monkeypatch.setattr(pallas_dispatch, "has_triton", lambda: False)
  x, w, wo, _ = (jnp.asarray(a, jnp.float32) for a in _data())
  s = jnp.ones((x.shape[-1],), jnp.float32)
  for auto in (lambda: M.mlp(x, w, wo, "gelu", impl="auto"), lambda: fused_norm.add_rmsnorm(x, x, s, impl="auto")):
    assert "pallas_call" not in str(jax.make_jaxpr(auto)())  # no kernel branch traced, not even for CUDA
  np.testing.assert_array_equal(M.mlp(x, w, wo, "gelu", impl="auto"), M.reference(x, w, wo, "gelu"))
  for op in (lambda: M.mlp(x, w, wo, "gelu", impl="pallas"), lambda: fused_norm.add_rmsnorm(x, x, s, impl="pallas")):
    with pytest.raises(ValueError, match=r"impl='pallas' needs Pallas's Triton backend, which JAX .* does not have"):
      op()


# --- the Mosaic GPU kernels (tiles "mgpu:…"): Pallas's Mosaic GPU interpreter on CPU -------------------------

MGPU = M.Tiles.parse("mgpu:64,64,64,2")  # rows, F and D of _data(128, 128, 128) span 2 tiles each: 2 × 2 blocks, 2 K steps


def test_mgpu_tiles_parse_and_refuse_in_a_sentence():
  assert MGPU == M.Tiles(64, 64, 64, 4, 2, backend="mgpu")
  assert M.Tiles.parse_pair("mgpu:128,64,64,4|128,128,64,8,3") == (M.Tiles(128, 64, 64, 4, 4, backend="mgpu"),
                                                                   M.Tiles(128, 128, 64, 8, 3))
  for bad, match in [("mgpu:32,64,64,4", "bm ≥ 64"), ("mgpu:64,64,64,1", "stages ≥ 2"),
                     ("mgpu:64,64,64,4,2", "'mgpu:' and four integers bm,bn,bk,stages")]:
    with pytest.raises(ValueError, match=match):
      M.Tiles.parse(bad)


def test_act_and_grad_are_the_activations_and_their_derivatives():
  """The Mosaic GPU epilogue's written-out derivatives against autodiff of ACTIVATIONS (0 included)."""
  x = jnp.linspace(-6.0, 6.0, 241, dtype=jnp.float32)
  for name, act in M.ACTIVATIONS.items():
    a, da = M.act_and_grad(name, x)
    np.testing.assert_allclose(a, act(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(M.act_and_grad(name, x, grad=False), a)
    np.testing.assert_allclose(da, jax.vmap(jax.grad(act))(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act,gated,tiles", [("gelu", True, MGPU), ("silu", True, MGPU), ("relu", True, MGPU),
                                            ("gelu", False, MGPU), ("gelu", True, M.Tiles.parse("mgpu:64,128,64,2")),
                                            ("silu", False, M.Tiles.parse("mgpu:64,128,64,2"))])
def test_mgpu_kernels_compute_the_formula_like_the_triton_kernels(act, gated, tiles):
  """bf16, both kernels (bn 64: one epilogue chunk a block; 128: two): h = x·W rounded once, y = act(h0)·h1 and dh = [g·h1·act'(h0) | g·act(h0)] (dense:
  g·act'(h)) in fp32 from the rounded h, g = dy·W2ᵀ, each rounded once — by hand in float64 from the same
  rounded operands, to within a bf16 rounding of the result; the Triton kernels' values equally close."""
  x, w, wo, dout = (jnp.asarray(a, jnp.bfloat16) for a in _data(n=128, d=128, f=128, seed=5, gated=gated))
  x2, dy = x.reshape(-1, 128), dout.reshape(-1, 128)
  f64 = lambda a: np.asarray(a, np.float64)
  a_ = BY_HAND[act]
  if gated:
    h, y = M.up(x2, w, act, tiles, True)
    h_exact = f64(x2) @ f64(w)
    np.testing.assert_allclose(f64(h), h_exact, rtol=2 ** -8, atol=2 ** -8 * np.abs(h_exact).max())
    hr = f64(h)
    y_exact = a_(hr[:, :128]) * hr[:, 128:]
    np.testing.assert_allclose(f64(y), y_exact, rtol=2 ** -8, atol=1e-6)
    h_t, y_t = M.up(x2, w, act, M.Tiles(32, 32, 32), True)
    np.testing.assert_allclose(f64(y_t), y_exact, rtol=2 ** -8, atol=1e-6)
  else:
    h = (x2 @ w)
  dh = M.down_bwd(dy, wo, h, act, tiles, True)
  g, hr = f64(dy) @ f64(wo).T, f64(h)
  h0 = hr[:, :128]
  da = (a_(h0 + 1e-6) - a_(h0 - 1e-6)) / 2e-6
  want = np.concatenate([g * hr[:, 128:] * da, g * a_(h0)], 1) if gated else g * da
  tol = dict(rtol=2 ** -7, atol=2 ** -8 * np.abs(want).max())
  np.testing.assert_allclose(f64(dh), want, **tol)
  np.testing.assert_allclose(f64(M.down_bwd(dy, wo, h, act, M.Tiles(32, 32, 32), True)), want, **tol)


def test_mgpu_mlp_and_its_gradients_match_the_triton_path():
  """`mlp` with Mosaic GPU tiles each way (and one way each, the other Triton's): the value and every
  gradient as the Triton kernels' within bf16 rounding, two Mosaic kernels in the gated program; float32
  operands take the reference (wgmma's 16-bit inputs only)."""
  x, w, wo, dout = (jnp.asarray(a, jnp.bfloat16) for a in _data(n=128, d=128, f=128, seed=6))
  tri = M.Tiles(32, 32, 32)
  run = lambda up, down: jax.vjp(lambda *a: M.mlp(*a, "gelu", impl="pallas", interpret=True, up_tiles=up,
                                                   down_tiles=down), x, w, wo)
  base_out, base_vjp = run(tri, tri)
  base = [base_out, *base_vjp(dout)]
  for up, down in [(MGPU, MGPU), (MGPU, tri), (tri, MGPU)]:
    out, vjp = run(up, down)
    for a, b in zip([out, *vjp(dout)], base):
      a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
      np.testing.assert_allclose(a, b, rtol=0, atol=2 ** -6 * np.abs(b).max())
  jaxpr = str(jax.make_jaxpr(lambda *a: M.mlp(*a, "gelu", impl="pallas", interpret=True, up_tiles=MGPU,
                                                down_tiles=MGPU))(x, w, wo))
  assert jaxpr.count("mpmd_map") == 1  # the forward's up kernel (the backward's is traced inside the custom VJP)
  x32, w32, wo32 = (a.astype(jnp.float32) for a in (x, w, wo))
  text = str(jax.make_jaxpr(lambda *a: M.mlp(*a, "gelu", impl="pallas", interpret=True, up_tiles=MGPU,
                                               down_tiles=MGPU))(x32, w32, wo32))
  assert "mpmd_map" not in text and "pallas_call" not in text


@pytest.mark.slow  # ~26 s cold; the Mosaic kernels against Triton's stay fast (per kernel and the MLP's gradients)
def test_model_with_mgpu_tiles_is_the_triton_kernels_function():
  """A bf16 decoder with `mlp_tiles="mgpu:…"`: its loss and every gradient as with the Triton kernels (the
  loss within bf16 rounding of XLA's path; the kernels against XLA's gradients: the float32 model test
  above), one Mosaic GPU kernel per MLP and way traced. (Not rematerialised: the CPU interpreter's
  callbacks are effects remat cannot replay; compiled for a GPU, scanned remat layers lower — perf.md.)"""
  batch = {"tokens": np.arange(128).reshape(2, 64) % 50 + 2}
  res, texts = {}, {}
  for impl, tiles in (("xla", ""), ("pallas", "32,32,32,4,2"), ("pallas", "mgpu:64,64,64,2")):
    m = Transformer(TransformerConfig(vocab_size=64, d_model=64, num_heads=2, head_dim=32, d_ff=128, num_layers=2,
                                      kind="decoder", mlp_impl=impl, mlp_tiles=tiles, dtype=jnp.bfloat16))
    p = m.init(jax.random.PRNGKey(0), batch)["params"]
    f = jax.value_and_grad(lambda p: m.apply({"params": p}, batch).astype(jnp.float32).mean())
    texts[tiles], res[tiles] = str(jax.make_jaxpr(f)(p)), jax.jit(f)(p)
  assert texts["mgpu:64,64,64,2"].count("mpmd_map") == 2 * 2 * 2  # 2 layers × (up, dgrad) × (call, its VJP's trace)
  assert "mpmd_map" not in texts["32,32,32,4,2"] and "mpmd_map" not in texts[""]
  (l_m, g_m), (l_t, g_t), (l_x, _) = res["mgpu:64,64,64,2"], res["32,32,32,4,2"], res[""]
  np.testing.assert_allclose(l_m, l_t, rtol=1e-6)
  np.testing.assert_allclose(l_m, l_x, rtol=1e-3)
  for a, b in zip(jax.tree.leaves(g_m), jax.tree.leaves(g_t)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2 ** -8 * float(jnp.abs(b).max()))


def test_mgpu_tiles_need_only_the_mosaic_gpu_backend(monkeypatch):
  """Without Pallas's Triton backend, Mosaic GPU tiles still run their kernels; without Mosaic GPU they
  refuse in one sentence ("pallas") or take the reference ("auto")."""
  from paperjax.models import pallas_dispatch
  x, w, wo, _ = (jnp.asarray(a, jnp.bfloat16) for a in _data(n=128, d=128, f=128))
  call = lambda impl: M.mlp(x, w, wo, "gelu", impl=impl, interpret=True, up_tiles=MGPU, down_tiles=MGPU)
  monkeypatch.setattr(pallas_dispatch, "has_triton", lambda: False)
  assert "mpmd_map" in str(jax.make_jaxpr(lambda: call("pallas"))())
  monkeypatch.setattr(pallas_dispatch, "has_mosaic_gpu", lambda: False)
  assert "mpmd_map" not in str(jax.make_jaxpr(lambda: call("auto"))())
  with pytest.raises(ValueError, match=r"needs Pallas's Mosaic GPU backend, which JAX .* does not have"):
    call("pallas")


@needs_cuda_plugin
def test_h100_program_holds_the_mosaic_gpu_kernels_priced_as_gemms():
  """Compiled for an H100 (deviceless): with Mosaic GPU tiles the gated MLP's program holds one up kernel
  (2·N·D·2F) and one backward kernel (2·N·D·F) as Mosaic GPU custom calls, priced as GEMMs by the
  roofline, and no element-wise pass over [N, F]; the dense one its backward kernel; silu and relu lower too. (Lowering checks
  the kernels' shared memory against the card's; their PTX is built on the card.)"""
  tiles = "mgpu:128,64,64,4|mgpu:128,128,64,4"
  out = _h100_programs([(str(gated), gated, "pallas", tiles, "gelu") for gated in (True, False)]
                       + [(f"{act}", True, "pallas", tiles, act) for act in ("silu", "relu")])
  n, d, f = N_D_F
  ours = lambda key: sorted((k[0], k[1]) for k in out[key]["kernels"] if "mpmd_map" in k[3])
  assert ours("True") == sorted([("gemm", 2.0 * n * d * 2 * f), ("gemm", 2.0 * n * d * f)]) and out["True"]["mosaic"] == 2
  assert ours("False") == [("gemm", 2.0 * n * d * f)] and out["False"]["mosaic"] == 1
  assert not _wide_passes(out["True"]["kernels"]) and not _wide_passes(out["False"]["kernels"])
  assert out["silu"]["mosaic"] == out["relu"]["mosaic"] == 2  # every activation lowers (relu's custom_jvp did not)
