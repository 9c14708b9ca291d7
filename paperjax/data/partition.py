"""Partitioners and per-client data streams for populations (federated clients, DiLoCo workers, experts).

Partitioners return one index array per client (into a random-access source):
  iid(n, clients, seed)                   a random equal split
  dirichlet(labels, clients, alpha, seed) label skew: for every class, the share of each client is drawn
                                          from Dir(α·1) (Hsu et al. 2019); α→∞ is iid, α=0.1 nearly one
                                          class per client. Redrawn until every client has `min_size` items.
  by_domain(domains, clients, seed)       client c holds domain c mod D (domains split iid among the
                                          clients that share one)

`ClientStreams` turns (source, partition) into what a population step consumes: every call to `next`
is one round, a dict of arrays shaped [slots, local_steps, batch, ...] for the clients sampled that
round, plus `client` (their ids, -1 for an empty slot) and `num_examples` (their dataset sizes, the
FedAvg weights; 0 for an empty slot). Client c's stream is its own shuffled, repeated grain MapDataset,
read at position (rounds in which c took part so far) × local_steps, so the whole data state is the
round number: it is checkpointed with the train state like any grain iterator and a resumed run sees
exactly the batches it would have seen.
"""

from __future__ import annotations

from typing import Callable, Sequence

import grain
import numpy as np


def iid(n_items: int, n_clients: int, seed: int) -> list[np.ndarray]:
  if n_items < n_clients:
    raise ValueError(f"Cannot split {n_items} examples among {n_clients} clients; use fewer clients "
                     "(population.clients) or a larger data source.")
  perm = np.random.default_rng([seed, 11]).permutation(n_items)
  return [np.sort(p) for p in np.array_split(perm, n_clients)]


def dirichlet(labels: Sequence[int], n_clients: int, alpha: float, seed: int, min_size: int = 2,
              max_tries: int = 1000) -> list[np.ndarray]:
  if alpha <= 0:
    raise ValueError(f"population.alpha={alpha} must be > 0 (Dirichlet concentration; 0.5 is a common non-iid choice).")
  labels = np.asarray(labels)
  rng = np.random.default_rng([seed, 13])
  classes = np.unique(labels)
  for _ in range(max_tries):
    parts: list[list[int]] = [[] for _ in range(n_clients)]
    for k in classes:
      idx = rng.permutation(np.flatnonzero(labels == k))
      share = rng.dirichlet(np.full(n_clients, alpha))
      cuts = (np.cumsum(share)[:-1] * len(idx)).astype(int)
      for c, chunk in enumerate(np.split(idx, cuts)):
        parts[c] += chunk.tolist()
    if min(len(p) for p in parts) >= min_size:
      return [np.sort(np.asarray(p, np.int64)) for p in parts]
  raise ValueError(f"Dirichlet(α={alpha}) left some of {n_clients} clients with fewer than {min_size} of "
                   f"{len(labels)} examples in {max_tries} draws; raise population.alpha or use fewer clients.")


def by_domain(domains: Sequence[int], n_clients: int, seed: int) -> list[np.ndarray]:
  domains = np.asarray(domains)
  names = np.unique(domains)
  if n_clients < len(names):
    raise ValueError(f"{len(names)} domains need at least as many clients, got {n_clients}; "
                     f"set population.clients >= {len(names)}.")
  parts = []
  for c in range(n_clients):
    d = names[c % len(names)]
    sharing = [k for k in range(n_clients) if names[k % len(names)] == d]
    idx = np.flatnonzero(domains == d)
    parts.append(iid(len(idx), len(sharing), seed + int(d))[sharing.index(c)] if len(sharing) > 1 else np.arange(len(idx)))
    parts[-1] = idx[parts[-1]]
  return parts


class Subset:
  """Random-access view of `source` restricted to `indices`."""

  def __init__(self, source, indices: np.ndarray):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[int(i)])]


def uniform_sampler(n_clients: int, per_round: int, seed: int) -> Callable[[int], np.ndarray]:
  """FedAvg's client sampling: `per_round` distinct clients, uniformly, fixed by (seed, round)."""
  if not 0 < per_round <= n_clients:
    raise ValueError(f"population.clients_per_round={per_round} must be in 1..{n_clients} (population.clients).")
  if per_round == n_clients:
    return lambda r: np.arange(n_clients)
  return lambda r: np.sort(np.random.default_rng([seed, 17, r]).choice(n_clients, per_round, replace=False))


