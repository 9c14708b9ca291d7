"""Test setup: a persistent compilation cache, XLA's quick CPU code generation, and helpers that shrink
any config to test size.

Multi-device tests run in subprocesses with `--xla_force_host_platform_device_count` (it must be
set before JAX starts), so this process keeps one CPU device.

The tests' programs are tiny and each is compiled once, so compilation is most of the suite's time.
Two XLA flags make CPU compilation quick (`QUICK_CPU_FLAGS`; the second only where this jaxlib knows it):
- `--xla_backend_optimization_level=0` skips LLVM's optimisation of the CPU code (a cold run of the
  config smoke tests and tests/test_model.py: 90.9 → 55.5 s on 2 cores);
- `--xla_cpu_use_fusion_emitters=false` emits each CPU fusion with XLA's elemental IR emitters instead of
  its MLIR fusion emitters, which are slow to compile (the same two files cold, on the slower 2-core
  machines of late 2026: 183.9 → 122.2 s; the whole suite 1033 → 725 s; the tiny bench step's compile
  2.3–2.5 → 1.0–1.3 s).
Neither changes the HLO of a GPU program (`gpu_xla_flags()` leaves them out of the subprocesses that
compile for one). On CPU the first changes code generation only; the second leaves unfused instructions
unwrapped (`paperjax.roofline` prices a bare slice by its slice) and lets LLVM contract a·b + c into an FMA
in one program's fusion and not in another's, so two different programs that compute the same numbers may
differ by an ulp: a test that claims they agree to the last bit is marked `default_codegen` and runs in a
child pytest under XLA's default emitters (`pytest_pyfunc_call`). Every process of a test gets the same
flags (`xla_flags()`), so comparisons between processes stay exact; a flag the user set in XLA_FLAGS wins.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("PAPERJAX_COMPILATION_CACHE", str(ROOT / ".jax_cache"))
_ENV_FLAGS = os.environ.get("XLA_FLAGS", "").split()
_users = lambda name: next((f for f in _ENV_FLAGS if f.lstrip("-").partition("=")[0] == name), None)


def _xla_parses(flag: str) -> bool:
  """Whether this jaxlib's XLA knows `flag` (an unknown flag in XLA_FLAGS aborts the process that starts
  a backend): a CPU backend started in a child process. The suite's first process asks; the processes it
  starts (xdist workers, subprocesses) inherit the answer in XLA_FLAGS."""
  env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True,
                        timeout=300).returncode == 0


QUICK_CPU_FLAGS = {"xla_backend_optimization_level": "0"}
if _users("xla_cpu_use_fusion_emitters") or _xla_parses("--xla_cpu_use_fusion_emitters=false"):
  QUICK_CPU_FLAGS["xla_cpu_use_fusion_emitters"] = "false"
TEST_XLA_FLAGS = " ".join(_users(k) or f"--{k}={v}" for k, v in QUICK_CPU_FLAGS.items())  # every process's
os.environ["XLA_FLAGS"] = " ".join(_ENV_FLAGS + [f for f in TEST_XLA_FLAGS.split() if f not in _ENV_FLAGS])  # before JAX


def xla_flags(devices: int = 1) -> str:
  """XLA_FLAGS for a test's subprocess: this suite's flags and `devices` fake CPU devices."""
  return f"{TEST_XLA_FLAGS} --xla_force_host_platform_device_count={devices}".strip()


def gpu_xla_flags() -> str:
  """XLA_FLAGS for a subprocess that compiles for a GPU: the environment's, less `QUICK_CPU_FLAGS`."""
  return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if not any(k in f for k in QUICK_CPU_FLAGS))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
  """A test marked `default_codegen` runs in a child pytest with XLA's default CPU fusion emitters: it claims
  that two different programs agree to the last bit, and the quick emitters at level 0 let LLVM contract
  a·b + c into one FMA in one program's fusion and not in the other's (1-ulp differences; none with
  `--xla_cpu_max_isa=SSE4_2`, which has no FMA)."""
  if pyfuncitem.get_closest_marker("default_codegen") is None or (
      "--xla_cpu_use_fusion_emitters=false" not in TEST_XLA_FLAGS.split()):
    return None
  flags = [f for f in os.environ["XLA_FLAGS"].split() if "xla_cpu_use_fusion_emitters" not in f]
  env = {**os.environ, "XLA_FLAGS": " ".join(flags + ["--xla_cpu_use_fusion_emitters=true"])}
  r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", "", "-p", "no:cacheprovider",
                      pyfuncitem.nodeid], capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
  assert r.returncode == 0, f"under XLA's default CPU emitters:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
  return True


