"""Writes tests/data/h100_fixture.hlo: XLA's H100 program of a small function, compiled on any
machine (deviceless; needs JAX's CUDA plugin, `pip install 'jax[cuda12]'`, not a GPU).

  XLA_FLAGS=--xla_gpu_enable_triton_gemm=false python tests/data/make_h100_fixture.py

tests/test_roofline.py checks paperjax.roofline's reading of it by hand."""

import os
import re

os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.experimental import topologies  # noqa: E402

from paperjax import roofline  # noqa: E402


def f(x, w, q, k, v, table):
  y = jnp.tanh(x @ w)                                      # a cuBLAS GEMM and an element-wise pass

  def attn(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn").astype(jnp.float32).sum()
  a, grads = jax.value_and_grad(attn, (0, 1, 2))(q, k, v)  # cuDNN flash attention forward and backward

  def body(c, i):                                          # a loop of known trip count reading one table row
    return c + jax.lax.dynamic_index_in_dim(table, i, keepdims=False) * 2.0, None
  c, _ = jax.lax.scan(body, jnp.zeros(table.shape[1:], table.dtype), jnp.arange(5))
  return y, a, grads, c


def main():
  topo = topologies.get_topology_desc(platform="cuda", target_config=roofline.GPU_TARGETS["h100"], topology="1x1x1")
  mesh = topologies.make_mesh(topo, (1,), ("d",))
  spec = lambda shape, dt: jax.ShapeDtypeStruct(
      shape, dt, sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  args = (spec((256, 512), jnp.bfloat16), spec((512, 1024), jnp.bfloat16), spec((2, 128, 4, 64), jnp.bfloat16),
          spec((2, 128, 4, 64), jnp.bfloat16), spec((2, 128, 4, 64), jnp.bfloat16), spec((8, 4096), jnp.float32))
  text = jax.jit(f).lower(*args).compile().as_text()
  text = re.sub(r", metadata=\{[^}]*\}", "", text)  # source locations: noise for the test, and machine-specific
  text = re.sub(r"\n(FileNames|FunctionNames|FileLocations|StackFrames)\n(?:[^\n]+\n)*", "\n", text)
  with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "h100_fixture.hlo"), "w") as fh:
    fh.write(text)


if __name__ == "__main__":
  main()
