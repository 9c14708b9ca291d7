"""Held-out loss evaluators for language models.

`LossEvaluator` computes sum(loss)/sum(weight) over a fixed list of held-out batches (identical in
every run and on any number of processes), with one jitted function reused for all of them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from paperjax import sharding


@dataclasses.dataclass
class LossEvaluator:
  """`sums_fn(params, batch) -> (loss_sum, weight_sum)`; reports `<name>` = weighted mean loss.

  Pass one `jax.jit`-ed `sums_fn` to all the evaluators of a run: they then share its compilation
  (one per batch shape) instead of compiling once each."""
  name: str
  batches: Sequence[dict]
  sums_fn: Callable

  def __call__(self, params, ctx) -> dict[str, float]:
    sums = []
    for b in self.batches:
      gb = sharding.host_to_global(b, ctx.mesh, ctx.rules) if ctx.mesh is not None else b
      sums.append(self.sums_fn(params, gb))  # dispatched asynchronously, fetched once below
    sums = jax.device_get(sums)
    loss, weight = sum(float(s) for s, _ in sums), sum(float(w) for _, w in sums)
    return {self.name: loss / max(weight, 1e-9)}


@dataclasses.dataclass
class GroupEvaluator:
  """Several evaluators reported together under one name (e.g. one per denoiser)."""
  name: str
  members: Sequence

  def __call__(self, params, ctx) -> dict[str, float]:
    out = {}
    for m in self.members:
      out.update(m(params, ctx))
    return out
