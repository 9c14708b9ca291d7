"""paperjax.roofline: kernels, bytes and FLOPs read from compiled HLO, checked by hand.

tests/data/h100_fixture.hlo is XLA's H100 program (compiled deviceless by
tests/data/make_h100_fixture.py, metadata stripped) of: a bf16 [256,512]@[512,1024] GEMM followed by a tanh, cuDNN
causal flash attention forward and backward on [2,128,4,64], and a 5-step scan that adds one
4096-float row of an [8,4096] table per step."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from paperjax import bench, metrics, roofline
from tests.conftest import needs_cuda_plugin

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "h100_fixture.hlo")


def _by_name(ks):
  return {k.name: k for k in ks}


def test_h100_program_kernels_by_hand():
  card = roofline.H100_SXM
  ks = roofline.kernels(open(FIXTURE).read(), card)
  by = _by_name(ks)
  gemm = by["custom-call.1"]  # cuBLAS: x [256,512] bf16 @ w [512,1024] bf16 -> [256,1024] bf16 (+ workspace, not traffic)
  assert gemm.category == "gemm" and gemm.flops == 2 * 256 * 1024 * 512
  assert gemm.bytes == 2 * (256 * 512 + 512 * 1024 + 256 * 1024)
  fwd, bwd = by["dot_product_attention_fwd.5"], by["dot_product_attention_bwd.8"]
  causal_fwd = 4 * 2 * 4 * 128 * 128 * 64 / 2  # two matmuls of B·H·T·S·K, half of them masked
  assert fwd.category == "attention_fwd" and fwd.flops == causal_fwd and fwd.head_dim == 64
  assert bwd.category == "attention_bwd" and bwd.flops == 2.5 * causal_fwd
  assert fwd.bytes == 2 * 3 * 65536 + 2 * 65536 + 4 * 2 * 4 * 128  # q, k, v in; out and the f32 log-sum-exp
  step = by["loop_add_fusion"]  # the scan body: reads one table row (not the table) and the carry, writes the carry
  assert step.count == 5 and step.category == "elementwise"
  assert 3 * 4096 * 4 <= step.bytes <= 3 * 4096 * 4 + 16
  for k in ks:  # each kernel at its floor: the slower of its traffic and its arithmetic, plus a launch
    rate = {"gemm": card.gemm_flops, "attention_fwd": card.attention_rate(64, False),
            "attention_bwd": card.attention_rate(64, True)}.get(k.category)
    want = max(k.bytes / card.bandwidth, k.flops / rate if rate else 0.0) + card.launch_s
    assert k.time_s == pytest.approx(want)
  s = roofline.summary(ks)
  assert s["total_ms"] == pytest.approx(1e3 * sum(k.time_s * k.count for k in ks), abs=1e-3)
  assert s["categories"]["gemm"]["tflop"] == pytest.approx(gemm.flops / 1e12, abs=1e-3)


def test_our_pallas_gemms_are_priced_as_gemms_by_their_name():
  """A Triton custom call named in `roofline.PALLAS_GEMMS` (models/fused_mlp.py's kernels) is a GEMM with
  its FLOPs from its shapes (up: 2·N·D·2F; dgrad: 2·N·D·F); any other Pallas kernel stays memory-bound.
  The lines are XLA's own (the H100 program of `fused_mlp.mlp`, deviceless), the kernels' IR cut out."""
  call = ('  %{name} = {res} custom-call({ops}), custom_call_target="__gpu$xla.gpu.triton", '
          'api_version=API_VERSION_TYPED_FFI, backend_config={{debug = false, grid_x = 16 : i32, grid_y = 1 : i32, '
          'grid_z = 1 : i32, ir = "...", name = "{kernel}", num_stages = 3 : i32, num_warps = 8 : i32}}')
  text = "\n".join([
      "HloModule m", "",
      "ENTRY %main (x: bf16[4096,256], w: bf16[256,1024], wo: bf16[512,256], s: f32[256]) -> bf16[4096,1024] {",
      "  %x = bf16[4096,256]{1,0} parameter(0)", "  %w = bf16[256,1024]{1,0} parameter(1)",
      "  %wo = bf16[512,256]{1,0} parameter(2)", "  %s = f32[256]{0} parameter(3)",
      call.format(name="up", res="(bf16[4096,1024]{1,0}, bf16[4096,512]{1,0})", ops="%x, %w", kernel="gated_mlp_up_gemm"),
      call.format(name="h", res="bf16[4096,1024]{1,0}", ops="%x, %wo, %x", kernel="gated_mlp_dgrad_gemm"),
      call.format(name="norm", res="bf16[4096,256]{1,0}", ops="%x, %x, %s", kernel="add_rmsnorm_fwd"),
      "  ROOT %r = bf16[4096,1024]{1,0} copy(%h)", "}"])
  by = _by_name(roofline.kernels(text))
  assert (by["up"].category, by["up"].flops) == ("gemm", 2.0 * 4096 * 256 * 1024)
  assert (by["h"].category, by["h"].flops) == ("gemm", 2.0 * 4096 * 256 * 512)
  assert (by["norm"].category, by["norm"].flops) == ("pallas", 0.0)
  assert by["up"].bytes == 2 * (4096 * 256 + 256 * 1024 + 4096 * 1024 + 4096 * 512)  # operands read, results written


def test_a_cublas_gemm_inside_a_dynamic_slice_fusion_is_a_gemm():
  """XLA's dynamic-slice fusion: a cuBLAS call reading its operand straight from a scan's stacked input
  (the fused cross-entropy's chunk loop: logits = h_c·Wᵀ, then dW += dlogitsᵀ·h_c in place). Each is
  the GEMM it wraps: 2·|out|·K FLOPs, h read by its slice, the workspace not traffic. The lines are
  XLA's own (GPT-2's H100 program, deviceless), shapes shrunk and attributes cut. Until 2026-11-29 the
  roofline took these for element-wise fusions: GPT-2's floor was 4 ms short, the 1B's 14 ms."""
  gemm = ('custom_call_target="__cublas$lt$matmul", {alias}backend_config={{"gemm_backend_config":{{"alpha_real":1,'
          '"beta":{beta},"dot_dimension_numbers":{{"lhs_contracting_dimensions":["{c}"],"rhs_contracting_dimensions":'
          '["{c}"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}}}}')
  custom = (', kind=kCustom, calls=%{calls}, backend_config={{"fusion_backend_config":{{"kind":"__custom_fusion",'
            '"custom_fusion_config":{{"name":"dynamic_slice_fusion","kernel_index":0}}}}}}')
  text = "\n".join([
      "HloModule m", "",
      "%dynamic-slice-fusion (p0: bf16[4,64,32], p1: s32[], p2: bf16[100,32]) -> (bf16[64,100], s8[1024]) {",
      "  %p0 = bf16[4,64,32]{2,1,0} parameter(0)", "  %p1 = s32[] parameter(1)", "  %c = s32[] constant(0)",
      "  %ds = bf16[1,64,32]{2,1,0} dynamic-slice(%p0, %p1, %c, %c), dynamic_slice_sizes={1,64,32}",
      "  %b = bf16[64,32]{1,0} bitcast(%ds)", "  %p2 = bf16[100,32]{1,0} parameter(2)",
      "  ROOT %cc = (bf16[64,100]{1,0}, s8[1024]{0}) custom-call(%b, %p2), "
      + 'metadata={op_name="jit(step)/jvp()/while/body/cd,vd->cv/dot_general"}, ' + gemm.format(alias="", beta=0, c=1),
      "}", "",
      "%dynamic-slice-fusion.1 (p0.1: bf16[4,64,32], p1.1: s32[], p2.1: bf16[64,100], p3: f32[100,32]) -> (f32[100,32], s8[1024]) {",
      "  %p2.1 = bf16[64,100]{1,0} parameter(2)", "  %p0.1 = bf16[4,64,32]{2,1,0} parameter(0)",
      "  %p1.1 = s32[] parameter(1)", "  %c.1 = s32[] constant(0)",
      "  %ds.1 = bf16[1,64,32]{2,1,0} dynamic-slice(%p0.1, %p1.1, %c.1, %c.1), dynamic_slice_sizes={1,64,32}",
      "  %b.1 = bf16[64,32]{1,0} bitcast(%ds.1)", "  %p3 = f32[100,32]{1,0} parameter(3)",
      "  ROOT %cc.1 = (f32[100,32]{1,0}, s8[1024]{0}) custom-call(%p2.1, %b.1, %p3), "
      + gemm.format(alias="output_to_operand_aliasing={{0}: (2, {})}, ", beta=1, c=0),
      "}", "",
      "ENTRY %main (h: bf16[4,64,32], i: s32[], w: bf16[100,32], d: bf16[64,100], a: f32[100,32]) -> f32[100,32] {",
      "  %h = bf16[4,64,32]{2,1,0} parameter(0)", "  %i = s32[] parameter(1)", "  %w = bf16[100,32]{1,0} parameter(2)",
      "  %d = bf16[64,100]{1,0} parameter(3)", "  %a = f32[100,32]{1,0} parameter(4)",
      "  %logits = (bf16[64,100]{1,0}, s8[1024]{0}) fusion(%h, %i, %w)" + custom.format(calls="dynamic-slice-fusion"),
      "  %dw = (f32[100,32]{1,0}, s8[1024]{0}) fusion(%h, %i, %d, %a)" + custom.format(calls="dynamic-slice-fusion.1"),
      "  ROOT %r = f32[100,32]{1,0} get-tuple-element(%dw), index=0", "}"])
  by = _by_name(roofline.kernels(text))
  assert (by["logits"].category, by["logits"].flops) == ("gemm", 2.0 * 64 * 100 * 32)
  assert by["logits"].bytes == 2 * (64 * 32 + 100 * 32) + 4 + 2 * 64 * 100  # h's chunk, W, the index; logits
  assert (by["dw"].category, by["dw"].flops) == ("gemm", 2.0 * 100 * 32 * 64)  # K = the chunk's 64 rows
  assert by["dw"].bytes == 2 * 64 * 32 + 4 + 2 * 64 * 100 + 2 * 4 * 100 * 32  # + the f32 sum, read and written
  # The fusion carries no op name of its own: it is named by its GEMM's, so the step's phases count it
  assert by["logits"].op_name == "jit(step)/jvp()/while/body/cd,vd->cv/dot_general"
  assert roofline.phase(by["logits"].op_name) == "forward" and by["dw"].op_name == ""


def test_a_scanned_layers_stacking_is_priced_by_its_slice():
  """A scanned stack's loop writes each layer's saved activations into [layers, ...] buffers in place:
  XLA's dynamic-slice fusion of a GEMM whose result is the update (root a tuple: the buffer and cuBLAS's
  workspace), and an async `fusion-start` (type ((operands), result, context)) around a plain
  dynamic-update-slice fusion, its `fusion-done` no kernel. Each is priced by the slice it writes, not
  the buffer. The lines are XLA's own (a scanned T5's H100 program, deviceless), shapes shrunk. Until
  2026-11-29 the roofline priced each as the whole buffer: a scanned T5-base floor read 1005 ms, not 340."""
  gemm = ('custom_call_target="__cublas$lt$matmul", backend_config={"gemm_backend_config":{"alpha_real":1,"beta":0,'
          '"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["0"],'
          '"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}')
  text = "\n".join([
      "HloModule m", "",
      "%region (p0: bf16[64,32], p1: bf16[32,48], p2: bf16[6,64,48], p3: s32[]) -> (bf16[6,64,48], s8[1024]) {",
      "  %p2 = bf16[6,64,48]{2,1,0} parameter(2)", "  %p0 = bf16[64,32]{1,0} parameter(0)",
      "  %p1 = bf16[32,48]{1,0} parameter(1)",
      "  %cc = (bf16[64,48]{1,0}, s8[1024]{0}) custom-call(%p0, %p1), " + gemm,
      "  %g = bf16[64,48]{1,0} get-tuple-element(%cc), index=0", "  %b = bf16[1,64,48]{2,1,0} bitcast(%g)",
      "  %p3 = s32[] parameter(3)", "  %c = s32[] constant(0)",
      "  %dus = bf16[6,64,48]{2,1,0} dynamic-update-slice(%p2, %b, %p3, %c, %c)",
      "  %ws = s8[1024]{0} get-tuple-element(%cc), index=1",
      "  ROOT %t = (bf16[6,64,48]{2,1,0}, s8[1024]{0}) tuple(%dus, %ws)", "}", "",
      "%stack (q0: bf16[6,64,48], q1: s32[], q2: bf16[64,48]) -> bf16[6,64,48] {",
      "  %q0 = bf16[6,64,48]{2,1,0} parameter(0)", "  %q2 = bf16[64,48]{1,0} parameter(2)",
      "  %bb = bf16[1,64,48]{2,1,0} bitcast(%q2)", "  %q1 = s32[] parameter(1)", "  %z = s32[] constant(0)",
      "  ROOT %d2 = bf16[6,64,48]{2,1,0} dynamic-update-slice(%q0, %bb, %q1, %z, %z)", "}", "",
      "ENTRY %main (x: bf16[64,32], w: bf16[32,48], buf: bf16[6,64,48], i: s32[], y: bf16[64,48]) -> bf16[6,64,48] {",
      "  %x = bf16[64,32]{1,0} parameter(0)", "  %w = bf16[32,48]{1,0} parameter(1)",
      "  %buf = bf16[6,64,48]{2,1,0} parameter(2)", "  %i = s32[] parameter(3)", "  %y = bf16[64,48]{1,0} parameter(4)",
      '  %proj = (bf16[6,64,48]{2,1,0}, s8[1024]{0}) fusion(%x, %w, %buf, %i), kind=kCustom, calls=%region, '
      'backend_config={"fusion_backend_config":{"kind":"__custom_fusion","custom_fusion_config":'
      '{"name":"dynamic_slice_fusion","kernel_index":0}}}',
      "  %stacked = bf16[6,64,48]{2,1,0} get-tuple-element(%proj), index=0",
      "  %start = ((bf16[6,64,48]{2,1,0}, s32[], bf16[64,48]{1,0}), bf16[6,64,48]{2,1,0}, u32[]) "
      "fusion-start(%stacked, %i, %y), kind=kLoop, calls=%stack",
      "  ROOT %done = bf16[6,64,48]{2,1,0} fusion-done(%start)", "}"])
  ks = roofline.kernels(text)
  by = _by_name(ks)
  assert sorted(by) == ["proj", "start"]  # fusion-done is the same kernel's end
  assert (by["proj"].category, by["proj"].flops) == ("gemm", 2.0 * 64 * 48 * 32)
  assert by["proj"].bytes == 2 * (64 * 32 + 32 * 48) + 4 + 2 * 64 * 48  # x, W, the index; one layer's slice
  assert by["start"].category == "copy" and by["start"].result == "bf16[6,64,48]{2,1,0}"
  assert by["start"].bytes == 4 + 2 * 64 * 48 + 2 * 64 * 48  # the index and the update read; the update written


def test_cpu_program_dot_and_slice_by_hand():
  f = lambda a, b, t: (jnp.tanh(a @ b) + 1.0, jax.lax.dynamic_slice_in_dim(t, 3, 2).sum())
  text = jax.jit(f).lower(jnp.ones((64, 32)), jnp.ones((32, 16)), jnp.ones((100, 50))).compile().as_text()
  ks = roofline.kernels(text)
  gemms = [k for k in ks if k.category == "gemm"]
  assert len(gemms) == 1 and gemms[0].flops == 2 * 64 * 16 * 32
  assert sum(k.flops for k in ks) == 2 * 64 * 16 * 32
  # the 100×50 table is read only where sliced (by a fusion, or by an unfused slice): no kernel is charged for all of it
  assert max(k.bytes for k in ks if k.category != "gemm") < 100 * 50 * 4


def test_unfused_slices_read_their_slice():
  """XLA's CPU compiler leaves a slice unfused when its fusion emitters are off (the suite's quick flags): a
  slice reads and writes its result; a dynamic one reads its offsets too; a bare reduce-window is a reduction."""
  text = "\n".join([
      "HloModule m", "",
      "region (a: f32[], b: f32[]) -> f32[] {", "  %a = f32[] parameter(0)", "  %b = f32[] parameter(1)",
      "  ROOT %s = f32[] add(%a, %b)", "}", "",
      "ENTRY main (t: f32[100,50], i: s32[]) -> (f32[2,50], f32[3,50], f32[1,2]) {",
      "  %t = f32[100,50]{1,0} parameter(0)", "  %i = s32[] parameter(1)", "  %z = s32[] constant(0)",
      "  %sl = f32[2,50]{1,0} slice(%t), slice={[3:5], [0:50]}",
      "  %ds = f32[3,50]{1,0} dynamic-slice(%t, %i, %z), dynamic_slice_sizes={3,50}",
      "  %zero = f32[] constant(0)",
      "  %rw = f32[1,2]{1,0} reduce-window(%sl, %zero), window={size=2x25 stride=2x25}, to_apply=%region",
      "  ROOT %out = (f32[2,50]{1,0}, f32[3,50]{1,0}, f32[1,2]{1,0}) tuple(%sl, %ds, %rw)", "}"])
  by = _by_name(roofline.kernels(text))
  assert sorted(by) == ["ds", "rw", "sl"]
  assert (by["sl"].category, by["sl"].bytes) == ("copy", 2 * 4 * 2 * 50)
  assert (by["ds"].category, by["ds"].bytes) == ("copy", 2 * 4 * 3 * 50 + 4 + 4)  # the slice, twice; i and z
  assert (by["rw"].category, by["rw"].bytes) == ("reduce", 4 * 2 * 50 + 4 + 4 * 2)


def test_kernels_by_phase_of_a_training_step():
  """Forward, backward and the rest (the update) told apart by JAX's name stack; together the whole step."""
  def step(w, x):
    g = jax.grad(lambda w: jnp.tanh(x @ w).sum())(w)
    return w - 0.1 * g / jnp.sqrt(jnp.sum(g * g))  # an update with its own reduction, outside autodiff
  text = jax.jit(step).lower(jnp.ones((32, 16)), jnp.ones((64, 32))).compile().as_text()
  ks = roofline.kernels(text)
  assert roofline.phase("jit(step)/transpose(jvp(Model))/dense/dot_general") == "backward"
  assert roofline.phase("jit(step)/jvp(Model)/dense/dot_general") == "forward"
  assert roofline.phase("jit(step)/sqrt") == "rest"
  got = {roofline.phase(k.op_name) for k in ks}
  assert {"forward", "backward", "rest"} <= got, [(k.name, k.op_name) for k in ks]
  s = roofline.summary(ks)
  assert sum(p["ms"] for p in s["phases"].values()) == pytest.approx(s["total_ms"], abs=1e-2)
  assert sum(p["count"] for p in s["phases"].values()) == sum(k.count for k in ks)


