"""Predictable Scale: Part I — Optimal Hyperparameter Scaling Law in LLM Pretraining (Step Law; Li et al., 2025).
https://arxiv.org/abs/2503.04715 — official code and data https://github.com/step-law/steplaw.

Rule (the published law, from ~3,700 dense and MoE LLMs):
  η*(N, D) = 1.79 · N^−0.713 · D^0.307        B*(D) = 0.58 · D^0.571
with N the non-embedding parameters, D the training tokens and B the batch size in tokens (the repo's
`code/fit_tool.py` multiplies sequences by the sequence length before fitting; its bootstrap medians are
intercept e^0.578 ≈ 1.78, −0.712, 0.307 for η and e^−0.556 ≈ 0.57, 0.571 for B).
Procedure (`fit.py`): train a grid of (N, D, B, η); per (N, D) keep every (η, B) whose smoothed final loss
is within a relative threshold of the cell's best (the paper's near-optimal plateau; 0.25% there); fit
log η = a + b log N + c log D and log B = d + e log D by least squares; 1,000 bootstrap resamples give the
intervals. The landscape is convex in log η (checked by a quadratic fit around each slice's optimum).

Here `predict(N, D)` returns the law; the method trains one (N, D, B) slice of the grid as a population of
K learning rates on the shared population axis (`population.sweep_step`: same init, same batches, one
vmap, each member's update × its own peak lr). Different batch sizes or token budgets are separate runs
(a vmap needs one batch shape; the schedule's length depends on D).
Deviations: the smoothed loss is the mean training loss over the last 10% of steps (the training stream is
seen less than once, so it is held-out text); the toy fits on a 3 × 2 × 3 × 6 grid, far from the paper's range.
"""

from __future__ import annotations

import math

import jax
import ml_collections

from paperjax import optim, population
from paperjax.method import Method, PaperInfo
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="step_law", title="Predictable Scale: Part I — Optimal Hyperparameter Scaling Law in LLM "
                  "Pretraining (Step Law)", authors="Li et al.", year=2025, url="https://arxiv.org/abs/2503.04715",
                  family="scaling law")

# The published law (paper, eqs. for η(N, D) and B(D)).
LR_COEF, LR_EXP_N, LR_EXP_D = 1.79, -0.713, 0.307
BS_COEF, BS_EXP_D = 0.58, 0.571


def predict(N: float, D: float) -> dict[str, float]:
  """Step Law's optimal peak learning rate and batch size (in tokens) for N non-embedding parameters
  trained on D tokens."""
  if N <= 0 or D <= 0:
    raise ValueError(f"Step Law needs N > 0 non-embedding parameters and D > 0 tokens (got N={N}, D={D}).")
  return {"lr": LR_COEF * N ** LR_EXP_N * D ** LR_EXP_D, "batch_tokens": BS_COEF * D ** BS_EXP_D}


def non_embedding_params(params) -> int:
  """Parameters outside embedding tables (the N of the law)."""
  total = 0
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [str(getattr(k, "key", k)) for k in path]
    if not any("embed" in n for n in names):
      total += math.prod(x.shape)
  return total


def unit_optimizer(config):
  """The members' optimizer (`sweep.optimizer`) at peak lr 1 (the schedule's shape); member k scales it by
  sweep.lrs[k]. (`config.optimizer`, the trainer's own, is stateless SGD and unused: members keep their
  states in `state.extras["opt"]`.)"""
  opt = ml_collections.ConfigDict(dict(config.sweep.optimizer))
  opt.lr = 1.0
  return optim.build(opt, int(config.train.steps))[0]


def members(config) -> list[tuple[float, int]]:
  """(lr, seed) of every population member, lr-major: member k = i_lr · len(seeds) + i_seed."""
  seeds = tuple(int(s) for s in config.sweep.get("seeds", (0,)))
  return [(float(lr), s) for lr in config.sweep.lrs for s in seeds]


def make(config, ctx) -> Method:
  mem = members(config)
  if not mem:
    raise ValueError("sweep.lrs is empty; give the learning rates of the population, e.g. (1e-3, 3e-3, 1e-2).")
  population.check_mesh(ctx.mesh, len(mem))
  t = task_lib.build(config, ctx)
  tx = unit_optimizer(config)
  seeds = sorted({s for _, s in mem})

  def init(rng, example):
    # Seeds change the initialisation only; every member reads the same batches (config.seed's order).
    per_seed = {s: t.init(jax.random.fold_in(rng, s), example) for s in seeds}
    return population.stack_members([per_seed[s] for _, s in mem])

  return Method(
      init=init,
      loss=t.loss,
      step=population.sweep_step(t.loss, tx),
      init_extras=population.sweep_extras(tx, [lr for lr, _ in mem]),
      example_fn=t.example_fn,
      model=t.model,
      tokens_per_example=int(config.data.raw_length),
  )
