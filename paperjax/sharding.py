"""Meshes, logical-axis rules and host-local → global arrays.

Parameters are annotated with *logical* axis names in model code (`embed`, `mlp`, `heads`, ...);
`config.axis_rules` maps each logical name to mesh axes, so changing from pure data parallelism to
FSDP or tensor parallelism is a config edit, never a model edit (the maxtext/t5x convention).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

# Logical activation axes are prefixed `act_` so that a rule may shard a parameter's `embed`
# over fsdp while leaving the activations' embed dimension replicated.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("layers", None),
    ("stack", None),   # the 2 or 3 projections of a fused kernel (TransformerConfig.fused_projections)
)


def make_mesh(axes: Sequence[str], shape: Sequence[int], devices=None) -> Mesh:
  """Mesh over all (global) devices; one `-1` entry is filled with what the others leave."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  shape = list(shape)
  if len(axes) != len(shape):
    raise ValueError(f"mesh.axes {tuple(axes)} and mesh.shape {tuple(shape)} differ in length; give one size per axis.")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh.shape {tuple(shape)} has more than one -1; only one axis can be filled automatically.")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if n % known:
      raise ValueError(f"mesh.shape {tuple(shape)} cannot fill {n} devices ({n} is not divisible by {known}); "
                       f"make the fixed axis sizes divide {n}.")
    shape[shape.index(-1)] = n // known
  if math.prod(shape) != n:
    raise ValueError(f"mesh.shape {tuple(shape)} uses {math.prod(shape)} devices but {n} are available; "
                     f"make the product equal {n} or put -1 on one axis.")
  try:
    return jax.make_mesh(tuple(shape), tuple(axes), axis_types=(AxisType.Auto,) * len(axes), devices=devices)
  except TypeError:  # older jax without the devices argument
    return Mesh(np.asarray(devices).reshape(shape), tuple(axes), axis_types=(AxisType.Auto,) * len(axes))


def rules_from_config(axis_rules) -> tuple:
  if not axis_rules:
    return DEFAULT_RULES
  return tuple((name, tuple(axes) if isinstance(axes, (list, tuple)) else axes) for name, axes in axis_rules)


def logical_to_sharding(logical_tree, mesh: Mesh, rules):
  """Tree of logical PartitionSpecs (from `nn.get_partition_spec`) → tree of NamedShardings."""
  return nn.logical_to_mesh_sharding(logical_tree, mesh, rules)


def batch_sharding(mesh: Mesh, rules=DEFAULT_RULES, axis: str = "batch") -> NamedSharding:
  """Leading (example) axis over the mesh axes that the `batch` rule names; the rest replicated.
  `axis` names another logical axis for batches led by something else (a population's `clients`)."""
  axes = dict(rules).get(axis)
  return NamedSharding(mesh, P(axes))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_axis_size(mesh: Mesh, rules=DEFAULT_RULES) -> int:
  axes = dict(rules).get("batch") or ()
  axes = (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.shape[a] for a in axes if a in mesh.shape)


def host_to_global(batch: dict, mesh: Mesh, rules=DEFAULT_RULES, axis: str = "batch") -> dict:
  """Each process passes its local shard of the global batch; returns global jax.Arrays.

  Works unchanged on one process (local == global) and on N processes (JAX stitches the shards).
  """
  sharding = batch_sharding(mesh, rules, axis)
  def put(x):
    x = np.asarray(x)
    if x.ndim == 0:
      return jax.make_array_from_process_local_data(replicated(mesh), x)
    return jax.make_array_from_process_local_data(sharding, x)
  return jax.tree.map(put, batch)
