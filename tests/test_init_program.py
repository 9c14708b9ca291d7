"""step.init_sharded traces the init program with threefry lowered to one GPU kernel per call
(step.threefry_kernels): on an H100 the init of T5-base compiled ~120 s with XLA's fused threefry."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from paperjax import sharding
from paperjax import step as step_lib
from paperjax.models import lm
from paperjax.models.transformer import Transformer, TransformerConfig
from tests.conftest import needs_cuda_plugin


def _tiny_init():
  model = Transformer(TransformerConfig(kind="decoder", vocab_size=64, d_model=32, num_heads=2, head_dim=16,
                                        d_ff=64, num_layers=2))
  seen = []

  def init(rng):
    seen.append(jax.config.jax_threefry_gpu_kernel_lowering)  # runs while the program is traced
    return lm.init(model, rng, {"tokens": np.ones((1, 8), np.int32)})
  return init, seen


def test_init_program_is_traced_with_threefry_kernels_and_the_flag_restored():
  init, seen = _tiny_init()
  mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (1, -1, 1))
  before = jax.config.jax_threefry_gpu_kernel_lowering
  params, _ = step_lib.init_sharded(init, jax.random.PRNGKey(3), mesh, sharding.DEFAULT_RULES)
  assert seen[-1] is True and jax.config.jax_threefry_gpu_kernel_lowering == before
  # the same parameters as a plain init (the kernel computes the same bits; off GPUs nothing changes)
  plain = jax.jit(lambda r: __import__("flax").linen.meta.unbox(init(r)))(jax.random.PRNGKey(3))
  assert seen[-1] is before
  jax.tree.map(np.testing.assert_array_equal, params, plain)


def test_threefry_kernels_restores_the_flag_on_error():
  before = jax.config.jax_threefry_gpu_kernel_lowering
  with pytest.raises(ValueError):
    with step_lib.threefry_kernels():
      assert jax.config.jax_threefry_gpu_kernel_lowering is True
      raise ValueError("x")
  assert jax.config.jax_threefry_gpu_kernel_lowering == before


@needs_cuda_plugin
def test_gpu_init_program_calls_the_threefry_kernel_instead_of_fusing_rounds():
  # its own process: the CUDA plugin registers only if nothing initialised JAX's backends before
  code = textwrap.dedent("""
    import os; os.environ["JAX_SKIP_CUDA_CONSTRAINTS_CHECK"] = "1"
    import jax, numpy as np, flax.linen as nn
    from jax.experimental import topologies
    from paperjax import roofline, sharding, step as step_lib
    from paperjax.models import lm
    from paperjax.models.transformer import Transformer, TransformerConfig
    topo = topologies.get_topology_desc(platform="cuda", target_config=roofline.GPU_TARGETS["h100"], topology="1x1x1")
    model = Transformer(TransformerConfig(kind="decoder", vocab_size=64, d_model=32, num_heads=2, head_dim=16,
                                          d_ff=64, num_layers=4))
    init = lambda r: nn.meta.unbox(lm.init(model, r, {"tokens": np.ones((1, 8), np.int32)}))
    rng = jax.ShapeDtypeStruct((2,), np.uint32)
    sh = jax.sharding.SingleDeviceSharding(topo.devices[0])
    def compiled(fast):
      with (step_lib.threefry_kernels() if fast else __import__("contextlib").nullcontext()):
        return jax.jit(init, in_shardings=sh).lower(rng).compile().as_text()
    fast, slow = compiled(True), compiled(False)
    n_params = len(jax.tree.leaves(jax.eval_shape(init, rng)))
    print(fast.count('custom_call_target="cu_threefry2x32'), slow.count("cu_threefry2x32"), n_params,
          len(fast), len(slow))
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "JAX_PLATFORMS": ""})
  assert out.returncode == 0, out.stderr[-3000:]
  kernels, in_slow, n_params, len_fast, len_slow = map(int, out.stdout.split()[-5:])
  assert in_slow == 0 and kernels >= n_params  # at least one threefry call per parameter's own key
  assert len_fast < len_slow / 2  # the rounds no longer spelt out, fused, in the program
