"""The optimizer from the config: schedule, clipping, weight-decay mask, optional per-group rules.

config.optimizer fields:
  name          adamw | adafactor | sgd | lion | adam | any `optax.<name>` taking learning_rate
  lr, warmup_steps, schedule (constant | cosine | linear | rsqrt), end_lr_frac
  b1, b2, eps, weight_decay, momentum, nesterov, clip_norm (0 = off)
  decay_mask    "no_1d": no weight decay on vectors (norm scales, biases) — the usual choice
  param_copy    "" (off) or the model's compute dtype ("bfloat16"): the optimizer also writes each
                weight kernel in that dtype, and the default step differentiates that copy instead of
                casting the fp32 kernels again every step (`with_param_copy`; same numbers)
  group_leaves  False, or True: the optimizer runs once per group of equal-shaped parameters (the
                layers' copies of each weight), vmapped — the same per-leaf updates in a set of kernels
                per group instead of per parameter (`grouped`; optax's optimizers, not a paper's own)
Papers that invent an optimizer name it by import path: name="paperjax.papers.fira.method:fira" calls
`fira(lr_schedule, config.optimizer)`, which returns an optax GradientTransformation (updates already
scaled by -lr). Optimizers for weight matrices only (GaLore, Fira, ...) route with `route_matrices`:
`matrix_labels` marks every kernel (a leaf named "kernel" with ndim ≥ 2) "matrix", the rest "other".
`state_bytes(opt_state)` is the optimizer state's size; the trainer reports it for every run.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


# `global_norm`'s grouping: leaves of fewer elements are flattened and concatenated this many at a time into one
# reduction each. XLA's GPU compiler fuses a concatenate into the reduction that reads it, up to its limit on a
# fusion's operands (96): GPT-2's H100 program (`bench --target=h100`) with 32 a group has 43 reduction kernels
# where a reduction per leaf had 206 (one or two each, of a few microseconds), and 128 a group materialises the
# concatenation (+0.5 GB). A leaf of 4M elements or more is reduced alone: 16 MB of fp32 is several microseconds of
# bandwidth, more than a launch, and its reduction can share a kernel with the fusion that writes its gradient
# (GPT-2's tied embedding: 0.46 GB read once, not twice); concatenated, the 1B's MLP weights cost +0.3 GB of copies.
NORM_GROUP, NORM_ALONE = 32, 1 << 22


def global_norm(tree) -> jax.Array:
  """‖tree‖₂ over all its leaves (float32): optax.tree.norm's value, in a few reductions rather than one or two
  kernels per leaf (see NORM_GROUP). The one norm of the repository — the clip and the steps' `grad_norm`
  metric call it alike, so XLA computes it once. With more than one device each leaf is reduced alone, as
  optax does: leaves sharded over a mesh would be gathered to be concatenated (a per-leaf sum of squares is
  summed across devices as a scalar)."""
  leaves = [x.astype(jnp.float32) for x in jax.tree.leaves(tree)]
  alone = 0 if jax.device_count() > 1 else NORM_ALONE
  squares = [jnp.sum(jnp.square(x)) for x in leaves if x.size >= alone]  # (no reshape: a sharded leaf stays put)
  small = [jnp.ravel(x) for x in leaves if x.size < alone]
  squares += [jnp.sum(jnp.square(jnp.concatenate(small[i:i + NORM_GROUP])))
              for i in range(0, len(small), NORM_GROUP)]
  return jnp.sqrt(sum(squares, jnp.zeros((), jnp.float32)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """Updates scaled by max_norm / ‖updates‖ when that norm is over max_norm (Pascanu et al. 2013), as
  optax.clip_by_global_norm does, with `global_norm`."""
  def update(updates, state, params=None):
    del params
    norm = global_norm(updates)
    keep = norm < max_norm
    return jax.tree.map(lambda t: jnp.where(keep, t, (t / norm.astype(t.dtype)) * max_norm), updates), state
  return optax.GradientTransformation(optax.init_empty_state, update)


def schedule(opt, total_steps: int) -> optax.Schedule:
  lr, warm = float(opt.lr), int(opt.get("warmup_steps", 0))
  kind = opt.get("schedule", "cosine")
  end = lr * float(opt.get("end_lr_frac", 0.1))
  decay_steps = max(1, total_steps - warm)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
  elif kind == "linear":
    main = optax.linear_schedule(lr, end, decay_steps)
  elif kind == "rsqrt":
    main = lambda s: lr * jax.lax.rsqrt(1.0 + s / max(1, warm))
  else:
    raise ValueError(f"optimizer.schedule={kind!r} is unknown; use constant, cosine, linear or rsqrt.")
  if warm:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm])
  return main


def _is_kernel(path, x) -> bool:
  last = path[-1] if path else None
  return str(getattr(last, "key", getattr(last, "name", last))) == "kernel" and jnp.ndim(x) >= 2


def matrix_labels(params):
  """"matrix" for weight kernels (leaves named `kernel` with ndim ≥ 2: dense and attention projections),
  "other" for everything else (embeddings, norm scales, biases) — GaLore/Fira's routing."""
  return jax.tree_util.tree_map_with_path(lambda path, x: "matrix" if _is_kernel(path, x) else "other", params)