class ClientStreams(grain.DatasetIterator):
  """One round of per-client batches per `next()`: leaves [slots, local_steps, batch, ...]."""

  def __init__(self, source, parts: Sequence[np.ndarray], *, batch_size: int, local_steps: int, seed: int,
               slots: int | None = None, sampler: Callable[[int], np.ndarray] | None = None,
               example_fn: Callable | None = None, process_index: int = 0, process_count: int = 1):
    super().__init__()
    self.parts = [np.asarray(p) for p in parts]
    self.n = len(self.parts)
    self.slots = slots or self.n
    self.sampler = sampler or uniform_sampler(self.n, self.slots, seed)
    if self.slots % process_count:
      raise ValueError(f"{self.slots} client slots do not divide among {process_count} processes; "
                       f"use a multiple of {process_count}.")
    self.local = slice(process_index * self.slots // process_count, (process_index + 1) * self.slots // process_count)
    self.batch_size, self.local_steps = int(batch_size), int(local_steps)
    self.datasets = []
    for c, idx in enumerate(self.parts):
      if len(idx) == 0:
        raise ValueError(f"Client {c} has no examples; use fewer clients or a larger alpha.")
      ds = grain.MapDataset.source(Subset(source, idx)).shuffle(seed=int(seed) * 1_000_003 + c).repeat()
      if example_fn is not None:
        ds = ds.map(example_fn)
      self.datasets.append(ds.batch(self.batch_size, drop_remainder=True))
    self.sizes = np.array([len(p) for p in self.parts], np.float32)
    self._round = 0
    self._counts = np.zeros(self.n, np.int64)

  def _draw(self, r: int) -> np.ndarray:
    ids = np.asarray(self.sampler(r), np.int64)
    if ids.shape != (self.slots,):
      raise ValueError(f"The client sampler returned {ids.shape[0]} ids for {self.slots} slots; pad with -1.")
    return ids

  def __next__(self) -> dict:
    ids = self._draw(self._round)
    rows = []
    for c in ids[self.local]:
      ds = self.datasets[max(int(c), 0)]
      start = int(self._counts[c]) * self.local_steps if c >= 0 else 0
      steps = [ds[start + h] for h in range(self.local_steps)]
      rows.append({k: np.stack([s[k] for s in steps]) for k in steps[0]})
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    local_ids = ids[self.local]
    out["client"] = local_ids.astype(np.int32)
    out["num_examples"] = np.where(local_ids >= 0, self.sizes[np.maximum(local_ids, 0)], 0).astype(np.float32)
    for c in ids:
      if c >= 0:
        self._counts[c] += 1
    self._round += 1
    return out

  def get_state(self) -> dict:
    return {"next_index": self._round}

  def set_state(self, state: dict) -> None:
    self._round, self._counts = 0, np.zeros(self.n, np.int64)
    for r in range(int(state["next_index"])):
      for c in self._draw(r):
        if c >= 0:
          self._counts[c] += 1
    self._round = int(state["next_index"])


class Concat:
  """Several random-access sources as one; `domain_ids[i]` says which source item i came from."""

  def __init__(self, sources: Sequence):
    self.sources = list(sources)
    self.ends = np.cumsum([len(s) for s in self.sources])
    self.domain_ids = np.concatenate([np.full(len(s), d) for d, s in enumerate(self.sources)])

  def __len__(self):
    return int(self.ends[-1])

  def __getitem__(self, i):
    i = int(i)
    d = int(np.searchsorted(self.ends, i, side="right"))
    return self.sources[d][i - (int(self.ends[d - 1]) if d else 0)]


def population_source(config, ctx, split: str = "train"):
  """The population's data: `data.source`, or the concatenation of `population.domains` (one source
  spec per domain, e.g. "builtin:pydoc", "builtin:stdlib_code/email"), with a label per item for the
  partitioner (the domain id, or the record's `label`)."""
  import ml_collections
  from paperjax import data as data_lib
  cache = data_lib.cache_dir_for(ctx.workdir)
  domains = tuple(config.population.get("domains", ()) or ())
  if domains:
    parts = []
    for spec in domains:
      dcfg = ml_collections.ConfigDict(config.data.to_dict())
      dcfg.source = spec
      parts.append(data_lib.build_source(dcfg, split, ctx.tokenizer, cache))
    src = Concat(parts)
    return src, src.domain_ids
  src = data_lib.build_source(config.data, split, ctx.tokenizer, cache)
  labels = None
  if config.data.get("kind", "text") == "records":
    labels = np.asarray([src[i]["label"] for i in range(len(src))])
  return src, labels


def partition(config, n_items: int, labels) -> list[np.ndarray]:
  p = config.population
  kind, n, seed = p.partition, int(p.clients), int(config.seed)
  if kind == "iid":
    return iid(n_items, n, seed)
  if kind in ("dirichlet", "domain") and labels is None:
    raise ValueError(f"population.partition={kind!r} needs labels: use a records source with 'label' "
                     "or list population.domains.")
  if kind == "dirichlet":
    return dirichlet(labels, n, float(p.alpha), seed)
  if kind == "domain":
    return by_domain(labels, n, seed)
  raise ValueError(f"population.partition={kind!r} is unknown; use 'iid', 'dirichlet' or 'domain'.")


def client_streams(config, ctx, *, example_fn: Callable | None = None,
                   sampler: Callable[[int], np.ndarray] | None = None) -> ClientStreams:
  """`Method.make_iterator` for a population: source → partition → per-client streams, one round per
  `next`, `population.clients_per_round` slots (0: every client), `population.local_steps` batches of
  `population.batch_size` examples per slot."""
  p = config.population
  src, labels = population_source(config, ctx)
  parts = partition(config, len(src), labels)
  return ClientStreams(src, parts, batch_size=int(p.batch_size), local_steps=int(p.local_steps),
                       seed=int(config.seed), slots=int(p.clients_per_round or p.clients), sampler=sampler,
                       example_fn=example_fn, process_index=ctx.process_index, process_count=ctx.process_count)