def test_card_attention_rate_by_head_dim():
  card = roofline.H100_SXM
  assert card.attention_rate(64, False) > card.attention_rate(64, True)
  assert card.attention_rate(128, True) > card.attention_rate(64, True) == card.attention_rate(80, True)


def test_h200_is_the_h100_processor_with_its_own_memory():
  fields = lambda t: dict(re.findall(r"(?m)^\s*(\w+): (.+)$", t))
  h100, h200 = fields(roofline.GPU_TARGETS["h100"]), fields(roofline.GPU_TARGETS["h200"])
  changed = {k for k in h100 if h100[k] != h200[k]}
  assert changed == {"memory_bandwidth", "l2_cache_size", "device_memory_size", "device_description_str"}
  assert int(h200["memory_bandwidth"]) == 4_800_000_000_000 and int(h200["device_memory_size"]) == 143771 * 2**20
  assert "cuda_compute_capability { major: 9 minor: 0 }" in roofline.GPU_TARGETS["h200"]
  # every card the bench can compile for has floor rates and a peak for its MFU
  assert set(roofline.CARDS) == set(roofline.GPU_TARGETS) and all(c in metrics.PEAK_FLOPS for c in roofline.CARDS)
  h100c, h200c = roofline.CARDS["h100"], roofline.CARDS["h200"]
  assert (h200c.gemm_flops, h200c.attention_flops) == (h100c.gemm_flops, h100c.attention_flops)
  assert h200c.bandwidth == 4.3e12 > h100c.bandwidth
  with pytest.raises(AssertionError, match="not a field"):
    roofline._with_fields(roofline.GPU_TARGETS["h100"], hbm_bandwidth=1)


