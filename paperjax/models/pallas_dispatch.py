"""Where a model's Pallas kernel runs: one dispatch for every fused op (models/fused_norm.py,
models/fused_mlp.py).

`impl`: "xla" the op's plain-JAX reference; "pallas" the kernel — on GPUs compiled, elsewhere its
interpreter (slow; how CPU tests run it), or as `interpret` forces; "auto" the kernel in programs
lowered for CUDA (also when compiling for a GPU from a CPU machine) and the reference for any other
platform. Pallas kernels are custom calls XLA cannot partition, so under a mesh of several devices
`row_spec` (the row-sized arguments' PartitionSpec) runs the kernel per device on its own rows under
`shard_map`: the other arguments are passed whole (their gradients summed across devices by
shard_map's transpose). A row must be whole on a device: with the feature axis sharded "auto" takes
the reference and "pallas" refuses.

The kernels are written for Pallas's Triton backend, which JAX 0.11 marks deprecated (still present
in 0.12), and the MLP's also for its Mosaic GPU backend (`needs`): on a JAX without the backend a
kernel needs, "auto" takes the reference and "pallas" refuses in a sentence.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax

IMPLS = ("xla", "pallas", "auto")


def mesh_ways(entry) -> int:
  """How many ways the current (abstract) mesh splits an axis a PartitionSpec entry names (1 off a mesh)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or entry is None:
    return 1
  return math.prod(mesh.shape[a] for a in ((entry,) if isinstance(entry, str) else entry))


@functools.cache
def has_triton() -> bool:
  """Whether this JAX has Pallas's Triton backend (the kernels' and their interpreter's API)."""
  try:
    from jax.experimental.pallas import triton  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def mosaic_gpu_interpret_params():
  """Pallas's Mosaic GPU interpreter's parameters (`interpret=` of `plgpu.kernel`): public from jax 0.11,
  under jax._src in 0.10."""
  from jax.experimental.pallas import mosaic_gpu as plgpu  # pylint: disable=g-import-not-at-top
  cls = getattr(plgpu, "InterpretGPUParams", None)
  if cls is None:
    from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams as cls  # pylint: disable=g-import-not-at-top
  return cls()


@functools.cache
def has_mosaic_gpu() -> bool:
  """Whether this JAX has Pallas's Mosaic GPU backend with its CPU interpreter (jax ≥ 0.10)."""
  try:
    mosaic_gpu_interpret_params()
  except ImportError:
    return False
  return True


BACKENDS = {"triton": ("Pallas's Triton backend", lambda: has_triton()),
            "mgpu": ("Pallas's Mosaic GPU backend", lambda: has_mosaic_gpu())}


def run(reference: Callable, kernel: Callable[[bool], Callable], args: Sequence, *, impl: str,
        interpret: bool | None = None, row_spec=None, row_args: Sequence[bool] = (), outs: int | None = None,
        name: str = "op", needs: Sequence[str] = ("triton",)):
  """reference(*args) or kernel(interpret)(*args) as `impl` says. `row_args[i]`: whether args[i] is
  row-sized (sharded by `row_spec`); `outs`: None for one row-sized result, k for a tuple of k; `needs`:
  the Pallas backends (BACKENDS) the kernel is written for."""
  if impl not in IMPLS:
    raise ValueError(f"{name} impl {impl!r} is not one of {IMPLS}.")
  mesh = jax.sharding.get_abstract_mesh()
  rows = next(a for a, r in zip(args, row_args) if r) if any(row_args) else args[0]
  sharded = row_spec is not None and not mesh.empty and mesh.size > 1
  feature_sharded = sharded and len(row_spec) == rows.ndim and mesh_ways(row_spec[-1]) > 1
  missing = [BACKENDS[b][0] for b in needs if not BACKENDS[b][1]()]
  if impl == "auto" and (feature_sharded or missing):
    impl = "xla"  # tensor parallelism: rows are not whole on a device; or no kernels in this JAX
  if impl == "pallas" and missing:
    raise ValueError(f"{name} with impl='pallas' needs {' and '.join(missing)}, which JAX {jax.__version__} does "
                     "not have; use impl='auto' or 'xla' (the same function through XLA).")
  if impl == "xla":
    return reference(*args)
  if impl == "auto":
    fn = lambda *a: jax.lax.platform_dependent(*a, default=reference, cuda=kernel(False))
  elif interpret is not None:
    fn = kernel(bool(interpret))
  else:
    fn = lambda *a: jax.lax.platform_dependent(*a, default=kernel(True), cuda=kernel(False))
  if not sharded:
    return fn(*args)
  from jax.sharding import PartitionSpec as P
  row_spec = P(*row_spec)
  if feature_sharded:
    raise ValueError(f"{name} with impl='pallas' needs whole rows on each device, but the activations' feature "
                     f"axis is sharded ({row_spec}); use the 'xla' implementation with this sharding.")
  ways = [mesh_ways(ax) for ax in row_spec]
  if any(n % w for n, w in zip(rows.shape, ways)):  # e.g. the one-example batch of an init: not worth splitting
    return fn(*args)
  in_specs = tuple(row_spec if r else P() for r in row_args)
  out_specs = row_spec if outs is None else (row_spec,) * outs
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)(*args)
