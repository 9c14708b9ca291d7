"""Held-out loss evaluators for language models.

`LossEvaluator` computes sum(loss)/sum(weight) over a fixed list of held-out batches (identical in
every run and on any number of processes), with one jitted function reused for all of them.
`per_source_loss` breaks it down per data source / skill (with the mean over sources), and
`ExactMatch` greedy-decodes the answers of procedural tasks (arithmetic, LEGO) and scores them.
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


def per_source_loss(name: str, sources: dict, sums_fn: Callable, *, batch_size: int, num_batches: int,
                    seed: int = 1234, process_index: int = 0, process_count: int = 1) -> GroupEvaluator:
  """Held-out loss of each source (`<name>/<source>`, rows {"tokens", "loss_mask"}) and their
  unweighted mean over sources (`<name>/mean`): a per-domain / per-skill breakdown."""
  from paperjax.data import pipeline  # pylint: disable=g-import-not-at-top
  members = []
  for src_name, rows in sources.items():
    n = min(int(num_batches), max(1, len(rows) // int(batch_size)))
    batches = pipeline.fixed_batches(rows, batch_size=int(batch_size), num_batches=n, seed=seed,
                                     process_index=process_index, process_count=process_count)
    members.append(LossEvaluator(f"{name}/{src_name}", batches, sums_fn))
  return _WithMean(name, members)


@dataclasses.dataclass
class _WithMean(GroupEvaluator):
  def __call__(self, params, ctx) -> dict[str, float]:
    out = super().__call__(params, ctx)
    out[f"{self.name}/mean"] = float(np.mean(list(out.values())))
    return out


@dataclasses.dataclass
class ExactMatch:
  """Greedy-decode the answer of each (prompt, answer) example with a decoder LM
  (`models/decode.greedy_decoder`) and report the fraction decoded exactly (`<name>`).

  The prompt is placed at the start of a `length`-token row (as the first packed example of a
  training row), decoding stops at eos; the prediction is the text before the first eos."""
  name: str
  examples: Sequence  # objects with .prompt and .answer (paperjax.data.tasks.Example)
  model: object
  tokenizer: object
  length: int
  batch_size: int = 64

  def __post_init__(self):
    enc = [np.asarray(self.tokenizer.encode(e.prompt), np.int32) for e in self.examples]
    self._answers = [e.answer for e in self.examples]
    self._max_new = max(len(self.tokenizer.encode(a)) for a in self._answers) + 1
    if max(len(p) for p in enc) + self._max_new > self.length:
      raise ValueError(f"ExactMatch {self.name}: a prompt plus its answer exceeds {self.length} tokens; "
                       "use a longer mixture.length.")
    n = len(enc)
    pad = -n % self.batch_size  # fixed-size batches: one compilation for all of them
    self._tokens = np.zeros((n + pad, self.length), np.int32)
    self._plen = np.ones((n + pad,), np.int32)
    for i, p in enumerate(enc):
      self._tokens[i, :len(p)] = p
      self._plen[i] = len(p)

  def predictions(self, params) -> list[str]:
    from paperjax.models import decode  # pylint: disable=g-import-not-at-top
    out = []
    for s in range(0, len(self._tokens), self.batch_size):
      buf = decode.greedy_decoder(self.model, params, self._tokens[s:s + self.batch_size],
                                  self._plen[s:s + self.batch_size], length=self._max_new,
                                  eos_id=self.tokenizer.eos_id)
      out.append(np.asarray(buf))
    buf = np.concatenate(out)
    preds = []
    for i in range(len(self._answers)):
      gen = buf[i, self._plen[i]:self._plen[i] + self._max_new]
      stop = np.flatnonzero(gen == self.tokenizer.eos_id)
      gen = gen[:stop[0]] if len(stop) else gen
      preds.append(self.tokenizer.decode(gen))
    return preds

  def __call__(self, params, ctx) -> dict[str, float]:
    del ctx
    preds = self.predictions(params)
    return {self.name: float(np.mean([p == a for p, a in zip(preds, self._answers)]))}