def test_h200_floors_are_the_h100_rates_with_the_h200_bandwidth():
  text = open(FIXTURE).read()
  by = lambda card: {k.name: k for k in roofline.kernels(text, roofline.CARDS[card])}
  h100, h200 = by("h100"), by("h200")
  launch = roofline.H100_SXM.launch_s
  assert any(k.flops for k in h100.values()) and any(not k.flops for k in h100.values())
  for name, k in h100.items():
    t_flop = 0.0 if k.bound == "memory" else k.time_s - launch  # the same processor: the same matrix rate
    assert h200[name].time_s == pytest.approx(max(k.bytes / 4.3e12, t_flop) + launch)
    assert h200[name].time_s <= k.time_s


def test_bench_target_without_the_cuda_plugin_says_how_to_get_it(monkeypatch, capsys):
  from jax.experimental import topologies

  def no_plugin(**kw):
    raise NotImplementedError("topology not implemented for cuda")
  monkeypatch.setattr(topologies, "get_topology_desc", no_plugin)
  with pytest.raises(SystemExit) as e:
    bench.target(bench.parse_args(["--shape=tiny", "--target=h100"]))
  msg = str(e.value)
  assert "pip install 'jax[cuda12]'" in msg and "no GPU needed" in msg and msg.count("\n") == 0


