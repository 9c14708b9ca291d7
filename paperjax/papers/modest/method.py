"""MoDeST: Bridging the Gap between Federated and Decentralized Learning with Decentralized Sampling
(de Vos, Dhasade, Kermarrec, Lavoie, Pouwelse, Sharma, 2023). https://arxiv.org/abs/2302.04649

Rule. No server. In round k every node derives the same sample from its view of the active peers:
  S_k = the first s of the active peers sorted by md5(f"{peer}-{k}"),   A_k = the first a of S_k
(official code, accdfl/core/sample_manager.py). The trainers in S_k fetch the model from an aggregator
of round k−1, train locally, and send their model to the a aggregators A_k; an aggregator averages once
a success fraction sf (default 1) of the s models arrived and hands the result to S_{k+1}. In lockstep
the model after round k is therefore the data-size-weighted mean of S_k's locally trained models (the
FedAvg update) — what differs from FedAvg is who samples (every node, deterministically, over the peers
it believes active: nothing central to fail) and the traffic: a trainer uploads its model to each of
the a aggregators and downloads one model: (a + 1)·|θ| per trainer per round.

Baselines (same data, model and local training; `modest.variant`):
  fedavg  a server samples s of all N nodes uniformly; after a failure it does not know who is gone,
          so failed nodes simply do not answer (fewer participants)
  dpsgd   D-PSGD: every node trains every round, then averages with its neighbours on a fixed random
          4-regular graph (Lian et al. 2017); 4 models out and 4 in per node per round. The evaluated
          model is the average of the live nodes' models.
Failures: at round `fail_round` a fraction `fail_fraction` of the nodes (fixed by the seed) crash.
Deviations: membership is known at once (the paper discovers failures through timeouts and drops
peers unseen for 50 rounds); sf = 1 and no asynchrony; the aggregators' role shows only in the bytes.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from paperjax import comm, optim, population
from paperjax.data import partition
from paperjax.method import Method, PaperInfo
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="modest", title="MoDeST: Bridging the Gap between Federated and Decentralized Learning "
                  "with Decentralized Sampling", authors="de Vos et al.", year=2023,
                  url="https://arxiv.org/abs/2302.04649", family="federated")


def md5_sample(active_peers, round_k: int, s: int) -> list[int]:
  """MoDeST's sample: the active peers ordered by md5 of "<peer>-<round>", the first min(s, |active|)."""
  order = sorted(active_peers, key=lambda p: hashlib.md5(f"{p}-{round_k}".encode()).hexdigest())
  return order[:min(s, len(order))]


def failed_nodes(n: int, fraction: float, seed: int) -> np.ndarray:
  return np.sort(np.random.default_rng([seed, 99]).permutation(n)[:int(round(fraction * n))])


def alive(config, r: int) -> np.ndarray:
  m = config.modest
  n = int(config.population.clients)
  up = np.ones(n, bool)
  if m.fail_round >= 0 and r >= m.fail_round:
    up[failed_nodes(n, float(m.fail_fraction), int(config.seed))] = False
  return up


