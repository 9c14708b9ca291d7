"""Scalable Data Ablation Approximations for Language Models through Modular Training and Merging
(Na, Magnusson, Jha, Sherborne, Strubell, Dodge, Dasigi, 2024). https://arxiv.org/abs/2410.15661

Rule. Split the candidate corpus into equal-size base units P_1..P_n. From one shared base model θ₀,
continue-pretrain one model per unit, θ_i = CPT(θ₀, P_i), with the same steps each. To score a
candidate mixture M ⊆ {1..n} on an evaluation set E, evaluate the *parameter average*
  θ_M = (1/|M|) Σ_{i∈M} θ_i
instead of training on ∪_{i∈M} P_i; the claim is that loss_E(θ_M) tracks loss_E(θ_∪M) — the model
actually trained on the union — across mixtures and evaluation sets, at a cost linear in n. Baseline
proxy: the mean of the unit models' own losses, (1/|M|) Σ_{i∈M} loss_E(θ_i).

Stages (configs/merge_ablation_proxy.py): `base` (the shared trainer's step on pydoc), then either
`units` (n members on the `clients` axis, member i continued-pretrained on unit i) or `unions` (one
member per candidate mixture, trained on the union of its units for |M| times the unit budget), both
with `population.independent_step` (no communication) starting from θ₀ (`population.from_one`).
Units: stdlib code packages (the digest's pydoc topic groups are not separable in our pydoc source;
code packages are equally "fields"); mixtures: pairs of units drawn by the seed; evaluation sets: every
unit's held-out split plus two unrelated ones (pydoc, the logging package).
Official code (clarana/ez-data-ablations) hyper-parameters were not read: lr, steps are toy choices,
kept short and low as the digest advises (linear mode connectivity near θ₀).
"""

from __future__ import annotations

import itertools

import jax
import ml_collections
import numpy as np

from paperjax import optim, population
from paperjax.data import partition
from paperjax.method import Method, PaperInfo
from paperjax.models import lm
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="merge_ablation_proxy",
                  title="Scalable Data Ablation Approximations for Language Models through Modular Training and Merging",
                  authors="Na et al.", year=2024, url="https://arxiv.org/abs/2410.15661", family="lm-data-mixture")


def mixtures(n_units: int, size: int, count: int, seed: int) -> list[tuple[int, ...]]:
  """`count` distinct candidate mixtures of `size` units, fixed by the seed."""
  allm = list(itertools.combinations(range(n_units), size))
  if count > len(allm):
    raise ValueError(f"merge.mixtures={count} exceeds the {len(allm)} mixtures of {size} of {n_units} units.")
  pick = np.random.default_rng([seed, 3]).choice(len(allm), count, replace=False)
  return [allm[i] for i in sorted(pick)]


def proxy_params(unit_params, mixture):
  """θ_M: the uniform average of the unit models in the mixture."""
  return population.average(jax.tree.map(lambda x: x[np.asarray(mixture)], unit_params))


def eval_sets(config, ctx) -> list[tuple[str, list]]:
  from paperjax import data as data_lib
  out = []
  for spec in tuple(config.merge.units) + tuple(config.merge.extra_eval):
    dcfg = ml_collections.ConfigDict(config.data.to_dict())
    dcfg.source = spec
    src = data_lib.build_source(dcfg, "validation", ctx.tokenizer, data_lib.cache_dir_for(ctx.workdir))
    out.append((spec.split(":")[-1].replace("/", "_"), task_lib._eval_batches(src, config, task_lib.lm_example)))
  return out


def loss_fn_for(config, vocab_size):
  model, _ = lm.build(config, vocab_size)
  def sums(params, batch):
    return lm.loss_sums(model, params, batch)
  return jax.jit(sums)


def eval_loss(sums, params, batches) -> float:
  out = jax.device_get([sums(params, b) for b in batches])
  return sum(float(s) for s, _ in out) / sum(float(w) for _, w in out)


def make(config, ctx) -> Method:
  t = task_lib.build(config, ctx)
  phase = config.merge.phase
  if phase == "base":
    return Method(init=t.init, loss=t.loss, example_fn=t.example_fn, evaluators=t.evaluators, model=t.model,
                  summary_keys=("val_loss",))
  if phase not in ("units", "unions"):
    raise ValueError(f"merge.phase={phase!r} is unknown; use 'base', 'units' or 'unions'.")
  units = tuple(config.merge.units)
  groups = ([(i,) for i in range(len(units))] if phase == "units" else
            mixtures(len(units), int(config.merge.mixture_size), int(config.merge.mixtures), int(config.seed)))
  K = len(groups)
  population.check_mesh(ctx.mesh, K)
  inner_tx = optim.build(config.population.inner_optimizer,
                         int(config.train.steps) * int(config.population.local_steps))[0]
  per_client = lambda example: jax.tree.map(lambda x: x[0, 0], population.split_batch(example)[0])

  def streams(ctx):  # member k reads the union of its group's units
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.population.domains = units
    src, labels = partition.population_source(cfg, ctx)
    parts = [np.flatnonzero(np.isin(labels, g)) for g in groups]
    p = config.population
    return partition.ClientStreams(src, parts, batch_size=int(p.batch_size), local_steps=int(p.local_steps),
                                   seed=int(config.seed), slots=K, example_fn=t.example_fn,
                                   process_index=ctx.process_index, process_count=ctx.process_count)

  return Method(
      init=lambda rng, example: population.stack(t.init(rng, per_client(example)), K), loss=t.loss,
      step=population.independent_step(t.loss, inner_tx), init_extras=population.independent_extras(inner_tx),
      from_previous=population.from_one, make_iterator=streams, batch_axis=population.AXIS, model=t.model)