@needs_cuda_plugin
@pytest.mark.parametrize("card", ["h100", "h200"])
def test_bench_target_compiles_for_a_gpu_without_one(tmp_path, card):
  # its own process: the CUDA plugin registers only if nothing initialised JAX's backends before
  out, hlo = tmp_path / "r.jsonl", tmp_path / "s.hlo"
  subprocess.run([sys.executable, "-m", "paperjax.bench", "--shape=tiny", f"--target={card}", "--norm=auto",
                  f"--json={out}", f"--hlo_out={hlo}"], check=True, capture_output=True,
                 env={**os.environ, "JAX_PLATFORMS": ""})
  r = json.loads(out.read_text())
  assert r["roofline_ms"] > 0 and r["compiled_mem_gb"]["peak_estimate"] > 0 and r["init_compile_s"] > 0
  assert r["device"] == roofline.CARDS[card].name and r["peak_flops"] == 989e12
  text = hlo.read_text()
  assert "__cudnn$fmha" in text  # the GPU's program: cuDNN attention, and the fused norm's Triton kernels ("auto")
  assert "xla.gpu.triton" in text and r["roofline"]["categories"]["pallas"]["count"] > 0
  # the matmul and attention FLOPs the roofline finds in the program are the model's own count
  found = sum(k.flops * k.count for k in roofline.kernels(hlo.read_text()))
  assert found == pytest.approx(r["flops_per_step_causal"], rel=0.05)
  assert r["roofline_flops"] == pytest.approx(found, rel=1e-6)