def regular_graph(n: int, degree: int, seed: int) -> np.ndarray:
  """Neighbour lists [n, degree] of a random `degree`-regular graph: the union of degree/2 random
  Hamiltonian cycles with no repeated edge (redrawn until so)."""
  rng = np.random.default_rng([seed, 5])
  for _ in range(1000):
    nbrs = [set() for _ in range(n)]
    ok = True
    for _ in range(degree // 2):
      cyc = rng.permutation(n)
      for i in range(n):
        a, b = cyc[i], cyc[(i + 1) % n]
        if b in nbrs[a]:
          ok = False
        nbrs[a].add(b)
        nbrs[b].add(a)
    if ok and all(len(x) == degree for x in nbrs):
      return np.array([sorted(x) for x in nbrs])
  raise ValueError(f"Could not draw a {degree}-regular graph on {n} nodes; use more nodes.")


def sampler(config):
  m, n = config.modest, int(config.population.clients)
  s = int(config.population.clients_per_round or n)
  if m.variant == "modest":
    def sample(r):
      ids = np.array(md5_sample(np.flatnonzero(alive(config, r)).tolist(), r, s))
      return np.concatenate([ids, -np.ones(s - len(ids), np.int64)])
    return sample
  if m.variant == "fedavg":
    uniform = partition.uniform_sampler(n, s, int(config.seed))
    return lambda r: np.where(alive(config, r)[uniform(r)], uniform(r), -1)
  if m.variant == "dpsgd":
    return lambda r: np.where(alive(config, r), np.arange(n), -1)
  raise ValueError(f"modest.variant={m.variant!r} is unknown; use modest, fedavg or dpsgd.")


def dpsgd_step(loss_fn, inner_tx, config, neighbours):
  """Every live node trains H local steps, then θ_i ← mean of θ_j over i and its live neighbours."""
  local = population.local_sgd(loss_fn, inner_tx)
  nbrs = jnp.asarray(neighbours)

  def step(state, batch, ctx):
    data, client, _ = population.split_batch(batch)
    population.check_mesh(ctx.mesh, client.shape[0])
    rng = jax.random.fold_in(state.rng, state.step)
    live = client >= 0

    def body(nodes, data, live, client):
      def one(p, d, c):
        p2, _, m = local(p, inner_tx.init(p), d, jax.random.fold_in(rng, c))
        return p2, m["loss"].mean()
      trained, loss = jax.vmap(one)(nodes, data, client)
      trained = population.keep_where(live, trained, nodes)
      everyone = jax.tree.map(lambda x: jax.lax.all_gather(x, population.AXIS, tiled=True), trained)  # the gossip
      live_all = jax.lax.all_gather(live, population.AXIS, tiled=True).astype(jnp.float32)
      me = jax.lax.axis_index(population.AXIS) * client.shape[0] + jnp.arange(client.shape[0])
      group = jnp.concatenate([me[:, None], nbrs[me]], axis=1)                       # [local, 1 + degree]
      w = live_all[group]
      def mix(x):
        g = x[group]                                                                 # [local, 1+deg, ...]
        ww = w.reshape(w.shape + (1,) * (g.ndim - 2))
        return (g * ww).sum(1) / jnp.maximum(ww.sum(1), 1.0)
      mixed = population.keep_where(live, jax.tree.map(mix, everyone), trained)
      mean_model = population.weighted_mean(mixed, live.astype(jnp.float32))
      return mixed, mean_model, population.weighted_mean(loss, live.astype(jnp.float32)), population.participants(live.astype(jnp.float32))

    nodes, params, loss, k = population.run_clients(ctx.mesh, body, (state.extras["nodes"], data, live, client),
                                                   (True, True, True, True), (True, False, False, False))
    msg = comm.tree_bytes(params)
    deg = nbrs.shape[1]
    totals, cm = comm.round_metrics(state.extras["comm"], up_per_client=deg * msg, down_per_client=deg * msg,
                                    participants=k)
    return state.replace(step=state.step + 1, params=params, extras=dict(state.extras, nodes=nodes, comm=totals)), {
        "loss": loss, "participants": k, **cm}
  return step


def make(config, ctx) -> Method:
  m = config.modest
  n = int(config.population.clients)
  slots = population.slots(config) if m.variant != "dpsgd" else n
  population.check_mesh(ctx.mesh, slots)
  t = task_lib.build(config, ctx)
  inner = optim.build(config.population.inner_optimizer, int(config.train.steps) * int(config.population.local_steps))[0]
  per_client = lambda example: jax.tree.map(lambda x: x[0, 0], population.split_batch(example)[0])
  if m.variant == "dpsgd":
    graph = regular_graph(n, int(m.degree), int(config.seed))
    step = dpsgd_step(t.loss, inner, config, graph)
    init_extras = lambda rng, params: {"nodes": population.stack(params, n), "comm": comm.init_totals()}
  else:
    a = int(m.aggregators) if m.variant == "modest" else 1   # FedAvg: one upload to the server
    step = population.fedopt_step(t.loss, inner, config, keep_inner_state=False, messages=(a, 1))
    init_extras = population.fedopt_extras(inner, config, keep_inner_state=False)
  if m.variant != "dpsgd":
    streams = lambda ctx: partition.client_streams(config, ctx, example_fn=t.example_fn, sampler=sampler(config))
  else:
    def streams(ctx):  # every node is a slot
      p = config.population
      src, labels = partition.population_source(config, ctx)
      return partition.ClientStreams(src, partition.partition(config, len(src), labels), batch_size=int(p.batch_size),
                                     local_steps=int(p.local_steps), seed=int(config.seed), slots=n,
                                     sampler=sampler(config), process_index=ctx.process_index,
                                     process_count=ctx.process_count)
  return Method(init=lambda rng, example: t.init(rng, per_client(example)), loss=t.loss, step=step,
                init_extras=init_extras, make_iterator=streams, batch_axis=population.AXIS,
                evaluators=t.evaluators, model=t.model,
                summary_keys=("val_accuracy", "val_loss") + comm.SUMMARY_KEYS)
