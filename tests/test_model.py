"""The shared transformer: attention masks do what each architecture promises; losses agree."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest

from paperjax import losses
from paperjax.models import lm
from paperjax.models import transformer as T
from paperjax.models.transformer import Transformer, TransformerConfig
from tests.conftest import gpu_xla_flags, needs_cuda_plugin, run_for_h100


def _model(kind, **kw):
  cfg = TransformerConfig(vocab_size=128, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_layers=2,
                          num_encoder_layers=1, kind=kind, **kw)
  return Transformer(cfg)


def _init(m, batch):
  return nn.meta.unbox(lm.init(m, jax.random.PRNGKey(0), batch))


def test_causal_decoder_ignores_the_future():
  m = _model("decoder")
  a = np.random.default_rng(0).integers(1, 128, (1, 12)).astype(np.int32)
  b = a.copy(); b[0, 8] = (b[0, 8] % 127) + 1
  p = _init(m, {"tokens": a})
  la, lb = m.apply({"params": p}, {"tokens": a}), m.apply({"params": p}, {"tokens": b})
  np.testing.assert_allclose(la[0, :8], lb[0, :8], rtol=1e-6)
  assert not np.allclose(la[0, 8:], lb[0, 8:])


def test_prefix_lm_is_bidirectional_inside_the_prefix_only():
  m = _model("prefix_lm")
  a = np.random.default_rng(1).integers(1, 128, (1, 12)).astype(np.int32)
  batch = {"tokens": a, "prefix_len": np.array([6], np.int32)}
  p = _init(m, batch)
  base = m.apply({"params": p}, batch)
  inside = a.copy(); inside[0, 4] = (inside[0, 4] % 127) + 1       # a later prefix token …
  out_in = m.apply({"params": p}, {**batch, "tokens": inside})
  assert not np.allclose(base[0, :4], out_in[0, :4])               # … changes earlier prefix positions
  after = a.copy(); after[0, 9] = (after[0, 9] % 127) + 1          # a suffix token …
  out_after = m.apply({"params": p}, {**batch, "tokens": after})
  np.testing.assert_allclose(base[0, :9], out_after[0, :9], rtol=1e-6)  # … changes nothing before it


def test_encoder_decoder_ignores_input_padding():
  m = _model("encdec")
  rng = np.random.default_rng(2)
  inputs = np.zeros((1, 10), np.int32); inputs[0, :6] = rng.integers(1, 128, 6)
  targets = rng.integers(1, 128, (1, 5)).astype(np.int32)
  p = _init(m, {"inputs": inputs, "targets": targets})
  longer = np.zeros((1, 16), np.int32); longer[0, :6] = inputs[0, :6]
  a = m.apply({"params": p}, {"inputs": inputs, "targets": targets})
  b = m.apply({"params": p}, {"inputs": longer, "targets": targets})
  np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_token_cross_entropy_by_hand():
  logits = jnp.array([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]]])
  targets = jnp.array([[0, 2]])
  mask = jnp.array([[1, 0]])
  s, w, _ = losses.token_cross_entropy(logits, targets, mask)
  expect = -2.0 + np.log(np.exp(2.0) + 1 + np.exp(-1.0))
  assert float(w) == 1.0
  np.testing.assert_allclose(float(s), expect, rtol=1e-6)


@pytest.mark.parametrize("kind", ["decoder", pytest.param("encdec", marks=pytest.mark.slow)])  # encdec: ~12 s cold
def test_chunked_loss_equals_full_loss_and_gradient(kind):
  m = _model(kind)
  rng = np.random.default_rng(3)
  if kind == "encdec":
    batch = {"inputs": rng.integers(1, 128, (2, 8)), "targets": rng.integers(1, 128, (2, 8)),
             "targets_mask": rng.integers(0, 2, (2, 8))}
  else:
    batch = {"tokens": rng.integers(1, 128, (2, 8)), "loss_mask": rng.integers(0, 2, (2, 8))}
  p = _init(m, batch)
  full = jax.jit(lambda p: (lambda s, w: s / w)(*lm.loss_sums(m, p, batch)))
  chunked = jax.jit(lambda p: (lambda s, w: s / w)(*lm.loss_sums(m, p, batch, chunk=4)))
  np.testing.assert_allclose(full(p), chunked(p), rtol=1e-6)
  g1, g2 = jax.jit(jax.grad(full))(p), jax.jit(jax.grad(chunked))(p)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_scan_and_remat_give_the_same_function():
  """Layer scan + remat change memory and compile time, not the maths: same params → same logits."""
  tokens = np.random.default_rng(4).integers(1, 128, (2, 8)).astype(np.int32)
  plain = _model("decoder")
  scanned = _model("decoder", scan_layers=True, remat="full")
  p = _init(plain, {"tokens": tokens})
  stacked = {k: v for k, v in p.items() if k != "decoder"}
  layers = [p["decoder"][f"layer_{i}"] for i in range(2)]
  stacked["decoder"] = {"layers": jax.tree.map(lambda *x: jnp.stack(x), *layers),
                        "final_norm": p["decoder"]["final_norm"]}
  np.testing.assert_allclose(plain.apply({"params": p}, {"tokens": tokens}),
                             scanned.apply({"params": stacked}, {"tokens": tokens}), rtol=2e-5, atol=2e-5)


# The scanned (stacked) layout on the decoder, cross-attention's fused k/v on the encoder-decoder:
# each fusion path once (the scanned encoder-decoder adds 20 s of compile on 2 cores and no new path).
@pytest.mark.parametrize("kind,scan", [("decoder", True),
                                       pytest.param("encdec", False, marks=pytest.mark.slow)])  # ~16 s cold
def test_fused_projections_give_the_same_function(kind, scan):
  """fused_projections only changes the parameter layout: fuse_params(unfused) → identical logits,
  and a freshly initialised fused model has the fused kernels (and the same parameter count)."""
  from paperjax.models.transformer import fuse_params, count_params
  rng = np.random.default_rng(5)
  batch = ({"tokens": rng.integers(1, 128, (2, 8)).astype(np.int32)} if kind == "decoder" else
           {"inputs": rng.integers(1, 128, (2, 6)).astype(np.int32), "targets": rng.integers(1, 128, (2, 5)).astype(np.int32)})
  plain, fused = _model(kind, scan_layers=scan), _model(kind, scan_layers=scan, fused_projections=True)
  p = _init(plain, batch)
  pf = fuse_params(p)
  np.testing.assert_allclose(plain.apply({"params": p}, batch), fused.apply({"params": pf}, batch), rtol=1e-5, atol=1e-5)
  fresh = _init(fused, batch)
  assert jax.tree.structure(fresh) == jax.tree.structure(pf)
  assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, pf)
  assert count_params(fresh) == count_params(p)
  names = {"/".join(str(k.key) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(fresh)}
  assert any(n.endswith("self_attn/qkv/kernel") for n in names) and any(n.endswith("mlp/wi/kernel") for n in names)
  assert not any("wi_0" in n or "/key/" in n for n in names)
  if kind == "encdec":
    assert any(n.endswith("cross_attn/kv/kernel") for n in names)


def test_greedy_completions_match_a_step_by_step_argmax_and_stop_at_eos():
  """evals.lm.greedy_completions (the shared greedy decoding of ExactMatch and the instruction tasks)
  equals re-running the model and taking the argmax one token at a time, for prompts of several
  lengths in one fixed-size batch; after an eos the decoder writes only 0s."""
  from paperjax.evals import lm as lm_evals
  from paperjax.models import decode

  class Tok:
    eos_id = 1
    decode = staticmethod(lambda ids: ",".join(str(int(i)) for i in ids))

  m = _model("decoder")
  p = _init(m, {"tokens": np.ones((1, 16), np.int32)})
  rng = np.random.default_rng(6)
  prompts = [rng.integers(2, 128, n).astype(np.int32) for n in (1, 3, 6)]
  got = lm_evals.greedy_completions(m, p, Tok, prompts, length=16, max_new=5, batch_size=4)
  # The reference: the full causal model on the sequence so far (zero-padded to one compiled shape;
  # a causal model's logits at position t do not depend on what follows t).
  logits = jax.jit(lambda t: m.apply({"params": p}, {"tokens": t}))
  for prompt, text in zip(prompts, got):
    seq, want = list(prompt), []
    for _ in range(5):
      nxt = int(np.argmax(logits(np.pad(np.asarray([seq], np.int32), ((0, 0), (0, 16 - len(seq)))))[0, len(seq) - 1]))
      if nxt == Tok.eos_id:
        break
      want.append(nxt)
      seq.append(nxt)
    assert text == Tok.decode(want)
  # The stop rule: declare the model's first generated token to be eos; everything after it must be 0.
  buf = np.zeros((1, 16), np.int32)
  buf[0, :3] = prompts[1]
  out = np.asarray(decode.greedy_decoder(m, p, buf, np.asarray([3], np.int32), length=6, eos_id=int(
      np.argmax(m.apply({"params": p}, {"tokens": buf[:, :3]})[0, -1]))))
  assert np.all(out[0, 4:9] == 0) and out[0, 3] != 0


def test_rotary_is_a_rotation_of_each_pair_by_position_times_frequency():
  """Su et al. (2021): dims (i, i + K/2) of a head rotate by the angle pos * theta^(-i / (K/2)), so
  a query-key dot product depends on the positions only through their difference."""
  K, theta = 8, 10_000.0
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 3, 2, K)).astype(np.float32)
  pos = np.array([[0, 5, 17]])
  got = np.asarray(T.rotary(jnp.asarray(x), T.rope_tables(jnp.asarray(pos), K, theta)))
  ang = pos[..., None, None] * theta ** (-np.arange(K // 2) / (K // 2))        # by hand, as complex numbers
  z = (x[..., :K // 2] + 1j * x[..., K // 2:]) * np.exp(1j * ang)
  np.testing.assert_allclose(got, np.concatenate([z.real, z.imag], -1), rtol=1e-5, atol=1e-5)
  q, k = rng.normal(size=(2, 1, 1, 1, K)).astype(np.float32)
  dot = lambda m, n: float(jnp.sum(T.rotary(jnp.asarray(q), T.rope_tables(jnp.array([[m]]), K, theta))
                                   * T.rotary(jnp.asarray(k), T.rope_tables(jnp.array([[n]]), K, theta))))
  assert dot(7, 3) == pytest.approx(dot(104, 100), rel=1e-4) and dot(7, 3) != pytest.approx(dot(7, 4), rel=1e-3)


@pytest.mark.parametrize("kind", ["decoder", "encdec"])
def test_rotary_tables_are_computed_once_per_stack(kind):
  """The step's program evaluates the rotary sin/cos once per layer stack, not once per layer."""
  m = Transformer(TransformerConfig(vocab_size=128, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_layers=3,
                                    num_encoder_layers=2, kind=kind))
  batch = ({"tokens": np.ones((2, 8), np.int32)} if kind == "decoder"
           else {"inputs": np.ones((2, 8), np.int32), "targets": np.ones((2, 8), np.int32)})
  p = _init(m, batch)
  loss = lambda p: m.apply({"params": p}, batch).sum()
  text = jax.jit(jax.grad(loss)).lower(p).as_text()
  stacks = 2 if kind == "encdec" else 1
  assert text.count("stablehlo.sine") == stacks and text.count("stablehlo.cosine") == stacks


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_gated_activation_recomputes_its_activation_in_the_backward_pass(name):
  """`gated_activation` is act(h0)·h1 with plain autodiff's gradients, but the backward pass
  evaluates the activation again from h0 (the tanh of the GELU appears twice in the gradient
  program: forward and recomputation), so nothing beyond h0 and h1 is kept for it."""
  rng = np.random.default_rng(0)
  h0, h1, g = (jnp.asarray(rng.normal(size=(3, 5, 8)), jnp.float32) for _ in range(3))
  act = T.ACTIVATIONS[name]
  f = T.gated_activation(name)
  by_hand = lambda a, b: act(a) * b
  np.testing.assert_allclose(f(h0, h1), by_hand(h0, h1), rtol=1e-6)
  ours = jax.vjp(f, h0, h1)[1](g)
  plain = jax.vjp(by_hand, h0, h1)[1](g)
  for a, b in zip(ours, plain):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  if name == "gelu":
    grad_text = lambda fn: jax.jit(jax.value_and_grad(lambda a, b: (fn(a, b) * g).sum(), (0, 1))).lower(h0, h1).as_text()
    assert grad_text(f).count("stablehlo.tanh") == 2 and grad_text(by_hand).count("stablehlo.tanh") == 1


