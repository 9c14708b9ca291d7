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


def greedy_completions(model, params, tokenizer, prompts: Sequence, *, length: int, max_new: int,
                       batch_size: int = 64) -> list[str]:
  """Greedy continuation of each tokenised prompt (`models/decode.greedy_decoder`), `max_new` tokens at
  most, cut at the first eos and decoded to text. Prompts sit at the start of `length`-token rows in
  fixed-size batches (one compilation for all of them)."""
  from paperjax.models import decode  # pylint: disable=g-import-not-at-top
  out = []
  for s in range(0, len(prompts), batch_size):
    chunk = prompts[s:s + batch_size]
    buf = np.zeros((batch_size, length), np.int32)
    plen = np.ones((batch_size,), np.int32)
    for i, p in enumerate(chunk):
      buf[i, :len(p)], plen[i] = p, len(p)
    gen = np.asarray(decode.greedy_decoder(model, params, buf, plen, length=max_new, eos_id=tokenizer.eos_id))
    for i, p in enumerate(chunk):
      ids = gen[i, len(p):len(p) + max_new]
      stop = np.flatnonzero(ids == tokenizer.eos_id)
      out.append(tokenizer.decode(ids[:stop[0]] if len(stop) else ids))
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
    self._prompts = enc

  def predictions(self, params) -> list[str]:
    return greedy_completions(self.model, params, self.tokenizer, self._prompts, length=self.length,
                              max_new=self._max_new, batch_size=self.batch_size)

  def __call__(self, params, ctx) -> dict[str, float]:
    del ctx
    preds = self.predictions(params)
    return {self.name: float(np.mean([p == a for p, a in zip(preds, self._answers)]))}
