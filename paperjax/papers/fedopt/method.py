"""FedAvg and DiLoCo: the two baselines of every population paper, as one rule (FedOpt).

Adaptive Federated Optimization (Reddi et al., ICLR 2021), https://arxiv.org/abs/2003.00295, of which
  FedAvg  Communication-Efficient Learning of Deep Networks from Decentralized Data (McMahan et al., 2017)
          https://arxiv.org/abs/1602.05629
  DiLoCo  DiLoCo: Distributed Low-Communication Training of Language Models (Douillard et al., 2023)
          https://arxiv.org/abs/2311.08105
are instances (DiLoCo §2 says so itself).

Rule, per round t with sampled clients S_t and weights w_c:
  θ_c ← θ^(t);  θ_c ← H steps of the inner optimizer on client c's data
  Δ^(t) = Σ_{c∈S_t} w_c (θ^(t) − θ_c) / Σ w_c            (the outer "pseudo-gradient")
  θ^(t+1) = OuterOpt(θ^(t), Δ^(t))

Defaults (configs/fedavg.py, configs/diloco.py):
  FedAvg  inner SGD (constant lr, state reset every round), outer SGD lr 1 (θ ← weighted mean of the
          clients), w_c = n_c (client dataset size), C = clients_per_round / clients sampled uniformly.
  DiLoCo  inner AdamW kept per worker across rounds, outer SGD with Nesterov momentum 0.9, lr 0.7,
          H = 500 in the paper (ours: a few dozen at toy scale), uniform weights, every worker every round.
The round is `paperjax.population.fedopt_step`; this file only picks the inner optimizer and the data.
Deviation: DiLoCo's inner optimizer uses the shared `optim.build` (AdamW with a cosine schedule over
all inner steps), not the paper's exact warmup; the outer optimizer is `config.optimizer`.
"""

from __future__ import annotations

import jax

from paperjax import comm, optim, population
from paperjax.data import partition
from paperjax.method import Method, PaperInfo
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="fedopt", title="Adaptive Federated Optimization (FedAvg and DiLoCo as its instances)",
                  authors="Reddi et al.; McMahan et al.; Douillard et al.", year=2021,
                  url="https://arxiv.org/abs/2003.00295", family="federated/distributed baseline")


def inner_optimizer(config):
  p = config.population
  return optim.build(p.inner_optimizer, int(config.train.steps) * int(p.local_steps))[0]


def per_client(example):
  """One client's one-step batch from a round batch ([slots, steps, batch, ...] leaves)."""
  data, _, _ = population.split_batch(example)
  return jax.tree.map(lambda x: x[0, 0], data)


def make(config, ctx) -> Method:
  population.check_mesh(ctx.mesh, population.slots(config))
  t = task_lib.build(config, ctx)
  keep = bool(config.population.keep_inner_state)
  if keep and population.slots(config) != int(config.population.clients):
    raise ValueError("population.keep_inner_state=True (DiLoCo) needs every worker in every round; "
                     "set population.clients_per_round=0.")
  inner = inner_optimizer(config)
  return Method(
      init=lambda rng, example: t.init(rng, per_client(example)),
      loss=t.loss,
      step=population.fedopt_step(t.loss, inner, config, keep_inner_state=keep),
      init_extras=population.fedopt_extras(inner, config, keep_inner_state=keep),
      make_iterator=lambda ctx: partition.client_streams(config, ctx, example_fn=t.example_fn),
      batch_axis=population.AXIS,
      evaluators=t.evaluators,
      model=t.model,
      summary_keys=("val_loss", "val_accuracy") + comm.SUMMARY_KEYS,
  )
