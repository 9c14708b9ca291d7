"""Just One Byte (per gradient): A Note on Low-Bandwidth Decentralized Language Model Finetuning Using
Shared Randomness (Zelikman, Huang, Liang, Haber, Goodman, 2023). https://arxiv.org/abs/2306.10015

Rule. Machines m = 1..M hold identical replicas θ. At iteration t each machine m draws, for i = 1..k,
z_{t,m,i} ~ N(0, I) from a seed that every machine can compute, seed(t, m, i) (here
fold_in(fold_in(fold_in(key, t), m), i)), and estimates the projected gradient on its own batch
  g_{t,m,i} = [L(θ + εz) − L(θ − εz)] / 2ε                                   (SPSA / MeZO, ε = 1e-3)
It sends one byte per estimate, q = Q(g). Every machine receives all the bytes and applies the same
  θ ← θ − η · (1 / (n_active·k)) Σ_{m active, i} Q⁻¹(q_{t,m,i}) · z_{t,m,i}
regenerating every z from its seed, so replicas stay bitwise equal without ever exchanging weights.
Machines can leave (their bytes stop counting) and join (they download the weights from a peer once).

The 1-byte quantiser (ours: the released code sends float scalars, and the paper leaves it open):
int8 with a *shared adaptive scale* s, q = clip(round(127 g / s), −127, 127), Q⁻¹(q) = q s / 127. s is
updated after every iteration from the dequantised bytes alone, s ← 0.9 s + 0.1 · 2 max|Q⁻¹(q)|, so
every machine computes the same s and no scale is ever sent (a saturated byte doubles s's target, small
values shrink it). `justonebyte.quantization="none"` sends fp32 scalars instead (4 bytes each).

Defaults: ε = 1e-3 (official code, app_jax.py); k samples per machine per iteration, lr and batch from
the toy (digits MLP, digest #8). Deviation: join/leave happen at round boundaries (a round = T
iterations, one trainer step); a joiner copies the replica of the lowest-numbered machine that was
active in the previous round.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from paperjax import comm, population
from paperjax.data import partition, pipeline
from paperjax.method import Method, PaperInfo
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="justonebyte",
                  title="Just One Byte (per gradient): A Note on Low-Bandwidth Decentralized Language Model "
                        "Finetuning Using Shared Randomness",
                  authors="Zelikman et al.", year=2023, url="https://arxiv.org/abs/2306.10015",
                  family="distributed/communication")


def perturbation(params, key):
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(treedef, [jax.random.normal(jax.random.fold_in(key, j), x.shape, x.dtype)
                                      for j, x in enumerate(leaves)])


def seed_key(base, t, machine, i):
  """The shared randomness: z_{t,m,i} depends on (t, m, i) and the run's base key only."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, t), machine), i)


def quantize(g, scale):
  return jnp.clip(jnp.round(127.0 * g / scale), -127, 127).astype(jnp.int8)


def dequantize(q, scale):
  return q.astype(jnp.float32) * scale / 127.0


def next_scale(scale, ghat, active):
  peak = jnp.max(jnp.where(active, jnp.abs(ghat), 0.0))
  return jnp.where(active.any(), 0.9 * scale + 0.1 * jnp.maximum(2.0 * peak, 1e-12), scale)


