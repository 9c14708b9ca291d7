"""paperjax.bench on CPU with tiny shapes: it runs the real step, and its FLOP counts match a hand
computation. Also the pieces it exercises: the fused cross-entropy, padding as lengths, XLA flags."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax import bench, losses, metrics, profile_summary, roofline, xla_flags
from paperjax.models import lm
from paperjax.models import transformer as T


def _tiny_cfg(shape="tiny", **kw):
  fields = {k: v for k, v in bench.SHAPES[shape].items() if k not in ("lengths", "batch", "raw_length")}
  return T.TransformerConfig(**{**fields, **kw})


def test_decoder_flops_by_hand():
  # tiny: L=2 layers, d=64, 4 heads of 16, gated d_ff=128, V=512 (tied, counted once), T=32.
  per_layer = 4 * 64 * 64 + 3 * 64 * 128            # q, k, v, out + three MLP matrices = 40960
  n = 2 * per_layer + 64 * 512                       # + unembedding = 114688
  attn = 12 * 2 * 4 * 16 * 32                        # 12·L·H·K·T = 49152
  f = lm.flops_per_example(_tiny_cfg(), {"tokens": 32})
  assert f["full"] == (6 * n + attn) * 32 == 23_592_960
  assert f["causal"] == (6 * n + attn / 2) * 32


def test_dense_mlp_flops_by_hand_and_gpt2s_two_shapes_count_the_same():
  # tiny with a dense MLP: two d×d_ff matrices per layer.
  per_layer = 4 * 64 * 64 + 2 * 64 * 128
  n = 2 * per_layer + 64 * 512
  attn = 12 * 2 * 4 * 16 * 32
  f = lm.flops_per_example(_tiny_cfg(mlp="dense"), {"tokens": 32})
  assert f["full"] == (6 * n + attn) * 32
  # GPT-2's dense d_ff 3072 holds the weights of the gated 2048: the same FLOPs per token (the
  # learned position table is an embedding lookup, not counted)
  gated, dense = (lm.flops_per_example(_tiny_cfg(s), {"tokens": 1024}) for s in ("gpt2_124m", "gpt2_124m_gelu"))
  assert gated == dense


def test_positions_flag_overrides_the_shape_with_a_table_as_long_as_its_longest_sequence():
  cfg, _ = bench.model_config(bench.parse_args(["--shape=tiny_encdec", "--positions=learned"]))
  assert cfg.positions == "learned" and cfg.max_length == 64  # inputs 64, targets 32
  cfg, _ = bench.model_config(bench.parse_args(["--shape=gpt2_124m_gelu", "--positions=rope"]))
  assert cfg.positions == "rope" and cfg.mlp == "dense"
  assert bench.model_config(bench.parse_args(["--shape=tiny"]))[0].positions == "rope"


def test_encdec_flops_by_hand():
  # 2+3 layers, d=64, 4×16 heads, d_ff=128, V=512, inputs 64, targets 32.
  d, hk, f_, v, li, lt = 64, 64, 128, 512, 64, 32
  enc = 2 * (4 * d * hk + 3 * d * f_) * li
  # decoder self-attn q,k,v,out and cross q,out over the targets; cross k,v over the encoder output.
  dec = 3 * ((6 * d * hk + 3 * d * f_) * lt + 2 * d * hk * li) + d * v * lt
  attn = 12 * hk * (2 * li * li + 3 * lt * li)  # encoder self + cross, full
  self_attn = 12 * 3 * hk * lt * lt
  got = metrics.encdec_flops_per_example(_tiny_cfg("tiny_encdec", num_encoder_layers=2, num_layers=3), li, lt)
  assert got["full"] == 6 * (enc + dec) + attn + self_attn
  assert got["causal"] == 6 * (enc + dec) + attn + self_attn / 2


@pytest.mark.parametrize("argv", [
    ["--shape=tiny", "--batch=8", "--loss_chunk=64", "--profile=PROFILE", "--no_donate", "--positions=learned", "--fused"],
    ["--shape=tiny_encdec", "--batch=8", "--data=ul2", "--padding_lengths", "--loss_chunk=96", "--rope_impl=auto"],
    # The same program as the row above (a compilation-cache hit): one real batch kept on the device, and
    # the trainer's grain iterator, timed in interleaved windows; Adafactor as in the UL2 presets.
    ["--shape=tiny_encdec", "--batch=8", "--data=ul2_resident,ul2_pipeline", "--padding_lengths", "--loss_chunk=96",
     "--rope_impl=auto", "--optimizer=adafactor"],
])
def test_bench_runs_the_step(argv, tmp_path, monkeypatch):
  out = tmp_path / "r.jsonl"
  on_card = "--profile=PROFILE" in argv
  if on_card:  # as if on a card the roofline has rates for: the timed program's floor
    monkeypatch.setattr(bench.roofline, "card_for", lambda kind: roofline.H100_SXM)
  cache = os.environ.get("PAPERJAX_COMPILATION_CACHE", os.path.expanduser("~/.cache/paperjax/xla"))
  extra = [f"--compilation_cache={cache}"] if cache and cache != "0" else []
  argv = [a.replace("PROFILE", str(tmp_path / "trace")) for a in argv]
  r = bench.run(bench.parse_args(argv + extra + ["--steps=2", "--warmup=1", "--peak_flops=1e12", f"--json={out}"]))
  assert np.isfinite(r["loss"]) and r["ms_per_step"] > 0 and len(r["window_ms"]) == 2
  cfg = _tiny_cfg(r["shape"])
  lengths = bench.SHAPES[r["shape"]]["lengths"]
  assert r["flops_per_step_full"] == lm.flops_per_example(cfg, lengths)["full"] * 8
  assert r["tokens_per_step"] == sum(lengths.values()) * 8
  assert r["mfu_full"] == pytest.approx(r["flops_per_step_full"] / (r["ms_per_step"] / 1e3) / 1e12, rel=1e-2)
  assert r["mfu_causal"] <= r["mfu_full"]
  assert out.read_text().count("\n") == 1
  assert r["init_s"] > 0 and r["first_step_s"] > 0  # where a cold start goes, beside compile_s
  assert 0 < r["call_ms_per_step"] < 10 * r["ms_per_step"]  # the host's time inside the step call
  # ... by the call's position in its window (--steps=2: one call per window, the mean of the two)
  assert len(r["call_ms_by_position"]) == 1 and r["call_ms_by_position"][0] == pytest.approx(r["call_ms_per_step"], abs=2e-3)
  assert r["donate"] == ("--no_donate" not in argv) and 0 < r["mem_fraction"] <= 1
  rope = "rope+auto" if "--rope_impl=auto" in argv else "rope"  # rotary inside the projections' kernel on GPUs
  assert r["positions"] == ("learned" if "--positions=learned" in argv else rope) and r["mlp"] == "gated"
  if r["data"] == "ul2":
    assert r["host_ms_per_step"] >= 0
  if "ul2" in r["data"]:  # real batches: the share of positions holding a token
    assert 0 < r["fill"] < 1
  if "," in r["data"]:
    first, second = r["data"].split(",")
    rows = r["by_data"]
    assert set(rows) == {first, second} and rows[first]["vs_first"] == 0.0
    assert r["ms_per_step"] == rows[first]["ms_per_step"] and len(rows[second]["window_ms"]) == 2
    assert rows[second]["vs_first"] == pytest.approx(rows[second]["ms_per_step"] / rows[first]["ms_per_step"] - 1, abs=1e-4)
    assert rows["ul2_pipeline"]["host_ms_per_step"] >= 0 and "host_ms_per_step" not in rows["ul2_resident"]
  if on_card:  # the roofline of the program just timed (CPU HLO at H100 rates), the one the profile saved
    step_hlo = (tmp_path / "trace" / "step.hlo.txt").read_text()
    assert r["floor_card"] == "H100 SXM" and r["floor_ms"] > 0
    assert r["floor_ms"] == roofline.summary(roofline.kernels(step_hlo, roofline.H100_SXM))["total_ms"]
    assert r["vs_floor"] == pytest.approx(r["ms_per_step"] / r["floor_ms"], rel=1e-3)
  else:  # a device the roofline has no rates for: no floor
    assert "floor_ms" not in r and "vs_floor" not in r
  if "profile" in r:
    assert any(f.name.endswith(".xplane.pb") for f in (tmp_path / "trace").rglob("*"))
    cats = r["profile_summary"]["categories"]
    assert cats and sum(c["share"] for c in cats.values()) == pytest.approx(1.0, abs=1e-3)
    ps = r["profile_summary"]
    assert ps["total_ms"] > 0 and ps["top"] and 0 < ps["busy_ms"] <= ps["span_ms"] + 1e-6
    assert ps["idle_ms"] == pytest.approx(ps["span_ms"] - ps["busy_ms"], abs=2e-3)
    # Every top kernel is mapped to an instruction of the step's optimized HLO and its result shape.
    assert all(t["shape"] != "?" and "[" in t["shape"] for t in ps["top"]), ps["top"]
    assert all(t["gb_per_s"] > 0 for t in ps["top"] if "gb_per_s" in t) and any("gb_per_s" in t for t in ps["top"])
    # The same trace against a card's floors (CPU kernels at H100 rates: only the matching is checked here):
    # every kernel is either matched to a roofline kernel or counted as unmatched.
    hlo = (tmp_path / "trace" / "step.hlo.txt").read_text()
    f = profile_summary.summarize(str(tmp_path / "trace"), steps=3, hlo_text=hlo, card=roofline.H100_SXM)["floor"]
    assert f["measured_ms"] > 0 and f["floor_ms"] > 0 and f["gaps"]
    assert f["measured_ms"] + f["unmatched_ms"] == pytest.approx(ps["total_ms"], abs=1e-2)


def test_profile_kernels_against_their_floors_by_hand(capsys):
  """profile_summary's floor table: each profiled kernel matched to its roofline kernel by instance name,
  its floor × calls summed, gaps (measured − floor) grouped and largest first; kernels the HLO does not
  name (a command buffer's) counted apart. XLA's H100 program of tests/data/h100_fixture.hlo (a GEMM, cuDNN
  attention, a 5-step scan), with two steps of events made up around its floors."""
  text = open(os.path.join(os.path.dirname(__file__), "data", "h100_fixture.hlo")).read()
  card = roofline.H100_SXM
  by = {k.name: k for k in roofline.kernels(text, card)}
  gemm, body = by["custom-call.1"], by["loop_add_fusion"]
  events = []
  for _ in range(2):  # per step: the GEMM at 3× its floor, the scan body's 5 launches at theirs, 1 µs unnamed
    events.append(("sm90_xmma_gemm", "custom-call.1", 0.0, 3 * gemm.time_s * 1e9))
    events += [("loop_add_fusion", "loop_add_fusion", 0.0, body.time_s * 1e9)] * 5
    events.append(("command_buffer_kernel", "command_buffer.3", 0.0, 1000.0))
  s = profile_summary.summarize_events(events, "device: test", steps=2, hlo_text=text, card=card)
  f = s["floor"]
  assert f["card"] == "H100 SXM"
  assert f["measured_ms"] == pytest.approx(1e3 * (3 * gemm.time_s + 5 * body.time_s), abs=1e-6)
  assert f["floor_ms"] == pytest.approx(1e3 * (gemm.time_s + 5 * body.time_s), abs=1e-6)
  assert f["unmatched_ms"] == pytest.approx(1e-3)
  first, second = f["gaps"][:2]
  assert (first["category"], first["count"]) == ("gemm", 1)
  assert first["gap_ms"] == pytest.approx(2e3 * gemm.time_s, abs=1e-6)
  assert (second["category"], second["count"], second["gap_ms"]) == ("elementwise", 5, pytest.approx(0.0, abs=1e-6))
  print(profile_summary.format_summary(s))
  assert "against the H100 SXM roofline" in capsys.readouterr().out
  assert "floor" not in profile_summary.summarize_events(events, "device: test", steps=2, hlo_text=text)
  assert roofline.card_for("NVIDIA H100 80GB HBM3") is roofline.H100_SXM
  assert roofline.card_for("NVIDIA H200") is roofline.H200_SXM and roofline.card_for("cpu") is None
  assert roofline.card_for("NVIDIA H100 PCIe") is None and roofline.card_for("NVIDIA H200 NVL") is None


@pytest.mark.parametrize("pack", [False, True])
def test_bench_times_the_trainers_own_step(pack):
  """The bench's UL2 row and `paperjax.main --config=configs/ul2.py` with the same shape, batch and
  optimizer lower to the same program, text for text: what the bench times is the trainer's step
  (its loss, metrics, optimizer, shardings), not a benchmark model. A change to either path that
  the other does not make fails here. Packed: the bench's packed rows and `data.pack=True`."""
  import importlib
  from paperjax.launch import preflight
  ul2 = importlib.import_module("configs.ul2")
  shape = bench.SHAPES["tiny_encdec"]
  c = ul2.get_config("tiny")
  c.model.update({k: shape[k] for k in ("d_model", "num_heads", "head_dim", "d_ff", "num_layers",
                                        "num_encoder_layers", "tie_embeddings")},
                 dtype="bfloat16", padding_as_lengths=True, loss_chunk=96)
  c.data.update(vocab_size=shape["vocab_size"], raw_length=shape["raw_length"], batch_size=8)
  c.ul2.update(inputs_length=shape["lengths"]["inputs"], targets_length=shape["lengths"]["targets"])
  # The UL2 presets' own Adafactor (the bench's --optimizer=adafactor copies it: the bench cannot
  # import ml_collections), over the bench's schedule: 100 warm-up steps of 10,000.
  base = ul2.get_config("base").optimizer
  c.optimizer.update({k: base[k] for k in ("name", "lr", "schedule", "clip_norm", "weight_decay")}, warmup_steps=100)
  c.train.steps = 10_000
  c.data.pack = pack
  trainer, _ = preflight.lower_step(c, "local")
  timed = bench.lower(bench.parse_args(["--shape=tiny_encdec", "--batch=8", "--padding_lengths", "--loss_chunk=96",
                                        "--optimizer=adafactor", "--dtype=bfloat16",
                                        "--data=" + ("ul2_packed_resident" if pack else "ul2_resident")]))
  a, b = trainer.as_text().splitlines(), timed.as_text().splitlines()
  diff = [(i, x, y) for i, (x, y) in enumerate(zip(a, b)) if x != y]
  assert len(a) == len(b) and not diff, (len(a), len(b), [(i, x[:200], y[:200]) for i, x, y in diff[:3]])
  # And the comparison can fail: another batch size is another program.
  c.data.batch_size = 16
  assert preflight.lower_step(c, "local")[0].as_text() != timed.as_text()


def test_bench_runs_without_grain_tfds_or_ml_collections():
  """The GPU image has jax, flax, optax, orbax and chex only: the bench's synthetic and in-loop UL2
  rows must run with grain, tensorflow_datasets and ml_collections unimportable."""
  from tests.conftest import run_python
  code = """
import sys
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("grain", "tensorflow_datasets", "ml_collections", "tensorflow"):
      raise ImportError(f"{name} is not on the GPU image")
sys.meta_path.insert(0, Block())
from paperjax import bench
for data in ("synthetic", "ul2"):
  shape = "tiny" if data == "synthetic" else "tiny_encdec"
  r = bench.run(bench.parse_args([f"--shape={shape}", f"--data={data}", "--steps=2", "--warmup=1"]))
  assert r["ms_per_step"] > 0
print("ok")
"""
  out = run_python(code)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_hlo_shapes_from_module_text():
  text = """HloModule jit_step, entry_computation_layout={(f32[4]{0})->f32[4]{0}}

fused_computation.3 {
  param_0 = f32[32,1024,768]{2,1,0} parameter(0)
  ROOT convert.1 = bf16[32,1024,768]{2,1,0} convert(param_0)
}

ENTRY main {
  %p = f32[32,1024,768]{2,1,0} parameter(0)
  loop_convert_fusion.12 = bf16[32,1024,768]{2,1,0} fusion(%p), kind=kLoop, calls=fused_computation.3
  ROOT input_reduce_fusion = (f32[32]{0}, bf16[32,768]{1,0}) fusion(loop_convert_fusion.12), kind=kInput
}
"""
  got = profile_summary.hlo_shapes(text)
  assert got["loop_convert_fusion.12"] == "bf16[32,1024,768]"
  assert got["convert.1"] == "bf16[32,1024,768]" and got["p"] == "f32[32,1024,768]"
  assert got["input_reduce_fusion"] == "(f32[32], bf16[32,768])"
  instrs = profile_summary.hlo_instructions(text)
  assert instrs["loop_convert_fusion.12"] == ("bf16[32,1024,768]", ("p",))
  assert instrs["input_reduce_fusion"][1] == ("loop_convert_fusion.12",)
  assert profile_summary.shape_bytes("bf16[32,1024,768]") == 2 * 32 * 1024 * 768
  assert profile_summary.shape_bytes("(f32[32], bf16[32,768])") == 4 * 32 + 2 * 32 * 768
  assert profile_summary.shape_bytes("f32[]") == 4  # a scalar


def test_top_kernel_bandwidth_is_operand_and_result_bytes_over_time_per_call():
  text = """ENTRY main {
  %p = f32[1000]{0} parameter(0)
  %loop_convert_fusion.1 = bf16[1000]{0} fusion(%p), kind=kLoop, calls=%c
}
"""
  # Two calls of 6,000 bytes each (4,000 read + 2,000 written), 2 µs and 4 µs: 6,000 B / 3,000 ns = 2 GB/s.
  per_instance = {("loop_convert_fusion", "loop_convert_fusion.1"): [6000.0, 2]}
  row = profile_summary._top_row("loop_convert_fusion", [6000.0, 2, "elementwise"], per_instance,
                                 profile_summary.hlo_instructions(text), lambda ns: ns / 1e6, 1)
  assert row["bytes"] == 6000 and row["gb_per_s"] == pytest.approx(2.0)


def test_top_gemm_row_reports_its_rate_from_the_hlo_flops():
  # the committed H100 program (tests/data/h100_fixture.hlo): custom-call.1 is a bf16
  # [256,512] @ [512,1024] GEMM, 2·256·1024·512 FLOPs a call; two calls of 2 µs -> 134.2 TFLOP/s
  from paperjax import roofline
  text = open(os.path.join(os.path.dirname(__file__), "data", "h100_fixture.hlo")).read()
  flops = {k.name: k.flops for k in roofline.kernels(text) if k.flops}
  assert flops["custom-call.1"] == 2 * 256 * 1024 * 512
  per_instance = {("nvjet_gemm", "custom-call.1"): [4000.0, 2]}
  row = profile_summary._top_row("nvjet_gemm", [4000.0, 2, "gemm"], per_instance,
                                 profile_summary.hlo_instructions(text), lambda ns: ns / 1e6, 1, flops)
  assert row["tflops_per_s"] == pytest.approx(2 * 256 * 1024 * 512 / 2000 / 1e3)
  assert "TFLOP/s" in profile_summary.format_summary(dict(
      source="x", steps=1, total_ms=1, span_ms=1, busy_ms=1, idle_ms=0, categories={}, top=[row]))


def test_profile_busy_time_is_the_union_of_kernel_intervals():
  from paperjax import profile_summary
  # [0,4) and [2,5) overlap on two streams → [0,5); [7,8) alone; [7.5,7.8) inside it.
  assert profile_summary.union_ns([(7, 8), (0, 4), (2, 5), (7.5, 7.8)]) == 6
  assert profile_summary.union_ns([]) == 0


@pytest.mark.parametrize("kernel,op,want", [
    ("nvjet_tst_128x256_64x4_2x1_v_bz_coopA_TNN", "custom-call.12", "gemm"),       # cuBLAS 12.9+ (Hopper)
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64", "cublas-gemm.3", "gemm"),
    ("triton_gemm_dot_5", "fusion.41", "gemm"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3", "custom-call.7", "attention"),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL", "all-reduce-start.2", "collective"),
    ("loop_transpose_fusion_3", "transpose_fusion.3", "copy"),
    ("input_reduce_fusion_12", "fusion.88", "reduce"),
    ("loop_multiply_fusion_7", "multiply_fusion.7", "elementwise"),
    ("rng_bit_generator", "rng-bit-generator.1", "other"),
])
def test_profile_categories(kernel, op, want):
  from paperjax import profile_summary
  assert profile_summary.category(kernel, op) == want


def test_fused_cross_entropy_matches_full_logits():
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  h, w = jax.random.normal(k[0], (3, 13, 16)), jax.random.normal(k[1], (53, 16))
  t = jax.random.randint(k[2], (3, 13), 0, 53)
  m = (jax.random.uniform(k[3], (3, 13)) > 0.3).astype(jnp.int32)

  def full(h, w):
    s, n, _ = losses.token_cross_entropy(jnp.einsum("bld,vd->blv", h, w), t, m, 1e-3)
    return s / n

  def fused(h, w):  # 39 rows in chunks of 8: the last chunk is padded
    s, n = losses.fused_linear_cross_entropy(h, w, t, m, 8, 1e-3)
    return s / n

  vg = lambda f: jax.jit(jax.value_and_grad(f, (0, 1)))(h, w)
  (l0, g0), (l1, g1) = vg(full), vg(fused)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(g1, g0):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_padding_as_lengths_same_loss_and_grads():
  cfg = _tiny_cfg("tiny_encdec")
  rng = np.random.default_rng(0)
  lengths = rng.integers(3, 64, size=4)
  inputs = np.where(np.arange(64) < lengths[:, None], rng.integers(2, 512, size=(4, 64)), 0).astype(np.int32)
  batch = {"inputs": inputs, "targets": rng.integers(2, 512, size=(4, 32)).astype(np.int32),
           "targets_mask": np.ones((4, 32), np.int32)}
  model = T.Transformer(cfg)
  params = jax.jit(lambda r: nn.meta.unbox(lm.init(model, r, batch)))(jax.random.PRNGKey(1))
  with_lengths = T.Transformer(T.TransformerConfig(**{**cfg.__dict__, "padding_as_lengths": True}))
  vg = lambda mdl: jax.value_and_grad(lambda p: lm.loss_sums(mdl, p, batch)[0])(params)
  (l0, g0), (l1, g1) = jax.jit(lambda: (vg(model), vg(with_lengths)))()
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_xla_flag_sets(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
  flags = xla_flags.apply("tuned")
  assert flags.startswith("--xla_dump_to=/tmp/x") and "--xla_gpu_enable_triton_gemm=false" in flags
  assert xla_flags.apply("tuned") == flags  # idempotent
  with pytest.raises(ValueError, match="Unknown XLA flag set"):
    xla_flags.apply("fast")
  assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"]


@pytest.mark.parametrize("name", [n for n, flags in xla_flags.FLAG_SETS.items() if flags])
def test_xla_flag_set_parses_on_this_jaxlib(name):
  # An unknown flag aborts the backend at start, so each set must parse on the jaxlib we test with
  # (XLA registers its GPU flags on every backend, so a CPU process checks them too).
  import subprocess
  import sys
  env = dict(os.environ, XLA_FLAGS=" ".join(xla_flags.FLAG_SETS[name]), JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
                       env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-500:]


def test_bench_bad_input_is_one_sentence(capsys):
  with pytest.raises(SystemExit) as e:
    bench.main(["--shape=tiny", "--data=ul2"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err == ("paperjax: error: --data=ul2 needs an encoder-decoder or prefix-LM shape; 'decoder' has no "
                 "inputs. Use --shape=t5_base_ul2 or tiny_encdec.")


def test_bench_mem_fraction_out_of_range_is_one_sentence(monkeypatch, capsys):
  monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
  with pytest.raises(SystemExit) as e:
    bench.main(["--shape=tiny", "--mem_fraction=1.5"])
  assert e.value.code == 2 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ
  assert capsys.readouterr().err.strip() == ("paperjax: error: --mem_fraction=1.5 is not a share of the GPU's memory; "
                                             "pass a number in (0, 1].")
  with pytest.raises(SystemExit) as e:  # where it would do nothing, it says so instead of being ignored
    bench.main(["--shape=tiny", "--mem_fraction=0.5", "--target=h100"])
  assert e.value.code == 2 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ
  assert "--mem_fraction sets the allocator of a timed run" in capsys.readouterr().err


def test_positions_print_the_first_calls_then_the_mean_of_the_rest():
  assert bench._positions({"call_ms_by_position": [0.5, 240.0, 246.0, 246.0, 246.0, 250.0, 244.0]}) == (
      " (by position: 0.5 240.0 246.0 246.0 246.0 … rest 247.0)")
  assert bench._positions({"call_ms_by_position": [1.0, 2.0]}) == " (by position: 1.0 2.0)"
  assert bench._positions({}) == ""


def test_check_packing_compares_packed_and_one_per_row_with_a_dense_mask_reference(tmp_path, capsys):
  # (the packing iterator is the one bench's ul2_packed_* sources and the trainer read; timing a
  # source is test_bench_runs_the_step's business)
  cfg, _ = bench.model_config(bench.parse_args(["--shape=tiny_encdec", "--layers=2"]))
  assert cfg.num_layers == cfg.num_encoder_layers == 2  # --layers deepens both stacks (the shape has 1)
  c = bench.check_packing(bench.parse_args(["--shape=tiny_encdec", "--batch=32", "--dtype=float32",
                                            "--json=" + str(tmp_path / "c.jsonl")]))
  assert c["ok"] and c["examples"] > 32 and c["loss_rel"] < 1e-4, c
  assert c["packed"]["target_tokens"] == c["one_per_row"]["target_tokens"] == c["reference"]["target_tokens"]
  assert "EQUAL" in capsys.readouterr().out


def test_check_xent_passes_the_kernel_and_catches_a_wrong_one(tmp_path, capsys, monkeypatch):
  """`--check_xent` on CPU (the kernel's interpreter): two settings equal to XLA's passes (one with spare
  steps: 64 rows over 3 programs); a kernel whose gradient is 2% off is caught (exit 1); a bad setting is
  recorded as failed while the others run."""
  argv = ["--check_xent", "--shape=tiny", "--loss_chunk=64", "--steps=1", "--xent_tiles=128,8,4;256,3,8",
          "--json=" + str(tmp_path / "x.jsonl")]
  c = bench.check_xent(bench.parse_args(argv))
  assert c["ok"] and (c["rows"], c["vocab"]) == (64, 512) and set(c["xent_cases"]) == {
      "xla", "pallas[128,8,4]", "pallas[256,3,8]"}, c
  assert "EQUAL to XLA's" in capsys.readouterr().out
  from paperjax.models import fused_xent
  good = fused_xent._pallas
  monkeypatch.setattr(fused_xent, "_pallas", lambda *a, **k: (lambda l, t, d: (l, t, d * 1.02))(*good(*a, **k)))
  with pytest.raises(SystemExit):
    bench.main(argv)
  assert "DIFFERENT" in capsys.readouterr().out
  monkeypatch.setattr(fused_xent, "_pallas", good)
  c = bench.check_xent(bench.parse_args(argv[:-2] + ["--xent_tiles=128,8,4;100,1,1"]))
  assert not c["ok"] and "powers of two" in c["xent_cases"]["pallas[100,1,1]"]["error"]
  assert c["xent_cases"]["pallas[128,8,4]"]["equal"]


def test_check_mlp_passes_the_kernels_and_catches_a_wrong_gradient(tmp_path, capsys, monkeypatch):
  """`--check_mlp` on CPU (the kernels' interpreters): each tile setting within XLA's bf16 error (Triton's
  and Mosaic GPU's), a backward kernel whose dh is 2% off is caught, and a setting that fails to build
  is recorded as failed while the others still run."""
  argv = ["--check_mlp", "--shape=tiny", "--batch=2", "--dtype=bfloat16", "--steps=1",
          "--mlp_tiles=16,16,16,4,2;32,32,32,4,2;mgpu:64,64,64,2",
          "--json=" + str(tmp_path / "m.jsonl")]
  c = bench.check_mlp(bench.parse_args(argv))
  assert c["ok"] and c["rows"] == 64 and set(c["mlp_cases"]) == {
      "xla", "pallas[16,16,16,4,2]", "pallas[32,32,32,4,2]", "pallas[mgpu:64,64,64,2]"}
  assert all(v["dx"] < 2e-2 for v in c["mlp_cases"].values()), c
  assert "WITHIN" in capsys.readouterr().out
  from paperjax.models import fused_mlp
  down = fused_mlp.down_bwd
  monkeypatch.setattr(fused_mlp, "down_bwd", lambda *a: down(*a) * 1.02)
  c = bench.check_mlp(bench.parse_args(argv))
  assert not c["ok"] and "ABOVE" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    bench.main(argv)
  monkeypatch.setattr(fused_mlp, "down_bwd", down)
  capsys.readouterr()

  def broken(*a):
    raise ValueError("Mosaic GPU kernel exceeds available shared memory")
  monkeypatch.setattr(fused_mlp, "_up_mgpu", broken)
  c = bench.check_mlp(bench.parse_args(argv))
  assert not c["ok"] and "shared memory" in c["mlp_cases"]["pallas[mgpu:64,64,64,2]"]["error"]
  out = capsys.readouterr().out
  assert c["mlp_cases"]["pallas[32,32,32,4,2]"]["dx"] < 2e-2 and "FAILED: a setting did not run" in out and "ABOVE" not in out


def test_classify_rows_says_zero_finite_or_nan_by_hand():
  x = np.zeros((2, 3, 1), np.float32)
  rows = np.array([[False, True, True], [False, False, True]])
  assert bench.classify_rows(x, rows) == "zero"
  x[1, 2] = 0.5
  assert bench.classify_rows(x, rows) == "finite"
  x[0, 1] = np.nan
  assert bench.classify_rows(x, rows) == "nan"
  assert bench.classify_rows(x, np.zeros_like(rows)) == "zero"  # no rows: nothing found


def test_check_unwritten_is_clean_on_xla_and_catches_a_path_that_leaves_rows_unwritten(monkeypatch, capsys):
  args = bench.parse_args(["--shape=tiny_encdec", "--dtype=float32", "--check_unwritten"])
  c = bench.check_unwritten(args)
  assert c["ok"] and set(c["cases"]) == {"lengths", "lengths_causal"}, c
  assert all(v["dk"] == v["dv"] == v["dq"] == "zero" for v in c["cases"].values())
  real = bench.unwritten_cases

  def leaky(cfg, length, batch, dtype, seed=0):  # what an attention that skips the padding would hand back
    inputs, rows, cases = real(cfg, length, batch, dtype, seed)
    pad = jnp.asarray(~rows)[:, :, None, None]
    fn = cases["lengths"]
    cases["lengths"] = jax.jit(lambda *a: tuple(jnp.where(pad, jnp.nan, r) for r in fn(*a)))
    return inputs, rows, cases
  monkeypatch.setattr(bench, "unwritten_cases", leaky)
  with pytest.raises(SystemExit) as e:
    bench.main(["--shape=tiny_encdec", "--dtype=float32", "--check_unwritten"])
  assert e.value.code == 1
  out = capsys.readouterr().out
  assert "lengths            out nan    dq nan    dk nan    dv nan    NOT CLEAN" in out
  assert "a model path leaks into the gradients" in out
