"""The default training step and its jitted, sharded, donated form — shared by the loop
(`paperjax.train`) and the benchmark (`paperjax.bench`), so that what is timed is what trains.

Imports only jax/flax/optax (no grain, tfds or ml_collections): the benchmark runs on machines
that have nothing else.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable

import flax.linen as nn
import jax
import optax
from jax.sharding import PartitionSpec as P

from paperjax import optim, sharding


def sgd_step(loss_fn: Callable, tx: optax.GradientTransformation, lr_schedule: Callable) -> Callable:
  """(state, batch) -> (state, metrics) for `loss_fn(params, batch, rng) -> (loss, aux)`.

  Metrics stay on device (the loop fetches step N's after dispatching step N+1: no host sync)."""
  def step(state, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    params = optim.compute_params(state.params, state.opt_state)  # the optimizer's bf16 kernels, if it keeps them
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    grads = optim.as_param_dtypes(grads, state.params)
    new_state = state.apply_gradients(grads, tx)
    return new_state, {**aux, "loss": loss, "grad_norm": optim.global_norm(grads), "lr": lr_schedule(state.step)}
  return step


def stateful_sgd_step(loss_fn: Callable) -> Callable:
  """A `Method.step` for losses that read the train state (its step, `extras` such as a frozen
  teacher or a memory bank) and may write `extras`:

    loss_fn(params, batch, rng, state) -> (loss, (metrics, extras_updates or None))

  Gradients flow into `params` only; `extras_updates` (a dict) is merged into `state.extras`."""
  def step(state, batch, ctx):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, (aux, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng, state)
    extras = {**state.extras, **(updates or {})}
    new_state = state.apply_gradients(grads, ctx.tx, extras=extras)
    return new_state, {**aux, "loss": loss, "grad_norm": optim.global_norm(grads), "lr": ctx.lr_schedule(state.step)}
  return step


@contextlib.contextmanager
def mesh_context(mesh, rules):
  """The mesh and the logical-axis rules that `nn.with_logical_constraint` resolves against."""
  setter = getattr(jax, "set_mesh", None) or getattr(jax.sharding, "use_mesh", None)
  with (setter(mesh) if setter else mesh), nn.logical_axis_rules(rules):
    yield


def _raw_values(tree):
  """Strip logical-axis boxes without applying their sharding constraints (abstract values)."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree.map(lambda x: x.value if is_box(x) else x, tree, is_leaf=is_box)


def state_specs(boxed_state, tx: optax.GradientTransformation | None = None):
  """Logical PartitionSpecs of a (boxed) train state. Optimizer leaves shaped like their parameter
  (Adam's moments, momentum) take the parameter's spec, so FSDP shards them too; other optimizer
  leaves (factored moments, counts) are replicated."""
  specs = nn.get_partition_spec(boxed_state)
  if tx is None or not hasattr(boxed_state, "opt_state"):
    return specs
  param_specs = nn.get_partition_spec(boxed_state.params)
  try:
    opt_specs = optax.tree_map_params(
        tx, lambda leaf, spec, param: spec if leaf.shape == param.shape else P(),
        boxed_state.opt_state, param_specs, _raw_values(boxed_state.params),
        transform_non_params=lambda _: P(), is_leaf=lambda x: isinstance(x, P))
  except Exception as e:  # noqa: BLE001 — optax cannot pair this state with the params (multi_transform's
    # masked inner states, a transformation with its own state layout): pair leaves by path instead.
    opt_specs = _specs_by_path(boxed_state.opt_state, param_specs, _raw_values(boxed_state.params))
    if opt_specs is None:
      logging.warning("Optimizer-state shardings fall back to the state's own annotations (%s: %s); "
                      "unannotated optimizer leaves are replicated.", type(e).__name__, str(e)[:200])
      return specs
  return specs.replace(opt_state=opt_specs)


def _path_keys(path) -> tuple:
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _specs_by_path(opt_state, param_specs, params):
  """An optimizer leaf whose key path ends with a parameter's path and whose shape is that parameter's
  takes its spec (Adam's moments under optax.multi_transform); every other leaf is replicated. None if
  the state holds something other than arrays (a method's own annotated state)."""
  is_spec = lambda x: isinstance(x, P)
  by_path, flat = {}, []
  param_leaves = jax.tree.leaves(params)
  for (path, spec), param in zip(jax.tree_util.tree_flatten_with_path(param_specs, is_leaf=is_spec)[0], param_leaves):
    by_path[_path_keys(path)] = (spec, tuple(param.shape))
    flat.append(spec)
  leaves = jax.tree.leaves(opt_state)
  if not all(hasattr(x, "shape") for x in leaves):
    return None

  def pick(path, leaf):
    keys = _path_keys(path)
    for i in range(len(keys)):
      hit = by_path.get(keys[i:])
      if hit is not None and hit[1] == tuple(leaf.shape):
        return hit[0]
    return P()

  def grouped(state: optim.GroupedState):
    """A group's stacked leaves shaped [members, *parameter] take their members' spec behind the
    stack axis (FSDP shards a stacked Adam moment as it shards the moment); the rest is replicated."""
    out = []
    for members, group_state in zip(optim.leaf_groups(params), state.groups):
      specs = {flat[i] for i in members}
      spec, shape = (specs.pop() if len(specs) == 1 else None), (len(members), *param_leaves[members[0]].shape)
      out.append(jax.tree.map(lambda x, spec=spec, shape=shape: P(None, *spec) if spec is not None and
                              tuple(x.shape) == shape else P(), group_state))
    return optim.GroupedState(tuple(out))

  is_grouped = lambda x: isinstance(x, optim.GroupedState)
  return jax.tree_util.tree_map_with_path(lambda path, x: grouped(x) if is_grouped(x) else pick(path, x), opt_state,
                                          is_leaf=is_grouped)


def init_sharded(init_fn: Callable, rng, mesh, rules, tx=None):
  """Runs `init_fn(rng)` (which may return logically boxed params) as one jitted program whose
  outputs are laid out by the logical rules (FSDP, tensor parallel, ... as `rules` say).
  Returns (unboxed state, its shardings)."""
  with mesh_context(mesh, rules):
    abstract = jax.eval_shape(init_fn, rng)
  specs = state_specs(abstract, tx)  # outside the mesh: optax traces tx.init here
  shardings = sharding.logical_to_sharding(specs, mesh, rules)
  with mesh_context(mesh, rules), threefry_kernels():
    state = init_program(init_fn, shardings)(rng)
  return state, shardings


def init_program(init_fn: Callable, shardings):
  """`init_fn` jitted to return unboxed state laid out by `shardings`: the program `init_sharded`
  runs (call, lower or compile it under `mesh_context` and `threefry_kernels`, as that does)."""
  return jax.jit(lambda r: nn.meta.unbox(init_fn(r)), out_shardings=shardings)


@contextlib.contextmanager
def threefry_kernels():
  """Programs traced inside lower JAX's threefry PRNG to one CUDA kernel per call on GPUs
  (`jax_threefry_gpu_kernel_lowering`; same bits, other platforms unaffected).

  For the init program. Flax derives a key per parameter (a `fold_in` per module path, then a
  split), each a threefry of 20 rounds on a few words; as ordinary HLO, XLA's GPU compiler fuses
  hundreds of them into a few kernels of ~2 MB of HLO each, which its LLVM and ptxas passes take
  minutes over: an H100 spent 52-58 s compiling the init of GPT-2-124M and the 1B decoder and
  ~120 s that of T5-base, against 3-16 s for their training steps (notes/perf.md, fifth run;
  `tests/test_init_program.py` checks the program). Steps keep the default: there the bits feed
  fused consumers (dropout masks), and a kernel would write them out to memory first."""
  try:
    before = jax.config.jax_threefry_gpu_kernel_lowering
  except AttributeError:  # a JAX without the option: nothing to do
    yield
    return
  jax.config.update("jax_threefry_gpu_kernel_lowering", True)
  try:
    yield
  finally:
    jax.config.update("jax_threefry_gpu_kernel_lowering", before)


def jit_step(step: Callable, state_shardings, batch_shardings, mesh, rules, donate: bool = True):
  """`step` jitted with explicit shardings and the state donated (its buffers are reused for the
  new state, so params + optimizer state are not held twice; `donate=False` only for the benchmark's
  question whether donation makes the call wait). Trace it under `mesh_context`."""
  with mesh_context(mesh, rules):
    return jax.jit(step, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, None), donate_argnums=(0,) if donate else ())


def abstract_state(init_fn: Callable, rng, mesh, rules, tx=None):
  """Shapes, dtypes and shardings of `init_fn(rng)`'s unboxed state, without computing it (for
  ahead-of-time compilation and memory estimates). Returns (abstract state, shardings)."""
  with mesh_context(mesh, rules):
    boxed = jax.eval_shape(init_fn, rng)
  shardings = sharding.logical_to_sharding(state_specs(boxed, tx), mesh, rules)
  unboxed = nn.meta.unbox(boxed)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), unboxed, shardings), shardings