class ParamCopyState(NamedTuple):
  """`with_param_copy`'s state: the wrapped optimizer's, and the copy — the parameters' tree with each
  weight kernel in the copy's dtype and `optax.MaskedNode()` for every other parameter."""
  inner: Any
  copy: Any


def with_param_copy(tx: optax.GradientTransformation, dtype) -> optax.GradientTransformation:
  """`tx`, also keeping a copy of the weight kernels (`matrix_labels`' "matrix" leaves) in `dtype`,
  written from the updated parameters by the update itself.

  A model that computes in bf16 from fp32 parameters casts every kernel at the start of every step: a
  pass that reads 4 bytes and writes 2 per parameter (the ~1B decoder's H100 program: 2.55 ms a step).
  Written by the optimizer's own element-wise kernel, the copy costs the 2-byte write alone, and
  `compute_params` hands it to the step: the same bf16 values the cast would make, so training is
  unchanged (the kernels' gradients arrive in bf16, as the cast's transpose had them, and the step
  upcasts them before the optimizer). Embeddings, norm scales and biases are not copied: an
  embedding's gradient is summed over tokens and must accumulate in fp32 (`transformer.Embed`).
  Only for kernels the model casts to `dtype` once each (every projection of the shared models) and
  losses that read them only through the model (the loss sees them in `dtype`: a penalty on the
  weights would be computed in bf16); and only with steps whose parameters change through the
  optimizer alone (`train` refuses a method's own step), else the copy would go stale."""
  dtype = jnp.dtype(dtype)

  def cast(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p.astype(dtype) if _is_kernel(path, p) else optax.MaskedNode(), params)

  def init(params):
    return ParamCopyState(tx.init(params), cast(params))

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("optimizer.param_copy needs the parameters in tx.update(grads, state, params) to write "
                       "their copy; pass them, or set optimizer.param_copy=''.")
    updates, inner = tx.update(grads, state.inner, params)
    return updates, ParamCopyState(inner, cast(optax.apply_updates(params, updates)))

  return optax.GradientTransformation(init, update)


class GroupedState(NamedTuple):
  """`grouped`'s state: the wrapped transformation's state of each group of equal-shaped leaves, its
  leaves stacked along a new leading axis (one entry per group, in `leaf_groups` order)."""
  groups: tuple


def leaf_groups(tree) -> list[list[int]]:
  """The leaves of `tree` (arrays or shapes) grouped by (shape, dtype), as lists of flat indices in
  first-seen order: the twelve layers' query kernels, their norm scales, ... each one group."""
  groups: dict[tuple, list[int]] = {}
  for i, x in enumerate(jax.tree.leaves(tree)):
    groups.setdefault((tuple(x.shape), jnp.dtype(x.dtype).name), []).append(i)
  return list(groups.values())


