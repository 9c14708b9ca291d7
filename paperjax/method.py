"""The method contract: what a paper's `method.py` hands the shared trainer.

A paper module defines `PAPER` (its metadata) and `make(config, env) -> Method`. Everything else —
the loop, sharding, data, checkpoints, metrics, evaluation, launch — is shared.

  init(rng, batch) -> params                   the model's parameters (a pytree, logically partitioned)
  loss(params, batch, rng) -> (loss, metrics)  most papers need only this
  step(state, batch, ctx) -> (state, metrics)  override for non-SGD rules (federated rounds, outer
                                               steps, zeroth-order, EMA teachers); ctx.tx is the optimizer
  init_extras(rng, params) -> dict             extra state carried in TrainState.extras (EMA, teacher, ...)
  example_fn(example, rng) -> dict             per-example host transform inside the grain pipeline
                                               (rng: np.random.Generator, seeded and checkpointed)
  batch_fn(batch, rng) -> dict                 vectorised host transform of each global batch of stacked
                                               examples (data/pipeline.py: same contract, any process count)
  pack                                         a data.pipeline.Packing: batch_fn's examples packed several to
                                               a row (segment ids and positions added; T5X's packing)
  evaluators                                   Evaluator objects run every config.train.eval_every steps
  eval_params(state) -> params                 what evaluators see instead of state.params (an EMA in extras)
  between(state, step, ctx) -> state           between-epoch/round hook (data selection, mixtures, pruning);
      or (state, metrics)                      may also return scalar metrics (logged as between/<name>)
  from_previous(prev_params, params, extras)   multi-stage runs: map the previous stage's parameters into
      -> (params, extras)                      this stage's fresh state (fine-tune with a new head, a frozen
                                               teacher in extras); None: the structures must match
  make_iterator(ctx) -> iterator               the method's own data stream instead of the default grain
                                               iterator (a population's per-client rounds); checkpointable
                                               like a grain DatasetIterator (get_state/set_state)
  batch_axis                                   logical axis of the batch's leading dimension ("batch";
                                               "clients" for a population's [clients, steps, batch, ...])
  flops_per_example                            training FLOPs per example, for MFU (None: not reported)
  tokens_per_example                           tokens per example, for tokens/s

Multi-stage papers list `config.stages`; the trainer runs them in order and hands each stage the
previous stage's parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence


@dataclasses.dataclass(frozen=True)
class PaperInfo:
  slug: str
  title: str
  authors: str
  year: int
  url: str
  family: str


class Evaluator(Protocol):
  name: str

  def __call__(self, params, ctx: "Context") -> dict[str, float]:
    ...


@dataclasses.dataclass
class Context:
  """What the trainer knows and a method may use: mesh, rules, tokenizer, optimizer, workdir."""
  config: Any
  mesh: Any = None
  rules: Any = None
  tokenizer: Any = None
  tx: Any = None
  lr_schedule: Any = None
  workdir: str | None = None
  model: Any = None
  process_index: int = 0
  process_count: int = 1
  # Shapes only (the AOT preflight): build the model, loss and example transform, but read no data
  # (skip evaluators that need held-out batches).
  abstract: bool = False
  # The step being evaluated (set by the loop before each evaluation: sample grids, per-step files).
  step: int = 0


@dataclasses.dataclass(frozen=True)
class Method:
  init: Callable
  loss: Callable
  step: Callable | None = None
  init_extras: Callable | None = None
  example_fn: Callable | None = None
  batch_fn: Callable | None = None
  pack: Any = None   # a data.pipeline.Packing: batch_fn's examples packed several to a row
  evaluators: Sequence[Evaluator] = ()
  between: Callable | None = None
  from_previous: Callable | None = None
  make_iterator: Callable | None = None
  batch_axis: str = "batch"
  flops_per_example: float | None = None
  tokens_per_example: int | None = None
  model: Any = None
  summary_keys: Sequence[str] = ()   # metrics the end-of-run summary prints first
  eval_params: Callable | None = None  # (state) -> the params evaluators see (None: state.params), e.g. an EMA


def copy_matching(previous, fresh, prefixes: Sequence[str] = ()):
  """`fresh` with every leaf whose path (and shape) also exists in `previous` taken from it — the
  usual `from_previous` of a fine-tune: the backbone carries over, a new head stays fresh.
  `prefixes` (e.g. ("encoder", "proj/layer0")) restricts what is copied. Returns (tree, copied paths)."""
  import jax  # pylint: disable=g-import-not-at-top
  prev = {"/".join(str(getattr(k, "key", k)) for k in path): v
          for path, v in jax.tree_util.tree_flatten_with_path(previous)[0]}
  copied = []

  def take(path, leaf):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    allowed = not prefixes or any(name == p or name.startswith(p + "/") for p in prefixes)
    if allowed and name in prev and getattr(prev[name], "shape", None) == getattr(leaf, "shape", None):
      copied.append(name)
      return prev[name]
    return leaf

  return jax.tree_util.tree_map_with_path(take, fresh), copied

