"""AOT preflight: compiles the step for a topology without running it, and reports memory per device;
optimizer moments are sharded like their parameters (FSDP), also for Adafactor's factored state."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, needs_cuda_plugin, run_python


def _preflight(*args):
  return subprocess.run([sys.executable, "-m", "paperjax.launch.preflight", *args], capture_output=True, text=True,
                        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)


def test_fsdp_preflight_halves_state_memory_per_device():
  common = ["--config=configs/ul2.py", "--config.data.batch_size=8"]
  data = _preflight(*common, "--topology=cpu:4", "--config.mesh.shape=(4,1,1)")
  fsdp = _preflight(*common, "--topology=cpu:4", "--config.mesh.shape=(1,4,1)")
  assert data.returncode == 0 and fsdp.returncode == 0, data.stderr[-2000:] + fsdp.stderr[-2000:]
  arg = lambda out: float(out.stdout.split("arguments ")[1].split(" GiB")[0])
  assert "estimated peak per device" in data.stdout
  # params + Adam moments replicated on data=4, split four ways on fsdp=4 (embeddings/kernels dominate).
  assert arg(fsdp) < 0.5 * arg(data)


def test_unavailable_topology_says_so():
  out = _preflight("--config=configs/ul2.py", "--topology=gpu:8xH100")
  assert out.returncode != 0 and "names no GPU this repository can compile for" in out.stderr
  assert "gpu:h100" in out.stderr  # and says which it can


def test_gpu_topology_names_a_card_and_a_count():
  from paperjax.launch import preflight
  assert preflight.gpu_target("gpu:h100") == ("h100", 1)
  assert preflight.gpu_target("gpu:h100x8") == ("h100", 8)
  assert preflight.gpu_target("gpu:h200x2") == ("h200", 2)
  assert preflight.gpu_target("cpu:8") is None
  with pytest.raises(ValueError, match="names no GPU"):
    preflight.gpu_target("gpu:8xh100")


@needs_cuda_plugin
def test_gpu_topology_compiles_the_step_for_that_card_without_one():
  # UL2 packed in bf16, as the base preset would run on an H100: "auto" attention is cuDNN there
  out = subprocess.run([sys.executable, "-m", "paperjax.launch.preflight", "--config=configs/ul2.py",
                        "--topology=gpu:h100", "--config.model.dtype=bfloat16", "--config.data.pack=True",
                        "--config.ul2.inputs_length=128", "--config.data.batch_size=8"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS=""))
  assert out.returncode == 0, out.stderr[-3000:]
  assert "on gpu:h100: 1 × NVIDIA H100" in out.stdout and "estimated peak per device" in out.stdout
  assert "attention cudnn" in out.stdout, out.stdout


def test_optimizer_state_follows_parameter_sharding():
  code = """
import jax, optax, flax.linen as nn
from paperjax import sharding, step, optim
from paperjax.models.transformer import Transformer, TransformerConfig
from paperjax.state import TrainState
import numpy as np, ml_collections
m = Transformer(TransformerConfig(vocab_size=128, d_model=32, num_heads=2, head_dim=16, d_ff=64, kind="decoder"))
mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (1, 4, 1))
for name in ("adamw", "adafactor"):
  tx, _ = optim.build(ml_collections.ConfigDict(dict(name=name, lr=1e-3)), 10)
  init = lambda r: TrainState.create(m.init(r, {"tokens": np.ones((1, 8), np.int32)})["params"], tx, rng=r)
  state, sh = step.init_sharded(init, jax.random.PRNGKey(0), mesh, sharding.DEFAULT_RULES, tx)
  kernel = state.params["decoder"]["layer_0"]["mlp"]["wi_0"]["kernel"]
  assert kernel.sharding.spec[0] == "fsdp", kernel.sharding
  leaves = [x for x in jax.tree.leaves(state.opt_state) if hasattr(x, "sharding") and x.ndim == 2 and x.shape == kernel.shape]
  assert leaves and all(x.sharding.spec[0] == "fsdp" for x in leaves), name
  print(name, "ok", len(leaves))
"""
  out = run_python(code, devices=4)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "adamw ok" in out.stdout and "adafactor ok" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (pip install libtpu); no TPU")
def test_compiles_for_a_tpu_slice_without_a_tpu():
  out = _preflight("--config=configs/ul2.py", "--topology=tpu:v5e:2x4")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "8 × TPU v5 lite" in out.stdout and "estimated peak per device" in out.stdout


def test_preflight_compiles_the_trainers_own_step(tmp_path):
  # Same persistent-cache key for `jit_step` from the preflight and from the trainer on the same devices:
  # the preflight's memory figure is the real step's, and a preflight warms the cache a run then loads.
  code = """
import json, logging, re
from configs import ul2
from paperjax import train
from paperjax.launch import preflight
records = []
class Keep(logging.Handler):
  def emit(self, r):
    m = re.search(r"for 'jit_step' with key '([^']+)'", r.getMessage())
    if m: records.append(m.group(1))
logging.getLogger("jax._src.compiler").addHandler(Keep()); logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
c = ul2.get_config()
c.data.max_chars = 100_000
preflight.preflight(c, "local")
c.train.stop_at = 1           # the schedule still spans train.steps, as in a run stopped early
train.run(c, WORKDIR)
print("KEYS" + json.dumps(records))
"""
  out = run_python(code.replace("WORKDIR", repr(str(tmp_path))), env={"PAPERJAX_COMPILATION_CACHE": str(tmp_path / "cache")})
  assert out.returncode == 0, out.stderr[-3000:]
  keys = json.loads(out.stdout.split("KEYS", 1)[1].splitlines()[0])
  assert len(keys) >= 2 and len(set(keys)) == 1, keys