def test_bench_says_when_its_floor_finds_fewer_flops_than_the_model_does(capsys):
  """The deviceless report compares the FLOPs its floor priced with the model's count, and says so
  in one line when kernels are missing (a GEMM it cannot read makes the floor optimistic)."""
  summ = roofline.summary([roofline.Kernel("g", "gemm", 1e9, 9e12, "bf16[8,8]", time_s=1e-2)])
  r = dict(tag="", shape="s", batch=1, device="H100 SXM", compile_s=1.0, init_compile_s=1.0, attention="cudnn",
           padding_lengths=False, norm="auto", positions="rotary", mlp="gated", loss_chunk=0, loss_impl="full_logits", optimizer="adamw",
           xla_flags="tuned", compiled_mem_gb=dict(peak_estimate=1.0, arguments=0.5, temp=0.5), roofline=summ,
           roofline_ms=summ["total_ms"], roofline_mfu_full=0.5, roofline_mfu_causal=0.5, roofline_flops=9e12,
           flops_per_step_causal=10e12)
  bench._report_target(r)
  out = capsys.readouterr().out
  assert "9.00 TFLOP, 0.900× the model's (causal) count  !! fewer than the model does" in out
  bench._report_target({**r, "flops_per_step_causal": 9.05e12})
  out = capsys.readouterr().out
  assert "0.994× the model's" in out and "!!" not in out


@needs_cuda_plugin
def test_dot_merger_off_leaves_no_qkv_slice_copies(tmp_path):
  """XLA's dot merger makes q, k and v's projections one GEMM and slices its result; cuDNN attention
  wants each contiguous, so without rotary positions to absorb the slices every layer copies them out.
  The `tuned_nomerge` flag set turns the merger off: no copies left (deviceless H100 programs)."""
  copies = {}
  for name in ("tuned", "tuned_nomerge"):
    hlo = tmp_path / f"{name}.hlo"
    subprocess.run([sys.executable, "-m", "paperjax.bench", "--shape=tiny", "--target=h100", "--positions=learned",
                    "--attention=cudnn", "--norm=auto", f"--xla_flags={name}", f"--hlo_out={hlo}"], check=True, capture_output=True,
                   env={**os.environ, "JAX_PLATFORMS": "", "XLA_FLAGS": ""})  # not the suite's: level 0 skips the merger
    copies[name] = [k for k in roofline.kernels(hlo.read_text()) if k.category == "copy" and "/self_attn/" in k.op_name]
  assert len(copies["tuned"]) >= 2 and not copies["tuned_nomerge"]
