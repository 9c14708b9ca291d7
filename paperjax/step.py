"""The default training step and its jitted, sharded, donated form — shared by the loop
(`paperjax.train`) and the benchmark (`paperjax.bench`), so that what is timed is what trains.

Imports only jax/flax/optax (no grain, tfds or ml_collections): the benchmark runs on machines
that have nothing else.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import flax.linen as nn
import jax
import optax

from paperjax import sharding


def sgd_step(loss_fn: Callable, tx: optax.GradientTransformation, lr_schedule: Callable) -> Callable:
  """(state, batch) -> (state, metrics) for `loss_fn(params, batch, rng) -> (loss, aux)`.

  Metrics stay on device (the loop fetches step N's after dispatching step N+1: no host sync)."""
  def step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    new_state = state.apply_gradients(grads, tx)
    return new_state, {**aux, "loss": loss, "grad_norm": optax.global_norm(grads), "lr": lr_schedule(state.step)}
  return step


@contextlib.contextmanager
def mesh_context(mesh, rules):
  """The mesh and the logical-axis rules that `nn.with_logical_constraint` resolves against."""
  setter = getattr(jax, "set_mesh", None) or getattr(jax.sharding, "use_mesh", None)
  with (setter(mesh) if setter else mesh), nn.logical_axis_rules(rules):
    yield


def init_sharded(init_fn: Callable, rng, mesh, rules):
  """Runs `init_fn(rng)` (which may return logically boxed params) as one jitted program whose
  outputs are laid out by the logical rules (FSDP, tensor parallel, ... as `rules` say).
  Returns (unboxed state, its shardings)."""
  with mesh_context(mesh, rules):
    abstract = jax.eval_shape(init_fn, rng)
    shardings = sharding.logical_to_sharding(nn.get_partition_spec(abstract), mesh, rules)
    state = jax.jit(lambda r: nn.meta.unbox(init_fn(r)), out_shardings=shardings)(rng)
  return state, shardings


def jit_step(step: Callable, state_shardings, batch_shardings, mesh, rules):
  """`step` jitted with explicit shardings and the state donated (its buffers are reused for the
  new state, so params + optimizer state are not held twice). Trace it under `mesh_context`."""
  with mesh_context(mesh, rules):
    return jax.jit(step, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, None), donate_argnums=(0,))