def _gelu_tanh(x):  # GPT-2's GELU, by hand
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def test_dense_mlp_is_gelu_of_the_up_projection_then_the_down_projection():
  """`mlp="dense"` (GPT-2): gelu_tanh(x·W1)·W2, against numpy; gradients equal plain autodiff's while
  the backward recomputes the GELU from x·W1 (its tanh twice in the gradient program)."""
  cfg = TransformerConfig(vocab_size=16, d_model=8, d_ff=32, mlp="dense")
  mlp = T.DenseMLP(cfg)
  x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
  p = nn.meta.unbox(mlp.init(jax.random.PRNGKey(0), x, True)["params"])
  assert set(p) == {"wi", "wo"} and p["wi"]["kernel"].shape == (8, 32) and p["wo"]["kernel"].shape == (32, 8)
  wi, wo = np.asarray(p["wi"]["kernel"], np.float64), np.asarray(p["wo"]["kernel"], np.float64)
  np.testing.assert_allclose(mlp.apply({"params": p}, x, True), _gelu_tanh(x @ wi) @ wo, rtol=1e-5, atol=1e-6)
  loss = lambda p: (mlp.apply({"params": p}, x, True) ** 2).sum()
  plain = lambda p: ((jax.nn.gelu(x @ p["wi"]["kernel"], approximate=True) @ p["wo"]["kernel"]) ** 2).sum()
  for a, b in zip(jax.tree.leaves(jax.grad(loss)(p)), jax.tree.leaves(jax.grad(plain)(p))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert jax.jit(jax.grad(loss)).lower(p).as_text().count("stablehlo.tanh") == 2


@needs_cuda_plugin
def test_dense_mlp_gelu_is_a_cublaslt_epilogue_in_the_h100_program():
  """Why the dense MLP rematerialises its GELU: compiled for an H100 (deviceless, the `tuned` flags),
  the up-projection of `DenseMLP` is one cuBLASLt GEMM with a GELU_AUX epilogue (GELU and its input
  written by the GEMM); with plain autodiff of the same function the pattern does not match."""
  code = textwrap.dedent("""
    import os; os.environ["JAX_SKIP_CUDA_CONSTRAINTS_CHECK"] = "1"
    from paperjax import xla_flags; xla_flags.apply("tuned")
    import jax, jax.numpy as jnp, flax.linen as nn
    from jax.experimental import topologies
    from paperjax import roofline
    from paperjax.models import transformer as T
    topo = topologies.get_topology_desc(platform="cuda", target_config=roofline.GPU_TARGETS["h100"], topology="1x1x1")
    sh = jax.sharding.SingleDeviceSharding(topo.devices[0])
    mlp = T.DenseMLP(T.TransformerConfig(vocab_size=8, d_model=256, d_ff=1024, mlp="dense", dtype=jnp.bfloat16))
    x = jax.ShapeDtypeStruct((4, 128, 256), jnp.bfloat16)
    params = jax.eval_shape(lambda: nn.meta.unbox(mlp.init(jax.random.key(0), jnp.ones(x.shape, x.dtype), True)["params"]))
    def gelu_aux(apply):
      grad = jax.grad(lambda p, x: apply(p, x).astype(jnp.float32).sum())
      return jax.jit(grad, in_shardings=sh).lower(params, x).compile().as_text().count('"epilogue":"GELU_AUX"')
    cast = lambda p, k: p[k]["kernel"].astype(jnp.bfloat16)
    plain = lambda p, x: jax.nn.gelu(x @ cast(p, "wi"), approximate=True) @ cast(p, "wo")
    print(gelu_aux(lambda p, x: mlp.apply({"params": p}, x, True)), gelu_aux(plain))
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "JAX_PLATFORMS": "", "XLA_FLAGS": gpu_xla_flags()})
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split()[-2:] == ["1", "0"]


def test_learned_positions_add_the_tables_row_and_replace_rotary():
  """`positions="learned"` (GPT-2): the stack's input is token embedding + position table[position];
  no rotary tables anywhere in the program; one table per stack."""
  cfg = dict(vocab_size=32, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_layers=1, num_encoder_layers=1,
             positions="learned", max_length=12)
  m = Transformer(TransformerConfig(kind="decoder", **cfg))
  tokens = np.array([[3, 3, 3, 5, 7]], np.int32)
  p = _init(m, {"tokens": tokens})
  assert p["decoder_positions"].shape == (12, 16) and "encoder_positions" not in p
  pos = np.array([[0, 1, 2, 3, 4]])
  got = m.apply({"params": p}, tokens, pos, "decoder", method=Transformer.embed_at)
  want = np.asarray(p["embed"]["embedding"])[tokens] + np.asarray(p["decoder_positions"])[pos]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  out = m.apply({"params": p}, {"tokens": tokens})
  assert not np.allclose(out[0, 1], out[0, 2], atol=1e-4)  # the same token after the same context: position tells
  text = jax.jit(lambda p: m.apply({"params": p}, {"tokens": tokens}).sum()).lower(p).as_text()
  assert "stablehlo.sine" not in text and "stablehlo.cosine" not in text
  e = Transformer(TransformerConfig(kind="encdec", **cfg))
  pe = _init(e, {"inputs": tokens, "targets": tokens[:, :3]})
  assert pe["encoder_positions"].shape == pe["decoder_positions"].shape == (12, 16)
  with pytest.raises(ValueError, match="longer than model.max_length=12"):
    m.apply({"params": p}, {"tokens": np.ones((1, 13), np.int32)})


@pytest.mark.parametrize("kw, match", [(dict(mlp="swiglu"), "model.mlp='swiglu'"),
                                       (dict(positions="alibi"), "model.positions='alibi'"),
                                       (dict(positions="learned"), "needs model.max_length > 0")])
def test_bad_mlp_or_positions_is_one_sentence(kw, match):
  with pytest.raises(ValueError, match=match):
    TransformerConfig(vocab_size=8, **kw)


def test_online_logsumexp_matches_the_two_pass_formula():
  rng = np.random.default_rng(0)
  for scale in (1.0, 50.0, 1e4):  # large spreads: the rescaling must not overflow or lose the max
    x = (rng.normal(size=(6, 1001)) * scale).astype(np.float32)
    want = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    np.testing.assert_allclose(losses.online_logsumexp(jnp.asarray(x)), want, rtol=1e-6, atol=1e-5)
    want0 = np.log(np.exp(x - x.max(0)).sum(0)) + x.max(0)
    np.testing.assert_allclose(losses.online_logsumexp(jnp.asarray(x), axis=0), want0, rtol=1e-6, atol=1e-5)
  # one pass: a single (variadic) reduction in the program, where jax.nn.logsumexp has two
  text = jax.jit(losses.online_logsumexp).lower(jnp.zeros((4, 16))).as_text()
  assert text.count("stablehlo.reduce") == 1


def test_embedding_gradient_sums_every_occurrence_in_fp32():
  # a bf16 model: the gather reads the bf16 table, but a token's gradient is the fp32 sum of its
  # cotangents. Autodiff of a bf16 gather (nn.Embed) sums in bf16 and stops at 256 + 1 -> 256.
  e = T.Embed(16, 4, dtype=jnp.bfloat16)
  rng = np.random.default_rng(0)
  ids = np.concatenate([np.zeros(3000, np.int32), rng.integers(1, 16, 1000).astype(np.int32)])
  p = e.init(jax.random.PRNGKey(0), ids)
  table = p["params"]["embedding"]
  out = e.apply(p, ids)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_array_equal(out, np.asarray(table.astype(jnp.bfloat16))[ids])  # the cast table's rows
  cot = rng.normal(size=(ids.size, 4)).astype(np.float32)
  cot_bf16 = jnp.asarray(cot, jnp.bfloat16)
  g = jax.grad(lambda p: jnp.sum(e.apply(p, ids).astype(jnp.float32) * cot_bf16.astype(jnp.float32)))(p)
  g = g["params"]["embedding"]
  want = np.zeros((16, 4))
  np.add.at(want, ids, np.asarray(cot_bf16.astype(jnp.float32), np.float64))  # by hand, in float64
  assert g.dtype == jnp.float32
  np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-4)
  # the count itself: 3000 occurrences of id 0 with cotangent 1
  ones = jax.grad(lambda p: e.apply(p, ids).astype(jnp.float32)[:, 0].sum())(p)["params"]["embedding"]
  np.testing.assert_array_equal(ones[:, 0], np.bincount(ids, minlength=16))


def test_embedding_module_keeps_flax_parameters_and_values():
  ids = np.arange(10, dtype=np.int32) % 7
  ours, flax_embed = T.Embed(7, 3, dtype=jnp.bfloat16), nn.Embed(7, 3, dtype=jnp.bfloat16)
  p = flax_embed.init(jax.random.PRNGKey(1), ids)
  assert jax.tree.structure(ours.init(jax.random.PRNGKey(1), ids)) == jax.tree.structure(p)
  np.testing.assert_array_equal(ours.apply(p, ids), flax_embed.apply(p, ids))
  h = jnp.ones((2, 3), jnp.bfloat16)
  np.testing.assert_array_equal(ours.apply(p, h, method="attend"), flax_embed.apply(p, h, method="attend"))
  with pytest.raises(ValueError, match="integer ids"):
    ours.apply(p, jnp.ones((2,), jnp.float32))


def test_embedding_gradient_is_the_same_on_a_sharded_mesh():
  # one device: rows scatter into a flat buffer (contiguous rows whatever layout XLA picks for the
  # table); a mesh of several devices: the 2-D scatter XLA partitions. The same sums either way.
  from tests.conftest import run_python
  code = """
import numpy as np, jax, jax.numpy as jnp
from paperjax import sharding, step as step_lib
from paperjax.models import transformer as T
ids = jnp.asarray(np.random.default_rng(0).integers(0, 16, (8, 32)), jnp.int32)
cot = jnp.asarray(np.random.default_rng(1).normal(size=(8, 32, 4)), jnp.bfloat16)
table = jnp.asarray(np.random.default_rng(2).normal(size=(16, 4)), jnp.float32)
f = jax.jit(jax.grad(lambda t, i: jnp.sum(T.embed_lookup(t, i, jnp.bfloat16).astype(jnp.float32) * cot)))
one = f(table, ids)
mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (2, 2, 1))
with step_lib.mesh_context(mesh, sharding.DEFAULT_RULES):
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp")))
  text = f.lower(table, jax.device_put(ids, spec)).as_text()
  four = f(table, jax.device_put(ids, spec))
want = np.zeros((16, 4)); np.add.at(want, np.asarray(ids), np.asarray(cot, np.float64))
np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(four, want, rtol=1e-5, atol=1e-5)
assert "tensor<64xf32>" in f.lower(table, ids).as_text()  # one device: the flat buffer of 16 x 4
assert "tensor<64xf32>" not in text  # the 2-D scatter under the mesh, not the flat one
print("OK")
"""
  r = run_python(code, devices=4)
  assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def _kv_chain_reference(x, wk, wv):
  return jnp.einsum("BSD,DHK->BSHK", x, wk), jnp.einsum("BSD,DHK->BSHK", x, wv), x


def test_kv_chain_backward_is_the_sum_of_both_projections_and_the_later_layers():
  """`kv_chain` with the encoder's output as both x and acc (as the stack calls it) against autodiff of
  (x ↦ x·Wk, x·Wv, x) and against the formula: dx = dv·Wvᵀ + dk·Wkᵀ + d_later, dWk = xᵀ·dk, dWv = xᵀ·dv —
  all of dx through acc, none through x."""
  rng = np.random.default_rng(7)
  x, wk, wv = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((2, 5, 8), (8, 2, 3), (8, 2, 3)))
  cts = tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((2, 5, 2, 3), (2, 5, 2, 3), (2, 5, 8)))
  with jax.default_matmul_precision("highest"):
    out, vjp = jax.vjp(lambda x, wk, wv: T.kv_chain(x, wk, wv, x), x, wk, wv)
    want_out, want_vjp = jax.vjp(_kv_chain_reference, x, wk, wv)
    got, want = vjp(cts), want_vjp(cts)
    by_input = jax.vjp(T.kv_chain, x, wk, wv, x)[1](cts)
  for a, b in zip(out, want_out):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  dk, dv, later = (np.asarray(c, np.float64) for c in cts)
  xs, k, v = (np.asarray(a, np.float64) for a in (x, wk, wv))
  np.testing.assert_allclose(got[0], np.einsum("bshk,dhk->bsd", dv, v) + np.einsum("bshk,dhk->bsd", dk, k) + later,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1], np.einsum("bsd,bshk->dhk", xs, dk), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[2], np.einsum("bsd,bshk->dhk", xs, dv), rtol=1e-5, atol=1e-5)
  assert not np.asarray(by_input[0]).any() and np.allclose(by_input[3], got[0], atol=1e-5)


def test_kv_chain_backward_adds_into_a_fresh_gemm():
  """The form XLA's GPU compiler folds into a GEMM as its C operand (its add matcher takes the first
  operand that is a GEMM's result, and gives up if that GEMM has a C already): in the backward every add's
  first operand is a dot's result, the second the running sum — so none is a pass of its own."""
  x, w = jnp.ones((2, 5, 8)), jnp.ones((8, 2, 3))
  _, vjp = jax.vjp(T.kv_chain, x, w, w, x)
  jaxpr = jax.make_jaxpr(vjp)((jnp.ones((2, 5, 2, 3)), jnp.ones((2, 5, 2, 3)), x)).jaxpr
  eqns = list(jaxpr.eqns)
  made_by = {str(v): e.primitive.name for e in eqns for v in e.outvars}
  adds = [e for e in eqns if e.primitive.name in ("add", "add_any")]
  assert len(adds) == 2, adds
  assert all(made_by.get(str(e.invars[0])) == "dot_general" for e in adds), adds
  assert made_by.get(str(adds[1].invars[1])) == "add"  # the running sum: dv·Wvᵀ + (dk·Wkᵀ + d_later)


@pytest.mark.parametrize("remat,scan", [("none", False), pytest.param("full", True, marks=pytest.mark.slow)])  # ~18 s
def test_cross_kv_chain_gives_the_same_model(remat, scan):
  """`cross_kv_chain` changes the program, not the function or the parameters: loss and every gradient
  equal the unchained model's (the encoder's gradient now summed through the chain), with one `kv_chain`
  a decoder layer (unrolled) or one in the scanned layer's body, handing the encoder's output on in the carry."""
  from tests.conftest import same_model_with
  cfg = TransformerConfig(vocab_size=64, d_model=32, num_heads=2, head_dim=16, d_ff=64, num_layers=2,
                          num_encoder_layers=1, kind="encdec", remat=remat, scan_layers=scan)
  loss, params = same_model_with(cfg, cross_kv_chain=True)
  assert str(jax.make_jaxpr(loss)(params)).count("name=kv_chain") == (1 if scan else 2)


@pytest.mark.parametrize("kind,scan,extra", [
    pytest.param("encdec", True, dict(remat="full", positions="learned", max_length=64, norm_impl="pallas",
                                      residual_add="gemm"), marks=pytest.mark.slow),  # ~31 s cold
    ("decoder", False, dict(rope_impl="pallas", num_layers=1))], ids=["encdec-scanned-learned-norm-kernel", "rope-kernel"])
def test_qkv_chain_gives_the_same_model(kind, scan, extra):
  """`qkv_chain` changes the program, not the function or the parameters: loss and every gradient equal the
  model's without it, each self-attention layer's x·Wq, x·Wk, x·Wv through one `kv_chain` (its key and value,
  and x handed on to the query), or with the rotary kernels through `rope_qk_projection`: one dgrad kernel for
  the query and the key where there were two."""
  from tests.conftest import same_model_with
  cfg = TransformerConfig(**{**dict(vocab_size=64, d_model=64, num_heads=2, head_dim=32, d_ff=96, num_layers=2,
                                    num_encoder_layers=1, kind=kind, scan_layers=scan), **extra})
  loss, params, plain = same_model_with(cfg, qkv_chain=True, reference=True)
  if extra.get("rope_impl") == "pallas":
    dgrad = lambda f: str(jax.make_jaxpr(jax.grad(f))(params)).count("rope_dgrad_gemm")
    assert dgrad(loss) * 2 == dgrad(plain) > 0, (dgrad(loss), dgrad(plain))
    assert "name=kv_chain" not in str(jax.make_jaxpr(loss)(params))
  else:  # one in each scanned stack's body: the encoder's and the decoder's
    assert str(jax.make_jaxpr(loss)(params)).count("name=kv_chain") == 2


@needs_cuda_plugin
def test_qkv_chain_hands_the_norm_one_gradient_in_the_h100_program():
  """Compiled for an H100 (deviceless): without `qkv_chain` the fused norm's backward before each
  self-attention reads two gradients of its output (the query projection's, and the key/value projections'
  summed by cuBLAS) — five [rows, D] tensors with the sum and the residual's gradient in and dx out; with it,
  four (learned positions: cuBLAS's GEMMs chained; rotary kernels: their one dgrad kernel and the value GEMM's
  C), and no element-wise add over [rows, D] in the attention's backward either way."""
  out = run_for_h100("""
    import flax.linen as nn
    from paperjax.models import lm, transformer as T
    out = {}
    for positions in ("learned", "rope"):
      for chain in (False, True):
        cfg = T.TransformerConfig(vocab_size=512, d_model=256, num_heads=4, head_dim=64, d_ff=512, num_layers=3,
                                  kind="decoder", dtype=jnp.bfloat16, norm_impl="auto", residual_add="gemm",
                                  attention_impl="cudnn", positions=positions, max_length=256,
                                  rope_impl="auto" if positions == "rope" else "xla", qkv_chain=chain)
        m = T.Transformer(cfg)
        batch = {"tokens": spec((4, 256), jnp.int32), "loss_mask": spec((4, 256), jnp.int32)}
        params = jax.eval_shape(lambda: nn.meta.unbox(lm.init(m, jax.random.key(0), jax.tree.map(
            lambda s: jnp.ones(s.shape, s.dtype), batch))))
        out[positions + str(chain)] = kernels(compiled(jax.grad(lambda p, b: lm.loss_sums(m, p, b)[0]), params, batch))
    print(json.dumps(out))
  """)
  rows = 4 * 256 * 256 * 2  # bytes of one [rows, D] bf16 tensor
  for key, ks in out.items():
    bwd = [k for k in ks if k[0] == "pallas" and "pre_attn_norm" in k[4] and "norm_bwd" in k[4]]
    assert {round(k[2] / rows) for k in bwd} == ({4} if key.endswith("True") else {5}), (key, bwd)
    adds = [k for k in ks if k[0] == "elementwise" and "self_attn" in k[4] and k[3].startswith("bf16[1024,256]")
            and ("add" in k[4].rsplit("/", 1)[-1])]
    assert not adds, (key, adds)
  dgrad = lambda key: [k for k in out[key] if "rope_dgrad_gemm" in k[4]]
  count = lambda key: sum(k[5] for k in dgrad(key))
  assert count("ropeTrue") * 2 == count("ropeFalse") > 0
  # the roofline prices the joint kernel as the GEMM of both sources: the same FLOPs as the two kernels apart
  flops = lambda key: sum(k[1] * k[5] for k in dgrad(key))
  assert {k[0] for k in dgrad("ropeTrue")} == {"gemm"} and flops("ropeTrue") == flops("ropeFalse") > 0


@needs_cuda_plugin
def test_cross_kv_chain_folds_every_add_into_a_gemm_in_the_h100_program():
  """Compiled for an H100 (deviceless, the `tuned` flags): without the chain, the encoder output's gradient
  takes element-wise adds over [B·S, D] between the decoder layers' cuBLAS GEMMs; with it, none."""
  out = run_for_h100("""
    import flax.linen as nn
    from paperjax.models import lm, transformer as T
    out = {}
    for chain in (False, True):
      cfg = T.TransformerConfig(vocab_size=512, d_model=256, num_heads=4, head_dim=64, d_ff=512, num_layers=4,
                                num_encoder_layers=1, kind="encdec", dtype=jnp.bfloat16, cross_kv_chain=chain)
      m = T.Transformer(cfg)
      batch = {"inputs": spec((4, 256), jnp.int32), "targets": spec((4, 64), jnp.int32),
               "targets_mask": spec((4, 64), jnp.int32)}
      params = jax.eval_shape(lambda: nn.meta.unbox(lm.init(m, jax.random.key(0), jax.tree.map(
          lambda s: jnp.ones(s.shape, s.dtype), batch))))
      f = jax.grad(lambda p, b: lm.loss_sums(m, p, b)[0])
      out[str(chain)] = kernels(compiled(f, params, batch))
    print(json.dumps(out))
  """)
  adds = lambda ks: [k for k in ks if k[0] in ("elementwise", "reduce") and "cross_attn" in k[4]
                     and "add_any" in k[4] and k[3].startswith("bf16[1024,256]")]
  assert adds(out["False"]) and not adds(out["True"]), (adds(out["False"]), adds(out["True"]))
