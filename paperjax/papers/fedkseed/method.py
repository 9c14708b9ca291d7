"""Federated Full-Parameter Tuning of Billion-Sized Language Models with Communication Cost under
18 Kilobytes (Qin et al., ICML 2024) — FedKSeed. https://arxiv.org/abs/2312.06353

Rule. Server and clients share K candidate seeds {s_1..s_K}. A client's local step picks k from them
(uniformly; FedKSeed-Pro: with probabilities p below), draws z_k ~ N(0, I) from s_k alone, and takes
the two-point zeroth-order (MeZO) step
  g = [L(θ + εz_k) − L(θ − εz_k)] / 2ε,     θ ← θ − η (g z_k + λθ)
τ times. It uploads only its τ pairs (k, g). The server sums them per seed, weighted by client data
size n_c:  G_k = Σ_c n_c Σ_{j: k_cj = k} g_cj / Σ_c n_c,  and every client rebuilds the new global
model by *replay*:  θ' = θ − η Σ_k G_k z_k  (with λ = 0 this is exactly FedAvg of the clients' models).
Bytes per client per round: download the K scalars G (4K) + upload τ pairs (8τ): 4K + 8τ, whatever
the model size — 17,984 B at K=4096, τ=200.
FedKSeed-Pro: p = softmax(minmax(ā)), ā_k = mean over the history of |clip(g, −c, c)| for seed k.

Defaults (official code, main.py / optimizers/mezo_optimizer.py, verified by the digest): K=4096,
τ=200, N=200 clients, 5% active, ε=5e-4, no weight decay on biases/norms. Toy (configs/fedkseed.py):
K=512, τ=50, 20 clients, 4 active, ε=1e-3, lr 1e-3 on a 2-layer byte LM pretrained on pydoc, fine-tuned
on stdlib code domains split by Dirichlet(0.5) — the digest's synthetic instruction tasks replaced by
code domains (a real distribution shift that needs no generator).
Deviations: λ = 0 (the replay test needs it; the paper uses weight decay on matrices); a seed never
used yet counts, for Pro, as the mean of the used ones (the official code's cold start was not read:
hedge); clip c = `fedkseed.pro_clip`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from paperjax import comm, population
from paperjax.data import partition
from paperjax.method import Method, PaperInfo
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="fedkseed",
                  title="Federated Full-Parameter Tuning of Billion-Sized Language Models with Communication "
                        "Cost under 18 Kilobytes",
                  authors="Qin et al.", year=2024, url="https://arxiv.org/abs/2312.06353", family="federated")


def candidate_seeds(K: int, seed: int) -> np.ndarray:
  return np.random.default_rng([seed, 42]).integers(0, 2**31 - 1, K, dtype=np.int64).astype(np.int32)


def perturbation(params, seed):
  """z ~ N(0, I) with the shape of `params`, a function of the integer `seed` alone (leaf i uses
  fold_in(PRNGKey(seed), i)), so any process regenerates it from the seed."""
  leaves, treedef = jax.tree.flatten(params)
  key = jax.random.PRNGKey(seed)
  return jax.tree.unflatten(treedef, [jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
                                      for i, x in enumerate(leaves)])


def axpy(a, x, y):
  return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def zo_grad(loss_fn, params, batch, z, eps):
  """The two-point estimate of the directional derivative along z."""
  lp = loss_fn(axpy(eps, z, params), batch, None)[0]
  lm = loss_fn(axpy(-eps, z, params), batch, None)[0]
  return (lp - lm) / (2 * eps), (lp + lm) / 2


def local_zo(loss_fn, seeds, *, lr, eps):
  """(params, batches[τ], probs, rng) -> (params, idx[τ], g[τ], loss[τ]): τ ZO steps on the seed pool."""
  def run(params, batches, probs, rng):
    def one(p, xs):
      batch, key = xs
      k = jax.random.choice(key, seeds.shape[0], p=probs)
      z = perturbation(p, seeds[k])
      g, loss = zo_grad(loss_fn, p, batch, z, eps)
      return axpy(-lr * g, z, p), (k.astype(jnp.int32), g, loss)
    tau = jax.tree.leaves(batches)[0].shape[0]
    params, (idx, g, loss) = jax.lax.scan(one, params, (batches, jax.random.split(rng, tau)))
    return params, idx, g, loss
  return run


def replay(params, seeds, G, lr):
  """θ − lr Σ_k G_k z_k, skipping seeds with G_k = 0 (never regenerated)."""
  def body(k, p):
    return jax.lax.cond(G[k] != 0, lambda q: axpy(-lr * G[k], perturbation(q, seeds[k]), q), lambda q: q, p)
  return jax.lax.fori_loop(0, seeds.shape[0], body, params)


def pro_probabilities(abs_sum, count):
  """FedKSeed-Pro: softmax of the min-max normalised mean |clipped g| per seed (unused seeds: the mean)."""
  mean = abs_sum / jnp.maximum(count, 1.0)
  used = count > 0
  fill = jnp.where(used.any(), jnp.sum(jnp.where(used, mean, 0.0)) / jnp.maximum(used.sum(), 1), 0.0)
  a = jnp.where(used, mean, fill)
  span = a.max() - a.min()
  return jax.nn.softmax(jnp.where(span > 0, (a - a.min()) / jnp.where(span > 0, span, 1.0), 0.0))


def message_bytes(K: int, tau: int) -> tuple[int, int]:
  """(upload, download) bytes per client per round, from the arrays actually exchanged."""
  up = comm.tree_bytes((jax.ShapeDtypeStruct((tau,), jnp.int32), jax.ShapeDtypeStruct((tau,), jnp.float32)))
  down = comm.tree_bytes(jax.ShapeDtypeStruct((K,), jnp.float32))
  return up, down


def fedkseed_step(loss_fn, config):
  f = config.fedkseed
  K, lr, eps, pro, clip = int(f.K), float(f.lr), float(f.eps), bool(f.pro), float(f.pro_clip)

  def step(state, batch, ctx):
    data, client, num_examples = population.split_batch(batch)
    population.check_mesh(ctx.mesh, client.shape[0])
    w = population.slot_weights(config, client, num_examples)
    ex = state.extras
    seeds = ex["seeds"]
    probs = pro_probabilities(ex["abs_sum"], ex["count"]) if pro else jnp.full((K,), 1.0 / K)
    rng = jax.random.fold_in(state.rng, state.step)
    run_local = local_zo(loss_fn, seeds, lr=lr, eps=eps)

    def body(theta, data, w, client):
      def one(d, c):
        _, idx, g, loss = run_local(theta, d, probs, jax.random.fold_in(rng, c))
        return idx, g, loss.mean()
      idx, g, loss = jax.vmap(one)(data, client)
      # Server: per-seed sums of the uploaded scalars, weighted by client data size.
      onehot = jax.nn.one_hot(idx, K, dtype=jnp.float32)                       # [slots, τ, K]
      per_seed = jnp.einsum("s,stk,st->k", w, onehot, g)
      den = jax.lax.psum(w.sum(), population.AXIS)
      G = jax.lax.psum(per_seed, population.AXIS) / jnp.maximum(den, 1e-30)
      active = (w > 0).astype(jnp.float32)
      abs_sum = jax.lax.psum(jnp.einsum("s,stk,st->k", active, onehot, jnp.abs(jnp.clip(g, -clip, clip))), population.AXIS)
      count = jax.lax.psum(jnp.einsum("s,stk->k", active, onehot), population.AXIS)
      return G, abs_sum, count, population.weighted_mean(loss, active), population.participants(w)

    G, abs_sum, count, loss, n = population.run_clients(
        ctx.mesh, body, (state.params, data, w, client), (False, True, True, True), (False,) * 5)
    params = replay(state.params, seeds, G, lr)
    up, down = message_bytes(K, jax.tree.leaves(data)[0].shape[1])
    totals, cm = comm.round_metrics(ex["comm"], up_per_client=up, down_per_client=down, participants=n)
    extras = dict(ex, abs_sum=ex["abs_sum"] + abs_sum, count=ex["count"] + count, comm=totals)
    return state.replace(step=state.step + 1, params=params, extras=extras), {
        "loss": loss, "participants": n, "seeds_used": jnp.sum(G != 0).astype(jnp.float32), **cm}
  return step


def make(config, ctx) -> Method:
  t = task_lib.build(config, ctx)
  if config.fedkseed.phase == "pretrain":  # stage 1: ordinary first-order LM training on the base corpus
    return Method(init=t.init, loss=t.loss, example_fn=t.example_fn, evaluators=t.evaluators, model=t.model,
                  summary_keys=("val_loss",))
  if config.fedkseed.phase != "federated":
    raise ValueError(f"fedkseed.phase={config.fedkseed.phase!r} is unknown; use 'pretrain' or 'federated'.")
  population.check_mesh(ctx.mesh, population.slots(config))
  K = int(config.fedkseed.K)
  per_client = lambda example: jax.tree.map(lambda x: x[0, 0], population.split_batch(example)[0])

  def init_extras(rng, params):
    del rng, params
    return {"seeds": jnp.asarray(candidate_seeds(K, int(config.seed))), "abs_sum": jnp.zeros(K, jnp.float32),
            "count": jnp.zeros(K, jnp.float32), "comm": comm.init_totals()}

  return Method(
      init=lambda rng, example: t.init(rng, per_client(example)), loss=t.loss,
      step=fedkseed_step(t.loss, config), init_extras=init_extras,
      make_iterator=lambda ctx: partition.client_streams(config, ctx, example_fn=t.example_fn),
      batch_axis=population.AXIS, evaluators=t.evaluators, model=t.model,
      summary_keys=("val_loss",) + comm.SUMMARY_KEYS)