def grouped(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` run once per group of equal-shaped parameters instead of once per parameter: the group's
  leaves stacked and `tx` vmapped over the stack, so every per-leaf quantity (Adafactor's factored
  statistics, its update clipping and parameter scale, Adam's moments) stays per leaf — the same
  update — in one set of kernels per group.

  Why: optax runs each transformation leaf by leaf, and XLA compiles each leaf's reductions as their
  own small kernels: Adafactor's update of T5-base (~280 leaves) is ~3000 kernels (2071 reductions,
  most of them to a scalar), a few microseconds of launch each on a GPU. Grouped, the twelve layers'
  copies of a leaf share them. The price is a copy of the gradients and parameters into the stacks.
  Only for transformations that treat leaves independently (not `clip_by_global_norm`: `build`
  keeps that outside)."""
  def split(tree, groups):
    leaves = jax.tree.leaves(tree)
    return [jnp.stack([leaves[i] for i in g]) for g in groups]

  def init(params):
    groups = leaf_groups(params)
    return GroupedState(tuple(jax.vmap(tx.init)(stack) for stack in split(params, groups)))

  def update(grads, state, params=None):
    groups = leaf_groups(params if params is not None else grads)  # init grouped the parameters
    if len(groups) != len(state.groups):
      raise ValueError("optimizer.group_leaves: the gradients' shapes do not match the optimizer state's groups "
                       "(was the state made for other parameters?).")
    g_stacks = split(grads, groups)
    p_stacks = split(params, groups) if params is not None else [None] * len(groups)
    flat = [None] * len(jax.tree.leaves(grads))
    new_states = []
    for members, g, s, p in zip(groups, g_stacks, state.groups, p_stacks):
      u, s = jax.vmap(tx.update)(g, s, p) if p is not None else jax.vmap(lambda g, s: tx.update(g, s))(g, s)
      new_states.append(s)
      for j, i in enumerate(members):
        flat[i] = u[j]
    return jax.tree.unflatten(jax.tree.structure(grads), flat), GroupedState(tuple(new_states))

  return optax.GradientTransformation(init, update)


def compute_params(params, opt_state):
  """The parameters a step differentiates: `params`, with each kernel the optimizer keeps a copy of
  (`with_param_copy`) taken from that copy; `params` itself for any other optimizer."""
  if not isinstance(opt_state, ParamCopyState):
    return params
  masked = lambda x: isinstance(x, optax.MaskedNode)
  return jax.tree.map(lambda c, p: p if masked(c) else c, opt_state.copy, params, is_leaf=masked)


def as_param_dtypes(grads, params):
  """Gradients in their parameters' dtypes (a copied kernel's gradient arrives in the copy's)."""
  return jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)


def as_matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
  """The (rows, cols) view of a kernel: split its axes where rows × cols is closest to square
  (attention's [d, heads, head_dim] → [d, heads·head_dim]; [heads, head_dim, d] → [heads·head_dim, d])."""
  import math  # pylint: disable=g-import-not-at-top
  if len(shape) == 2:
    return int(shape[0]), int(shape[1])
  splits = [(math.prod(shape[:i]), math.prod(shape[i:])) for i in range(1, len(shape))]
  return min(splits, key=lambda mn: abs(math.log(mn[0] / mn[1])))


def route_matrices(matrix_tx: optax.GradientTransformation,
                   other_tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`matrix_tx` on weight kernels, `other_tx` on the rest (optax.multi_transform over `matrix_labels`)."""
  return optax.multi_transform({"matrix": matrix_tx, "other": other_tx}, matrix_labels)


def state_bytes(opt_state) -> int:
  """Bytes of an optimizer state (or its abstract shapes): Σ size × itemsize over its array leaves."""
  import math  # pylint: disable=g-import-not-at-top
  return int(sum(math.prod(x.shape) * jax.numpy.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(opt_state) if hasattr(x, "shape")))


def _decay_mask(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)


def build(opt, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  lr = schedule(opt, total_steps)
  name = opt.get("name", "adamw")
  wd = float(opt.get("weight_decay", 0.0))
  if ":" in name:  # a paper's own transformation, resolved by import path
    from paperjax import registry  # pylint: disable=g-import-not-at-top
    try:
      make = registry.resolve(name)
    except (ImportError, AttributeError) as e:
      raise ValueError(f"optimizer.name={name!r} cannot be imported ({e}); give 'package.module:function', e.g. "
                       "'paperjax.papers.fira.method:fira'.") from None
    tx = make(lr, opt)
  elif name == "adamw":
    tx = optax.adamw(lr, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.95), eps=opt.get("eps", 1e-8),
                     weight_decay=wd, mask=_decay_mask)
  elif name == "adam":
    tx = optax.adam(lr, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999), eps=opt.get("eps", 1e-8))
  elif name == "adafactor":
    tx = optax.adafactor(lr, weight_decay_rate=wd or None)
  elif name == "sgd":
    tx = optax.sgd(lr, momentum=opt.get("momentum", 0.0) or None, nesterov=bool(opt.get("nesterov", False)))
  elif hasattr(optax, name):
    tx = getattr(optax, name)(lr)
  else:
    raise ValueError(f"optimizer.name={name!r} is not an optax optimizer; use adamw, adam, adafactor, sgd, "
                     "another optax name, or 'module:function' for a paper's own.")
  if opt.get("group_leaves", False):
    if ":" in name:
      raise ValueError(f"optimizer.group_leaves=True runs optax's per-leaf optimizers once per group of equal-shaped "
                       f"parameters, and {name!r} may look at the parameter tree itself; set group_leaves=False.")
    tx = grouped(tx)  # inside the global-norm clip, which is not per leaf
  clip = float(opt.get("clip_norm", 0.0))
  if clip:
    tx = optax.chain(clip_by_global_norm(clip), tx)
  if opt.get("param_copy", ""):
    try:
      dtype = jnp.dtype(opt.param_copy)
    except TypeError:
      raise ValueError(f"optimizer.param_copy={opt.param_copy!r} is not a dtype; use the model's compute dtype "
                       "('bfloat16') or '' for none.") from None
    tx = with_param_copy(tx, dtype)  # outermost: the step finds the copy at the top of opt_state
  return tx, lr
