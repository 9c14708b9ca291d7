"""The population axis: many replicas of one model trained together (federated clients, DiLoCo
workers, expert LMs), stacked on a leading axis that is sharded over the mesh axis `clients`.

One name everywhere: the mesh axis, the logical axis and the collective axis are all `clients`
(`AXIS`). A population config adds it with `configure(c, ...)`: mesh axes become
("clients", "data", "fsdp", "tensor") with every device on `clients`, and the logical rule
("clients", "clients") shards every stacked leaf's leading dimension over it.

The pieces, in the order a round uses them:
  stack(tree, n) / boxed(tree)   replicate a model n times / mark a stacked tree for `clients` sharding
  stack_members(trees)           stack different trees (one init per seed) on `clients`
  local_sgd(loss, tx)            H local steps as one `lax.scan`: (params, opt, batches[H]) -> ...
  run_clients(mesh, body, ...)   `shard_map` over `clients`: inside, each device holds its share of the
                                 slots and `vmap`s the per-client work over them
  weighted_mean(tree, w)         the aggregation collective: psum(Σ w·x) / psum(Σ w) over `clients`
  participants(w)                how many slots took part (w > 0), summed over the mesh
  fedopt_step(...)               FedAvg / DiLoCo (FedOpt, Reddi et al. 2021): a whole round —
                                 broadcast, local scan, pseudo-gradient mean, outer step — is one
                                 jitted call of the trainer (`Method.step`)
  independent_step(...)          replicas that never communicate (expert LMs, per-partition
                                 continued pretraining): the stacked params train side by side
  sweep_step(...)                a hyper-parameter population: K members on the same batches, each with
                                 its own peak learning rate (scaling-law sweeps; one population per batch size)
  average(stacked, w)            Σ_j w_j θ_j over the population axis (merging)

Participation is a weight per slot: a client that was not sampled, dropped out or failed has weight 0,
contributes nothing to any mean, and keeps its per-client state unchanged. Bytes exchanged are
accounted in `paperjax.comm` from the shapes of what is sent.

State layout of a population method (a convention, so checkpoints and evaluators need nothing new):
  state.params         the model everyone evaluates (the global / server / outer model)
  state.opt_state      the outer (server) optimizer's state — `config.optimizer`
  state.extras["pop"]  per-client state stacked on `clients` (inner optimizer states, replicas, ...)
  state.extras["comm"] cumulative byte counters (`comm.init_totals`)
The trainer feeds one round per step from `data.partition.ClientStreams` (`Method.make_iterator`),
sharded on `clients` (`Method.batch_axis`).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from paperjax import comm, optim

AXIS = "clients"
BATCH_META = ("client", "num_examples")  # per-slot fields of a round batch; the rest is training data


def configure(c, **population):
  """Adds `config.population` (clients, clients_per_round, local_steps, partition, alpha, ...) and the
  `clients` mesh axis and rule to a base config (an ml_collections.ConfigDict)."""
  import ml_collections
  defaults = dict(clients=4, clients_per_round=0, local_steps=8, batch_size=8, partition="iid", alpha=0.5,
                  weighting="examples", domains=(), client_map="vmap", unroll=1)
  defaults.update(population)
  c.population = ml_collections.ConfigDict(defaults)
  c.mesh.axes = (AXIS, "data", "fsdp", "tensor")
  c.mesh.shape = (-1, 1, 1, 1)
  c.axis_rules = ((AXIS, AXIS),) + tuple(r for r in c.axis_rules if r[0] != AXIS)
  return c


def sgd(lr: float, **overrides) -> dict:
  """An inner-optimizer config block: plain SGD at a constant lr (FedAvg's clients)."""
  return {**dict(name="sgd", lr=lr, schedule="constant", warmup_steps=0, clip_norm=0.0, momentum=0.0, nesterov=False,
                 weight_decay=0.0), **overrides}


def adamw(lr: float, **overrides) -> dict:
  """An inner-optimizer config block: AdamW (β 0.9/0.95, wd 0.01, clip 1), constant unless overridden."""
  return {**dict(name="adamw", lr=lr, schedule="constant", warmup_steps=0, end_lr_frac=0.1, b1=0.9, b2=0.95, eps=1e-8,
                 weight_decay=0.01, clip_norm=1.0), **overrides}


def slots(config) -> int:
  """Clients trained per round: `clients_per_round`, or every client when it is 0."""
  p = config.population
  return int(p.clients_per_round or p.clients)


# --------------------------------------------------------------------------- stacking


def _names(x):
  return tuple(x.names) if isinstance(x, nn.Partitioned) else (None,) * jnp.ndim(x)


def stack(tree, n: int):
  """n copies of `tree` on a new leading axis, boxed with the `clients` logical name (boxes kept)."""
  def one(x):
    v = x.value if isinstance(x, nn.Partitioned) else x
    return nn.LogicallyPartitioned(jnp.broadcast_to(v, (n,) + v.shape), (AXIS,) + _names(x))
  return jax.tree.map(one, tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def stack_members(trees):
  """Different trees (e.g. one init per seed) stacked on a new leading axis, boxed with `clients`."""
  is_box = lambda x: isinstance(x, nn.Partitioned)
  def one(*xs):
    vals = [x.value if is_box(x) else x for x in xs]
    return nn.LogicallyPartitioned(jnp.stack(vals), (AXIS,) + _names(xs[0]))
  return jax.tree.map(one, *trees, is_leaf=is_box)


def boxed(stacked):
  """Marks an already stacked tree's leading axis as `clients` (other axes replicated)."""
  return jax.tree.map(lambda x: nn.LogicallyPartitioned(x, (AXIS,) + (None,) * (jnp.ndim(x) - 1)), stacked)


def unbox(tree):
  return nn.meta.unbox(tree)


# --------------------------------------------------------------------------- local training


def local_sgd(loss_fn: Callable, tx: optax.GradientTransformation, unroll: int | bool = 1) -> Callable:
  """(params, opt_state, batches with a leading [H] axis, rng) -> (params, opt_state, {loss: [H], ...}).

  The H local steps of one client as one `lax.scan` (compiled once, whatever H is). `unroll=True`
  inlines the steps: XLA:CPU runs convolutions inside a while loop ~20x slower than outside one
  (notes/population.md), so conv nets on CPU want it; matmul models and accelerators do not."""
  def run(params, opt_state, batches, rng):
    def one(carry, xs):
      p, o = carry
      batch, h = xs
      (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(p, batch, jax.random.fold_in(rng, h))
      updates, o = tx.update(g, o, p)
      return (optax.apply_updates(p, updates), o), {**aux, "loss": loss}
    H = jax.tree.leaves(batches)[0].shape[0]
    (params, opt_state), metrics = jax.lax.scan(one, (params, opt_state), (batches, jnp.arange(H)), unroll=unroll)
    return params, opt_state, metrics
  return run


# --------------------------------------------------------------------------- the clients axis


def check_mesh(mesh, n_slots: int) -> int:
  if AXIS not in mesh.shape:
    raise ValueError(f"A population method needs a mesh axis named {AXIS!r} (mesh axes are {tuple(mesh.shape)}); "
                     "build the config with paperjax.population.configure(c, ...).")
  k = mesh.shape[AXIS]
  if n_slots % k:
    raise ValueError(f"{n_slots} client slots per round do not divide over the {k} devices of the {AXIS!r} "
                     f"mesh axis; use a multiple of {k} for population.clients_per_round (or clients).")
  return k


def run_clients(mesh, body: Callable, args: tuple, sharded: tuple[bool, ...], out_sharded) -> Callable:
  """Runs `body(*args)` under `shard_map` over `clients`: arguments flagged in `sharded` arrive as
  this device's slice of the slots (leading axis), the others replicated; `out_sharded` (a prefix tree
  of bools matching the output) says which outputs are per-slot. Inside, logical sharding constraints
  are switched off (the model runs on whole per-device shards) and collectives name `AXIS`."""
  spec = lambda s: P(AXIS) if s else P()
  def wrapped(*a):
    with nn.logical_axis_rules(()):
      return body(*a)
  f = jax.shard_map(wrapped, mesh=mesh, in_specs=tuple(spec(s) for s in sharded),
                    out_specs=jax.tree.map(spec, out_sharded), check_vma=False)
  return f(*args)


def per_slot(fn: Callable, in_axes=0, mode: str = "vmap") -> Callable:
  """`fn` over the leading (slot) axis of the arguments whose `in_axes` entry is 0 (None: shared).

  "vmap" batches the clients into one program (best for matmul models, and on accelerators);
  "map" runs them one after another inside the same jitted call (`lax.map`, a loop); "unroll" writes
  them out one after another (straight-line code). Conv nets on CPU want "unroll" with unrolled local
  steps: XLA:CPU runs a convolution inside any loop ~20x slower than outside one, and a vmap over
  per-client conv weights becomes a grouped convolution, as slow (measured in notes/population.md)."""
  if mode == "vmap":
    return jax.vmap(fn, in_axes=in_axes)
  if mode not in ("map", "unroll"):
    raise ValueError(f"population.client_map={mode!r} is unknown; use 'vmap', 'map' or 'unroll'.")
  def run(*args):
    axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    mapped = tuple(a for a, ax in zip(args, axes) if ax is not None)
    def one(xs):
      it = iter(xs)
      return fn(*[next(it) if ax is not None else a for a, ax in zip(args, axes)])
    if mode == "map":
      return jax.lax.map(one, mapped)
    n = jax.tree.leaves(mapped)[0].shape[0]
    outs = [one(jax.tree.map(lambda x: x[i], mapped)) for i in range(n)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
  return run


def weighted_mean(tree, w):
  """Σ_c w_c x_c / Σ_c w_c over every slot of the mesh (inside `run_clients`); zeros if Σ w = 0."""
  den = jax.lax.psum(jnp.sum(w), AXIS)
  def one(x):
    num = jax.lax.psum(jnp.tensordot(w.astype(x.dtype), x, axes=1), AXIS)
    return jnp.where(den > 0, num / jnp.maximum(den, 1e-30).astype(x.dtype), jnp.zeros_like(num))
  return jax.tree.map(one, tree)


def participants(w):
  return jax.lax.psum(jnp.sum((w > 0).astype(jnp.float32)), AXIS)


def keep_where(active, new, old):
  """Per-slot select: slots with `active` take `new`, the others keep `old` (leading axis = slots)."""
  def one(n, o):
    return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
  return jax.tree.map(one, new, old)


def split_batch(batch: dict):
  data = {k: v for k, v in batch.items() if k not in BATCH_META}
  return data, batch["client"], batch["num_examples"]


def slot_weights(config, client, num_examples):
  """FedAvg weights (client dataset sizes) or uniform; 0 for empty slots."""
  kind = config.population.get("weighting", "examples")
  if kind == "examples":
    return num_examples
  if kind == "uniform":
    return (client >= 0).astype(jnp.float32)
  raise ValueError(f"population.weighting={kind!r} is unknown; use 'examples' or 'uniform'.")


# --------------------------------------------------------------------------- FedOpt: FedAvg and DiLoCo


def fedopt_step(loss_fn: Callable, inner_tx: optax.GradientTransformation, config, *, keep_inner_state: bool,
                messages: tuple[float, float] = (1.0, 1.0)):
  """One round of FedOpt as `Method.step` (state, batch, ctx) -> (state, metrics).

      θ_c ← θ;  θ_c ← H steps of inner_tx on client c's data          (vmap over slots, scan over H)
      Δ = Σ_c w_c (θ − θ_c) / Σ_c w_c                                   (the pseudo-gradient, a psum)
      θ ← outer_tx(θ, Δ)                                                (config.optimizer = ctx.tx)

  FedAvg (McMahan et al. 2017): inner SGD whose state starts fresh each round, outer SGD lr 1 (so θ is
  the weighted mean of the clients), weights = client dataset sizes. DiLoCo (Douillard et al. 2023):
  inner AdamW whose state each worker keeps across rounds (`keep_inner_state`), outer Nesterov SGD
  (lr 0.7, momentum 0.9), uniform weights. Bytes: each participant uploads Δ_c and downloads θ (fp32),
  `messages` = (uploads, downloads) model-sized messages per participant (MoDeST: a uploads, 1 download).
  """
  local = local_sgd(loss_fn, inner_tx, unroll=config.population.get("unroll", 1))
  mode = config.population.get("client_map", "vmap")

  def step(state, batch, ctx):
    data, client, num_examples = split_batch(batch)
    w = slot_weights(config, client, num_examples)
    n_slots = client.shape[0]
    check_mesh(ctx.mesh, n_slots)
    rng = jax.random.fold_in(state.rng, state.step)
    theta = state.params
    inner = state.extras["pop"]["opt"] if keep_inner_state else None

    def body(theta, inner, data, w, client):
      def one(opt_c, data_c, client_c):
        opt0 = opt_c if keep_inner_state else inner_tx.init(theta)
        p, o, m = local(theta, opt0, data_c, jax.random.fold_in(rng, client_c))
        return jax.tree.map(jnp.subtract, theta, p), o, m["loss"].mean()
      delta, new_inner, loss = per_slot(one, (0 if keep_inner_state else None, 0, 0), mode)(inner, data, client)
      active = w > 0
      if keep_inner_state:
        new_inner = keep_where(active, new_inner, inner)
      return (weighted_mean(delta, w), new_inner, weighted_mean(loss, active.astype(jnp.float32)),
              participants(w))

    delta, new_inner, loss, n = run_clients(
        ctx.mesh, body, (theta, inner, data, w, client), (False, True, True, True, True),
        (False, True, False, False))
    updates, opt_state = ctx.tx.update(delta, state.opt_state, theta)
    params = optax.apply_updates(theta, updates)
    msg = comm.tree_bytes(theta)
    totals, cm = comm.round_metrics(state.extras["comm"], up_per_client=messages[0] * msg,
                                    down_per_client=messages[1] * msg, participants=n)
    extras = dict(state.extras, comm=totals)
    if keep_inner_state:
      extras["pop"] = {"opt": new_inner}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, extras=extras)
    return new_state, {"loss": loss, "participants": n, "outer_grad_norm": optim.global_norm(delta), **cm}
  return step


def fedopt_extras(inner_tx, config, *, keep_inner_state: bool) -> Callable:
  """`Method.init_extras` for `fedopt_step`: byte counters, and each slot's inner optimizer state."""
  def init_extras(rng, params):
    del rng
    extras = {"comm": comm.init_totals()}
    if keep_inner_state:
      opt = inner_tx.init(unbox(params))
      extras["pop"] = {"opt": boxed(jax.tree.map(lambda x: jnp.broadcast_to(x, (slots(config),) + x.shape), opt))}
    return extras
  return init_extras


# --------------------------------------------------------------------------- no communication


def independent_step(loss_fn: Callable, inner_tx: optax.GradientTransformation) -> Callable:
  """`Method.step` for a population whose members never communicate: `state.params` are the stacked
  replicas, `state.extras["opt"]` their stacked inner optimizer states, and each trains H local steps
  on its own stream. The step has no collective (tests/papers/test_btm.py asserts it on the jaxpr)."""
  local = local_sgd(loss_fn, inner_tx)

  def step(state, batch, ctx):
    data, client, _ = split_batch(batch)
    check_mesh(ctx.mesh, client.shape[0])
    rng = jax.random.fold_in(state.rng, state.step)

    def body(params, opt, data, client):
      def one(p, o, d, c):
        p, o, m = local(p, o, d, jax.random.fold_in(rng, c))
        return p, o, m["loss"].mean()
      return jax.vmap(one)(params, opt, data, client)

    params, opt, losses = run_clients(ctx.mesh, body, (state.params, state.extras["opt"], data, client),
                                      (True,) * 4, (True, True, True))
    metrics = {"loss": losses.mean(), **{f"loss/member{e}": losses[e] for e in range(losses.shape[0])}}
    return state.replace(step=state.step + 1, params=params, extras=dict(state.extras, opt=opt)), metrics
  return step


def independent_extras(inner_tx) -> Callable:
  """`Method.init_extras` for `independent_step`: each member's inner optimizer state."""
  return lambda rng, params: {"opt": boxed(jax.vmap(inner_tx.init)(unbox(params)))}


# --------------------------------------------------------------------------- hyper-parameter sweeps


def sweep_step(loss_fn: Callable, unit_tx: optax.GradientTransformation) -> Callable:
  """`Method.step` for a learning-rate population (scaling-law sweeps): `state.params` are K stacked
  members (one init, or one per seed with `stack_members`), `state.extras["opt"]` their stacked optimizer states and `state.extras["lr"]` the
  K peak learning rates. Every member trains on the same batch; member k applies `unit_tx`'s update (the
  optimizer built at peak lr 1, so it carries the schedule's shape, clipping and decoupled weight decay)
  times lr_k. Different batch sizes change the batch's shape, so they cannot share one vmap: run one
  population per batch size. Metrics: `loss` (mean over members) and `loss/member<k>`."""
  def step(state, batch, ctx):
    lrs = state.extras["lr"]
    check_mesh(ctx.mesh, lrs.shape[0])
    rng = jax.random.fold_in(state.rng, state.step)

    def body(params, opt, lrs, batch):
      def one(p, o, lr):
        (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p, batch, rng)
        u, o = unit_tx.update(g, o, p)
        return optax.apply_updates(p, jax.tree.map(lambda x: (lr * x).astype(x.dtype), u)), o, loss
      return jax.vmap(one)(params, opt, lrs)

    params, opt, losses = run_clients(ctx.mesh, body, (state.params, state.extras["opt"], lrs, batch),
                                      (True, True, True, False), (True, True, True))
    metrics = {"loss": losses.mean(), **{f"loss/member{k}": losses[k] for k in range(losses.shape[0])}}
    return state.replace(step=state.step + 1, params=params, extras=dict(state.extras, opt=opt)), metrics
  return step


def sweep_extras(unit_tx: optax.GradientTransformation, lrs) -> Callable:
  """`Method.init_extras` for `sweep_step`: each member's optimizer state and its peak learning rate."""
  lrs = jnp.asarray(lrs, jnp.float32)
  return lambda rng, params: {"opt": boxed(jax.vmap(unit_tx.init)(unbox(params))), "lr": boxed(lrs)}


def from_one(prev, params, extras):
  """`Method.from_previous` that starts every member of the population from one previous model."""
  return jax.tree.map(lambda p, s: jnp.broadcast_to(p, s.shape), prev, params), extras


def average(stacked, weights=None):
  """Σ_j w_j θ_j over the leading (population) axis, w normalised; uniform by default."""
  K = jax.tree.leaves(stacked)[0].shape[0]
  w = jnp.full((K,), 1.0 / K) if weights is None else jnp.asarray(weights) / jnp.sum(jnp.asarray(weights))
  return jax.tree.map(lambda x: jnp.tensordot(w.astype(x.dtype), x, axes=1), stacked)
