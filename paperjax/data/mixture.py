"""Data mixtures: several named sources sampled with weights that may change over training.

`config.mixture` (see `config_block`):
  sources   {name: spec}: any text source of `sources.py` (`builtin:pydoc`, `tfds:c4/en`, ...) or a
            procedural task (`synthetic:arithmetic`, `synthetic:lego/3`; `tasks.py`)
  weights   {name: w}: the base mixture (normalised; a missing name gets 0)
  phases    ((start, {name: w}), ...): from `start` on (a fraction of train.steps when ≤ 1, else a step)
            the weights are these — e.g. domain upsampling's final phase ((0.85, {...}),)
  length    tokens per row

Rows. A text source is tokenised once into an eos-separated stream cut into `length`-token chunks
(`pipeline.TokenChunks`); every token is trained on. A task source packs ⌊length / longest example⌋
examples per row (prompt, answer, eos, ...), trained on the answer tokens and their eos only, so the
task's held-out loss is its answer loss. Each row is {"tokens", "loss_mask", "source"} (int32).

Sampling rule (`MixtureStream`). Global batch b draws each of its B rows' source i.i.d. from
Categorical(w_b), where w_b is the weight vector in force at b (the online weights if a hook set
them with `set_weights`, else the schedule's); rng = (seed, b). Source s is read in its own shuffled
epochs (permutation of epoch e drawn from (seed, s, e)) at a cursor that only moves when s is drawn,
so sources never repeat within an epoch whatever the weights. The state — batch index, cursors,
realised counts, online weights and `memo` (what an online-weight hook remembers) — is JSON and
checkpointed with the train state (grain's checkpoint handler calls get_state/set_state), so a
resumed run draws exactly the batches it would have drawn and reports the same realised
proportions (`metrics()`: `mix/<name>` = fraction of rows so far, `mix_weight/<name>` = the weight in
force; the trainer logs them with the train metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import grain
import ml_collections
import numpy as np

from paperjax.data import pipeline


def config_block(**overrides) -> ml_collections.ConfigDict:
  base = dict(sources={"pydoc": "builtin:pydoc", "code": "builtin:stdlib_code/email"},
              weights={"pydoc": 0.5, "code": 0.5}, phases=(), length=128, max_chars=0)
  base.update(overrides)
  return ml_collections.ConfigDict(base)


# --------------------------------------------------------------------------- weights


def normalise(names: Sequence[str], weights: Mapping[str, float], what: str = "mixture.weights") -> np.ndarray:
  unknown = sorted(set(weights) - set(names))
  if unknown:
    raise ValueError(f"{what} names {unknown}, which are not sources; sources: {list(names)}.")
  w = np.array([float(weights.get(n, 0.0)) for n in names], np.float64)
  if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
    raise ValueError(f"{what}={dict(weights)} must be non-negative with a positive sum.")
  return w / w.sum()


class Schedule:
  """Weights as a function of the step: the base weights, then each phase from its start step on."""

  def __init__(self, names: Sequence[str], weights: Mapping[str, float], phases=(), total_steps: int = 0):
    self.names = list(names)
    self.base = normalise(self.names, weights)
    starts = []
    for start, w in phases:
      start = float(start)
      if start < 0 or (start > 1 and not float(start).is_integer()):
        raise ValueError(f"mixture.phases start {start} must be a fraction of train.steps in [0, 1] or a step.")
      starts.append((switch_step(start, total_steps), normalise(self.names, dict(w), "mixture.phases weights")))
    self.phases = sorted(starts, key=lambda p: p[0])

  def __call__(self, step: int) -> np.ndarray:
    w = self.base
    for start, pw in self.phases:
      if step >= start:
        w = pw
    return w


def switch_step(start: float, total_steps: int) -> int:
  """A phase that starts at fraction s of T steps starts at step ⌊s·T⌋ (s > 1 is a step number)."""
  return int(np.floor(start * total_steps + 1e-9)) if start <= 1 else int(start)


# --------------------------------------------------------------------------- rows


class TextRows(Sequence):
  """`length`-token chunks of a text source, every token trained on."""

  def __init__(self, chunks: pipeline.TokenChunks, source_id: int):
    self.chunks, self.source_id = chunks, source_id

  def __len__(self):
    return len(self.chunks)

  def __getitem__(self, i: int) -> dict:
    t = np.asarray(self.chunks[i], np.int32)
    return {"tokens": t, "loss_mask": np.ones_like(t), "source": np.int32(self.source_id)}


class TaskRows(Sequence):
  """Rows of `per_row` packed task examples: prompt, answer, eos; the loss on answers and eos only."""

  def __init__(self, task, tokenizer, length: int, source_id: int, probe: int = 256):
    self.task, self.tok, self.length, self.source_id = task, tokenizer, int(length), source_id
    longest = max(len(self._encode(task[i])[0]) for i in range(min(probe, len(task))))
    # Room for examples longer than the probe's longest: a quarter more.
    self.per_row = max(1, self.length // int(longest * 1.25 + 1))

  def _encode(self, ex):
    p, a = self.tok.encode(ex.prompt), self.tok.encode(ex.answer)
    toks = np.concatenate([p, a, [self.tok.eos_id]]).astype(np.int32)
    mask = np.concatenate([np.zeros(len(p)), np.ones(len(a) + 1)]).astype(np.int32)
    return toks, mask

  def __len__(self):
    return len(self.task) // self.per_row

  def __getitem__(self, i: int) -> dict:
    i = int(i) % len(self)
    toks, mask = np.zeros(self.length, np.int32), np.zeros(self.length, np.int32)
    pos = 0
    for j in range(i * self.per_row, (i + 1) * self.per_row):
      t, m = self._encode(self.task[j])
      if pos + len(t) > self.length:
        break
      toks[pos:pos + len(t)], mask[pos:pos + len(t)] = t, m
      pos += len(t)
    return {"tokens": toks, "loss_mask": mask, "source": np.int32(self.source_id)}


def build_rows(spec: str, split: str, tokenizer, length: int, source_id: int, cache_dir: str | None = None,
               max_chars: int = 0) -> Sequence:
  """The rows of one mixture source (a task or a text source)."""
  from paperjax.data import sources, tasks  # pylint: disable=g-import-not-at-top
  if tasks.is_task(spec):
    return TaskRows(tasks.from_spec(spec, split), tokenizer, length, source_id)
  docs = sources.text_documents(spec, split)
  if len(docs) == 0:
    raise ValueError(f"Mixture source {spec!r} has no documents in split {split!r}; name a non-empty source.")
  stream = pipeline.token_stream(docs, tokenizer, max_chars=max_chars or None, cache_dir=cache_dir,
                                 cache_key=f"{spec}|{split}")
  return TextRows(pipeline.TokenChunks(stream, int(length)), source_id)


# --------------------------------------------------------------------------- the stream


class MixtureStream(grain.DatasetIterator):
  """Global batches drawn from named sources by the weights in force (see the module docstring)."""

  def __init__(self, sources: Mapping[str, Sequence], schedule: Callable[[int], np.ndarray], *, batch_size: int,
               seed: int, example_fn: Callable | None = None, process_index: int = 0, process_count: int = 1):
    super().__init__()
    if batch_size % process_count:
      raise ValueError(f"data.batch_size={batch_size} does not divide among {process_count} processes; "
                       f"use a multiple of {process_count}.")
    self.names = list(sources)
    self.sources = [sources[n] for n in self.names]
    for n, s in zip(self.names, self.sources):
      if len(s) == 0:
        raise ValueError(f"Mixture source {n!r} has no rows; use a larger source or a shorter mixture.length.")
    self.schedule, self.batch_size, self.seed, self.example_fn = schedule, int(batch_size), int(seed), example_fn
    self.local = slice(process_index * batch_size // process_count, (process_index + 1) * batch_size // process_count)
    k = len(self.names)
    self._next, self._cursors, self._counts, self._online = 0, [0] * k, [0] * k, None
    self._perms: dict[int, tuple[int, np.ndarray]] = {}
    self.info: dict = {}  # what built the sources (e.g. a dedup report), reported in summary()
    self.memo: dict = {}  # JSON a weight-updating hook keeps (e.g. Skill-it's loss history): checkpointed

  # -- weights
  def weights(self, step: int | None = None) -> np.ndarray:
    if self._online is not None:
      return np.asarray(self._online, np.float64)
    return np.asarray(self.schedule(self._next if step is None else step), np.float64)

  def set_weights(self, weights) -> None:
    """Online weights (a between-steps hook): in force from the next batch until set again."""
    w = np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (len(self.names),) or (w < 0).any() or w.sum() <= 0 or not np.isfinite(w).all():
      raise ValueError(f"Mixture weights {w.tolist()} must be {len(self.names)} non-negative numbers with a positive sum.")
    self._online = (w / w.sum()).tolist()

  # -- iteration
  def assignment(self, b: int, w: np.ndarray) -> np.ndarray:
    """Source of each row of global batch b: i.i.d. Categorical(w), rng (seed, b)."""
    return np.random.default_rng([self.seed, 4099, int(b)]).choice(len(w), size=self.batch_size, p=w)

  def _row(self, s: int, cursor: int) -> int:
    n = len(self.sources[s])
    epoch, pos = divmod(cursor, n)
    if self._perms.get(s, (None,))[0] != epoch:  # one permutation per source and epoch, cached
      self._perms[s] = (epoch, np.random.default_rng([self.seed, 8191, s, epoch]).permutation(n))
    return int(self._perms[s][1][pos])

  def __next__(self) -> dict:
    b = self._next
    src = self.assignment(b, self.weights(b))
    rows = []
    for j, s in enumerate(src):
      c = self._cursors[s]
      self._cursors[s] += 1
      self._counts[s] += 1
      if self.local.start <= j < self.local.stop:
        rec = dict(self.sources[s][self._row(int(s), c)])
        rec["source"] = np.int32(s)
        if self.example_fn is not None:
          rec = self.example_fn(rec, np.random.default_rng([self.seed, 7, b, j]))
        rows.append(rec)
    self._next += 1
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}

  # -- what it did
  def realised(self) -> np.ndarray:
    c = np.asarray(self._counts, np.float64)
    return c / max(c.sum(), 1.0)

  def metrics(self) -> dict[str, float]:
    w, r = self.weights(), self.realised()
    out = {f"mix/{n}": float(r[i]) for i, n in enumerate(self.names)}
    out.update({f"mix_weight/{n}": float(w[i]) for i, n in enumerate(self.names)})
    return out

  def summary(self) -> dict:
    return {"sources": self.names, "rows_drawn": dict(zip(self.names, map(int, self._counts))),
            "realised": dict(zip(self.names, self.realised().round(4).tolist())),
            "online_weights": self._online, **self.info}

  # -- checkpointing
  def get_state(self) -> dict:
    return {"next_index": self._next, "cursors": list(map(int, self._cursors)),
            "counts": list(map(int, self._counts)), "online_weights": self._online, "names": self.names,
            "memo": self.memo}

  def set_state(self, state: dict) -> None:
    if state.get("names", self.names) != self.names:
      raise ValueError(f"The checkpoint's mixture has sources {state['names']}, this run {self.names}; "
                       "resume with the same mixture.sources or use a new --workdir.")
    self._next = int(state["next_index"])
    self._cursors = [int(x) for x in state.get("cursors", [0] * len(self.names))]
    self._counts = [int(x) for x in state.get("counts", [0] * len(self.names))]
    self._online = state.get("online_weights")
    self.memo = dict(state.get("memo") or {})


def stream(config, ctx, rows: Mapping[str, Sequence]) -> MixtureStream:
  """The train stream over `rows` ({source: rows}) with `config.mixture`'s weights and phases."""
  m = config.mixture
  schedule = Schedule(list(rows), dict(m.weights), tuple(m.get("phases", ()) or ()), int(config.train.steps))
  return MixtureStream(rows, schedule, batch_size=int(config.data.batch_size), seed=int(config.seed),
                       process_index=ctx.process_index, process_count=ctx.process_count)


def build(config, ctx, split: str | None = None) -> MixtureStream:
  """The stream of `config.mixture.sources` (any text source or task) for this process."""
  from paperjax import data as data_lib  # pylint: disable=g-import-not-at-top
  m = config.mixture
  split = split or config.data.get("train_split", "train")
  cache = data_lib.cache_dir_for(ctx.workdir)
  rows = {n: build_rows(spec, split, ctx.tokenizer, int(m.length), i, cache, int(m.get("max_chars", 0) or 0))
          for i, (n, spec) in enumerate(dict(m.sources).items())}
  return stream(config, ctx, rows)