def job_step(loss_fn, config):
  j = config.justonebyte
  k, lr, eps, quant = int(j.samples), float(j.lr), float(j.eps), j.quantization
  if quant not in ("int8", "none"):
    raise ValueError(f"justonebyte.quantization={quant!r} is unknown; use 'int8' or 'none'.")
  M = int(config.population.clients)

  def step(state, batch, ctx):
    data, client, _ = population.split_batch(batch)
    population.check_mesh(ctx.mesh, client.shape[0])
    ex = state.extras
    base = ex["base_key"]
    T = jax.tree.leaves(data)[0].shape[1]
    t0 = state.step * T

    def body(reps, was, data, client, scale):
      active = client >= 0
      ids = jnp.arange(M)  # machine m sits in slot m
      act_all = jax.lax.all_gather(active, population.AXIS, tiled=True)        # [M]
      was_all = jax.lax.all_gather(was, population.AXIS, tiled=True)
      # Joiners download the weights of the lowest-numbered machine active before (and now).
      donor = jnp.argmax(was_all & act_all)
      slot0 = jax.lax.axis_index(population.AXIS) * client.shape[0]
      my_ids = slot0 + jnp.arange(client.shape[0])
      donor_params = jax.tree.map(
          lambda x: jax.lax.psum(jnp.tensordot((my_ids == donor).astype(x.dtype), x, axes=1), population.AXIS), reps)
      joining = active & ~was
      reps = population.keep_where(joining, jax.tree.map(lambda d, x: jnp.broadcast_to(d, x.shape), donor_params, reps), reps)
      xs = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), data)

      def one_iter(carry, x):
        reps, scale = carry
        batch_h, h = x
        t = t0 + h

        def estimates(p, b, m):
          def one(i):
            z = perturbation(p, seed_key(base, t, m, i))
            lp = loss_fn(jax.tree.map(lambda a, c: a + eps * c, p, z), b, None)[0]
            lm = loss_fn(jax.tree.map(lambda a, c: a - eps * c, p, z), b, None)[0]
            return (lp - lm) / (2 * eps), (lp + lm) / 2
          return jax.vmap(one)(jnp.arange(k))
        g, loss = jax.vmap(estimates)(reps, batch_h, my_ids)                    # [slots, k]
        if quant == "int8":
          sent = jax.lax.all_gather(quantize(g, scale), population.AXIS, tiled=True)   # [M, k] bytes
          ghat = dequantize(sent, scale)
        else:
          ghat = jax.lax.all_gather(g, population.AXIS, tiled=True)
        ghat = jnp.where(act_all[:, None], ghat, 0.0)
        n = jnp.maximum(act_all.sum() * k, 1).astype(jnp.float32)

        def apply(p):  # every replica regenerates every machine's perturbations, in the same order
          def add(acc, mi):
            m, i = mi // k, mi % k
            z = perturbation(p, seed_key(base, t, ids[m], i))
            return jax.tree.map(lambda a, c: a + ghat[m, i] * c, acc, z), None
          total, _ = jax.lax.scan(add, jax.tree.map(jnp.zeros_like, p), jnp.arange(M * k))
          return jax.tree.map(lambda a, d: a - (lr / n) * d, p, total)
        new = jax.vmap(apply)(reps)
        reps = population.keep_where(active, new, reps)
        scale = next_scale(scale, ghat, act_all[:, None]) if quant == "int8" else scale
        mean_loss = population.weighted_mean(loss.mean(-1), active.astype(jnp.float32))
        return (reps, scale), mean_loss

      (reps, scale), losses = jax.lax.scan(one_iter, (reps, scale), (xs, jnp.arange(T)))
      # Replicas of active machines must be bitwise equal: spread = max − min over them, per element.
      big = jnp.float32(3.0e38)
      spread = jnp.max(jnp.asarray([jnp.max(jax.lax.pmax(jnp.max(jnp.where(_b(active, x), x, -big), 0), population.AXIS)
                                            - jax.lax.pmin(jnp.min(jnp.where(_b(active, x), x, big), 0), population.AXIS))
                                    for x in jax.tree.leaves(reps)]))
      first = jax.tree.map(lambda x: jax.lax.psum(jnp.tensordot((my_ids == jnp.argmax(act_all)).astype(x.dtype), x, axes=1),
                                                  population.AXIS), reps)
      return reps, active, scale, losses.mean(), spread, first, population.participants(active.astype(jnp.float32))

    reps, now_active, scale, loss, spread, params, n = population.run_clients(
        ctx.mesh, body, (ex["replicas"], ex["was_active"], data, client, ex["scale"]),
        (True, True, True, True, False), (True, True, False, False, False, False, False))
    width = jnp.int8 if quant == "int8" else jnp.float32
    up = T * comm.tree_bytes(jax.ShapeDtypeStruct((k,), width))
    down = up * jnp.maximum(n - 1, 0)  # every other active machine's bytes
    totals, cm = comm.round_metrics(ex["comm"], up_per_client=up, down_per_client=down, participants=n,
                                    peak_per_step=n * (up + down) / T)  # every iteration exchanges
    extras = dict(ex, replicas=reps, was_active=now_active, scale=scale, comm=totals)
    return state.replace(step=state.step + 1, params=params, extras=extras), {
        "loss": loss, "replica_spread": spread, "byte_scale": scale, "machines": n, **cm}
  return step


def _b(active, x):
  return active.reshape((-1,) + (1,) * (x.ndim - 1))


def schedule_sampler(config):
  """Which machines are active in round r: all, except `leave` = (machine, from_round, to_round) spans."""
  M = int(config.population.clients)
  spans = [tuple(int(v) for v in s) for s in (config.justonebyte.get("leave", ()) or ())]
  def sample(r):
    ids = np.arange(M)
    for m, a, b in spans:
      if a <= r < b:
        ids[m] = -1
    return ids
  return sample


def make(config, ctx) -> Method:
  t = task_lib.build(config, ctx)
  j = config.justonebyte
  if j.phase == "pretrain":  # stage 1: first-order training on the classes `pretrain_classes` only
    def iterator(ctx):
      from paperjax import data as data_lib
      src = data_lib.build_source(config.data, "train")
      keep = np.flatnonzero(np.isin([src[i]["label"] for i in range(len(src))], list(j.pretrain_classes)))
      return pipeline.make_iterator(partition.Subset(src, keep), global_batch_size=int(config.data.batch_size),
                                    seed=int(config.seed), process_index=ctx.process_index,
                                    process_count=ctx.process_count)
    return Method(init=t.init, loss=t.loss, make_iterator=iterator, evaluators=t.evaluators, model=t.model,
                  summary_keys=("val_loss", "val_accuracy"))
  if j.phase != "zeroth_order":
    raise ValueError(f"justonebyte.phase={j.phase!r} is unknown; use 'pretrain' or 'zeroth_order'.")
  M = int(config.population.clients)
  population.check_mesh(ctx.mesh, M)
  per_client = lambda example: jax.tree.map(lambda x: x[0, 0], population.split_batch(example)[0])

  def init_extras(rng, params):
    return {"replicas": population.stack(params, M), "was_active": population.boxed(jnp.ones((M,), bool)),
            "scale": jnp.asarray(float(j.init_scale), jnp.float32), "base_key": jax.random.fold_in(rng, 1),
            "comm": comm.init_totals()}

  def from_previous(prev, params, extras):  # every machine starts from the pretrained weights
    del params
    return prev, dict(extras, replicas=jax.tree.map(lambda p, r: jnp.broadcast_to(p, r.shape), prev, extras["replicas"]))

  return Method(
      init=lambda rng, example: t.init(rng, per_client(example)), loss=t.loss, step=job_step(t.loss, config),
      init_extras=init_extras, from_previous=from_previous,
      make_iterator=lambda ctx: partition.client_streams(config, ctx, sampler=schedule_sampler(config)),
      batch_axis=population.AXIS, evaluators=t.evaluators, model=t.model,
      summary_keys=("val_loss", "val_accuracy", "replica_spread") + comm.SUMMARY_KEYS)