def shrink(config, steps: int = 4):
  """Test-size settings that keep the config's structure (architecture, objective, data source)."""
  c = config
  if "model" in c and "d_model" in c.model:
    c.model.update(d_model=32, num_heads=2, head_dim=16, d_ff=64, num_layers=1)
    if "num_encoder_layers" in c.model:
      c.model.num_encoder_layers = 1
  if "ul2" in c:
    c.ul2.update(inputs_length=32, targets_length=32, eval_batch_size=8)
    c.data.raw_length = 30
  c.data.batch_size = 8
  if "population" in c:   # population configs: fewer local steps per round, smaller client batches
    c.population.update(local_steps=2, batch_size=4)
  if "streaming" in c:    # Streaming DiLoCo: one layer per layer fragment, overlap shorter than a round
    c.model.num_layers = max(1, int(c.streaming.fragments) - 1)
    c.streaming.overlap = min(int(c.streaming.overlap), int(c.population.local_steps) - 1)
  if "density_pruning" in c:   # a 210-image pool instead of 7,000 (rendering and k-means dominate)
    c.density_pruning.update(n_varied=120, n_simple=60, n_dups=30, clusters=6, num_neighbors=3)
  if "codegen2" in c:     # a few infill examples and small held-out batches
    c.codegen2.update(infill_examples=4, eval_batch_size=8)
  if "dcc" in c:          # dataset condensation: its evaluation trains fewer, shorter networks
    c.dcc.update(eval_steps=20, eval_nets=2)
  if "kmq" in c:          # a 580-example instruction pool, few held-out instructions
    c.kmq.update(clusters=16, test_per_task=2, sizes={k: max(1, int(v) // 10) for k, v in dict(c.kmq.sizes).items()})
  if c.get("stages"):     # every stage runs the test's few steps
    c.stages = tuple({**st, "overrides": {k: v for k, v in dict(st.get("overrides", {})).items()
                                          if not k.startswith("train.")}} for st in c.stages)
  c.data.max_chars = 200_000   # tokenise a slice of the corpus: the pipeline is the same
  c.train.update(steps=steps, log_every=2, eval_every=0, eval_batches=1, ckpt_every=0, progress=False)
  c.optimizer.warmup_steps = 1
  if "eval" in c and "max_examples" in c.eval:   # vision evaluators: a slice of the held-out split
    c.eval.max_examples = 64
  if "eval" in c and "num_samples" in c.eval:    # generative evaluators: fewer samples
    c.eval.num_samples = min(int(c.eval.num_samples), 128)
  return c


def run_python(code: str, *, devices: int = 1, timeout: int = 600, env=None) -> subprocess.CompletedProcess:
  """Run `code` in a fresh interpreter with `devices` fake CPU devices."""
  e = dict(os.environ)
  e["XLA_FLAGS"] = xla_flags(devices)
  e["PYTHONPATH"] = f"{ROOT}{os.pathsep}{e.get('PYTHONPATH', '')}"
  e.update(env or {})
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)


def _has_cuda_plugin() -> bool:
  try:
    return any(importlib.util.find_spec(f"jax_plugins.xla_cuda{v}") is not None for v in (12, 13))
  except ImportError:
    return False


# Deviceless GPU compiles (`bench --target=h100`) need JAX's CUDA plugin, not a GPU; CI has neither.
needs_cuda_plugin = pytest.mark.skipif(
    not _has_cuda_plugin(),
    reason="JAX's CUDA plugin is not installed (the deviceless H100 compile needs it, not a GPU)")


# What a deviceless H100 compile needs, for `run_for_h100`'s code: `spec(shape)` a bf16 argument on the card,
# `compiled(f, *args)` the jitted program's text, `kernels(text)` its roofline kernels as tuples
# (category, flops, bytes, result, op_name, count).
_H100_PREAMBLE = """
import os, sys; os.environ["JAX_SKIP_CUDA_CONSTRAINTS_CHECK"] = "1"
from paperjax import xla_flags; xla_flags.apply("tuned")
import json, jax, jax.numpy as jnp
from jax.experimental import topologies
from paperjax import roofline, step
topo = topologies.get_topology_desc(platform="cuda", target_config=roofline.GPU_TARGETS["h100"], topology="1x1x1")
sh = jax.sharding.SingleDeviceSharding(topo.devices[0])
mesh = jax.sharding.Mesh(topo.devices, ("d",))  # Pallas's Triton lowering asks the mesh in context for the card
spec = lambda shape, dtype=jnp.bfloat16: jax.ShapeDtypeStruct(shape, dtype, sharding=sh)
def compiled(f, *args):
  with step.mesh_context(mesh, ()):
    return jax.jit(f).lower(*args).compile().as_text()
kernels = lambda text: [(k.category, k.flops, k.bytes, k.result, k.op_name, k.count) for k in roofline.kernels(text)]
"""


def run_for_h100(code: str, *argv: str):
  """Runs `code` (dedented) after `_H100_PREAMBLE` in a fresh interpreter with JAX's CUDA plugin and no GPU
  (`needs_cuda_plugin`), `argv` as its sys.argv[1:]; returns the JSON its last printed line holds."""
  import json  # pylint: disable=g-import-not-at-top
  import textwrap  # pylint: disable=g-import-not-at-top
  r = subprocess.run([sys.executable, "-c", _H100_PREAMBLE + textwrap.dedent(code), *argv], capture_output=True,
                     text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "", "XLA_FLAGS": gpu_xla_flags()})
  assert r.returncode == 0, r.stderr[-3000:]
  return json.loads(r.stdout.strip().splitlines()[-1])


def same_model_with(cfg, *, rtol: float = 1e-4, atol: float = 1e-5, masked: bool = False, reference: bool = False,
                    **changes):
  """A tiny random batch for `cfg` (a TransformerConfig, fp32), its parameters, and the loss sum through
  `lm.loss_sums` (its keyword arguments in `changes` under `loss_*`, e.g. loss_chunk=8) for `cfg` and for
  `cfg` with the other `changes` (a kernel's impl, say), each jitted: asserts equal loss (1e-5) and gradients; returns
  the changed model's loss function and the parameters, for a jaxpr check (and `cfg`'s own loss function third
  with `reference=True`, so that a test comparing the two programs need not compile both again). `masked`: some
  targets masked."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from paperjax.models import lm, transformer as T  # pylint: disable=g-import-not-at-top
  loss_kw = {k[len("loss_"):]: v for k, v in changes.items() if k.startswith("loss_")}
  ours = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if not k.startswith("loss_")})
  rng = np.random.default_rng(2)
  v, (b, l) = cfg.vocab_size, (2, 32 if cfg.d_model >= 64 else 16)
  mask = (rng.random((b, l)) > 0.2).astype(np.int32) if masked else np.ones((b, l), np.int32)
  if cfg.kind == "encdec":
    batch = {"inputs": rng.integers(1, v, (b, l)), "targets": rng.integers(1, v, (b, l)), "targets_mask": mask}
  else:
    batch = {"tokens": rng.integers(1, v, (b, l)), "loss_mask": mask}
  params = nn.meta.unbox(lm.init(T.Transformer(cfg), jax.random.PRNGKey(0), batch))
  loss = lambda c: (lambda p: lm.loss_sums(T.Transformer(c), p, batch, **loss_kw)[0])
  with jax.default_matmul_precision("highest"):
    (l0, g0), (l1, g1) = (jax.jit(jax.value_and_grad(loss(c)))(params) for c in (cfg, ours))
  np.testing.assert_allclose(l0, l1, rtol=1e-5)
  for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, c, rtol=rtol, atol=atol)
  return (loss(ours), params, loss(cfg)) if reference else (loss(ours), params)


@pytest.fixture
def root():
  return ROOT
